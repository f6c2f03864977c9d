"""From a data set's images to a model's inputs: the validation split, the normalisation, and
the facts a model file keeps about the data it learned from (``DataFacts``).

Only the standard library and NumPy are imported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sifir.data.datasets import IMAGE_SHAPE, MNIST
from sifir.errors import ModelFileError
from sifir.messages import t

# MNIST's training-set pixel statistics after /255 (33.318/255 and 78.567/255).
MEAN = MNIST.mean
STD = MNIST.std
VALIDATION_SIZE = 5000
_STAT_CHUNK = 1 << 22   # pixels counted per step: a bounded temporary, whatever the data set's size


@dataclass(frozen=True)
class DataFacts:
    """What a trained model must remember about its data: which data set, what its outputs
    mean (class names), and how its inputs were normalised."""
    dataset: str
    title: str
    classes: tuple[str, ...]
    mean: float
    std: float

    def info(self) -> dict:
        """The entries a model file's info keeps (JSON-ready)."""
        return {"dataset": {"name": self.dataset, "title": self.title, "classes": list(self.classes)},
                "input": {"shape": [1, *IMAGE_SHAPE], "mean": self.mean, "std": self.std}}

    @classmethod
    def from_info(cls, info: dict, outputs: int | None = None) -> "DataFacts":
        """Read the facts back from a model file's info. Files written before data sets were
        recorded hold none of them: they were trained on MNIST. ``outputs`` (the model's) must
        match the number of class names."""
        dataset = info.get("dataset") if isinstance(info, dict) else None
        given = info.get("input") if isinstance(info, dict) else None
        if dataset is None:
            classes = MNIST.classes if outputs in (None, len(MNIST.classes)) else tuple(map(str, range(outputs)))
            dataset = {"name": MNIST.name, "title": MNIST.title, "classes": list(classes)}
        mean, std = (given.get("mean"), given.get("std")) if isinstance(given, dict) else (MEAN, STD)
        ok = (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)
              and isinstance(dataset.get("title", ""), str) and isinstance(dataset.get("classes"), list)
              and all(isinstance(c, str) for c in dataset["classes"]) and _finite(mean) and _finite(std) and std > 0)
        if not ok:
            raise ModelFileError(t("data.bad_facts"))
        facts = cls(dataset["name"], dataset.get("title") or dataset["name"], tuple(dataset["classes"]),
                    float(mean), float(std))
        if outputs is not None and outputs != len(facts.classes):
            raise ModelFileError(t("data.classes_vs_outputs", count=len(facts.classes), outputs=outputs))
        return facts


MNIST_FACTS = DataFacts(MNIST.name, MNIST.title, MNIST.classes, MEAN, STD)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels scaled to [0, 1], to 4 decimals (as MNIST's
    0.1307 and 0.3081 are given). Counted exactly, from a histogram of the 256 byte values."""
    flat = np.ascontiguousarray(images).reshape(-1)
    counts = np.zeros(256, np.int64)
    for start in range(0, len(flat), _STAT_CHUNK):
        counts += np.bincount(flat[start:start + _STAT_CHUNK], minlength=256)
    values = np.arange(256) / 255
    n = counts.sum()
    mean = float(counts @ values / n)
    std = float(np.sqrt(counts @ (values - mean) ** 2 / n))
    return round(mean, 4), round(std, 4)


def split_validation(images: np.ndarray, labels: np.ndarray, size: int = VALIDATION_SIZE, fold: int = 0):
    """Hold out `size` training examples: (train_x, train_y, val_x, val_y).

    Fold 0 holds out the last `size`: the split of the classic mnist.pkl.gz (and of many
    papers); it returns views, not copies. Fold k holds out the k-th block of `size` counted
    from the end (k < len // size), and trains on the rest in their order: another part to
    measure on, the same amount of it.
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0 < size < len(images):
        raise ValueError(f"validation size must be between 1 and {len(images) - 1}, got {size}")
    if not 0 <= fold < folds(len(images), size):
        raise ValueError(f"fold must be between 0 and {folds(len(images), size) - 1}, got {fold}")
    stop = len(images) - fold * size
    start = stop - size
    if fold == 0:
        return images[:start], labels[:start], images[start:], labels[start:]
    return (np.concatenate([images[:start], images[stop:]]), np.concatenate([labels[:start], labels[stop:]]),
            images[start:stop], labels[start:stop])


def folds(n: int, size: int) -> int:
    """How many validation blocks of `size` fit in `n` training examples (the folds 0 … folds−1)."""
    return n // size


def normalize(images: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """Model input from images: float32 (N, 1, 28, 28), (x - mean) / std with x in [0, 1].

    ``mean`` and ``std`` are the training pixels' (MNIST's by default; a model file keeps its
    own, see ``DataFacts``). Integer images are read as bytes 0..255 (divided by 255); float
    images must already be in [0, 1]. Accepts (N, 28, 28), (N, 1, 28, 28) or a single (28, 28).
    This is the one place model inputs are made, so training and prediction cannot drift apart.
    """
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, *IMAGE_SHAPE):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 1, 28, 28), got {np.shape(images)}")
    scale = _input_scale(x)
    # (x*scale - mean)/std rewritten as x*(scale/std) - mean/std: one cast, two in-place float32 passes.
    out = x.astype(np.float32)
    out *= np.float32(scale / std)
    out -= np.float32(mean / std)
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
