"""Losses. ``loss(pred, target)`` returns the mean loss; ``loss.backward()`` returns dL/dpred,
the gradient that starts the backward chain through the model."""
from __future__ import annotations

import math

import numpy as np

from .module import Module


class CrossEntropyLoss(Module):
    """Softmax + negative log-likelihood on logits (N, C) and integer labels (N,), averaged
    over the batch, as torch.nn.CrossEntropyLoss.

    L = −(1/N) Σ_n Σ_c q_nc · log softmax(z_n)_c, with q the one-hot target (smoothed by
    ``label_smoothing``: q = (1−ε)·onehot + ε/C). The fused gradient is dL/dz = (p − q)/N.
    """

    def __init__(self, label_smoothing: float = 0.0):
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits, target):
        logits = np.asarray(logits)
        target = np.asarray(target)
        if logits.ndim != 2 or target.shape != (logits.shape[0],):
            raise ValueError(f"expected logits (N, C) and labels (N,), got {logits.shape} and {target.shape}")
        n, c = logits.shape
        if n and (target.dtype.kind not in "iu" or target.min() < 0 or target.max() >= c):
            raise ValueError(f"labels must be integers in 0..{c - 1}, got {target.dtype} "
                             f"{target.min()}..{target.max()}")
        # log p = s − log Σ exp(s), with s = z − max(z): shifting by the row's largest logit keeps
        # exp() ≤ 1. The exponentials are kept: normalised in place, they are p for backward.
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        log_total = np.log(total)[:, 0]
        rows = np.arange(n)
        nll = log_total - shifted[rows, target]                     # −log p_target
        if self.label_smoothing:  # −Σ_c q_c log p_c, q = (1−ε)·onehot + ε/C
            eps = self.label_smoothing
            nll = (1 - eps) * nll + eps * (log_total - shifted.mean(axis=1))
        exp /= total
        self.probs, self.target = exp, target
        return float(nll.sum()) / n if n else math.nan  # (for one batch, np.mean costs more than the sum)

    def __call__(self, logits, target):
        return self.forward(logits, target)

    def backward(self, grad_out=None, need_input_grad=True):
        n, c = self.probs.shape
        eps = self.label_smoothing
        grad = self.probs  # reuse the buffer: (p − q)/N
        if eps:
            grad -= eps / c
        grad[np.arange(n), self.target] -= 1 - eps
        grad *= grad.dtype.type(1.0 / n)
        self.probs = None
        return grad

    def config(self):
        return {"label_smoothing": self.label_smoothing}


class MSELoss(Module):
    """L = mean((y − t)²) over all elements;  dL/dy = 2(y − t)/numel."""

    def forward(self, pred, target):
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
        self.diff = pred - target
        return float(np.mean(self.diff * self.diff))

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def backward(self, grad_out=None, need_input_grad=True):
        return self.diff * self.diff.dtype.type(2.0 / self.diff.size)
