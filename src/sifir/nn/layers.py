"""Layers. Each keeps its forward and backward side by side, with the derivative written out."""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x·Wᵀ + b, with W of shape (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None,
                 dtype=np.float32):
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.pytorch_default((out_features, in_features), in_features, rng, dtype))
        self.bias = Parameter(init.pytorch_default((out_features,), in_features, rng, dtype)) if bias else None

    def forward(self, x):
        self.x = x
        w = self.weight.data
        # The same numbers either way. BLAS runs fastest with the longer side of y as the rows it
        # works down, so a batch narrower than the layer (128 images into 800 units) is computed
        # as (W·xᵀ)ᵀ, and y lies transposed in memory (docs/performance.md, "Which side first").
        y = (w @ x.T).T if len(x) < self.out_features else x @ w.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_out, need_input_grad=True):
        # dL/dW = gᵀ·x,  dL/db = Σ_batch g,  dL/dx = g·W
        self.weight.accumulate(grad_out.T @ self.x)
        if self.bias is not None:
            self.bias.accumulate(grad_out.sum(axis=0))
        if not need_input_grad:
            return None
        if self.x.flags.f_contiguous and not self.x.flags.c_contiguous:
            # x came from a batch-last array (Flatten of a convolution's output): give dL/dx the same
            # layout, (Wᵀ·gᵀ)ᵀ, so that the layers before multiply arrays of one layout (4× faster)
            return (self.weight.data.T @ grad_out.T).T
        return grad_out @ self.weight.data

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}


class ReLU(Module):
    """y = max(0, x);  dy/dx = 1 where x > 0, else 0. (x > 0 exactly where y > 0, so forward
    keeps y, which the next layer holds anyway, and inference makes one pass, not two.)"""

    def forward(self, x):
        self.y = F.relu(x)
        return self.y

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * (self.y > 0)


class LeakyReLU(Module):
    """y = x if x > 0 else a·x;  dy/dx = 1 or a."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def forward(self, x):
        self.mask = x > 0
        return np.where(self.mask, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad_out, need_input_grad=True):
        return np.where(self.mask, grad_out, grad_out * grad_out.dtype.type(self.negative_slope))

    def config(self):
        return {"negative_slope": self.negative_slope}


class Sigmoid(Module):
    """y = 1/(1+e^(−x));  dy/dx = y·(1−y)."""

    def forward(self, x):
        # exp of −|x| never overflows; the two branches are the same function.
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * self.y * (1 - self.y)


class Tanh(Module):
    """y = tanh(x);  dy/dx = 1 − y²."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * (1 - self.y * self.y)


class Flatten(Module):
    """(N, d1, d2, …) → (N, d1·d2·…); backward reshapes the gradient back.

    A view both ways for a batch-last input (the convolution layers' layout): then the flat
    matrix is the transpose of a contiguous (d1·d2·…, N) one, which matrix products take as it
    is. The gradient goes back in the memory layout of the input (a copy if it came in another),
    so the layer before never mixes two layouts in one element-wise operation."""

    def forward(self, x):
        self.x = x
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def backward(self, grad_out, need_input_grad=True):
        grad = grad_out.reshape(self.x.shape)
        if grad.strides != self.x.strides:
            grad = _like(self.x, grad)
        return grad


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_out, need_input_grad=True):
        return grad_out


class Dropout(Module):
    """Inverted dropout: in training keep each unit with probability 1−p and scale by 1/(1−p),
    so evaluation is the identity. dy/dx = mask/(1−p)."""

    def __init__(self, p: float = 0.5, rng=None):
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng

    def forward(self, x):
        if not self.training or self.p == 0:
            self.mask = None
            return x
        rng = self.rng or init.get_rng()
        keep = rng.random(x.shape, dtype=np.float32) >= self.p
        self.mask = keep * x.dtype.type(1 / (1 - self.p))
        return x * self.mask

    def backward(self, grad_out, need_input_grad=True):
        return grad_out if self.mask is None else grad_out * self.mask

    def config(self):
        return {"p": self.p}


class Softmax(Module):
    """Probabilities over the last axis. dL/dx = y ⊙ (g − Σ g⊙y). For training, use
    CrossEntropyLoss on logits instead: it fuses softmax with the loss and is stabler."""

    def forward(self, x):
        from .functional import softmax
        self.y = softmax(x)
        return self.y

    def backward(self, grad_out, need_input_grad=True):
        return self.y * (grad_out - (grad_out * self.y).sum(axis=-1, keepdims=True))


def _like(a: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A copy of ``values`` in the memory layout of ``a`` (same shape)."""
    out = np.empty_like(a, dtype=values.dtype)
    np.copyto(out, values)
    return out
