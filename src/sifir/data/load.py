"""Loading a data set: find its four files (fetching missing ones), read them, check them.

``load(dataset, data_dir)`` returns uint8 images (N, 28, 28) the right way up and uint8 labels
starting at 0, with the data set's facts (class names, pixel statistics). What is checked:

* the files parse as IDX (``idx.read_idx``), images are uint8 28×28, labels uint8 (N,), as
  many labels as images, every label names a class;
* the decoded arrays against the registry's SHA-256 (hashing bytes already in memory costs
  ~0.2 s, cheaper than a wrong data set: Fashion-MNIST has MNIST's file names and shapes), or
  the published .gz's SHA-256 where only that is known;
* EMNIST's images are transposed back and its letters' labels 1–26 shifted to 0–25;
* ``idx``: any folder with the four MNIST file names, no checksum, as many classes as the
  labels need, their names from an optional ``classes.txt`` (one per line).

Only the standard library and NumPy are imported here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sifir.data.datasets import CLASS_NAMES_FILE, DEFAULT, IDX, IMAGE_SHAPE, SPLITS, DataSet, FileSpec, get
from sifir.data.download import download
from sifir.data.files import FILE_ERRORS, Log, Rejected, check_digest, check_file, find_files, resolve
from sifir.data.idx import read_idx
from sifir.data.inputs import DataFacts, normalize, pixel_statistics
from sifir.errors import DataError
from sifir.messages import t

MAX_CLASS_NAMES_BYTES = 1 << 20   # a classes.txt is a few hundred bytes; refuse anything absurd


@dataclass
class Loaded:
    """A data set in memory: uint8 images (N, 28, 28), uint8 labels from 0, and its facts."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    facts: DataFacts
    folder: Path

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train_images": self.train_images, "train_labels": self.train_labels,
                "test_images": self.test_images, "test_labels": self.test_labels}


def load(dataset: DataSet | str = DEFAULT, data_dir=None, download_missing: bool = True, log: Log = print,
         verify_checksums: bool = True) -> Loaded:
    """Load a data set (a registry name or entry) from ``data_dir`` (default: its cache folder).

    Missing files are fetched (``download``) unless ``download_missing`` is False.
    ``verify_checksums=False`` skips the checksums (the shapes and labels are still checked).
    Raises DataError (IDXError, DownloadError) naming the file and what is wrong with it.
    """
    dataset = get(dataset)
    if dataset.name == IDX.name and data_dir is None:
        raise DataError(t("data.idx_needs_folder"))
    folder = resolve(dataset, data_dir)
    found = find_files(dataset, folder)
    if len(found) < len(dataset.files):
        fetchable = bool(dataset.mirrors or dataset.archive or dataset.offline)
        if not (download_missing and fetchable):
            raise DataError(_missing_message(dataset, folder, found))
        download(dataset, folder, log=log)
        found = find_files(dataset, folder)
    arrays = {}
    for split, (image_role, label_role) in SPLITS.items():
        ispec, lspec = dataset.files[image_role], dataset.files[label_role]
        ipath, lpath = found[ispec.name], found[lspec.name]
        images, labels = read_idx(ipath), read_idx(lpath)
        _check_pair(images, ipath, labels, lpath)
        if verify_checksums:
            _check_loaded(dataset, ispec, images, ipath)
            _check_loaded(dataset, lspec, labels, lpath)
        if dataset.transposed:   # stored with rows and columns swapped (EMNIST)
            images = np.ascontiguousarray(images.transpose(0, 2, 1))
        arrays[split] = (images, labels, lpath)
    classes = dataset.classes or _idx_classes(folder, arrays)
    for images, labels, lpath in arrays.values():
        _check_labels(dataset, labels, lpath, len(classes))
        if dataset.label_offset:
            labels -= np.uint8(dataset.label_offset)   # read_idx's arrays are ours to change
    train_images = arrays["train"][0]
    mean, std = (dataset.mean, dataset.std) if dataset.mean is not None else pixel_statistics(train_images)
    title = dataset.title if dataset.name != IDX.name else t("data.idx_title", folder=folder.name or str(folder))
    facts = DataFacts(dataset.name, title, tuple(classes), mean, std)
    return Loaded(train_images, arrays["train"][1], arrays["test"][0], arrays["test"][1], facts, folder)


