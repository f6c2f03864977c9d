"""Training an MLP on every core by splitting its units: each worker process computes its share
of every hidden layer's units (neurons) for the whole batch, and updates those units' weights.

Sharing each batch among processes (``parallel.DataParallel``) suits convolutions, whose work is
mostly outside matrix products. For a network of matrix products alone it costs: every worker
computes a gradient for every weight, the workers add those up every step, and a quarter of an
MLP's step (Adam's passes over every weight) runs where each worker touches every number. Split
by units instead, and every weight belongs to one worker (W workers, worker k owns units U_k):

    first layer (input → hidden 1), from the whole input x (the same batch on every worker):
        h1[:, U_k] = act(x · W0[U_k]ᵀ + b0[U_k])                       its rows of W0
    a middle layer (hidden j → hidden j+1), its input gathered from every worker's units:
        h[:, U_k] = act(h_j · Wj[U_k]ᵀ + bj[U_k])                      its rows of Wj
    last layer (hidden m → outputs), a partial sum from its own units, added over the workers:
        z = Σ_k h_m[:, U_k] · Wm[:, U_k]ᵀ + bm                          its columns of Wm

Every worker then holds the batch's logits, computes the same loss and the same gradient g, and
goes back the same way: dL/dWm[:, U_k] = gᵀ·h_m[:, U_k] and dL/dh_m[:, U_k] = g·Wm[:, U_k] need
nothing from the others; a middle layer adds up the workers' parts of the gradient of its input
(Σ_k dL/dh[:, U_k] · Wj[U_k]) and keeps its own units' columns. Each worker's gradients are then
the whole batch's gradients of its own weights, and it updates them at once: no gradient is
added up anywhere. Each writes them into its part of one shared array, which worker 0's model
shows as its parameters' ``.grad`` (the Learn page draws their sizes). A step meets once (the
logits) with one hidden layer, and twice more per further hidden layer (the gather, and the sum
of the input gradient). The last layer's bias is every worker's; worker 0 updates it.

Everything else is ``DataParallel``'s: the parameters and the optimizer's state in shared memory,
the commands and meetings, evaluation (each worker reads a share of the images through the whole
network), a worker that dies, Ctrl-C, and ``close``. Results depend on the number of workers
(sums in other orders; each worker draws its own dropout masks) and on nothing else.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import parallel
from .nn import init as nn_init
from .nn.layers import Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .nn.module import Module, Parameter, Sequential
from .optim import piece as optim_piece
from .parallel import shared_zeros, shares

# Layers that act on each unit alone: between two Linear layers they run on a worker's units.
UNIT_WISE = (ReLU, LeakyReLU, Sigmoid, Tanh, Identity, Dropout)
# Layers that may come before the first Linear layer (they reshape the replicated input).
INPUT = (Flatten, Identity)
# A worker's units of a layer start at multiples of this many units (a cache line of float32).
ALIGN = 16


def linear_layers(model: Module) -> list[int] | None:
    """The positions of the Linear layers of a network whose units can be split (a Sequential of
    Flatten, then Linear layers with unit-wise layers between them and after the last, at least
    two Linear layers), or None."""
    if not isinstance(model, Sequential):
        return None
    layers = list(model)
    linear = [i for i, layer in enumerate(layers) if isinstance(layer, Linear)]
    if len(linear) < 2:
        return None
    if not all(isinstance(layer, INPUT) for layer in layers[:linear[0]]):
        return None
    tail = layers[linear[0]:]
    if not all(isinstance(layer, (Linear, *UNIT_WISE)) for layer in tail):
        return None
    if any(isinstance(layer, Dropout) for layer in layers[linear[-1]:]):   # on the shared logits
        return None
    return linear


def units(width: int, workers: int) -> list[tuple[int, int]]:
    """Each worker's units (lo, hi) of a layer of ``width``: consecutive, starting at multiples
    of ALIGN where the width allows."""
    if width >= ALIGN * workers:
        cuts = [round(width * k / workers / ALIGN) * ALIGN for k in range(workers)] + [width]
        return list(zip(cuts[:-1], cuts[1:]))
    return shares(width, workers)


# -- a worker's layers: views of its part of the shared weights --------------------------------
class ColumnUnits(Linear):
    """Units lo..hi of a Linear layer, from its whole input: y_k = x·W[lo:hi]ᵀ + b[lo:hi]. With
    ``gather``, the input comes in as this worker's units of the layer before and is gathered
    from every worker first; backward then adds up every worker's part of dL/dx and returns this
    worker's columns of it. Backward writes the gradients into ``grads`` (the shared gradients
    of the whole layer's weight and bias): rows lo..hi."""

    def __init__(self, linear: Linear, lo: int, hi: int, grads, gather=None, scatter=None):
        self.in_features, self.out_features = linear.in_features, hi - lo
        self.units = (lo, hi)
        self.weight = Parameter(linear.weight.data[lo:hi])
        self.bias = Parameter(linear.bias.data[lo:hi]) if linear.bias is not None else None
        self.targets = [g[lo:hi] for g in grads]
        self.gather, self.scatter = gather, scatter

    def forward(self, x):
        return super().forward(x if self.gather is None else self.gather(x))

    def backward(self, grad_out, need_input_grad=True):
        # dL/dW[lo:hi] = gᵀ·x,  dL/db[lo:hi] = Σ g,  dL/dx = Σ over workers of g·W[lo:hi]
        self.weight.grad = np.matmul(grad_out.T, self.x, out=self.targets[0])
        if self.bias is not None:
            self.bias.grad = np.sum(grad_out, axis=0, out=self.targets[1])
        if not need_input_grad:
            return None
        part = grad_out @ self.weight.data
        return part if self.scatter is None else self.scatter(part)


