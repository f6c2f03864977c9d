"""Model presets: an architecture plus the training recipe that goes with it.

``seed`` is the original tutorial's network, layer for layer:
    x (784) → H1 = ReLU(W1·x + b1) (10) → H2 = ReLU(W2·H1 + b2) (10) → softmax
with W1 10×784 and W2 10×10: 7,840 + 100 = 7,940 learnable weights (and 20 biases).

Every builder takes the number of classes (10 unless the data set has another count: 26 for
EMNIST's letters, 47 for its balanced split); the last layer has that many outputs. A preset's
training recipe can differ per data set (``recipes``): what helps digits may not help clothes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from . import nn

CLASSES = 10


@dataclass(frozen=True)
class Preset:
    build: Callable[..., nn.Module]   # build(classes=10)
    description: str
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 64
    epochs: int = 10
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0     # linear warm-up before the cosine schedule
    betas: tuple[float, float] | None = None   # Adam's (β1, β2), when not PyTorch's (0.9, 0.999)
    max_workers: int | None = None  # a cap on the default number of workers (None: every core)
    label_smoothing: float = 0.0
    augment: str | None = None
    views: int = 1                  # test-time views the kept model reads each input in (nn.Views)
    average: int = 0                # K ≥ 2: keep the last K epochs' mean weights when better (sifir.average)
    kernel: int | None = None       # the convolutions' kernel size, where build(classes, kernel=k) takes
                                    # one (`--kernels` changes it); None: the builder has no such choice
    extra: dict = field(default_factory=dict)
    recipes: dict = field(default_factory=dict)   # data set name -> the options that differ there

    def for_dataset(self, dataset: str) -> "Preset":
        """This preset with the recipe it uses on ``dataset``."""
        return dataclasses.replace(self, **self.recipes[dataset]) if dataset in self.recipes else self


def seed(classes: int = CLASSES) -> nn.Sequential:
    """hidden2 is the output layer: one unit per class (10 for digits, so W2 is 10×10)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 10),        # hidden1: W1 is 10×784
        nn.ReLU(),
        nn.Linear(10, classes),    # hidden2: W2 is 10×10
        nn.ReLU(),                 # softmax over these 10 outputs lives in the loss (and in predict)
    )


def mlp(classes: int = CLASSES) -> nn.Sequential:
    """Two hidden layers of 800 with dropout. Trained with AdamW, a one-cycle schedule and
    label smoothing, 10 epochs reach what 20 epochs of Adam with a cosine schedule did
    (about 98.8 % on the test set; docs/performance.md)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 800), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(800, 800), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(800, classes),
    )


KERNELS = (3, 5, 7)   # the kernel sizes `cnn` and `best` can be built with (odd: padding k//2 keeps H, W)


def _conv(cin: int, cout: int, kernel: int) -> nn.Conv2d:
    """A k×k convolution without bias, padded by k//2 so the maps keep their size."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)


