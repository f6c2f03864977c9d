"""The scalar autograd: the tutorial's example with its known numbers, and the chain rule."""
import math

import pytest

from sifir.explain import toy_example
from sifir.scalar import Value


def test_tutorial_example():
    x, w1, w2 = Value(10.0), Value(-2.0), Value(3.0)
    h = x + w1
    y = h * w2
    assert (h.data, y.data) == (8.0, 24.0)
    y.backward()
    assert h.grad == 3.0            # dy/dh = w2
    assert w1.grad == 3.0           # dy/dw1 = dy/dh · dh/dw1 = 3 · 1
    assert w2.grad == 8.0           # dy/dw2 = h
    assert x.grad == 3.0


def test_toy_example_step_reduces_y():
    t = toy_example(lr=0.01)
    assert (t["h"], t["y"], t["dy_dw1"], t["dy_dw2"]) == (8.0, 24.0, 3.0, 8.0)
    assert t["new_w1"] == pytest.approx(-2.03) and t["new_w2"] == pytest.approx(2.92)
    assert t["new_y"] == pytest.approx((10 - 2.03) * 2.92) and t["new_y"] < 24


def numeric(f, a, eps=1e-6):
    return (f(a + eps) - f(a - eps)) / (2 * eps)


@pytest.mark.parametrize("expr", [
    lambda a: (a * a + 3 * a).tanh(),
    lambda a: (a.exp() + 1).log() / (a ** 2 + 1),
    lambda a: (a - 4).relu() * a + (2 - a) * a,
])
def test_chain_rule_against_central_differences(expr):
    a = Value(1.3)
    out = expr(a)
    out.backward()
    assert a.grad == pytest.approx(numeric(lambda v: expr(Value(v)).data, 1.3), rel=1e-6)


def test_a_value_used_twice_sums_both_paths():
    a = Value(3.0)
    y = a * a  # dy/da = 2a
    y.backward()
    assert a.grad == 6.0
    y.backward()  # a second backward starts over, it does not double-count
    assert a.grad == 6.0


def test_repr_names_the_value():
    assert "w1=-2" in repr(Value(-2.0, "w1")) and math.isfinite(Value(1.0).exp().data)
