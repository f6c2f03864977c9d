"""Data sets beyond MNIST: the registry, Fashion-MNIST from Debian's package, Kuzushiji-MNIST and
EMNIST downloaded from real local HTTP servers serving small fixture files, any IDX folder, and
every bad input named in one line."""
import dataclasses
import gzip
import hashlib
import re
import string
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sifir.data import datasets, files, inputs
from sifir.data.datasets import DATASETS, EMNIST_DIGITS, EMNIST_LETTERS, FASHION_MNIST, KMNIST, MNIST
from sifir.data.download import download
from sifir.data.idx import encode_idx, write_idx
from sifir.data.inputs import DataFacts, pixel_statistics
from sifir.data.load import evaluation_data, load
from sifir.errors import DataError, DownloadError, ModelFileError
from test_mnist import serve

NAMES = datasets.MNIST_NAMES   # role -> MNIST's file name


def tiny_arrays(n_train=40, n_test=12, classes=10, seed=0, low=0):
    """Random 28×28 images and labels low..low+classes-1, every class present in training."""
    rng = np.random.default_rng(seed)
    train_labels = (np.arange(n_train) % classes + low).astype(np.uint8)
    test_labels = (rng.integers(0, classes, n_test) + low).astype(np.uint8)
    return {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), "train_labels": train_labels,
            "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), "test_labels": test_labels}


def write_set(folder: Path, arrays: dict, names: dict = NAMES, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in names.items():
        write_idx(folder / (f"{name}.gz" if gz else name), arrays[role])
    return folder


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- the registry


def test_every_data_set_says_what_it_is_and_where_it_comes_from():
    assert list(DATASETS) == ["mnist", "fashion-mnist", "kmnist", "emnist-digits", "emnist-letters",
                              "emnist-balanced", "idx"]
    for d in DATASETS.values():
        assert set(d.files) == set(datasets.ROLES), d.name
        if d.name == "idx":
            assert not d.classes and not d.mirrors and not d.archive
            continue
        assert d.licence and d.attribution and d.homepage and d.classes, d.name
        assert len(set(d.classes)) == len(d.classes), d.name
        assert d.mirrors or d.archive, d.name
        # every file is checked: its own SHA-256, its published .gz's, or the archive's
        assert d.archive or all(spec.checked for spec in d.files.values()), d.name
    assert len(DATASETS["emnist-balanced"].classes) == 47 and len(DATASETS["emnist-letters"].classes) == 26
    assert KMNIST.classes[0] == "お (o)" and FASHION_MNIST.classes[1] == "Trouser"


def test_unknown_data_set_lists_the_known_ones():
    with pytest.raises(DataError) as e:
        datasets.get("cifar10")
    assert "cifar10" in str(e.value) and "fashion-mnist, kmnist, emnist-digits" in str(e.value)


def test_pinned_facts_are_those_of_the_real_files(mnist_dir, fashion_dir):
    """MNIST's 0.1307/0.3081 and Fashion-MNIST's pinned checksums and statistics, recomputed from
    the files on this machine (the pinned checksums are checked inside load)."""
    for dataset, folder in ((MNIST, mnist_dir), (FASHION_MNIST, fashion_dir)):
        loaded = load(dataset, folder, download_missing=False)
        assert pixel_statistics(loaded.train_images) == (dataset.mean, dataset.std)
        assert loaded.facts == DataFacts(dataset.name, dataset.title, dataset.classes, dataset.mean, dataset.std)
        assert loaded.train_images.shape == (60000, 28, 28) and loaded.test_labels.shape == (10000,)
    assert (MNIST.mean, MNIST.std) == (0.1307, 0.3081)


def test_pixel_statistics_are_exact():
    images = np.array([[0, 255], [51, 102]], np.uint8).reshape(1, 2, 2)
    x = images / 255
    assert pixel_statistics(images) == (round(x.mean(), 4), round(x.std(), 4))


def test_each_data_set_has_its_own_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("SIFIR_DATA_DIR", str(tmp_path / "mnist-here"))
    assert files.default_data_dir("mnist") == tmp_path / "mnist-here"   # $SIFIR_DATA_DIR is MNIST's
    assert files.default_data_dir("fashion-mnist") == tmp_path / "sifir" / "fashion-mnist"
    # the EMNIST splits come out of one zip, kept once
    assert files.default_data_dir("emnist-digits") == files.default_data_dir("emnist-letters") == tmp_path / "sifir" / "emnist"


# --------------------------------------------------------------------------- Fashion-MNIST


def fake_fashion(tmp_path, arrays, system: Path) -> datasets.DataSet:
    """Fashion-MNIST's entry with fixture checksums and a fixture system folder."""
    specs = {role: dataclasses.replace(FASHION_MNIST.files[role],
                                       sha256=hashlib.sha256(encode_idx(arrays[role])).hexdigest(),
                                       size=len(encode_idx(arrays[role])))
             for role in datasets.ROLES}
    return dataclasses.replace(FASHION_MNIST, files=specs, mean=None, std=None,
                               offline=(datasets.SystemFolder(str(system), "dataset-fashion-mnist"),))


def test_fashion_comes_from_the_system_package_without_network(tmp_path):
    arrays = tiny_arrays()
    system = write_set(tmp_path / "usr-share", arrays)
    dataset = fake_fashion(tmp_path, arrays, system)
    logs = []
    cache = tmp_path / "cache"
    assert download(dataset, cache, mirrors=["http://127.0.0.1:9/"], log=logs.append) == cache
    assert len(logs) == 4 and all("copied" in line and str(system) in line for line in logs)
    loaded = load(dataset, cache, download_missing=False)
    np.testing.assert_array_equal(loaded.test_images, arrays["test_images"])
    assert loaded.facts.mean == pixel_statistics(arrays["train_images"])[0]   # not pinned: computed
    assert leftovers(cache) == []


def test_a_wrong_file_in_the_system_folder_never_enters_the_cache(tmp_path):
    arrays = tiny_arrays()
    system = write_set(tmp_path / "usr-share", arrays)
    dataset = fake_fashion(tmp_path, arrays, system)
    other = tiny_arrays(seed=1)
    write_idx(system / "t10k-images-idx3-ubyte.gz", other["test_images"])   # same shape, other pixels
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        download(dataset, cache, mirrors=[], log=lambda _: None)
    assert f"{system}/t10k-images-idx3-ubyte: checksum mismatch" in str(e.value)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in NAMES.values() if "t10k-images" not in n)


