"""Check a layer's or loss's analytic backward against central differences, in float64."""
from __future__ import annotations

import numpy as np

from .module import Module


def to_float64(module: Module) -> Module:
    """Cast a module's parameters and buffers to float64 in place (for gradient checks)."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
        p.grad = None
    for m in module.modules():
        for name in m._buffers:
            setattr(m, name, getattr(m, name).astype(np.float64))
    return module


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂x by central differences: (f(x+ε) − f(x−ε)) / 2ε, one element at a time."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a−b| / max(|a|+|b|, tiny): a relative error that tolerates exact zeros."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.maximum(np.abs(a) + np.abs(b), 1e-8)
    return float(np.max(np.abs(a - b) / denom)) if a.size else 0.0


def gradcheck(module: Module, x: np.ndarray, eps: float = 1e-6, seed: int = 0) -> dict[str, float]:
    """Compare ``module.backward`` with central differences of L = Σ(forward(x) ⊙ R) for a
    fixed random R. Returns the relative error for the input (``"input"``) and every
    parameter by name. The module is cast to float64 and should be in the mode (train/eval)
    to check; layers with randomness must draw the same numbers on every forward (give them a
    fresh seeded rng per call, or check in eval mode)."""
    to_float64(module)
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(module.forward(x.copy()).shape)

    def loss():
        return float(np.sum(module.forward(x) * r))

    module.zero_grad()
    module.forward(x)
    grad_x = module.backward(r.copy())
    analytic = {"input": grad_x}
    analytic.update({name: p.grad.copy() for name, p in module.named_parameters()})

    errors = {"input": rel_error(analytic["input"], numerical_grad(loss, x, eps))}
    for name, p in module.named_parameters():
        errors[name] = rel_error(analytic[name], numerical_grad(loss, p.data, eps))
    return errors


def gradcheck_loss(loss_fn, pred: np.ndarray, target, eps: float = 1e-6) -> float:
    """Relative error of ``loss_fn.backward()`` against central differences of the loss."""
    pred = np.array(pred, dtype=np.float64)
    loss_fn(pred, target)
    analytic = loss_fn.backward().copy()
    numeric = numerical_grad(lambda: loss_fn(pred, target), pred, eps)
    return rel_error(analytic, numeric)