def _missing_message(dataset: DataSet, folder: Path, found: dict) -> str:
    missing = ", ".join(spec.name for spec in dataset.files.values() if spec.name not in found)
    if dataset.name == "mnist":
        hint = t("data.missing_hint_mnist")
    elif dataset.name == IDX.name:
        hint = t("data.missing_hint_idx", names=", ".join(spec.name for spec in dataset.files.values()))
    else:
        hint = t("data.missing_hint", name=dataset.name)
    return t("data.missing_files", title=dataset.title, folder=folder, missing=missing, hint=hint)


def _check_pair(images: np.ndarray, images_path: Path, labels: np.ndarray, labels_path: Path) -> None:
    """Catch files that parse as IDX but cannot be this data (wrong shape, dtype, count)."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(t("data.bad_images", path=images_path, dtype=images.dtype, shape=images.shape))
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(t("data.bad_labels", path=labels_path, dtype=labels.dtype, shape=labels.shape))
    if len(labels) != len(images):
        raise DataError(t("data.count_mismatch", path=labels_path, labels=len(labels), images_name=images_path.name,
                          images=len(images)))


def _check_labels(dataset: DataSet, labels: np.ndarray, path: Path, classes: int) -> None:
    low, high = dataset.label_offset, dataset.label_offset + classes - 1
    bad = labels[(labels < low) | (labels > high)]
    if len(bad):
        raise DataError(t("data.label_out_of_range", path=path, label=int(bad[0]), title=dataset.title, low=low,
                          high=high))


def _check_loaded(dataset: DataSet, spec: FileSpec, array: np.ndarray, path: Path) -> None:
    """Against the registry: the decoded array hashed as its IDX bytes (header + data) without
    re-reading the file, or, where only the published .gz is known, that file's own bytes."""
    try:
        if spec.sha256:
            h = hashlib.sha256(bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape))
            h.update(np.ascontiguousarray(array).data)
            check_digest(spec, h.hexdigest(), 4 + 4 * array.ndim + array.nbytes)
        elif spec.gz_sha256:
            check_file(dataset, spec, path)
    except FILE_ERRORS as e:
        reason = e if isinstance(e, Rejected) else f"{type(e).__name__}: {e}"
        raise DataError(t("data.not_official", path=path, title=dataset.title, reason=reason)) from None


def _idx_classes(folder: Path, arrays: dict) -> tuple[str, ...]:
    """An ``idx`` folder's classes: the names in classes.txt, else "0", "1", … up to the largest label."""
    path = folder / CLASS_NAMES_FILE
    largest = max(int(labels.max()) for _, labels, _ in arrays.values())
    if not path.is_file():
        return tuple(str(i) for i in range(largest + 1))
    try:
        if path.stat().st_size > MAX_CLASS_NAMES_BYTES:
            raise DataError(t("data.class_names_too_big", path=path, limit=MAX_CLASS_NAMES_BYTES))
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(t("data.class_names_unreadable", path=path, reason=e)) from None
    while names and not names[-1]:
        names = names[:-1]
    if not names or not all(names):
        raise DataError(t("data.class_names_blank", path=path))
    if largest >= len(names):
        raise DataError(t("data.more_labels_than_names", path=path, count=len(names), label=largest))
    return names


def evaluation_data(trained: DataFacts, dataset: str | None = None, data_dir=None, log: Log = print):
    """The test images (normalised as the model's were) and labels that a model trained on
    ``trained`` can be judged on: its own data set's (the default), never another's, whose
    accuracy would mean nothing. Raises DataError when ``dataset`` is another data set."""
    name = dataset or trained.dataset
    if name != trained.dataset:
        raise DataError(t("data.other_dataset", trained=trained.title, asked=get(name).title, name=trained.dataset))
    loaded = load(name, data_dir, log=log)
    if loaded.facts.classes != trained.classes:
        raise DataError(t("data.other_classes", folder=loaded.folder, count=len(loaded.facts.classes),
                          trained=len(trained.classes)))
    return normalize(loaded.test_images, trained.mean, trained.std), loaded.test_labels.astype(np.int64)