def _pooled_stage(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    """k×k convolution (no bias), then 2×2 max-pooling, BatchNorm and ReLU: halves H and W."""
    return [_conv(cin, cout, kernel), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU()]


def cnn(classes: int = CLASSES, kernel: int = 3) -> nn.Sequential:
    """Two convolution stages and a small classifier. Each stage pools *before* BatchNorm and
    ReLU (the usual order is conv → BN → ReLU → pool): max-pooling commutes with ReLU and with
    any increasing per-channel affine map (BatchNorm is one while its γ stays positive), so
    little changes but where BatchNorm takes its statistics, while BatchNorm and ReLU touch a
    quarter of the numbers. In NumPy that matters: element-wise passes over the 32×28×28 maps
    otherwise cost as much as the convolutions.
    The convolutions have no bias: the BatchNorm after them subtracts each channel's mean, so a
    bias would cancel out (BatchNorm's β plays its part). ``kernel``: the convolutions' size
    (3×3 unless ``--kernels`` says otherwise)."""
    return nn.Sequential(
        *_pooled_stage(1, 32, kernel),    # 32×14×14
        *_pooled_stage(32, 64, kernel),   # 64×7×7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, classes),
    )


def best(classes: int = CLASSES, width: int = 128, kernel: int = 3) -> nn.Sequential:
    """``cnn`` with a third convolution at 7×7 (cheap there: 49 positions per image) and
    BatchNorm in the classifier too; trained longer, on affine + elastic augmentation, with
    label smoothing. ``width``: the third convolution's channels (256 was measured and gave
    nothing for a quarter more time: docs/benchmarks.md, "A wider third stage"). ``kernel``: every
    convolution's size (3×3 unless ``--kernels`` says otherwise; 5×5 members in an ensemble:
    docs/benchmarks.md, "Other kernel sizes")."""
    return nn.Sequential(
        *_pooled_stage(1, 32, kernel),    # 32×14×14
        *_pooled_stage(32, 64, kernel),   # 64×7×7
        _conv(64, width, kernel), nn.BatchNorm2d(width), nn.ReLU(),             # width×7×7
        nn.Flatten(),
        nn.Linear(width * 7 * 7, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, classes),
    )


def fast(classes: int = CLASSES) -> nn.Sequential:
    """99 % in one epoch, in little time. A 5×5 convolution with stride 2 does the first layer's
    work and its pooling in one (a quarter of the positions: no full-size 26×26 maps to pool),
    then a 3×3 convolution pooled before BatchNorm and ReLU (as in ``cnn``), and one hidden layer;
    725,760 multiply-adds per image, 58 % of the best-known one-epoch PyTorch recipe's network.
    Trained with Adam at lr 0.01, β = (0.7, 0.9), a one-cycle schedule and label smoothing, in
    one epoch of batches of 256 (docs/performance.md has the candidates that were measured)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),          # 16×12×12
        nn.Conv2d(16, 32, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),   # 32×5×5
        nn.Flatten(),
        nn.Linear(32 * 5 * 5, 256), nn.ReLU(),
        nn.Linear(256, classes),
    )


PRESETS: dict[str, Preset] = {
    # One worker by default: a step of 7,940 weights takes tens of microseconds, less time than
    # several workers need to meet twice per step (sifir.parallel); --workers still chooses.
    "seed": Preset(seed, "the tutorial's network: 784 → 10 → 10, ReLU, plain SGD",
                   optimizer="sgd", lr=0.1, batch_size=64, epochs=10, schedule="cosine", max_workers=1),
    "mlp": Preset(mlp, "784 → 800 → 800 → 10 with dropout, AdamW, one-cycle, label smoothing",
                  optimizer="adamw", lr=1e-3, batch_size=128, epochs=10, weight_decay=1e-4,
                  schedule="onecycle", label_smoothing=0.1,
                  recipes={"fashion-mnist": dict(epochs=20)}),
    "cnn": Preset(cnn, "conv 32 → pool → BN → conv 64 → pool → BN → 128 → 10, AdamW, one-cycle, shifts",
                  optimizer="adamw", lr=3e-3, batch_size=128, epochs=5, weight_decay=1e-4,
                  schedule="onecycle", augment="shift", kernel=3,
                  # clothes: mirrored garments are still garments; whole-pixel shifts (docs/datasets.md).
                  # The kept network reads each picture and its mirror, each as it is and moved one
                  # pixel four ways: of 1, 5, 9, 10 and 18 views, 10 read the most validation images
                  # right, median over seeds 0-2 (93.90 %; 18: 93.86 %, one: 93.68 %; docs/datasets.md)
                  recipes={"fashion-mnist": dict(epochs=20, augment="flip", label_smoothing=0.1, views=10)}),
    "best": Preset(best, "conv 32 → pool → conv 64 → pool → conv 128 → 128 → 10 with BN and dropout, AdamW, "
                   "one-cycle, label smoothing, affine + elastic augmentation",
                   optimizer="adamw", lr=3e-3, batch_size=128, epochs=20, weight_decay=1e-4,
                   schedule="onecycle", label_smoothing=0.1, augment="elastic", kernel=3,
                   # the kept network reads each digit as it is and moved one pixel eight ways, each
                   # of the nine also turned by ±6°, and the digit 8 % smaller and larger: of 9, 11,
                   # 13, 27 and 29 views, 29 read the most validation images right, seeds 0-4
                   # (docs/benchmarks.md, "Turned views"; 9 against one: "Test-time views")
                   views=29,
                   # clothes: no elastic wobble (a handwriting effect); mirroring and random erasing;
                   # read mirrored too, as cnn is (10 views: 94.50 % of seed 0's validation images
                   # against 94.28 % in 9); 50 epochs, not 25: seed 0's best validation epoch
                   # read 94.76 % against 94.08 %, still rising at the end (docs/datasets.md)
                   recipes={"fashion-mnist": dict(epochs=50, augment="erase", views=10)}),
    "fast": Preset(fast, "conv 5×5/2 16 → BN → conv 32 → pool → BN → 256 → 10, Adam, one-cycle, label "
                   "smoothing, one epoch", optimizer="adam", lr=1e-2, batch_size=256, epochs=1,
                   schedule="onecycle", label_smoothing=0.1, betas=(0.7, 0.9)),
}


# -- a network of the learner's own: an MLP of any hidden widths and activation -------------------
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky-relu": nn.LeakyReLU,
}


def custom_mlp(hidden, activation: str = "relu", classes: int = CLASSES) -> nn.Sequential:
    """784 → hidden[0] → … → hidden[-1] → classes (10 for digits), the activation after every
    hidden layer, and the outputs left as logits (softmax lives in the loss). ``custom_mlp([10, 10])`` is the seed
    network's shape without its last ReLU."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


# The recipe a custom MLP trains with when nothing else is said: the seed preset's.
CUSTOM = "custom"
CUSTOM_DEFAULTS = Preset(lambda classes=CLASSES: custom_mlp([100], classes=classes), "your own MLP: hidden widths and activation of your choice",
                         optimizer="sgd", lr=0.1, batch_size=64, epochs=10, schedule="cosine")
CUSTOM_HIDDEN = (100,)
CUSTOM_ACTIVATION = "relu"


def get(name: str) -> Preset:
    if name == CUSTOM:
        return CUSTOM_DEFAULTS
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join([*PRESETS, CUSTOM])}") from None


def build(name: str, classes: int = CLASSES) -> nn.Module:
    return get(name).build(classes)