class RowUnits(Module):
    """The last Linear layer from this worker's units lo..hi of its input: the partial product
    x_k·W[:, lo:hi]ᵀ (plus the bias, on the worker that ``owns_bias``), added up over the
    workers (``reduce``). Backward writes columns lo..hi of the weight's gradient into ``grads``,
    and the bias's where it is owned: no worker reads a number another one updates."""

    def __init__(self, linear: Linear, lo: int, hi: int, grads, reduce, owns_bias: bool):
        self.units = (lo, hi)
        self.weight = Parameter(linear.weight.data[:, lo:hi])
        self.bias = Parameter(linear.bias.data) if linear.bias is not None and owns_bias else None
        self.targets = [grads[0][:, lo:hi]] + ([grads[1]] if self.bias is not None else [])
        self.reduce = reduce

    def forward(self, x):
        self.x = x
        part = x @ self.weight.data.T
        if self.bias is not None:
            part += self.bias.data
        return self.reduce(part)

    def backward(self, grad_out, need_input_grad=True):
        # dL/dW[:, lo:hi] = gᵀ·x_k,  dL/db = Σ g,  dL/dx_k = g·W[:, lo:hi]
        self.targets[0][...] = grad_out.T @ self.x
        self.weight.grad = self.targets[0]
        if self.bias is not None:
            self.bias.grad = np.sum(grad_out, axis=0, out=self.targets[1])
        return grad_out @ self.weight.data if need_input_grad else None


