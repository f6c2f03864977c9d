"""A data set's files on disk: where they live, how they are checked, how they are written.

The network (``download``), the copies already on this machine (``offline``) and the loader
(``load``) all go through here, so a file is judged the same way wherever it came from:

* checked: the SHA-256 of its decompressed bytes against the registry (gzip detected by its
  magic bytes, not its name), or, where only the published ``.gz`` has a known checksum
  (Kuzushiji-MNIST), the SHA-256 of that very ``.gz``;
* written atomically: to a temporary file in the same folder, flushed to disk, then renamed,
  so the cache never holds a partial or unverified file under a real name.

Only the standard library and NumPy are imported here.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from sifir.data.datasets import DEFAULT, MNIST, DataSet, FileSpec, get
from sifir.errors import DataError
from sifir.messages import t

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
Log = Callable[[str], object]


class Rejected(Exception):
    """One file or source failed for a reason worth one log line; the next source is tried."""


# --------------------------------------------------------------------------- locating


def cache_home() -> Path:
    """$XDG_CACHE_HOME/sifir, else ~/.cache/sifir."""
    cache = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "sifir"


def default_data_dir(dataset: DataSet | str = DEFAULT) -> Path:
    """Where a data set is kept when no folder is given: the user cache, ``<cache>/sifir/<name>``.

    For MNIST, $SIFIR_DATA_DIR comes first (it names MNIST's folder, as it always has). Data
    sets that come out of one archive share its folder (the three EMNIST splits: ``emnist``).
    """
    dataset = get(dataset)
    explicit = os.environ.get("SIFIR_DATA_DIR")
    if dataset.name == MNIST.name and explicit:
        return Path(explicit).expanduser()
    return cache_home() / dataset.cache_name


def resolve(dataset: DataSet, data_dir) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir(dataset)


def find_files(dataset: DataSet, folder: Path) -> dict[str, Path]:
    """The data set's files present in ``folder``, as {file name: path}; ``name`` or
    ``name.gz`` both count (the raw file wins when both exist: faster to read)."""
    found = {}
    for spec in dataset.files.values():
        for candidate in (folder / spec.name, folder / f"{spec.name}.gz"):
            if candidate.is_file():
                found[spec.name] = candidate
                break
    return found


# --------------------------------------------------------------------------- checksums


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def decompressed_digest(path: Path, limit: int | None) -> tuple[str, int]:
    """SHA-256 and size of a file's decompressed bytes (raw files: of the file itself).

    Stops once more than ``limit`` bytes came out: a gzip bomb from a bad mirror is then
    rejected after ``limit`` bytes of work instead of running for minutes.
    """
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as raw:
        packed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) if packed else raw as stream:
            while (limit is None or size <= limit) and (chunk := stream.read(CHUNK)):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def stored_digest(path: Path) -> tuple[str, int]:
    """SHA-256 and size of the bytes as stored (for a published .gz or an archive)."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def mismatch(digest: str, size: int, want_sha: str, want_size: int, what: str) -> str:
    return t("data.checksum_mismatch", what=what, size=size, digest=digest[:16], want_size=want_size,
             want=want_sha[:16])


def check_digest(spec: FileSpec, digest: str, size: int) -> None:
    """Decompressed bytes against the registry's SHA-256; raises Rejected."""
    if (digest, size) != (spec.sha256, spec.size):
        raise Rejected(mismatch(digest, size, spec.sha256, spec.size, t("data.decompressed")))


def check_file(dataset: DataSet, spec: FileSpec, path: Path) -> None:
    """Check one file on disk against what the registry knows of it; raises Rejected.

    Where nothing is known (EMNIST's files, trusted through their archive; ``idx``), there is
    nothing to check here and the file passes.
    """
    if spec.sha256:
        check_digest(spec, *decompressed_digest(path, spec.size))
    elif spec.gz_sha256:
        if not is_gzip(path):
            raise Rejected(t("data.only_gz_known", title=dataset.title, name=f"{spec.name}.gz"))
        digest, size = stored_digest(path)
        if (digest, size) != (spec.gz_sha256, spec.gz_size):
            raise Rejected(mismatch(digest, size, spec.gz_sha256, spec.gz_size, t("data.as_stored")))


# Damaged gzip shows up as EOFError, zlib.error or gzip.BadGzipFile (an OSError).
FILE_ERRORS = (Rejected, OSError, EOFError, zlib.error)


def verify(dataset: DataSet | str = DEFAULT, data_dir=None) -> None:
    """Check that all four files are present and match the registry's checksums.

    Raises DataError naming each bad or missing file. Takes about a second (55 MB to hash).
    """
    dataset = get(dataset)
    folder = resolve(dataset, data_dir)
    found = find_files(dataset, folder)
    problems = [t("data.file_missing", name=spec.name) for spec in dataset.files.values() if spec.name not in found]
    for spec in dataset.files.values():
        if spec.name in found:
            try:
                check_file(dataset, spec, found[spec.name])
            except FILE_ERRORS as e:
                problems.append(f"{found[spec.name].name}: {e}")
    if problems:
        raise DataError(t("data.does_not_verify", title=dataset.title, folder=folder, problems="; ".join(problems)))


# --------------------------------------------------------------------------- writing


def file_mode() -> int:
    """0666 less the umask: what open() would have given the file (temporary files are 0600)."""
    umask = os.umask(0)  # the only way to read the umask is to set it, so put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def temp_in(folder: Path, name: str):
    # Same folder as the target so that os.replace is an atomic rename, not a copy.
    return tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".part", delete=False)


def commit(tmp_path: str, final: Path) -> None:
    """fsync then rename: the final name only ever points at complete, verified bytes."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp_path, file_mode())  # a cache should read like any file
    os.replace(tmp_path, final)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomic(folder: Path, name: str, write: Callable, check: Callable[[Path], None] | None = None,
                 final_name: Callable[[Path], str] | None = None) -> Path:
    """``write(f)`` into a temporary file in ``folder``, ``check(path)`` it (raising to refuse),
    then rename it to ``final_name(path)`` (default: ``name``). Nothing is left on failure."""
    tmp = temp_in(folder, name)
    try:
        with tmp:
            write(tmp)
        if check is not None:
            check(Path(tmp.name))
        final = folder / (final_name(Path(tmp.name)) if final_name else name)
        commit(tmp.name, final)
        return final
    except BaseException:
        unlink_quietly(tmp.name)
        raise


def gz_name(spec: FileSpec, path: Path) -> str:
    """``name.gz`` for gzip bytes, ``name`` otherwise: a .gz that is not gzip surprises everyone."""
    return f"{spec.name}.gz" if is_gzip(path) else spec.name
