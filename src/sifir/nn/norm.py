"""Batch normalisation (Ioffe & Szegedy 2015), as torch.nn.BatchNorm1d / BatchNorm2d.

In training, each feature (channel) is standardised with the mean and variance of the batch,
then scaled and shifted by learnable γ (weight) and β (bias):

    x̂ = (x − μ_B) / √(σ²_B + ε),   y = γ·x̂ + β

and running averages of μ_B and of the unbiased σ²_B are kept (``momentum`` is the weight of
the new batch, as in PyTorch). In evaluation, the running statistics replace the batch ones,
so a prediction does not depend on the other images in the batch.

When a batch is split over several processes (``sifir.parallel``), ``across`` sums a layer's
per-feature partial sums over all of them, so every part is normalised with the statistics of
the whole batch, as if it had been one; with ``across`` unset (one process) it is the identity.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .functional import ShapeError
from .module import Module, Parameter


class _BatchNorm(Module):
    _buffers = ("running_mean", "running_var")
    across = None   # Σ over the processes sharing the batch (set by sifir.parallel), or None

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32):
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ShapeError(f"num_features must be a positive integer, got {num_features!r}")
        if not eps >= 0 or not 0 <= momentum <= 1:
            raise ShapeError(f"need eps ≥ 0 and momentum in [0, 1], got eps={eps}, momentum={momentum}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = Parameter(np.ones(self.num_features, dtype))    # γ
        self.bias = Parameter(np.zeros(self.num_features, dtype))     # β
        self.running_mean = np.zeros(self.num_features, dtype)
        self.running_var = np.ones(self.num_features, dtype)

    # Subclasses view their input as a matrix with the features along ``feature_axis`` (0 or 1)
    # and the values to normalise over along the other, and back.
    feature_axis = 1

    def _rows(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _unrows(self, y, shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def _per_feature(self, v):
        """A per-feature vector, shaped to broadcast over the values of its feature."""
        return v[:, None] if self.feature_axis == 0 else v

    def _feature_sums(self, a, b=None):
        """Σ over each feature's values of a (or of a·b)."""
        if b is None:
            return a.sum(axis=1 - self.feature_axis)
        return np.einsum("ij,ij->i" if self.feature_axis == 0 else "ij,ij->j", a, b)

    def forward(self, x):
        rows = self._rows(x)
        self.shape = x.shape
        dt = rows.dtype.type
        if self.training:  # batch statistics; forward keeps x − μ only then (backward tells by it)
            m, total = rows.shape[1 - self.feature_axis], self._feature_sums(rows)
            if self.across is not None:   # the other parts of the batch count too
                total_m = self.across(np.append(total, m))
                total, m = total_m[:-1].astype(rows.dtype), int(total_m[-1])
            if m < 2:
                raise ShapeError(f"{type(self).__name__} needs more than one value per feature in training, "
                                 f"got input of shape {x.shape}")
            self.x, self.m = None, m
            self.mean = total / dt(m)
            self.centred = rows - self._per_feature(self.mean)                 # x − μ
            squares = self._feature_sums(self.centred, self.centred)
            if self.across is not None:
                squares = self.across(squares)
            var = squares / dt(m)                                             # biased: what normalises
            self.inv_std = dt(1) / np.sqrt(var + dt(self.eps))                # 1/σ
            self._update_running(self.mean, var * dt(m / (m - 1)))            # unbiased, as PyTorch
            y = self.centred * self._per_feature(self.weight.data * self.inv_std)   # γ·x̂ = (γ/σ)·(x − μ)
            y += self._per_feature(self.bias.data)
        else:
            self.mean = self.running_mean.astype(rows.dtype)
            self.inv_std = dt(1) / np.sqrt(self.running_var.astype(rows.dtype) + dt(self.eps))
            self.x, self.centred = rows, None                                 # x − μ only if backward asks
            scale = self.weight.data * self.inv_std
            y = rows * self._per_feature(scale)                               # γ·x̂ + β = (γ/σ)·x + (β − μ·γ/σ)
            y += self._per_feature(self.bias.data - self.mean * scale)
        return self._unrows(y, x.shape)

    def backward(self, grad_out, need_input_grad=True):
        # dL/dγ = Σ g·x̂,  dL/dβ = Σ g;  in training μ and σ depend on x too, which gives
        # dL/dx = (1/M)·γ/σ·(M·g − Σg − x̂·Σ(g·x̂));  in evaluation simply dL/dx = γ/σ·g.
        g = self._rows(grad_out)
        batch_stats = self.centred is not None  # the statistics forward used: the batch's or the running ones
        centred = self.centred if batch_stats else self.x - self._per_feature(self.mean)
        sum_g = self._feature_sums(g)
        sum_g_centred = self._feature_sums(g, centred)                     # Σ g·x̂ = (1/σ)·Σ g·(x − μ)
        self.weight.accumulate(sum_g_centred * self.inv_std)   # this part's share: the parts' sum is
        self.bias.accumulate(sum_g)                            # added up with the other gradients
        if not need_input_grad:
            return None
        scale = self.weight.data * self.inv_std                               # γ/σ
        if not batch_stats:
            return self._unrows(g * self._per_feature(scale), self.shape)
        m = g.dtype.type(g.shape[1 - self.feature_axis])
        if self.across is not None:   # dL/dx needs the sums over the whole batch
            both = self.across(np.concatenate([sum_g, sum_g_centred]))
            sum_g, sum_g_centred = np.split(both.astype(g.dtype), 2)
            m = g.dtype.type(self.m)
        # the formula above with x̂ = (x − μ)/σ, as one per-feature affine map of g and x − μ
        dx = g * self._per_feature(scale)
        dx -= centred * self._per_feature(scale * self.inv_std * self.inv_std * sum_g_centred / m)
        dx -= self._per_feature(scale * sum_g / m)
        return self._unrows(dx, self.shape)

    def _update_running(self, mean, var):
        # running ← (1 − momentum)·running + momentum·batch, in place (keeps dtype and identity)
        for running, batch in ((self.running_mean, mean), (self.running_var, var)):
            running *= 1 - self.momentum
            running += (self.momentum * batch).astype(running.dtype)

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}


class BatchNorm1d(_BatchNorm):
    """Normalises each of C features of an (N, C) input over the batch."""

    def _rows(self, x):
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.num_features:
            raise ShapeError(f"BatchNorm1d({self.num_features}) expects input (N, {self.num_features}), "
                             f"got shape {np.shape(x)}")
        return x

    def _unrows(self, y, shape):
        return y


class BatchNorm2d(_BatchNorm):
    """Normalises each of C channels of an (N, C, H, W) input over the batch and all pixels
    (M = N·H·W values per channel), as after a convolution."""

    feature_axis = 0   # a channel's values are one row of the batch-last array (C, H·W·N)

    def _rows(self, x):
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != self.num_features:
            raise ShapeError(f"BatchNorm2d({self.num_features}) expects images (N, {self.num_features}, H, W), "
                             f"got shape {np.shape(x)}")
        return F.batch_last(x).reshape(self.num_features, -1)   # free for batch-last memory

    def _unrows(self, y, shape):
        n, c, h, w = shape
        return F.from_batch_last(y.reshape(c, h, w, n))
