"""Layers. Each keeps its forward and backward side by side, with the derivative written out."""
from __future__ import annotations

import numpy as np

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
        y = x @ self.weight.data.T
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_out, need_input_grad=True):
        # dL/dW = gᵀ·x,  dL/db = Σ_batch g,  dL/dx = g·W
        self.weight.accumulate(grad_out.T @ self.x)
        if self.bias is not None:
            self.bias.accumulate(grad_out.sum(axis=0))
        return grad_out @ self.weight.data if need_input_grad else None

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}


class ReLU(Module):
    """y = max(0, x);  dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * self.mask


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
    """(N, d1, d2, …) → (N, d1·d2·…); backward reshapes the gradient back."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out.reshape(self.shape)


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
