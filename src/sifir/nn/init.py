"""Weight initialisation and the one random generator that drives it.

``manual_seed(seed)`` resets the generator used by initialisers and by Dropout, so the same
seed builds the same network. Layers also accept an explicit ``rng``.
"""
from __future__ import annotations

import math

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def get_rng() -> np.random.Generator:
    return _rng


def set_rng(rng: np.random.Generator) -> np.random.Generator:
    """Make ``rng`` the generator of initialisers and Dropout; returns the one it replaces
    (data-parallel workers give each share of a batch a generator of its own)."""
    global _rng
    previous, _rng = _rng, rng
    return previous


def uniform(shape, bound: float, rng=None, dtype=np.float32) -> np.ndarray:
    rng = rng or _rng
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def pytorch_default(shape, fan_in: int, rng=None, dtype=np.float32) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's Linear/Conv2d do by default
    (kaiming_uniform with a=sqrt(5) works out to this bound)."""
    return uniform(shape, 1.0 / math.sqrt(fan_in), rng, dtype)


def kaiming_normal(shape, fan_in: int, rng=None, dtype=np.float32) -> np.ndarray:
    """N(0, 2/fan_in): keeps the variance of ReLU activations constant through depth (He et al. 2015)."""
    rng = rng or _rng
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(shape, fan_in: int, fan_out: int, rng=None, dtype=np.float32) -> np.ndarray:
    """U(±sqrt(6/(fan_in+fan_out))) (Glorot & Bengio 2010), for tanh/sigmoid layers."""
    return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)