def test_without_the_package_the_message_says_what_to_install(tmp_path):
    dataset = dataclasses.replace(FASHION_MNIST, offline=(datasets.SystemFolder(str(tmp_path / "absent"),
                                                                                  "dataset-fashion-mnist"),))
    with pytest.raises(DownloadError) as e:
        download(dataset, tmp_path / "cache", mirrors=[], log=lambda _: None)
    assert "apt-get install dataset-fashion-mnist" in str(e.value) and "--data-dir" in str(e.value)
    assert "SIFIR_DATA_DIR" not in str(e.value)   # that variable names MNIST's folder only


def test_fashion_from_a_mirror_is_checked_like_mnist(tmp_path):
    arrays = tiny_arrays()
    dataset = fake_fashion(tmp_path, arrays, tmp_path / "absent")
    good = write_set(tmp_path / "good", arrays)
    bad = write_set(tmp_path / "bad", tiny_arrays(seed=2, classes=9))   # every file differs
    logs = []
    with serve(bad) as (bad_url, bad_requests), serve(good) as (good_url, good_requests):
        download(dataset, tmp_path / "cache", mirrors=[bad_url, good_url], log=logs.append, offline_sources=False)
    assert len(bad_requests) == len(good_requests) == 4
    assert sum("checksum mismatch" in line for line in logs) == 4
    files.verify(dataset, tmp_path / "cache")


