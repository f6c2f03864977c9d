"""Every layer and loss: backward against central differences in float64, plus known values."""
import numpy as np
import pytest

from sifir import nn
from sifir.nn.gradcheck import gradcheck, gradcheck_loss

TOL = 1e-6


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_kinks(x, margin=1e-3):
    """Central differences straddling a ReLU kink are wrong; nudge inputs off zero."""
    return np.where(np.abs(x) < margin, margin * np.sign(x + 1e-12) * 10, x)


@pytest.mark.parametrize("shape", [(4, 7, 3), (1, 5, 5), (6, 3, 9)])
def test_linear_gradients(shape):
    n, fan_in, fan_out = shape
    errors = gradcheck(nn.Linear(fan_in, fan_out), rand(n, fan_in))
    assert max(errors.values()) < TOL, errors
    assert set(errors) == {"input", "weight", "bias"}


@pytest.mark.parametrize("n", [3, 8, 20])
def test_linear_puts_the_longer_side_of_its_output_first(n):
    # 3 or 8 images into 8 units: computed as (W·xᵀ)ᵀ, y transposed in memory; 20 images: as x·Wᵀ
    layer = nn.Linear(5, 8)
    x = rand(n, 5).astype(np.float32)
    y = layer(x)
    np.testing.assert_allclose(y, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6, atol=1e-6)
    narrow = n < layer.out_features
    assert y.flags.f_contiguous == narrow and y.flags.c_contiguous == (not narrow)


def test_linear_without_bias():
    errors = gradcheck(nn.Linear(5, 3, bias=False), rand(4, 5))
    assert set(errors) == {"input", "weight"} and max(errors.values()) < TOL


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.Tanh(), nn.Flatten(),
                                   nn.Identity(), nn.Softmax()], ids=lambda m: type(m).__name__)
def test_activation_gradients(layer):
    x = away_from_kinks(rand(3, 2, 4))
    if isinstance(layer, nn.Softmax):
        x = x.reshape(3, 8)
    assert gradcheck(layer, x)["input"] < TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_large_arrays_is_max_with_zero_in_any_layout(dtype):
    # the fast path (rows against a row of zeros) from RELU_ROW·2 numbers on, and the plain one
    from sifir.nn import functional as F
    specials = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1e-40, 1e-40, -3, 2], dtype)
    big = np.resize(np.concatenate([specials, rand(F.RELU_ROW).astype(dtype)]), 3 * 10_800)   # ≥ 2·RELU_ROW
    dense = [specials, big, big.reshape(-1, 3).T,                                      # contiguous, transposed
             big[: 4 * 5 * 1600].reshape(4, 5, 40, 40).transpose(3, 0, 1, 2)]         # a batch-last view
    for x in dense + [big.reshape(6, -1)[:, ::2]]:                                      # and a strided one
        y = F.relu(x)
        np.testing.assert_array_equal(y, np.maximum(x, 0))
        assert y.dtype == dtype and y.shape == x.shape and not np.shares_memory(y, x)
    for x in dense:   # the next layer meets the memory layout it was handed
        assert F.relu(x).strides == x.strides


def test_dropout_gradient_with_fixed_mask():
    layer = nn.Dropout(0.3)
    x = rand(8, 5)

    class FixedRngDropout(nn.Dropout):  # the same mask on every forward
        def forward(self, x):
            self.rng = np.random.default_rng(42)
            return super().forward(x)

    assert gradcheck(FixedRngDropout(0.3), x)["input"] < TOL
    layer.eval()
    assert np.array_equal(layer(x), x)


def test_dropout_keeps_expectation_and_zeroes_about_p():
    layer = nn.Dropout(0.25, rng=np.random.default_rng(0))
    y = layer(np.ones((200, 500), np.float32))
    assert abs(np.mean(y == 0) - 0.25) < 0.01
    assert abs(y.mean() - 1) < 0.01


def test_sequential_chains_backward():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 5), nn.Sigmoid())
    errors = gradcheck(model, rand(4, 3, 4))
    assert max(errors.values()) < TOL, errors
    assert {"1.weight", "1.bias", "3.weight", "3.bias"} <= set(errors)


def test_sequential_skips_input_gradient_when_not_needed():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model(np.ones((2, 4), np.float32))
    assert model.backward(np.ones((2, 2), np.float32), need_input_grad=False) is None
    assert model[1].weight.grad is not None


