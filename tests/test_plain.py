"""nn/plain.py, the layers as the math reads: their gradients against central differences in
float64, and the fast layers held to them (same outputs, same gradients, in any memory layout),
layer by layer and for whole networks."""
import numpy as np
import pytest

from sifir import models, nn
from sifir.nn import plain
from sifir.nn.gradcheck import gradcheck
from test_conv import distinct, layouts, rand

TOL = 1e-6


def affine(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.weight.data = rng.standard_normal(layer.weight.shape).astype(np.float32)
    layer.bias.data = rng.standard_normal(layer.bias.shape).astype(np.float32)
    layer.running_mean[...] = rng.standard_normal(layer.num_features)
    layer.running_var[...] = rng.standard_normal(layer.num_features) ** 2 + 0.5
    return layer


CASES = [  # (fast layer, input shape): every layer the fast path changes, in its usual and odd forms
    (lambda: nn.Conv2d(1, 4, 3, padding=1), (3, 1, 8, 7)),
    (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda: nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 2), bias=False), (3, 2, 5, 8)),
    (lambda: nn.Conv2d(6, 4, 5), (2, 6, 9, 9)),
    (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda: nn.MaxPool2d(2), (2, 3, 5, 7)),
    (lambda: nn.MaxPool2d(3, 2), (2, 2, 7, 6)),
    (lambda: nn.MaxPool2d((2, 3), (1, 2)), (2, 2, 5, 7)),
    (lambda: nn.AvgPool2d(2), (2, 3, 6, 5)),
    (lambda: nn.AvgPool2d(3, 2), (2, 2, 7, 6)),
    (lambda: affine(nn.BatchNorm2d(3)), (4, 3, 5, 6)),
    (lambda: affine(nn.BatchNorm1d(5)), (6, 5)),
    (lambda: nn.Linear(7, 4), (5, 7)),
    (lambda: nn.Linear(7, 9), (5, 7)),     # a batch narrower than the layer: computed as (W·xᵀ)ᵀ
    (lambda: nn.Flatten(), (2, 3, 4, 5)),
]
IDS = [f"{make().__class__.__name__}-{shape}" for make, shape in CASES]


@pytest.mark.parametrize("make, shape", CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False])
def test_plain_gradients_match_central_differences(make, shape, training):
    layer = plain.twin(make())
    layer.train(training)
    x = distinct(*shape) if "Pool" in type(layer).__name__ else rand(*shape, seed=3) * 3 + 1
    # Linear layers are exact for any step; max-pooling's inputs are 0.1 apart (1e-3 reorders
    # nothing); BatchNorm is curved: with a few values per feature, 1e-4 keeps truncation (ε²) small.
    errors = gradcheck(layer, x, eps=1e-4 if "BatchNorm" in type(layer).__name__ else 1e-3)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("make, shape", CASES, ids=IDS)
@pytest.mark.parametrize("training", [True, False])
def test_fast_layer_computes_what_the_plain_one_does(make, shape, training):
    fast = make()
    slow = plain.twin(fast)
    assert type(slow) is not type(fast) and type(slow).__name__ == type(fast).__name__
    fast.train(training)
    slow.train(training)
    x = (distinct(*shape) if "Pool" in type(fast).__name__ else rand(*shape)).astype(np.float32)
    y = slow(x)
    g = rand(*y.shape, seed=1).astype(np.float32)
    dx = slow.backward(g)
    buffers = [b.copy() for _, b in fast.named_buffers()]
    for xs, gs in zip(layouts(x), layouts(g)):
        for b, saved in zip((b for _, b in fast.named_buffers()), buffers):
            b[...] = saved              # the running statistics as they were before the plain forward
        fast.zero_grad()
        y_fast = fast(xs)
        assert y_fast.shape == y.shape and y_fast.dtype == np.float32
        np.testing.assert_allclose(y_fast, y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fast.backward(gs), dx, rtol=1e-4, atol=1e-5)
        for (name, p), (_, q) in zip(fast.named_parameters(), slow.named_parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-4, err_msg=name)
        for (name, a), (_, b) in zip(fast.named_buffers(), slow.named_buffers()):
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)


def lenet5():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


NETWORKS = {"lenet5": lenet5, **{name: models.PRESETS[name].build for name in models.PRESETS if name != "seed"}}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_whole_networks_train_the_same_with_plain_layers(name):
    nn.manual_seed(0)
    fast = NETWORKS[name]()
    slow = plain.twin(fast)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    results = []
    for model in (fast, slow):
        nn.manual_seed(1)              # the same dropout masks for both
        loss_fn = nn.CrossEntropyLoss()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), need_input_grad=False)
        results.append((loss, [p.grad for p in model.parameters()]))
    (loss_fast, grads_fast), (loss_slow, grads_slow) = results
    assert loss_fast == pytest.approx(loss_slow, rel=1e-5)
    scale = max(np.abs(g).max() for g in grads_slow)
    for (pname, _), a, b in zip(fast.named_parameters(), grads_fast, grads_slow):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale, err_msg=pname)
    fast.eval()
    slow.eval()
    np.testing.assert_allclose(fast(x), slow(x), rtol=1e-4, atol=1e-4)
    for one in (x[:1], x[:2]):   # a few images: stride-1 convolutions from shifted runs
        np.testing.assert_allclose(fast(one), slow(one), rtol=1e-4, atol=1e-4)


def test_plain_twin_saves_as_the_same_architecture():
    from sifir import io
    nn.manual_seed(0)
    model = models.build("cnn")
    assert io.describe(plain.twin(model)) == io.describe(model)
