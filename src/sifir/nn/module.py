"""Parameter, Module and Sequential: the PyTorch-shaped skeleton every layer hangs on."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np


class Parameter:
    """A learnable array and its gradient.

    ``grad`` is ``None`` until a backward pass writes it; backward passes add to an existing
    gradient (as in PyTorch), and ``zero_grad`` resets it to ``None``.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.asarray(data)
        self.grad: np.ndarray | None = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self):
        return self.data.size

    def accumulate(self, grad: np.ndarray) -> None:
        """grad += g, without a copy on the first write."""
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class. A layer defines ``forward(x)`` and ``backward(grad_out)``.

    ``forward`` keeps what ``backward`` needs; ``backward`` fills the ``.grad`` of the layer's
    parameters and returns the gradient of the loss with respect to the layer's input.
    Sub-modules and parameters are found by attribute, in the order they were assigned.
    Non-learnable state that must be saved (BatchNorm's running statistics) is listed by name
    in ``_buffers``.
    """

    training = True
    _buffers: tuple[str, ...] = ()

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad: bool = True):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- tree walking ---------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def modules(self) -> Iterator["Module"]:
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    # -- modes and gradients --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers by dotted name (``0.weight``), as arrays (not copies)."""
        state = OrderedDict((name, p.data) for name, p in self.named_parameters())
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy arrays into this module; names, shapes and dtypes must match exactly."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state does not fit the model: missing {missing}, unexpected {unexpected}")
        for name, target in own.items():
            source = np.asarray(state[name])
            if source.shape != target.shape:
                raise ValueError(f"{name}: shape {source.shape} in the state, model has {target.shape}")
            target[...] = source

    def config(self) -> dict:
        """Constructor arguments, for saving the architecture as JSON."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse (the chain rule)."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)

    def named_children(self):
        for i, layer in enumerate(self.layers):
            yield str(i), layer

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def append(self, layer: Module) -> "Sequential":
        self.layers.append(layer)
        return self

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out, need_input_grad: bool = True):
        # dL/dx_i = backward_i(dL/dx_{i+1}), from the last layer to the first. When nobody needs
        # dL/d(input) (training), stop at the first layer that learns and let it skip its input
        # gradient: for an MLP that saves the largest matrix product of the backward pass.
        stop = 0 if need_input_grad else self._first_learnable()
        for i in range(len(self.layers) - 1, stop - 1, -1):
            grad_out = self.layers[i].backward(grad_out, need_input_grad=need_input_grad or i > stop)
        return grad_out if need_input_grad else None

    def _first_learnable(self) -> int:
        for i, layer in enumerate(self.layers):
            if layer.parameters():
                return i
        return 0

    def __repr__(self):
        lines = [f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
