"""Datasets: IDX files and MNIST (download, checksums, loading, normalisation)."""

from sifir.data.idx import read_idx, write_idx
from sifir.data.mnist import default_data_dir, download, load_mnist, normalize, split_validation

__all__ = ["read_idx", "write_idx", "load_mnist", "split_validation", "normalize", "download", "default_data_dir"]
