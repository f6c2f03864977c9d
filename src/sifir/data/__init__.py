"""Data sets: the registry (MNIST, Fashion-MNIST, Kuzushiji-MNIST, EMNIST, any IDX folder), getting
them onto disk (download, offline sources), loading and checking them, and the model inputs made
from them (validation split, normalisation).

    datasets.py  the registry: files, checksums, classes, licence, sources
    files.py     finding, checking and atomically writing a data set's files
    download.py  mirrors and archives, and the order every source is tried in
    offline.py   copies that need no download site (a system package's folder, a wheel)
    idx.py       the IDX format, read and written with every header checked
    load.py      a data set into memory, checked; the test set a model can be judged on
    inputs.py    validation split, normalisation, and the facts a model file keeps
    mnist.py     MNIST by its old names (load_mnist, download, verify, FILES, MEAN, STD)
"""

from sifir.data.datasets import DATASETS, DataSet
from sifir.data.download import download as download_dataset
from sifir.data.idx import read_idx, write_idx
from sifir.data.inputs import DataFacts, normalize, split_validation
from sifir.data.load import Loaded, load
from sifir.data.mnist import default_data_dir, download, load_mnist

__all__ = ["read_idx", "write_idx", "load_mnist", "split_validation", "normalize", "download", "default_data_dir",
           "DATASETS", "DataSet", "DataFacts", "Loaded", "load", "download_dataset"]
