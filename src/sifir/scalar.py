"""A tiny scalar autograd, for the tutorial's example and for teaching the chain rule.

Each operation records its inputs and its local derivatives; ``backward()`` walks the graph
from the output back to the leaves, multiplying local derivatives along the way (the chain
rule) and summing over paths. This is the whole idea behind every ``backward`` in sifir.nn.

>>> x, w1, w2 = Value(10.0, "x"), Value(-2.0, "w1"), Value(3.0, "w2")
>>> h = x + w1; y = h * w2
>>> h.data, y.data
(8.0, 24.0)
>>> y.backward()
>>> w1.grad, w2.grad   # dy/dw1 = dy/dh · dh/dw1 = w2 · 1;  dy/dw2 = h
(3.0, 8.0)
"""
from __future__ import annotations

import math


class Value:
    """A number that remembers how it was computed, so its derivatives can be found."""

    def __init__(self, data: float, label: str = "", _parents=(), _local_grads=(), _op: str = ""):
        self.data = float(data)
        self.grad = 0.0
        self.label = label
        self._parents = _parents          # the Values this one was computed from
        self._local_grads = _local_grads  # ∂self/∂parent for each parent
        self._op = _op

    @staticmethod
    def _lift(other) -> "Value":
        return other if isinstance(other, Value) else Value(other)

    # Each operation: the forward value and the local derivatives, side by side.
    def __add__(self, other):
        other = self._lift(other)
        return Value(self.data + other.data, "", (self, other), (1.0, 1.0), "+")  # ∂(a+b)/∂a = 1

    def __mul__(self, other):
        other = self._lift(other)
        return Value(self.data * other.data, "", (self, other), (other.data, self.data), "*")  # ∂(ab)/∂a = b

    def __pow__(self, k: float):
        return Value(self.data ** k, "", (self,), (k * self.data ** (k - 1),), f"**{k}")

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-self._lift(other))

    def __truediv__(self, other):
        return self * self._lift(other) ** -1

    __radd__ = __add__
    __rmul__ = __mul__

    def __rsub__(self, other):
        return self._lift(other) - self

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def relu(self):
        return Value(max(0.0, self.data), "", (self,), (1.0 if self.data > 0 else 0.0,), "relu")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, "", (self,), (e,), "exp")  # d(eˣ)/dx = eˣ

    def log(self):
        return Value(math.log(self.data), "", (self,), (1.0 / self.data,), "log")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, "", (self,), (1 - t * t,), "tanh")

    def backward(self) -> None:
        """Fill ``.grad`` of every Value this one depends on with d(self)/d(that)."""
        order, seen = [], set()

        def visit(v):  # topological order: a node after all the nodes it was computed from
            if id(v) not in seen:
                seen.add(id(v))
                for parent in v._parents:
                    visit(parent)
                order.append(v)

        visit(self)
        for v in order:
            v.grad = 0.0
        self.grad = 1.0
        for v in reversed(order):
            for parent, local in zip(v._parents, v._local_grads):
                parent.grad += local * v.grad  # chain rule, summed over every path

    def __repr__(self):
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:g}, grad={self.grad:g})"
