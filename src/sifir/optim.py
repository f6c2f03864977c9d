"""Optimizers and learning-rate schedules, with PyTorch's names and hyper-parameter meanings.

The tutorial's rule is plain SGD: w ← w − lr·∂L/∂w. The rest refine how the step is taken.
Updates are in place and reuse scratch buffers, so a step allocates nothing per parameter.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .nn.module import Parameter

# Element-wise updates run over blocks of this many numbers: the arrays of one block stay in the
# CPU's caches through all the passes of an update, instead of streaming from memory, and each
# block is long enough that NumPy's cost per call (about a microsecond) is small beside its work
# (docs/performance.md, "Which side first, and longer blocks").
BLOCK = 1 << 17


def _blocks(*arrays):
    """Matching flat slices of same-shaped arrays, BLOCK elements at a time; the last array is
    a scratch buffer of at least min(size, BLOCK) elements. Arrays that are not contiguous
    come back whole, with a scratch of their own shape."""
    *arrays, scratch = arrays
    if not all(a.flags.c_contiguous for a in arrays):
        yield (*arrays, np.empty_like(arrays[0]))
        return
    flat = [a.reshape(-1) for a in arrays]
    size = flat[0].size
    for start in range(0, size, BLOCK):
        stop = min(start + BLOCK, size)
        yield (*(a[start:stop] for a in flat), scratch[:stop - start])


def piece(array: np.ndarray, key) -> np.ndarray:
    """A view of part of ``array``: ``key`` a slice of the flattened array (which must be
    contiguous), or an index of the array as shaped."""
    return array.reshape(-1)[key] if isinstance(key, slice) else array[key]


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
        own = self._buffers()
        for name, arrays in state["buffers"].items():
            if name not in own:
                raise ValueError(f"optimizer state has a buffer '{name}' that {type(self).__name__} "
                                 f"does not keep ({', '.join(own) or 'none'})")
            target = own[name]
            if len(arrays) != len(target):
                raise ValueError(f"optimizer state '{name}' has {len(arrays)} entries, expected {len(target)}")
            for i, a in enumerate(arrays):
                target[i] = None if a is None else np.array(a, dtype=self.params[i].data.dtype)

    def _buffers(self) -> dict:
        return {}

    def sliced(self, pieces) -> "Optimizer":
        """The same optimizer over pieces of this one's parameters, for training on several
        processes (sifir.parallel, sifir.split), where each worker updates its own numbers.

        ``pieces`` lists (i, key): the part ``piece(array, key)`` of parameter i (a slice of the
        flattened array, or an index of the array as shaped: some of a matrix's columns). The new
        optimizer's parameters and state are views of this one's (which must be contiguous), so
        its steps update them in place. That is exact because every update here is element-wise:
        each number moves by a rule that reads only its own gradient and state."""
        other = copy.copy(self)
        other.params = [Parameter(piece(self.params[i].data, key)) for i, key in pieces]
        for name, buffers in self._buffers().items():
            setattr(other, name, [None if buffers[i] is None else piece(buffers[i], key) for i, key in pieces])
        return other


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
    ``weight_decay`` adds λw to g (L2, as torch.optim.Adam); AdamW decays w directly.

    The state holds the moving averages without their constant factor, as exponential sums
    M = m/(1−β1) = Σ β1^(t−i)·g_i and V = v/(1−β2) = Σ β2^(t−i)·g_i²: updating them takes
    two and three passes over memory instead of three and four, and every constant folds into
    one step size and one ε (``_step_constants``). ``exp_avg``/``exp_avg_sq`` give m and v.
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam's betas must be in [0, 1), got {tuple(betas)}")
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.exp_sum = [np.zeros_like(p.data) for p in self.params]
        self.exp_sum_sq = [np.zeros_like(p.data) for p in self.params]
        self._scratch = [np.empty(min(p.data.size, BLOCK), p.data.dtype) for p in self.params]

    def step(self):
        self._step_size, self._eps = self._step_constants(self.step_count + 1)
        super().step()

    def _step_constants(self, t: int) -> tuple[float, float]:
        """lr·m̂/(√v̂ + ε) = s·M/(√V + ε'): with m̂ = (1−β1)·M/(1−β1ᵗ) and √v̂ = k·√V,
        k = √((1−β2)/(1−β2ᵗ)), it follows that s = lr·(1−β1)/((1−β1ᵗ)·k) and ε' = ε/k."""
        k = math.sqrt((1 - self.beta2) / (1 - self.beta2 ** t))
        return self.lr * (1 - self.beta1) / ((1 - self.beta1 ** t) * k), self.eps / k

    def _update(self, i, p):
        g, dt = p.grad, p.data.dtype.type
        if self.weight_decay and not self.decoupled:
            g = g + dt(self.weight_decay) * p.data          # L2: g ← g + λw
        b1, b2, step, eps = dt(self.beta1), dt(self.beta2), dt(self._step_size), dt(self._eps)
        decay = dt(1 - self.lr * self.weight_decay) if self.decoupled and self.weight_decay else None
        m_all, v_all = self.exp_sum[i], self.exp_sum_sq[i]
        for w, gb, m, v, tmp in _blocks(p.data, g, m_all, v_all, self._scratch[i]):
            if decay is not None:
                w *= decay                                  # AdamW: w ← w·(1 − lr·λ)
            m *= b1                                         # M ← β1·M + g
            m += gb
            np.multiply(gb, gb, out=tmp)                    # V ← β2·V + g²
            v *= b2
            v += tmp
            np.sqrt(v, out=tmp)                             # w ← w − s·M/(√V + ε')
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step
            w -= tmp

    @property
    def exp_avg(self) -> list[np.ndarray]:
        """m, the first moment as PyTorch keeps it: (1−β1)·M."""
        return [m * m.dtype.type(1 - self.beta1) for m in self.exp_sum]

    @property
    def exp_avg_sq(self) -> list[np.ndarray]:
        """v, the second moment as PyTorch keeps it: (1−β2)·V."""
        return [v * v.dtype.type(1 - self.beta2) for v in self.exp_sum_sq]

    def _buffers(self):
        return {"exp_sum": self.exp_sum, "exp_sum_sq": self.exp_sum_sq}

    def sliced(self, pieces):
        other = super().sliced(pieces)
        other._scratch = [np.empty(min(p.data.size, BLOCK), p.data.dtype) for p in other.params]
        return other

    def load_state_dict(self, state: dict) -> None:
        # A state holding PyTorch's m and v (exp_avg, exp_avg_sq) is converted to the sums.
        buffers = dict(state["buffers"])
        for avg, total, beta in (("exp_avg", "exp_sum", self.beta1), ("exp_avg_sq", "exp_sum_sq", self.beta2)):
            if avg in buffers:
                buffers[total] = [None if a is None else np.asarray(a) / (1 - beta) for a in buffers.pop(avg)]
        super().load_state_dict({**state, "buffers": buffers})


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
