"""Optimizers against the update rules written out by hand, and schedules against their formulas."""
import math

import numpy as np
import pytest

from sifir import optim
from sifir.nn import Parameter


def param(values, grad):
    p = Parameter(np.array(values, dtype=np.float64))
    p.grad = np.array(grad, dtype=np.float64)
    return p


def test_sgd_is_the_tutorial_rule():
    p = param([1.0, -2.0], [0.5, -1.0])
    optim.SGD([p], lr=0.1).step()
    assert np.allclose(p.data, [1.0 - 0.05, -2.0 + 0.1])  # w ← w − lr·∂L/∂w


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_weight_decay_matches_reference(nesterov):
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal(4), rng.standard_normal((5, 4))
    p = Parameter(w0.copy())
    opt = optim.SGD([p], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
    w, buf = w0.copy(), None
    for g in grads:
        p.grad = g.copy()
        opt.step()
        d = g + 0.01 * w                        # torch.optim.SGD, written out
        buf = d.copy() if buf is None else 0.9 * buf + d
        w = w - 0.05 * (d + 0.9 * buf if nesterov else buf)
    assert np.allclose(p.data, w, rtol=1e-12)


@pytest.mark.parametrize("cls,wd", [(optim.Adam, 0.0), (optim.Adam, 0.1), (optim.AdamW, 0.1)])
def test_adam_matches_the_paper(cls, wd):
    rng = np.random.default_rng(1)
    w0, grads = rng.standard_normal(6), rng.standard_normal((7, 6))
    p = Parameter(w0.copy())
    opt = cls([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    w, m, v = w0.copy(), np.zeros(6), np.zeros(6)
    for t, g in enumerate(grads, start=1):
        p.grad = g.copy()
        opt.step()
        if cls is optim.AdamW:
            w = w * (1 - 0.01 * wd)
        else:
            g = g + wd * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        w = w - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
    assert np.allclose(p.data, w, rtol=1e-10, atol=1e-12)


def test_adam_first_step_moves_each_weight_by_lr():
    p = param([0.0, 0.0], [3.0, -0.001])
    optim.Adam([p], lr=0.1).step()
    assert np.allclose(p.data, [-0.1, 0.1], rtol=1e-4)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1), lambda ps: optim.AdamW(ps, lr=0.1)])
def test_optimizers_minimise_a_quadratic(make):
    p = Parameter(np.array([5.0, -3.0]))
    opt = make([p])
    for _ in range(300):
        p.grad = 2 * (p.data - np.array([1.0, 2.0]))  # L = |w − (1,2)|²
        opt.step()
    assert np.allclose(p.data, [1.0, 2.0], atol=0.05)


def test_parameters_without_gradient_are_left_alone_and_bad_lr_refused():
    p = Parameter(np.ones(3))
    optim.Adam([p]).step()
    assert np.array_equal(p.data, np.ones(3))
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0.1, nesterov=True)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    grads = rng.standard_normal((6, 3)).astype(np.float32)
    a = Parameter(np.ones(3, np.float32))
    opt_a = optim.Adam([a], lr=0.01)
    for g in grads[:3]:
        a.grad = g.copy()
        opt_a.step()
    b = Parameter(a.data.copy())
    opt_b = optim.Adam([b], lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    for g in grads[3:]:
        a.grad, b.grad = g.copy(), g.copy()
        opt_a.step()
        opt_b.step()
    assert np.array_equal(a.data, b.data)


def lrs(schedule, n):
    out = [schedule.optimizer.lr]
    for _ in range(n):
        schedule.step()
        out.append(schedule.optimizer.lr)
    return out


def test_schedules_follow_their_formulas():
    p = Parameter(np.ones(1))
    step = lrs(optim.StepLR(optim.SGD([p], lr=1.0), step_size=2, gamma=0.5), 5)
    assert step == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    cos = lrs(optim.CosineLR(optim.SGD([p], lr=1.0), total=10, warmup=2), 10)
    assert cos[0] == 0.5 and cos[1] == 1.0 and cos[2] == pytest.approx(1.0)
    assert cos[6] == pytest.approx(0.5) and cos[10] == pytest.approx(0.0)
    one = lrs(optim.OneCycleLR(optim.SGD([p], lr=1.0), total=100, pct_start=0.25), 100)
    assert one[0] == pytest.approx(1 / 25) and one[25] == pytest.approx(1.0)
    assert one[100] == pytest.approx(1 / 25 / 1e4) and max(one) == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(one[:25], one[1:26])) and all(a >= b for a, b in zip(one[25:], one[26:]))


def test_schedule_state_resumes():
    p = Parameter(np.ones(1))
    s = optim.CosineLR(optim.SGD([p], lr=1.0), total=10)
    lrs(s, 4)
    t = optim.CosineLR(optim.SGD([p], lr=1.0), total=10)
    t.load_state_dict(s.state_dict())
    assert t.optimizer.lr == s.optimizer.lr and math.isclose(lrs(t, 1)[-1], lrs(s, 1)[-1])


def adam_reference(w0, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam written out: (weights, m, v) after the gradient steps."""
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        w = w - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return w, m, v


@pytest.mark.parametrize("shape,order", [((3, optim.BLOCK + 5), "C"), ((40, 30), "F")],
                         ids=["several blocks", "not contiguous"])
def test_adam_in_blocks_and_on_strided_arrays_matches_the_reference(shape, order):
    rng = np.random.default_rng(3)
    w0 = np.asarray(rng.standard_normal(shape), order=order)
    grads = [np.asarray(g, order=order) for g in rng.standard_normal((4, *shape))]
    p = Parameter(w0.copy(order="K"))
    opt = optim.Adam([p], lr=0.01)
    for g in grads:
        p.grad = g
        opt.step()
    w, m, v = adam_reference(w0, grads)
    assert np.allclose(p.data, w, rtol=1e-10, atol=1e-12)
    # the state is kept as sums M = m/(1−β1), V = v/(1−β2); exp_avg/exp_avg_sq are PyTorch's m, v
    assert np.allclose(opt.exp_avg[0], m, rtol=1e-12) and np.allclose(opt.exp_avg_sq[0], v, rtol=1e-12)


def test_adam_state_in_pytorch_form_loads_and_unknown_state_is_refused():
    rng = np.random.default_rng(4)
    w0, grads = rng.standard_normal(5), rng.standard_normal((6, 5))
    p = Parameter(w0.copy())
    opt = optim.Adam([p], lr=0.01)
    for g in grads[:3]:
        p.grad = g.copy()
        opt.step()
    state = opt.state_dict()
    torch_form = {**state, "buffers": {"exp_avg": opt.exp_avg, "exp_avg_sq": opt.exp_avg_sq}}
    q = Parameter(p.data.copy())
    resumed = optim.Adam([q], lr=0.01)
    resumed.load_state_dict(torch_form)
    for g in grads[3:]:
        p.grad, q.grad = g.copy(), g.copy()
        opt.step()
        resumed.step()
    assert np.allclose(q.data, p.data, rtol=1e-12)
    with pytest.raises(ValueError, match="momentum_buffer"):
        resumed.load_state_dict(optim.SGD([q], lr=0.1, momentum=0.9).state_dict())
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([q], betas=(0.9, 1.0))