def test_cross_entropy_gradient_and_label_smoothing():
    logits, target = rand(6, 10), np.array([0, 3, 9, 2, 2, 7])
    assert gradcheck_loss(nn.CrossEntropyLoss(), logits, target) < TOL
    assert gradcheck_loss(nn.CrossEntropyLoss(label_smoothing=0.1), logits, target) < TOL


def test_mse_gradient():
    assert gradcheck_loss(nn.MSELoss(), rand(5, 3), rand(5, 3, seed=1)) < TOL


def test_known_values():
    # softmax of equal logits is uniform; its cross-entropy is log(C)
    logits = np.zeros((2, 10))
    assert np.allclose(nn.softmax(logits), 0.1)
    assert nn.CrossEntropyLoss()(logits, np.array([3, 4])) == pytest.approx(np.log(10))
    # a confident, correct (one-hot-like) prediction costs ~0; a confident wrong one costs ~margin
    sure = np.full((1, 10), -50.0)
    sure[0, 7] = 50.0
    assert nn.CrossEntropyLoss()(sure, np.array([7])) == pytest.approx(0.0, abs=1e-12)
    assert nn.CrossEntropyLoss()(sure, np.array([1])) == pytest.approx(100.0)
    # the fused gradient is (p − onehot)/N
    loss = nn.CrossEntropyLoss()
    loss(logits, np.array([3, 4]))
    expected = np.full((2, 10), 0.1 / 2)
    expected[0, 3] -= 0.5
    expected[1, 4] -= 0.5
    assert np.allclose(loss.backward(), expected)
    # MSE of (1,2) vs (0,0) is 2.5
    assert nn.MSELoss()(np.array([[1.0, 2.0]]), np.zeros((1, 2))) == 2.5


def test_cross_entropy_is_stable_for_huge_logits():
    loss = nn.CrossEntropyLoss()
    value = loss(np.array([[1e4, 0.0, -1e4]], np.float32), np.array([1]))
    assert np.isfinite(value) and value == pytest.approx(1e4, rel=1e-6)
    assert np.all(np.isfinite(loss.backward()))


def test_shapes_follow_pytorch():
    layer = nn.Linear(784, 10)
    assert layer.weight.shape == (10, 784) and layer.bias.shape == (10,)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    assert len(model) == 2 and isinstance(model[0], nn.Linear) and [type(m) for m in model] == [nn.Linear, nn.ReLU]
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert model(np.ones((5, 3), np.float32)).shape == (5, 2)
    assert model(np.ones((5, 3), np.float32)).dtype == np.float32


def test_train_eval_and_zero_grad():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.eval()
    assert not model[1].training
    model.train()
    assert model[1].training
    model(np.ones((2, 3), np.float32))
    model.backward(np.ones((2, 2), np.float32))
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_gradients_accumulate_like_pytorch():
    layer = nn.Linear(3, 2)
    x = rand(4, 3).astype(np.float32)
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    assert np.allclose(layer.weight.grad, 2 * once)


def test_manual_seed_reproduces_initialisation():
    nn.manual_seed(3)
    a = nn.Linear(5, 4).weight.data.copy()
    nn.manual_seed(3)
    assert np.array_equal(a, nn.Linear(5, 4).weight.data)
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(a) <= bound)


def test_state_dict_round_trip_and_mismatch():
    a, b = nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 2))
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a[0].weight.data, b[0].weight.data)
    with pytest.raises(ValueError, match="shape"):
        nn.Sequential(nn.Linear(4, 2)).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="missing"):
        nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)).load_state_dict(a.state_dict())


def test_cross_entropy_refuses_labels_outside_the_classes():
    logits = rand(3, 4)
    for bad in (np.array([0, 4, 1]), np.array([0, -1, 1]), np.array([0.0, 1.0, 2.0])):
        with pytest.raises(ValueError, match="labels must be integers in 0..3"):
            nn.CrossEntropyLoss()(logits, bad)


def test_cross_entropy_matches_log_softmax_in_float32():
    logits = (rand(64, 10) * 5).astype(np.float32)
    target = np.random.default_rng(1).integers(0, 10, 64)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    value = loss(logits, target)
    logp = nn.log_softmax(logits.astype(np.float64))
    q = np.full((64, 10), 0.1 / 10)
    q[np.arange(64), target] += 0.9
    assert value == pytest.approx(-(q * logp).sum(axis=1).mean(), rel=1e-6)
    grad = loss.backward()
    assert grad.dtype == np.float32  # no float64 sneaks into the training path
    assert np.allclose(grad, (np.exp(logp) - q) / 64, atol=1e-7)