def test_mnist_files_are_not_fashion(mnist_dir):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not the official Fashion-MNIST file"):
        load(FASHION_MNIST, mnist_dir, download_missing=False)


# --------------------------------------------------------------------------- Kuzushiji-MNIST


def kmnist_mirror(folder: Path, arrays: dict) -> datasets.DataSet:
    """The .gz files as the authors would serve them, and KMNIST's entry pinned to their SHA-256."""
    write_set(folder, arrays)
    specs = {}
    for role, name in NAMES.items():
        data = (folder / f"{name}.gz").read_bytes()
        specs[role] = dataclasses.replace(KMNIST.files[role], gz_sha256=hashlib.sha256(data).hexdigest(),
                                          gz_size=len(data))
    return dataclasses.replace(KMNIST, files=specs)


def test_kmnist_downloads_and_checks_the_published_gz(tmp_path):
    arrays = tiny_arrays()
    dataset = kmnist_mirror(tmp_path / "mirror", arrays)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in NAMES.values():   # valid gzip of other bytes: only the checksum can tell
        (corrupt / f"{name}.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x05", mtime=0))
    logs = []
    with serve(corrupt) as (bad, _), serve(tmp_path / "mirror") as (good, requests):
        download(dataset, tmp_path / "cache", mirrors=[bad, good], log=logs.append)
    assert len(requests) == 4 and sum("checksum mismatch" in line for line in logs) == 4
    loaded = load(dataset, tmp_path / "cache", download_missing=False)
    assert loaded.facts.classes == KMNIST.classes and loaded.facts.title == "Kuzushiji-MNIST"
    np.testing.assert_array_equal(loaded.train_labels, arrays["train_labels"])
    assert leftovers(tmp_path / "cache") == []


def test_kmnist_without_its_published_gz_cannot_be_verified(tmp_path):
    arrays = tiny_arrays()
    dataset = kmnist_mirror(tmp_path / "mirror", arrays)
    write_set(tmp_path / "raw", arrays, gz=False)   # the same data, decompressed
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: not the official Kuzushiji-MNIST file "
                                        r"\(cannot be verified: only the SHA-256 of .*--dataset idx"):
        load(dataset, tmp_path / "raw", download_missing=False)
    assert load(dataset, tmp_path / "raw", download_missing=False, verify_checksums=False).facts.classes


def test_the_real_kmnist_entry_refuses_other_files(tmp_path):
    write_set(tmp_path, tiny_arrays())
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not the official Kuzushiji-MNIST file "
                                        r"\(checksum mismatch: as stored"):
        load("kmnist", tmp_path, download_missing=False)


# --------------------------------------------------------------------------- EMNIST


def glyph() -> np.ndarray:
    """An upright "F": no symmetry, so a transposed or mirrored copy differs from it."""
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 8:11] = 255     # the stem, on the left
    image[4:7, 8:20] = 255      # the top bar, to the right
    image[12:15, 8:17] = 180    # the middle bar
    return image


def as_nist_stores_it(upright: np.ndarray) -> np.ndarray:
    """EMNIST's files hold each image "inverted horizontally and rotated 90° anti-clockwise"."""
    return np.rot90(np.flip(upright, axis=-1), axes=(-2, -1))   # for one image or a stack


