"""Optimizers and learning-rate schedules, with PyTorch's names and hyper-parameter meanings.

The tutorial's rule is plain SGD: w ← w − lr·∂L/∂w. The rest refine how the step is taken.
Updates are in place and reuse scratch buffers, so a step allocates nothing per parameter.
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p)

    def _update(self, i, p):  # pragma: no cover - abstract
        raise NotImplementedError

    # State is plain arrays and numbers, so checkpoints can be saved without pickle.
    def state_dict(self) -> dict:
        return {"lr": self.lr, "step_count": self.step_count, "buffers": self._buffers()}

    def load_state_dict(self, state: dict) -> None:
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for name, arrays in state["buffers"].items():
            target = getattr(self, name)
            if len(arrays) != len(target):
                raise ValueError(f"optimizer state '{name}' has {len(arrays)} entries, expected {len(target)}")
            for i, a in enumerate(arrays):
                target[i] = None if a is None else np.array(a, dtype=self.params[i].data.dtype)

    def _buffers(self) -> dict:
        return {}


class SGD(Optimizer):
    """w ← w − lr·g, with optional weight decay (g += λw), momentum (b ← μb + (1−τ)g) and
    Nesterov (g ← g + μb), exactly as torch.optim.SGD."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.momentum_buffer = [None] * len(self.params)

    def _update(self, i, p):
        g = p.grad
        if self.weight_decay:
            g = g + self.weight_decay * p.data
        if self.momentum:
            buf = self.momentum_buffer[i]
            if buf is None:  # the first step starts the buffer at g, as PyTorch does
                buf = self.momentum_buffer[i] = np.array(g, copy=True)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g if self.dampening else g
            g = g + self.momentum * buf if self.nesterov else buf
        p.data -= g * p.data.dtype.type(self.lr)

    def _buffers(self):
        return {"momentum_buffer": self.momentum_buffer}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): m ← β1·m + (1−β1)g, v ← β2·v + (1−β2)g²,
    w ← w − lr·m̂/(√v̂ + ε) with bias corrections m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ).
    ``weight_decay`` adds λw to g (L2, as torch.optim.Adam); AdamW decays w directly."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.exp_avg = [np.zeros_like(p.data) for p in self.params]
        self.exp_avg_sq = [np.zeros_like(p.data) for p in self.params]
        self._scratch = [np.empty_like(p.data) for p in self.params]

    def step(self):
        t = self.step_count + 1
        # Fold both bias corrections into one step size and one ε (as PyTorch does):
        # lr·m̂/(√v̂+ε) = (lr/c1)·m / (√v/√c2 + ε)
        self._step_size = self.lr / (1 - self.beta1 ** t)
        self._sqrt_c2 = math.sqrt(1 - self.beta2 ** t)
        super().step()

    def _update(self, i, p):
        g, m, v, tmp = p.grad, self.exp_avg[i], self.exp_avg_sq[i], self._scratch[i]
        dt = p.data.dtype.type
        if self.weight_decay:
            if self.decoupled:
                p.data *= dt(1 - self.lr * self.weight_decay)
            else:
                g = g + dt(self.weight_decay) * p.data
        m *= dt(self.beta1)                                 # m ← β1·m + (1−β1)·g
        np.multiply(g, dt(1 - self.beta1), out=tmp)
        m += tmp
        v *= dt(self.beta2)                                 # v ← β2·v + (1−β2)·g²
        np.multiply(g, g, out=tmp)
        tmp *= dt(1 - self.beta2)
        v += tmp
        np.sqrt(v, out=tmp)                                 # tmp ← √v/√c2 + ε
        tmp *= dt(1 / self._sqrt_c2)
        tmp += dt(self.eps)
        np.divide(m, tmp, out=tmp)                          # w ← w − (lr/c1)·m/tmp
        tmp *= dt(self._step_size)
        p.data -= tmp

    def _buffers(self):
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): w ← w·(1 − lr·λ) before
    the Adam step. Default λ = 0.01, as torch.optim.AdamW."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


# -- learning-rate schedules ------------------------------------------------------------------
# A schedule is stepped once per batch (``step()``) and sets ``optimizer.lr`` from the number
# of batches seen; it can be rebuilt from (optimizer, its arguments, steps seen) on resume.

class Schedule:
    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.steps = 0
        self.optimizer.lr = self.lr_at(0)

    def lr_at(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        self.steps += 1
        self.optimizer.lr = self.lr_at(self.steps)

    def state_dict(self):
        return {"steps": self.steps, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        self.steps, self.base_lr = int(state["steps"]), float(state["base_lr"])
        self.optimizer.lr = self.lr_at(self.steps)


class ConstantLR(Schedule):
    def lr_at(self, step):
        return self.base_lr


class StepLR(Schedule):
    """lr = base·γ^⌊step/step_size⌋."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class CosineLR(Schedule):
    """Linear warm-up for ``warmup`` steps, then cosine decay from base to ``min_lr`` at
    ``total`` steps (Loshchilov & Hutter 2017, without restarts)."""

    def __init__(self, optimizer, total: int, warmup: int = 0, min_lr: float = 0.0):
        self.total, self.warmup, self.min_lr = total, warmup, min_lr
        super().__init__(optimizer)

    def lr_at(self, step):
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))


class OneCycleLR(Schedule):
    """Smith's one-cycle policy as torch.optim.lr_scheduler.OneCycleLR (cosine annealing):
    from base/div_factor up to base over ``pct_start`` of the steps, then down to
    base/(div_factor·final_div_factor)."""

    def __init__(self, optimizer, total: int, pct_start: float = 0.25, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        self.total, self.pct_start = total, pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        super().__init__(optimizer)

    def lr_at(self, step):
        peak = self.base_lr
        start = peak / self.div_factor
        end = start / self.final_div_factor
        up = max(1, int(self.pct_start * self.total))
        if step <= up:
            a, b, frac = start, peak, step / up
        else:
            a, b, frac = peak, end, min(1.0, (step - up) / max(1, self.total - up))
        return b + (a - b) * 0.5 * (1 + math.cos(math.pi * frac))


SCHEDULES = {"constant": ConstantLR, "step": StepLR, "cosine": CosineLR, "onecycle": OneCycleLR}
