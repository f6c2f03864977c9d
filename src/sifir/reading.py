"""Read the digits of a picture with a trained model: the one road `sifir predict` and the page take.

    read_picture(model, source, facts)  path, bytes or file -> Reading (every digit: box, 28×28
                                        input, probabilities; the number they make)
    read_grey(model, grey, facts)       the same for a decoded grey array
    classify(model, images, facts)      (n, 28, 28) MNIST-like inputs -> (n, classes) probabilities
    describe(name, reading)             the line `sifir predict` prints for one picture

A picture is decoded (a big JPEG at a fraction of its size), its ink found and split into digits
(``preprocess.find_digits``), and every digit read by the model in one batch. ``facts`` (the
model file's ``DataFacts``; MNIST's by default) give the input normalisation and the class names;
a model of a data set that is not digits (Fashion-MNIST, letters) reads the picture's ink as one
item (``preprocess.find_whole``) instead of splitting it into a number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nn
from .data.inputs import MNIST_FACTS, DataFacts, normalize
from .preprocess import Digit, find_digits, find_whole, load_photo
from .train import predict_logits

__all__ = ["DigitReading", "Reading", "read_picture", "read_grey", "classify", "describe", "number_text",
           "reads_numbers", "find_items"]


@dataclass(frozen=True)
class DigitReading:
    """One digit as the model read it: the most probable ``digit`` (class index), all ``probabilities``
    (float64, summing to 1), its 28×28 ``image`` input, its ``box`` (left, top, width, height) in
    the picture's pixels and its text ``row``."""

    digit: int
    probabilities: np.ndarray
    image: np.ndarray
    box: tuple[int, int, int, int]
    row: int

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.digit])


@dataclass(frozen=True)
class Reading:
    """Every digit of a picture in reading order, the picture's (width, height), and the names
    of the model's classes ("0"–"9" for digits)."""

    digits: list[DigitReading]
    size: tuple[int, int]
    classes: tuple[str, ...] = MNIST_FACTS.classes

    @property
    def number(self) -> str:
        """The digits as a string, rows apart by a space: "2026", "0212 5550199" (for a data set
        of other things, the one item's class name: "Trouser")."""
        return number_text([d.digit for d in self.digits], [d.row for d in self.digits], self.classes)


def number_text(digits: list[int], rows: list[int], classes=MNIST_FACTS.classes) -> str:
    """Digits in reading order and their rows -> "2026", or "0212 5550199" over two rows."""
    return "".join((" " if i and row != rows[i - 1] else "") + classes[digit]
                   for i, (digit, row) in enumerate(zip(digits, rows)))


def reads_numbers(facts: DataFacts) -> bool:
    """Whether a model's classes are the ten digits, so a picture may hold a number of them."""
    return tuple(facts.classes) == MNIST_FACTS.classes


def classify(model: nn.Module, images: np.ndarray, facts: DataFacts = MNIST_FACTS) -> np.ndarray:
    """(n, 28, 28) inputs in [0, 1] -> (n, classes) probabilities, softmax in float64."""
    x = normalize(images, facts.mean, facts.std)
    return nn.softmax(predict_logits(model, x).astype(np.float64))


def find_items(grey, facts: DataFacts = MNIST_FACTS, *, scale: float = 1.0) -> list[Digit]:
    """The inputs a picture holds for a model of ``facts``: every digit of a number, or, for
    other data sets, the whole picture's ink as one item."""
    return find_digits(grey, scale=scale) if reads_numbers(facts) else [find_whole(grey, scale=scale)]


def read_grey(model: nn.Module, grey, *, size: tuple[int, int] | None = None,
              facts: DataFacts = MNIST_FACTS) -> Reading:
    """Read a decoded grey picture. ``size``: the picture's own (width, height) when ``grey`` is
    a smaller decoding of it (boxes are given in the picture's pixels)."""
    grey = np.asarray(grey)
    own = size or (grey.shape[1] if grey.ndim == 2 else 0, grey.shape[0] if grey.ndim else 0)
    scale = own[0] / grey.shape[1] if grey.ndim == 2 and grey.shape[1] else 1.0
    digits = find_items(grey, facts, scale=scale)
    return Reading(_read(model, digits, facts), tuple(own), tuple(facts.classes))


def read_picture(model: nn.Module, source, facts: DataFacts = MNIST_FACTS) -> Reading:
    """Read a picture file (path, bytes or binary file). Raises ImageError when it cannot be read
    or holds no digit (or more digit-like marks than a number has)."""
    grey, size = load_photo(source)
    return read_grey(model, grey, size=size, facts=facts)


def _read(model: nn.Module, digits: list[Digit], facts: DataFacts) -> list[DigitReading]:
    probs = classify(model, np.stack([d.image for d in digits]), facts)
    return [DigitReading(int(p.argmax()), p, d.image, d.box, d.row) for d, p in zip(digits, probs)]


def describe(name, reading: Reading) -> str:
    """``photo.jpg: 7 (98.1%), runner-up 1 (1.2%)`` for one digit;
    ``photo.jpg: 2026 (2 99%, 0 97%, 2 99%, 6 88%)`` for a number."""
    names = reading.classes
    if len(reading.digits) == 1:
        p = reading.digits[0].probabilities
        first, second = np.argsort(p)[::-1][:2]
        return f"{name}: {names[first]} ({p[first]:.1%}), runner-up {names[second]} ({p[second]:.1%})"
    each = ", ".join(f"{names[d.digit]} {d.confidence:.0%}" for d in reading.digits)
    return f"{name}: {reading.number} ({each})"
