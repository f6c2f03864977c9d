"""Ensemble: several trained networks read the same input, and their probabilities are averaged.

    p_k = softmax(z_k)               each member's probabilities (z_k: its logits)
    p̄   = (1/K) Σ_k p_k              the ensemble's probabilities
    y   = log p̄                      what forward returns

Returning log p̄ rather than p̄ lets an ensemble stand wherever a single network stands: softmax
turns any logits into probabilities, and softmax(log p̄) = p̄ because p̄ already sums to 1; the
most probable class is argmax(log p̄) = argmax(p̄). So `evaluate`, `predict`, the page and the
loss treat an ensemble as one model.

Backward (for the gradient check; members are trained one by one, never through the ensemble):
    dL/dp_k = (1/K) · g / p̄          with g = dL/dy, since y = log p̄
    dL/dz_k = p_k ⊙ (dL/dp_k − Σ_j dL/dp_kj · p_kj)     softmax's Jacobian
"""
from __future__ import annotations

import numpy as np

from .functional import softmax
from .module import Module


class Ensemble(Module):
    """Members applied to the same input; the output is the log of their mean probabilities."""

    def __init__(self, *members: Module):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    def named_children(self):
        for i, member in enumerate(self.members):
            yield str(i), member

    def __getitem__(self, index: int) -> Module:
        return self.members[index]

    def __len__(self):
        return len(self.members)

    def __iter__(self):
        return iter(self.members)

    def forward(self, x):
        self._probs = [softmax(member(x)) for member in self.members]
        self._mean = sum(self._probs) / len(self._probs)
        # p̄ > 0 in exact arithmetic; in float32 a far-off class can round to 0: clip before the log
        return np.log(np.maximum(self._mean, np.finfo(self._mean.dtype).tiny))

    def backward(self, grad_out, need_input_grad: bool = True):
        grad_p = grad_out / (len(self.members) * self._mean)                # dL/dp_k, the same for all k
        grad_in = None
        for member, p in zip(self.members, self._probs):
            grad_z = p * (grad_p - (grad_p * p).sum(axis=-1, keepdims=True))    # through softmax
            g = member.backward(grad_z, need_input_grad=need_input_grad)
            if need_input_grad:
                grad_in = g if grad_in is None else grad_in + g
        return grad_in

    def __repr__(self):
        lines = [f"  ({i}): {m!r}".replace("\n", "\n  ") for i, m in enumerate(self.members)]
        return "Ensemble(\n" + "\n".join(lines) + "\n)"
