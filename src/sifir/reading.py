"""Read the digits of a picture with a trained model: the one road `sifir predict` and the page take.

    read_picture(model, source)  path, bytes or file -> Reading (every digit: box, 28×28 input,
                                 probabilities; the number they make)
    read_grey(model, grey)       the same for a decoded grey array
    classify(model, images)      (n, 28, 28) MNIST-like inputs -> (n, 10) softmax probabilities
    describe(name, reading)      the line `sifir predict` prints for one picture

A picture is decoded (a big JPEG at a fraction of its size), its ink found and split into digits
(``preprocess.find_digits``), and every digit read by the model in one batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nn
from .data.mnist import normalize
from .preprocess import Digit, find_digits, load_photo
from .train import predict_logits

__all__ = ["DigitReading", "Reading", "read_picture", "read_grey", "classify", "describe", "number_text"]


@dataclass(frozen=True)
class DigitReading:
    """One digit as the model read it: the most probable ``digit``, all ten ``probabilities``
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
    """Every digit of a picture in reading order, and the picture's (width, height)."""

    digits: list[DigitReading]
    size: tuple[int, int]

    @property
    def number(self) -> str:
        """The digits as a string, rows apart by a space: "2026", "0212 5550199"."""
        return number_text([d.digit for d in self.digits], [d.row for d in self.digits])


def number_text(digits: list[int], rows: list[int]) -> str:
    """Digits in reading order and their rows -> "2026", or "0212 5550199" over two rows."""
    return "".join((" " if i and row != rows[i - 1] else "") + str(digit)
                   for i, (digit, row) in enumerate(zip(digits, rows)))


def classify(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) inputs in [0, 1] -> (n, 10) probabilities, softmax in float64."""
    return nn.softmax(predict_logits(model, normalize(images)).astype(np.float64))


def read_grey(model: nn.Module, grey, *, size: tuple[int, int] | None = None) -> Reading:
    """Read a decoded grey picture. ``size``: the picture's own (width, height) when ``grey`` is
    a smaller decoding of it (boxes are given in the picture's pixels)."""
    grey = np.asarray(grey)
    own = size or (grey.shape[1] if grey.ndim == 2 else 0, grey.shape[0] if grey.ndim else 0)
    scale = own[0] / grey.shape[1] if grey.ndim == 2 and grey.shape[1] else 1.0
    digits = find_digits(grey, scale=scale)
    return Reading(_read(model, digits), tuple(own))


def read_picture(model: nn.Module, source) -> Reading:
    """Read a picture file (path, bytes or binary file). Raises ImageError when it cannot be read
    or holds no digit (or more digit-like marks than a number has)."""
    grey, size = load_photo(source)
    return read_grey(model, grey, size=size)


def _read(model: nn.Module, digits: list[Digit]) -> list[DigitReading]:
    probs = classify(model, np.stack([d.image for d in digits]))
    return [DigitReading(int(p.argmax()), p, d.image, d.box, d.row) for d, p in zip(digits, probs)]


def describe(name, reading: Reading) -> str:
    """``photo.jpg: 7 (98.1%), runner-up 1 (1.2%)`` for one digit;
    ``photo.jpg: 2026 (2 99%, 0 97%, 2 99%, 6 88%)`` for a number."""
    if len(reading.digits) == 1:
        p = reading.digits[0].probabilities
        first, second = np.argsort(p)[::-1][:2]
        return f"{name}: {first} ({p[first]:.1%}), runner-up {second} ({p[second]:.1%})"
    each = ", ".join(f"{d.digit} {d.confidence:.0%}" for d in reading.digits)
    return f"{name}: {reading.number} ({each})"
