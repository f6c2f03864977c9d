"""Model presets: an architecture plus the training recipe that goes with it.

``seed`` is the original tutorial's network, layer for layer:
    x (784) → H1 = ReLU(W1·x + b1) (10) → H2 = ReLU(W2·H1 + b2) (10) → softmax
with W1 10×784 and W2 10×10: 7,840 + 100 = 7,940 learnable weights (and 20 biases).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import nn


@dataclass(frozen=True)
class Preset:
    build: Callable[[], nn.Module]
    description: str
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 64
    epochs: int = 10
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    label_smoothing: float = 0.0
    augment: str | None = None
    extra: dict = field(default_factory=dict)


def seed() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 10),   # hidden1: W1 is 10×784
        nn.ReLU(),
        nn.Linear(10, 10),    # hidden2: W2 is 10×10
        nn.ReLU(),            # softmax over these 10 outputs lives in the loss (and in predict)
    )


def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 800), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(800, 800), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(800, 10),
    )


PRESETS: dict[str, Preset] = {
    "seed": Preset(seed, "the tutorial's network: 784 → 10 → 10, ReLU, plain SGD",
                   optimizer="sgd", lr=0.1, batch_size=64, epochs=10),
    "mlp": Preset(mlp, "784 → 800 → 800 → 10 with dropout, Adam, cosine schedule",
                  optimizer="adam", lr=1e-3, batch_size=128, epochs=20, schedule="cosine"),
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(PRESETS)}") from None


def build(name: str) -> nn.Module:
    return get(name).build()
