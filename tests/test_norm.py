"""BatchNorm1d / BatchNorm2d: gradients against central differences in float64 (training and
evaluation), normalisation, running statistics and their use in evaluation."""
import numpy as np
import pytest

from sifir import nn
from sifir.errors import SifirError
from sifir.nn.gradcheck import gradcheck

TOL = 1e-6


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def with_random_affine(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.weight.data = rng.standard_normal(layer.weight.shape).astype(np.float32)
    layer.bias.data = rng.standard_normal(layer.bias.shape).astype(np.float32)
    return layer


CASES = [(nn.BatchNorm1d, 5, (6, 5)), (nn.BatchNorm1d, 3, (3, 3)),
         (nn.BatchNorm2d, 3, (4, 3, 5, 6)), (nn.BatchNorm2d, 2, (1, 2, 3, 7))]


@pytest.mark.parametrize("cls,features,shape", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batchnorm_gradients_in_training(cls, features, shape, seed):
    layer = with_random_affine(cls(features), seed)
    # (gradcheck's weights R come from seed 0: x must not be a copy of them, or the loss
    # Σ R·BN(x) is flat in x)
    x = rand(*shape, seed=seed + 10) * 3 + 1
    # BatchNorm is smooth: truncation (ε²) stays small at a step of 1e-3, and rounding (1/ε) of
    # its per-channel sums is what dominates below that (measured: the error grows from 1e-3 to 1e-5).
    errors = gradcheck(layer, x, eps=1e-3)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("cls,features,shape", CASES)
def test_batchnorm_gradients_in_evaluation(cls, features, shape):
    layer = with_random_affine(cls(features))
    layer.running_mean[...] = rand(features, seed=3)
    layer.running_var[...] = rand(features, seed=4) ** 2 + 0.5
    layer.eval()
    errors = gradcheck(layer, rand(*shape, seed=15), eps=1e-4)
    assert max(errors.values()) < TOL, errors


def test_batchnorm2d_training_output_has_mean_0_and_variance_1_per_channel():
    x = (rand(8, 3, 5, 5) * np.array([1, 5, 0.1])[None, :, None, None] + np.array([2, -3, 7])[None, :, None, None])
    y = nn.BatchNorm2d(3, eps=0)(x.astype(np.float32))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)   # float32 sums of 200 values
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-4)


def test_batchnorm1d_applies_gamma_and_beta():
    layer = nn.BatchNorm1d(2, eps=0)
    layer.weight.data[...] = [2, 3]
    layer.bias.data[...] = [-1, 1]
    y = layer(np.array([[1, 10], [3, 20], [5, 30]], np.float32))
    np.testing.assert_allclose(y.mean(axis=0), [-1, 1], atol=1e-6)
    np.testing.assert_allclose(y.std(axis=0), [2, 3], rtol=1e-5)


def test_running_statistics_update_as_pytorch():
    layer = nn.BatchNorm2d(3, momentum=0.1)
    x1, x2 = rand(4, 3, 2, 2, seed=1), rand(4, 3, 2, 2, seed=2) * 2 + 1
    layer(x1.astype(np.float32))
    layer(x2.astype(np.float32))
    mean1, mean2 = x1.mean(axis=(0, 2, 3)), x2.mean(axis=(0, 2, 3))
    var1, var2 = x1.var(axis=(0, 2, 3), ddof=1), x2.var(axis=(0, 2, 3), ddof=1)   # unbiased
    np.testing.assert_allclose(layer.running_mean, 0.9 * (0.1 * mean1) + 0.1 * mean2, rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, 0.9 * (0.9 + 0.1 * var1) + 0.1 * var2, rtol=1e-5)
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32


def test_evaluation_uses_running_statistics_and_leaves_them_alone():
    layer = with_random_affine(nn.BatchNorm2d(2))
    layer.running_mean[...] = [1, -2]
    layer.running_var[...] = [4, 0.25]
    layer.eval()
    x = rand(3, 2, 4, 4).astype(np.float32)
    y = layer(x)
    shape = (1, 2, 1, 1)
    expected = ((x - layer.running_mean.reshape(shape)) / np.sqrt(layer.running_var.reshape(shape) + 1e-5)
                * layer.weight.data.reshape(shape) + layer.bias.data.reshape(shape))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.running_mean, [1, -2])
    # one image alone gets the same answer as in a batch
    np.testing.assert_allclose(layer(x[:1]), y[:1], rtol=1e-6)


def test_buffers_are_in_the_state_and_load_back():
    layer = nn.BatchNorm1d(4)
    layer(rand(5, 4).astype(np.float32))
    state = layer.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var"]
    other = nn.BatchNorm1d(4)
    other.load_state_dict({k: v.copy() for k, v in state.items()})
    np.testing.assert_array_equal(other.running_var, layer.running_var)


def test_backward_uses_the_statistics_of_its_forward():
    layer = with_random_affine(nn.BatchNorm1d(3))
    x, g = rand(6, 3), rand(6, 3, seed=1)
    layer(x)
    train_grad = layer.backward(g)
    layer.zero_grad()
    layer(x)
    layer.eval()                     # switching mode between forward and backward changes nothing
    np.testing.assert_allclose(layer.backward(g), train_grad)


@pytest.mark.parametrize("layer,shape,message", [
    (nn.BatchNorm1d(3), (4, 5), r"expects input \(N, 3\)"),
    (nn.BatchNorm2d(3), (4, 3, 5), r"expects images"),
    (nn.BatchNorm2d(3), (4, 2, 5, 5), r"expects images"),
    (nn.BatchNorm1d(3), (1, 3), "more than one value"),
])
def test_bad_input_raises_a_clear_error(layer, shape, message):
    with pytest.raises(SifirError, match=message):
        layer(np.zeros(shape, np.float32))


@pytest.mark.parametrize("kwargs", [{"num_features": 0}, {"num_features": 3, "eps": -1},
                                    {"num_features": 3, "momentum": 2}])
def test_bad_arguments_raise_a_typed_error(kwargs):
    with pytest.raises(SifirError):
        nn.BatchNorm2d(**kwargs)
