"""Conv2d, MaxPool2d, AvgPool2d: gradients against central differences in float64, outputs
against direct loops written out below (the reference), and known values by hand."""
import json

import numpy as np
import pytest

from sifir import io, nn
from sifir.errors import SifirError
from sifir.nn import conv as conv_module
from sifir.nn import functional as F
from sifir.nn.gradcheck import gradcheck

TOL = 1e-6


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def distinct(*shape, seed=0):
    """Values 0.1 apart in random order: no ties in a max, and a step of 1e-3 never reorders."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 0.1 - n * 0.05).reshape(shape)


# -- references: the definitions, one output at a time ----------------------------------------
def conv_reference(x, weight, bias, stride, padding):
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for b in range(n):
        for k in range(o):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    y[b, k, i, j] = np.sum(patch * weight[k]) + (bias[k] if bias is not None else 0)
    return y


def pool_reference(x, kernel, stride, reduce):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = reduce(x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw], axis=(2, 3))
    return y


# (in, out, kernel, stride, padding, input shape): square and not, stride 2, padding 1, batch > 1
CONV_CASES = [
    (1, 2, 3, 1, 0, (2, 1, 6, 6)),
    (3, 4, 3, 1, 1, (2, 3, 5, 7)),
    (2, 3, 3, 2, 1, (3, 2, 7, 6)),
    (2, 3, (2, 3), (2, 1), (1, 2), (3, 2, 5, 8)),
    (4, 2, (3, 1), 2, 0, (2, 4, 8, 5)),
    (3, 5, 5, 1, 2, (2, 3, 6, 6)),
]


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,shape", CONV_CASES)
def test_conv_matches_direct_loop(cin, cout, kernel, stride, padding, shape):
    layer = nn.Conv2d(cin, cout, kernel, stride, padding, rng=np.random.default_rng(1))
    x = rand(*shape).astype(np.float32)
    y = layer(x)
    expected = conv_reference(x.astype(np.float64), layer.weight.data.astype(np.float64), layer.bias.data,
                              F.pair(stride), F.pair(padding))
    assert y.shape == expected.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,shape", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_gradients(cin, cout, kernel, stride, padding, shape, bias):
    layer = nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
    # A convolution is linear in x and in W, so central differences are exact for any step;
    # a large step keeps rounding out of the comparison.
    errors = gradcheck(layer, rand(*shape, seed=2), eps=1e-2)
    assert set(errors) == ({"input", "weight", "bias"} if bias else {"input", "weight"})
    assert max(errors.values()) < TOL, errors


def test_conv_gradient_with_small_step_too():
    errors = gradcheck(nn.Conv2d(2, 3, 3, 2, 1), rand(2, 2, 6, 5, seed=3), eps=1e-5)
    assert max(errors.values()) < TOL, errors


def test_conv_hand_made_kernel_on_tiny_image():
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)   # [[1 2 3] [4 5 6] [7 8 9]]
    layer = nn.Conv2d(1, 1, 2)
    layer.weight.data[...] = [[[[1, 0], [0, -1]]]]              # x[i, j] − x[i+1, j+1]
    layer.bias.data[...] = 0.5
    np.testing.assert_array_equal(layer(x), [[[[-3.5, -3.5], [-3.5, -3.5]]]])

    box = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    box.weight.data[0] = 1                                      # sum of the 3×3 neighbourhood
    box.weight.data[1] = 0
    box.weight.data[1, 0, 1, 1] = 2                             # 2·centre
    y = box(x)
    np.testing.assert_array_equal(y[0, 0], [[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    np.testing.assert_array_equal(y[0, 1], 2 * x[0, 0])


def test_conv_stride_two_picks_every_other_position():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    layer = nn.Conv2d(1, 1, 1, stride=2, bias=False)
    layer.weight.data[...] = 1
    np.testing.assert_array_equal(layer(x)[0, 0], x[0, 0, ::2, ::2])


def test_conv_init_is_pytorch_default_and_seeded():
    nn.manual_seed(5)
    a = nn.Conv2d(3, 8, 5)
    nn.manual_seed(5)
    b = nn.Conv2d(3, 8, 5)
    assert a.weight.shape == (8, 3, 5, 5) and a.bias.shape == (8,)
    assert a.weight.data.dtype == np.float32
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / np.sqrt(3 * 5 * 5)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.weight.data).max() > 0.9 * bound
    assert np.abs(a.bias.data).max() <= bound


def layouts(x):
    """x (N, C, H, W) in three memory layouts: contiguous NCHW, channels-last, batch-last
    (and any other array as it is)."""
    yield x
    if x.ndim == 4:
        yield np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        yield np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def test_conv_accepts_any_memory_layout():
    layer = nn.Conv2d(3, 4, 3, padding=1)
    x = rand(2, 3, 6, 5).astype(np.float32)
    g = rand(2, 4, 6, 5, seed=1).astype(np.float32)
    y0 = layer(x)
    dx0 = layer.backward(g)
    for xs, gs in zip(layouts(x), layouts(g)):
        np.testing.assert_array_equal(layer(xs), y0)
        np.testing.assert_allclose(layer.backward(gs), dx0, rtol=1e-6)


def test_conv_output_is_batch_last_in_memory():
    # what makes the next layer's work run over long contiguous stretches
    y = nn.Conv2d(1, 4, 3, padding=1)(rand(5, 1, 6, 6).astype(np.float32))
    assert y.shape == (5, 4, 6, 6) and F.batch_last(y).flags.c_contiguous


def test_conv_eval_in_slices_matches_training_forward(monkeypatch):
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = rand(7, 2, 9, 8).astype(np.float32)
    train_y = layer(x)
    monkeypatch.setattr(conv_module, "EVAL_CHUNK", 100)   # one output row per slice
    layer.eval()
    np.testing.assert_allclose(layer(x), train_y, rtol=1e-6, atol=1e-6)
    # backward still works after an inference forward (the patch matrix is rebuilt)
    g = rand(*train_y.shape, seed=4).astype(np.float32)
    dx_eval = layer.backward(g)
    dw_eval = layer.weight.grad.copy()
    layer.train()
    layer.zero_grad()
    layer(x)
    np.testing.assert_allclose(layer.backward(g), dx_eval, rtol=1e-6)
    np.testing.assert_allclose(layer.weight.grad, dw_eval, rtol=1e-6)


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,shape", CONV_CASES)
@pytest.mark.parametrize("small_weight_gradient", [True, False])
def test_conv_in_slices_and_both_weight_gradient_paths(monkeypatch, cin, cout, kernel, stride, padding, shape,
                                                     small_weight_gradient):
    # inference and the input gradient a slice of output rows at a time (here one row per slice);
    # the weight gradient as a stack of products over slices of 7 positions (a remainder too), or not
    monkeypatch.setattr(conv_module, "COL2IM_CHUNK", 1)
    monkeypatch.setattr(conv_module, "EVAL_CHUNK", 1)
    monkeypatch.setattr(conv_module, "WEIGHT_SLICE", 7)
    monkeypatch.setattr(conv_module, "SMALL_WEIGHT_GRADIENT", 10 ** 9 if small_weight_gradient else 0)
    layer = nn.Conv2d(cin, cout, kernel, stride, padding, rng=np.random.default_rng(1))
    x = rand(*shape).astype(np.float32)
    expected = conv_reference(x.astype(np.float64), layer.weight.data.astype(np.float64), layer.bias.data,
                              F.pair(stride), F.pair(padding))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer.eval()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer.train()
    errors = gradcheck(layer, rand(*shape, seed=2), eps=1e-2)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,shape", [c for c in CONV_CASES if F.pair(c[3]) == (1, 1)]
                         + [(2, 3, (3, 2), 1, (0, 1), (1, 2, 6, 5)), (1, 4, 5, 1, 0, (3, 1, 7, 9))])
@pytest.mark.parametrize("shifted", [True, False])
def test_conv_inference_from_shifted_runs_matches_the_reference(monkeypatch, cin, cout, kernel, stride, padding,
                                                                shape, shifted):
    # stride 1, inference: the patch matrix from shifted runs of the flat input (few images), or
    # copied an output row at a time; both give the definition's numbers, in the batch-last layout
    monkeypatch.setattr(conv_module, "SHIFTED_ROW", 10 ** 9 if shifted else 0)
    layer = nn.Conv2d(cin, cout, kernel, stride, padding, rng=np.random.default_rng(1))
    layer.eval()
    x = rand(*shape).astype(np.float32)
    expected = conv_reference(x.astype(np.float64), layer.weight.data.astype(np.float64), layer.bias.data,
                              F.pair(stride), F.pair(padding))
    y = layer(x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert y.dtype == np.float32 and F.batch_last(y).flags.c_contiguous


def test_inference_of_one_image_whatever_stride_its_batch_axis_reports():
    # NumPy may give an axis of length 1 any stride (an array made by empty_like of a batch-last
    # view does): the shifted runs must not read it
    layer = nn.Conv2d(4, 3, 3, rng=np.random.default_rng(1))
    layer.eval()
    values = rand(4, 6, 5, 1).astype(np.float32)               # batch-last, one image
    for stride in (4, 4 * 120, 12345 * 4):
        x = np.lib.stride_tricks.as_strided(values, (1, 4, 6, 5), (stride, 120, 20, 4))
        expected = conv_reference(np.array(x, np.float64), layer.weight.data.astype(np.float64), layer.bias.data,
                                  (1, 1), (0, 0))
        np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_shifted_patches_hold_the_patch_matrix_on_the_output_columns():
    x = rand(3, 2, 6, 5).astype(np.float32)
    padded = F.padded_batch_last(x, (1, 2))                                # (C, Hp, Wp, N): 2, 8, 9, 3
    wide = F.shifted_patches(padded, (3, 4))                               # (C·kh·kw, ((Ho−1)·Wp + Wo)·N)
    ho, wo, wp, n = 6, 6, 9, 3
    assert wide.shape == (2 * 3 * 4, ((ho - 1) * wp + wo) * n)
    np.testing.assert_array_equal(F.from_shifted(wide, ho, wo, wp, n), F.patches(padded, (3, 4)))


def test_patch_matrix_holds_the_numbers_im2col_does():
    from sifir.nn import plain
    x = rand(3, 2, 7, 6).astype(np.float32)
    cols = F.patches(F.padded_batch_last(x, 1), (3, 2), (2, 1))          # (C·kh·kw, Ho·Wo·N)
    reference = plain.im2col(x, (3, 2), (2, 1), (1, 1))                   # (N·Ho·Wo, C·kh·kw)
    ho, wo = F.conv_output_size(7, 3, 2, 1), F.conv_output_size(6, 2, 1, 1)
    np.testing.assert_array_equal(cols.reshape(-1, ho, wo, 3).transpose(3, 1, 2, 0).reshape(reference.shape),
                                  reference)


def test_conv_skips_input_gradient_when_not_needed():
    layer = nn.Conv2d(1, 2, 3)
    y = layer(rand(2, 1, 5, 5).astype(np.float32))
    assert layer.backward(np.ones_like(y), need_input_grad=False) is None
    assert layer.weight.grad.shape == (2, 1, 3, 3)


def test_conv_float32_stays_float32():
    layer = nn.Conv2d(3, 4, 3, padding=1)
    y = layer(rand(2, 3, 5, 5).astype(np.float32))
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32


@pytest.mark.parametrize("rows", [None, (1, 3)])
def test_patches_and_add_patches_are_adjoint(rows):
    # <patches(x), c> = <x, add_patches(c)> for all x, c: add_patches is exactly the transpose
    padded = rand(3, 7, 6, 2)
    cols = F.patches(padded, (3, 2), (2, 1), rows=rows)
    c = rand(*cols.shape, seed=1)
    grad = np.zeros_like(padded)
    F.add_patches(grad, c, (3, 2), (2, 1), rows=rows)
    assert np.isclose(np.sum(cols * c), np.sum(padded * grad))


def test_plain_im2col_col2im_are_adjoint():
    from sifir.nn import plain
    x = rand(2, 3, 7, 6)
    cols = plain.im2col(x, (3, 2), (2, 1), (1, 1))
    c = rand(*cols.shape, seed=1)
    assert np.isclose(np.sum(cols * c), np.sum(x * plain.col2im(c, x.shape, (3, 2), (2, 1), (1, 1))))


@pytest.mark.parametrize("make,shape,message", [
    (lambda: nn.Conv2d(3, 4, 3), (2, 1, 5, 5), "3 input channel"),
    (lambda: nn.Conv2d(1, 4, 3), (2, 28, 28), "(N, C, H, W)"),
    (lambda: nn.Conv2d(1, 4, 5), (2, 1, 3, 3), "smaller than the kernel"),
    (lambda: nn.MaxPool2d(3), (1, 1, 2, 5), "smaller than the window"),
    (lambda: nn.AvgPool2d(2), (4, 4), "(N, C, H, W)"),
])
def test_bad_input_raises_a_clear_error(make, shape, message):
    with pytest.raises(SifirError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()(np.zeros(shape, np.float32))


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(0, 4, 3), lambda: nn.Conv2d(1, 4, 0), lambda: nn.Conv2d(1, 4, 3, stride=0),
    lambda: nn.Conv2d(1, 4, 3, padding=-1), lambda: nn.Conv2d(1, 4, (3, 3, 3)), lambda: nn.MaxPool2d(2.5),
    lambda: nn.AvgPool2d(2, stride=0), lambda: nn.Conv2d((3, 5), 4, 3), lambda: nn.Conv2d(1, [4, 4], 3),
    lambda: nn.Conv2d(True, 4, 3), lambda: nn.Conv2d(1.0, 4, 3),
])
def test_bad_arguments_raise_a_typed_error(make):
    with pytest.raises(SifirError):
        make()


# -- pooling ----------------------------------------------------------------------------------
def test_max_pool_known_values():
    x = np.array([[1, 2, 5, 0],
                  [3, 4, 1, 1],
                  [0, 0, 7, 8],
                  [9, 0, 6, 2]], np.float32).reshape(1, 1, 4, 4)
    pool = nn.MaxPool2d(2)
    np.testing.assert_array_equal(pool(x), [[[[4, 5], [9, 8]]]])
    grad = pool.backward(np.array([[[[10, 20], [30, 40]]]], np.float32))
    expected = np.zeros((4, 4))
    expected[1, 1], expected[0, 2], expected[3, 0], expected[2, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_max_pool_odd_size_drops_the_last_row_and_column():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    pool = nn.MaxPool2d(2)
    np.testing.assert_array_equal(pool(x), [[[[6, 8], [16, 18]]]])
    grad = pool.backward(np.ones((1, 1, 2, 2), np.float32))
    assert grad.shape == x.shape and grad[0, 0, 4].sum() == 0 and grad[0, 0, :, 4].sum() == 0


def test_max_pool_tie_has_one_winner():
    pool = nn.MaxPool2d(2)
    x = np.zeros((1, 2, 2, 2), np.float32)    # channel 0: all equal; channel 1: tie between two
    x[0, 1] = [[1, 3], [3, 0]]
    pool(x)
    grad = pool.backward(np.ones((1, 2, 1, 1), np.float32))
    np.testing.assert_array_equal(grad[0, 0], [[1, 0], [0, 0]])   # the first in row-major order
    np.testing.assert_array_equal(grad[0, 1], [[0, 1], [0, 0]])
    overlapping = nn.MaxPool2d(2, stride=1)
    overlapping(np.zeros((1, 1, 3, 3), np.float32))
    grad = overlapping.backward(np.ones((1, 1, 2, 2), np.float32))
    assert grad.sum() == 4                                          # each window passes on one gradient


POOL_CASES = [  # (kernel, stride, input shape): tiles, odd sizes, overlapping, non-square
    (2, None, (2, 3, 6, 6)),
    (2, None, (2, 2, 5, 7)),
    (3, 2, (2, 3, 7, 6)),
    ((2, 3), (1, 2), (2, 2, 5, 7)),
    (3, None, (1, 2, 8, 7)),
    (2, 3, (2, 1, 8, 8)),
]


@pytest.mark.parametrize("kernel,stride,shape", POOL_CASES)
def test_max_pool_matches_direct_loop_and_gradients(kernel, stride, shape):
    pool = nn.MaxPool2d(kernel, stride)
    x = distinct(*shape)
    ref = pool_reference(x, F.pair(kernel), F.pair(stride if stride is not None else kernel), np.max)
    np.testing.assert_array_equal(pool(x), ref)
    np.testing.assert_array_equal(nn.MaxPool2d(kernel, stride)(x.astype(np.float32)), ref.astype(np.float32))
    assert gradcheck(pool, x, eps=1e-3)["input"] < TOL     # no ties, and ±1e-3 reorders nothing


@pytest.mark.parametrize("kernel,stride,shape", POOL_CASES)
def test_avg_pool_matches_direct_loop_and_gradients(kernel, stride, shape):
    pool = nn.AvgPool2d(kernel, stride)
    x = rand(*shape)
    ref = pool_reference(x, F.pair(kernel), F.pair(stride if stride is not None else kernel), np.mean)
    np.testing.assert_allclose(pool(x), ref, rtol=1e-12, atol=1e-12)
    assert gradcheck(pool, x, eps=1e-2)["input"] < TOL     # linear: any step is exact


def test_avg_pool_known_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    pool = nn.AvgPool2d(2)
    np.testing.assert_array_equal(pool(x), [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 2, 2), np.float32)), np.full((1, 1, 4, 4), 0.25))


# -- saving ----------------------------------------------------------------------------------
def test_conv_net_saves_and_loads(tmp_path):
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, (3, 2), stride=(1, 2), padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(4, 3, 3, bias=False), nn.AvgPool2d(2, 1),
                          nn.Flatten(), nn.Linear(3 * 4 * 1, 10))
    x = rand(5, 1, 14, 16).astype(np.float32)
    model(x)                       # one training step's statistics in the BatchNorm buffers
    model.eval()
    expected = model(x)
    spec = io.describe(model)
    assert json.loads(json.dumps(spec)) == spec    # the description survives JSON unchanged
    path = io.save_model(tmp_path / "conv.npz", model)
    loaded, _ = io.load_model(path)
    np.testing.assert_array_equal(loaded(x), expected)
    assert io.describe(loaded) == spec