# -- the runner -------------------------------------------------------------------------------
class SplitUnits(parallel.DataParallel):
    """W processes training one MLP (``linear_layers`` says which), each on its share of every
    hidden layer's units for the whole batch; the same interface as ``DataParallel``."""

    def __init__(self, model, optimizer, loss_fn, workers: int, train_x, train_y, **options):
        self.positions = linear_layers(model)   # where the Linear layers are
        if self.positions is None:
            raise ValueError("SplitUnits needs an MLP: a Sequential of Linear layers with unit-wise layers between")
        super().__init__(model, optimizer, loss_fn, workers, train_x, train_y, **options)
        self._local = None

    def _allocate_exchange(self, dtype, total) -> None:
        """The batch's gradient (every worker writes its own units' part: ``total``, which is
        also what worker 0's model shows as its parameters' ``.grad``), and the layers'
        exchanges: for each middle Linear layer, its whole input (gathered: every worker writes
        its units' columns) and every worker's part of the input's gradient; for the last, every
        worker's partial logits."""
        self.total = shared_zeros(total, dtype)
        layers, positions = list(self.model), self.positions
        b, w = self.batch_size, self.workers
        self.gathered = {i: shared_zeros((b, layers[i].in_features), dtype) for i in positions[1:-1]}
        self.parts = {i: shared_zeros((w, b, layers[i].in_features), dtype) for i in positions[1:-1]}
        last = layers[positions[-1]]
        self.parts[positions[-1]] = shared_zeros((w, b, last.out_features), dtype)

    # -- this worker's network ------------------------------------------------------------------
    def _local_network(self) -> list[Module]:
        """The layers this worker runs: its units of every Linear layer (views of the shared
        weights), the other layers as they are (each process has its own copy)."""
        local, positions = [], self.positions
        for i, layer in enumerate(self.model):
            if not isinstance(layer, Linear):
                local.append(layer)
                continue
            grads = [self._gradients_of(p) for p in (layer.weight, layer.bias) if p is not None]
            inputs = units(layer.in_features, self.workers)[self.rank]   # this worker's units of the input
            if i == positions[-1]:
                local.append(RowUnits(layer, *inputs, grads, reduce=partial(self._sum_parts, i),
                                      owns_bias=self.rank == 0))
            else:
                lo, hi = units(layer.out_features, self.workers)[self.rank]
                gather = scatter = None
                if i != positions[0]:   # a middle layer: its input is every worker's units
                    gather, scatter = partial(self._gather, i, inputs), partial(self._scatter, i, inputs)
                local.append(ColumnUnits(layer, lo, hi, grads, gather=gather, scatter=scatter))
        return local

    def _gather(self, i: int, inputs: tuple[int, int], part: np.ndarray) -> np.ndarray:
        """The whole input of layer i, from every worker's units of it (this one's: ``inputs``)."""
        lo, hi = inputs
        whole = self.gathered[i][:len(part)]
        whole[:, lo:hi] = part
        self._meet()
        return whole

    def _scatter(self, i: int, inputs: tuple[int, int], part: np.ndarray) -> np.ndarray:
        """Σ over the workers of their parts of dL/d(input of layer i): this worker's units of it."""
        lo, hi = inputs
        return self._sum_parts(i, part)[:, lo:hi]

    def _sum_parts(self, i: int, part: np.ndarray) -> np.ndarray:
        """Σ over the workers of ``part`` (every worker adds the same rows in the same order)."""
        rows = self.parts[i][:, :len(part)]
        rows[self.rank] = part
        self._meet()
        return parallel.sum_rows(rows)

    # -- every worker's work ------------------------------------------------------------------
    def _train_share(self, command) -> None:
        """Forward and backward of the whole batch through this worker's units."""
        k, _, n, seed, _, _, _ = command
        n = int(n)
        if self._local is None:
            self._local, self._first = self._local_network(), self.positions[0]
            self._draws = any(isinstance(layer, Dropout) for layer in self._local)
            if self.rank == 0:   # what the model shows as its gradients (the Learn page draws them)
                for p in self.optimizer.params:
                    p.grad = self._gradients_of(p)
        idx = self.indices[k, :n]
        xb, yb = self.x[idx], self.y[idx]
        if self.augment is not None:   # the same batch on every worker
            xb = self.augment(xb, np.random.default_rng([int(seed)]))
        # dropout draws each worker's own masks (on its own units); a generator only if it is drawn from
        previous = nn_init.set_rng(np.random.default_rng([int(seed), self.rank]) if self._draws else nn_init.get_rng())
        try:
            h = xb
            for layer in self._local:
                h = layer.forward(h)
            loss = self.loss_fn(h, yb)
            grad = self.loss_fn.backward()
            first = self._first   # the first Linear layer: no input gradient, nothing before it to learn
            for j in range(len(self._local) - 1, first - 1, -1):
                grad = self._local[j].backward(grad, need_input_grad=j > first)
        finally:
            nn_init.set_rng(previous)
        self._loss = loss
        if self.rank == 0:   # every worker has the same loss: worker 0 reports it
            self.results[0] = (loss * n, int(np.count_nonzero(h.argmax(axis=1) == yb)), n)

    def _combine(self) -> bool:
        """Nothing to wait for: every worker's gradients are whole already, and it has the
        batch's loss itself (the logits are everyone's). No worker reads numbers another one
        updates, so each goes on to its update at once."""
        return math.isfinite(self._loss)

    def _update(self, command) -> None:
        """The optimizer's step over this worker's units' weights, with their whole gradients."""
        _, _, _, _, lr, steps, _ = command
        if self._sliced is None:
            self._sliced = self._sliced_optimizer(self._own_pieces())
            for p, (i, key) in zip(self._sliced[0].params, self._sliced[1]):
                p.grad = optim_piece(self._shaped(self.total, i), key)
        self._optimizer_step(lr, steps)

    def _gradients_of(self, p: Parameter) -> np.ndarray:
        """The part of ``total`` that holds the gradient of parameter ``p`` (as shaped)."""
        return self._shaped(self.total, self._index(p))

    def _index(self, p: Parameter) -> int:
        return next(i for i, q in enumerate(self.optimizer.params) if q is p)

    def _own_pieces(self) -> list:
        """(i, index) of this worker's part of each parameter."""
        pieces = []
        layers = list(self.model)
        for position in self.positions:
            layer, local = layers[position], self._local[position]
            own = slice(*local.units)
            if isinstance(local, ColumnUnits):
                pieces.append((self._index(layer.weight), (own,)))
                if layer.bias is not None:
                    pieces.append((self._index(layer.bias), own))
            else:
                pieces.append((self._index(layer.weight), (slice(None), own)))
                if local.bias is not None:   # the worker that owns it
                    pieces.append((self._index(layer.bias), slice(None)))
        return pieces