def emnist_zip(folder: Path, splits: dict) -> Path:
    """gzip.zip laid out as NIST's: gzip/emnist-<split>-<part>.gz for each split."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gzip.zip"
    parts = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "test-images-idx3-ubyte", "test_labels": "test-labels-idx1-ubyte"}
    with zipfile.ZipFile(path, "w") as z:
        for split, arrays in splits.items():
            for role, part in parts.items():
                a = arrays[role]
                if role.endswith("images"):
                    a = np.ascontiguousarray(as_nist_stores_it(a))
                z.writestr(f"gzip/emnist-{split}-{part}.gz", gzip.compress(encode_idx(a), mtime=0))
            z.writestr(f"gzip/emnist-{split}-mapping.txt", "0 48\n")
    return path


def fake_emnist(zip_path: Path, *entries):
    data = zip_path.read_bytes()
    archive = dataclasses.replace(datasets.EMNIST_ZIP, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return [dataclasses.replace(e, archive=archive) for e in entries]


@pytest.fixture
def emnist(tmp_path):
    digits = tiny_arrays(seed=3)
    digits["train_images"][0] = glyph()
    letters = tiny_arrays(classes=26, n_train=60, low=1, seed=4)
    path = emnist_zip(tmp_path / "nist", {"digits": digits, "letters": letters})
    return path, fake_emnist(path, EMNIST_DIGITS, EMNIST_LETTERS), digits, letters


def test_emnist_zip_is_downloaded_once_and_its_images_turned_upright(emnist, tmp_path):
    path, (digits_set, letters_set), digits, letters = emnist
    cache = tmp_path / "cache"
    logs = []
    with serve(path.parent) as (url, requests):
        download(digits_set, cache, mirrors=[url], log=logs.append)
        download(letters_set, cache, mirrors=[url], log=logs.append)   # from the zip already here
    assert requests == ["/gzip.zip"]
    assert (cache / "gzip.zip").read_bytes() == path.read_bytes()
    assert sum("took" in line for line in logs) == 8
    loaded = load(digits_set, cache, download_missing=False)
    assert not np.array_equal(as_nist_stores_it(glyph()), glyph())
    np.testing.assert_array_equal(loaded.train_images[0], glyph())            # the "F" reads as an F
    np.testing.assert_array_equal(loaded.train_images, digits["train_images"])
    assert loaded.train_images.flags.c_contiguous
    letters_loaded = load(letters_set, cache, download_missing=False)
    np.testing.assert_array_equal(letters_loaded.train_labels, letters["train_labels"] - 1)   # 1–26 → 0–25
    assert letters_loaded.facts.classes == tuple(string.ascii_lowercase)
    assert leftovers(cache) == []


def test_emnist_letters_labelled_zero_are_refused(tmp_path):
    letters = tiny_arrays(classes=26, low=1)
    letters["test_labels"][3] = 0
    path = emnist_zip(tmp_path / "nist", {"letters": letters})
    (letters_set,) = fake_emnist(path, EMNIST_LETTERS)
    with serve(path.parent) as (url, _):
        download(letters_set, tmp_path / "cache", mirrors=[url], log=lambda _: None)
    with pytest.raises(DataError, match="emnist-letters-test-labels-idx1-ubyte.gz: label 0 found; "
                                        "EMNIST Letters labels are 1 to 26"):
        load(letters_set, tmp_path / "cache", download_missing=False)


def test_a_zip_that_does_not_match_its_checksum_is_not_kept(emnist, tmp_path):
    path, _, _, _ = emnist
    cache = tmp_path / "cache"
    with serve(path.parent) as (url, _):
        with pytest.raises(DownloadError, match="gzip.zip: checksum mismatch: as stored"):
            download(EMNIST_DIGITS, cache, mirrors=[url], log=lambda _: None)   # the real entry's SHA-256
    assert list(cache.iterdir()) == []


def test_a_damaged_zip_in_the_cache_is_named(emnist, tmp_path):
    path, (digits_set, _), _, _ = emnist
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "gzip.zip").write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DownloadError, match=r"gzip.zip: checksum mismatch.*delete it to download it again"):
        download(digits_set, cache, mirrors=[], log=lambda _: None)


# --------------------------------------------------------------------------- any IDX folder


def test_idx_classes_come_from_the_labels_or_classes_txt(tmp_path):
    folder = write_set(tmp_path / "mine", tiny_arrays(classes=3))
    loaded = load("idx", folder)
    assert loaded.facts.classes == ("0", "1", "2") and loaded.facts.dataset == "idx"
    assert folder.name in loaded.facts.title
    (folder / "classes.txt").write_text("cat\ndog\nbird\n\n", encoding="utf-8")
    assert load("idx", folder).facts.classes == ("cat", "dog", "bird")
    (folder / "classes.txt").write_text("cat\ndog\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"classes.txt: names 2 classes, but the labels go up to 2"):
        load("idx", folder)


def test_idx_needs_a_folder():
    with pytest.raises(DataError, match="--data-dir FOLDER"):
        load("idx")


@pytest.mark.parametrize("damage, message", [
    ("missing", r"IDX files file\(s\) missing in .*: t10k-labels-idx1-ubyte\. --dataset idx needs all four"),
    ("count", r"train-labels-idx1-ubyte.gz: 39 labels, but train-images-idx3-ubyte.gz has 40 images"),
    ("size", r"t10k-images-idx3-ubyte.gz: expected uint8 images of shape \(N, 28, 28\), found uint8 \(12, 32, 32\)"),
    ("range", r"t10k-labels-idx1-ubyte.gz: label 7 found; MNIST labels are 0 to 2"),
])
def test_bad_folders_get_one_line_naming_the_file(tmp_path, damage, message):
    arrays = tiny_arrays(classes=3)
    folder = write_set(tmp_path / "mine", arrays)
    dataset = "idx"
    if damage == "missing":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    elif damage == "count":
        write_idx(folder / "train-labels-idx1-ubyte.gz", arrays["train_labels"][:-1])
    elif damage == "size":
        write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((12, 32, 32), np.uint8))
    else:   # a label beyond the classes: MNIST has 10, so here with 3 names
        dataset = dataclasses.replace(MNIST, classes=("0", "1", "2"))
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(12, 7, np.uint8))
    with pytest.raises(DataError) as e:
        load(dataset, folder, verify_checksums=False)
    assert "\n" not in str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


# --------------------------------------------------------------------------- what a model remembers


def test_facts_round_trip_and_old_files_read_as_mnist():
    facts = DataFacts("fashion-mnist", "Fashion-MNIST", FASHION_MNIST.classes, 0.286, 0.353)
    assert DataFacts.from_info(facts.info(), outputs=10) == facts
    old = {"preset": "seed", "input": {"shape": [1, 28, 28], "mean": 0.1307, "std": 0.3081}}
    assert DataFacts.from_info(old, outputs=10) == inputs.MNIST_FACTS
    assert DataFacts.from_info({}, outputs=10) == inputs.MNIST_FACTS
    with pytest.raises(ModelFileError, match="3 class names for 10 outputs"):
        DataFacts.from_info({"dataset": {"name": "idx", "classes": ["a", "b", "c"]}}, outputs=10)
    with pytest.raises(ModelFileError, match="damaged description"):
        DataFacts.from_info({"dataset": {"name": "x", "classes": [1, 2]}, "input": {"mean": 0, "std": 1}})
    with pytest.raises(ModelFileError, match="damaged description"):
        DataFacts.from_info({"input": {"mean": 0.1, "std": 0}})


def test_a_model_is_judged_only_on_its_own_data_set(tmp_path, mnist_dir):
    fashion = DataFacts("fashion-mnist", "Fashion-MNIST", FASHION_MNIST.classes, 0.286, 0.353)
    with pytest.raises(DataError, match="trained on Fashion-MNIST; its accuracy on MNIST would mean nothing"):
        evaluation_data(fashion, "mnist", mnist_dir)
    folder = write_set(tmp_path / "mine", tiny_arrays(classes=3))
    three = DataFacts("idx", "mine", ("0", "1"), 0.5, 0.3)
    with pytest.raises(DataError, match="has 3 classes .*the model knows 2"):
        evaluation_data(three, None, folder)


def test_normalize_follows_the_data_set():
    grid = np.full((28, 28), 255, np.uint8)
    np.testing.assert_allclose(inputs.normalize(grid, 0.286, 0.353), (1 - 0.286) / 0.353, rtol=1e-6)
    # MNIST's default is unchanged, bit for bit
    np.testing.assert_array_equal(inputs.normalize(grid), inputs.normalize(grid, 0.1307, 0.3081))

