"""Augmentation: reproducible, identity when it should be, moves ink where it says, keeps the
shape, the dtype and the range of the values."""
import numpy as np
import pytest

from sifir.augment import (AUGMENTS, BACKGROUND, Augment, Erase, affine_matrices, elastic_field, gaussian_blur_matrix,
                           make_augment, warp)
from sifir.data.mnist import MEAN, STD
from sifir.errors import SifirError


def digit_batch(n=6, seed=0):
    """Normalised 28×28 'digits': blobs of ink away from the border, on the MNIST background."""
    rng = np.random.default_rng(seed)
    ink = np.zeros((n, 1, 28, 28))
    ink[:, :, 8:20, 9:19] = rng.uniform(0.2, 1.0, size=(n, 1, 12, 10))
    return ((ink - MEAN) / STD).astype(np.float32)


def centre_of_mass(x):
    ink = x[:, 0].astype(np.float64) - BACKGROUND
    ys, xs = np.mgrid[0:x.shape[2], 0:x.shape[3]]
    total = ink.sum(axis=(1, 2))
    return np.stack([(ink * xs).sum(axis=(1, 2)) / total, (ink * ys).sum(axis=(1, 2)) / total], axis=1)


def test_background_is_normalised_black():
    assert BACKGROUND == pytest.approx((0 - 0.1307) / 0.3081)
    assert BACKGROUND == pytest.approx(-0.4242, abs=1e-4)


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_same_seed_same_output_and_shape_dtype_kept(name):
    x = digit_batch()
    augment = make_augment(name)
    a = augment(x, np.random.default_rng(7))
    b = augment(x, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32
    if name != "none":
        assert not np.array_equal(a, augment(x, np.random.default_rng(8)))   # another seed, another batch
        assert not np.array_equal(a, x)


@pytest.mark.parametrize("name", list(AUGMENTS))
def test_values_stay_within_the_input_range(name):
    x = digit_batch(16)
    y = make_augment(name)(x, np.random.default_rng(1))
    lo, hi = min(x.min(), BACKGROUND), max(x.max(), BACKGROUND)
    assert y.min() >= lo - 1e-6 and y.max() <= hi + 1e-6


def test_identity_parameters_give_the_identity():
    x = digit_batch()
    x[:, :, 0, :] = 3.0                      # ink on the border too: nothing may be lost
    np.testing.assert_array_equal(warp(x, affine_matrices([0, 0], 0, 1)), x)
    np.testing.assert_array_equal(Augment(shift=0)(x, np.random.default_rng(0)), x)
    still = Augment(shift=0, alpha=0.0)(x, np.random.default_rng(3))
    np.testing.assert_array_equal(still, x)


@pytest.mark.parametrize("shift", [(2, 0), (0, -2), (1, 2), (-2, -1), (0.5, -1.25)])
def test_shift_moves_the_centre_of_mass_by_the_shift(shift):
    x = digit_batch()
    y = warp(x, affine_matrices(shift, 0, 1))
    np.testing.assert_allclose(centre_of_mass(y) - centre_of_mass(x), np.broadcast_to(shift, (len(x), 2)),
                               atol=1e-4)


def test_integer_shift_moves_pixels_exactly():
    x = digit_batch(2)
    y = warp(x, affine_matrices([[2, -1], [-2, 1]], 0, 1))
    np.testing.assert_array_equal(y[0, 0, :-1, 2:], x[0, 0, 1:, :-2])     # content moved right 2, up 1
    np.testing.assert_array_equal(y[0, 0, :, :2], np.float32(BACKGROUND))  # the uncovered strip is background
    np.testing.assert_array_equal(y[1, 0, 1:, :-2], x[1, 0, :-1, 2:])     # left 2, down 1


def test_rotation_by_90_degrees_turns_the_image_counter_clockwise():
    x = np.full((1, 1, 5, 5), BACKGROUND, np.float32)
    x[0, 0, 2, 4] = 1.0                                 # a dot right of the centre …
    y = warp(x, affine_matrices([0, 0], 90, 1))
    assert np.unravel_index(np.argmax(y[0, 0]), (5, 5)) == (0, 2)   # … ends up above it (y points down)
    np.testing.assert_allclose(y.max(), 1.0, atol=1e-6)


def test_scaling_about_the_centre_keeps_the_centre_and_grows_the_ink():
    x = digit_batch()
    y = warp(x, affine_matrices([0, 0], 0, 1.1))
    np.testing.assert_allclose(centre_of_mass(y), centre_of_mass(x), atol=0.05)
    assert np.all((y > BACKGROUND + 1e-3).sum(axis=(1, 2, 3)) > (x > BACKGROUND + 1e-3).sum(axis=(1, 2, 3)))


def test_far_outside_reads_background():
    x = digit_batch(2)
    np.testing.assert_array_equal(warp(x, affine_matrices([40, 0], 0, 1)), np.float32(BACKGROUND))
    np.testing.assert_array_equal(warp(x, affine_matrices([0, -30], 0, 1)), np.float32(BACKGROUND))


def test_gaussian_blur_matrix_is_a_normalised_separable_gaussian():
    b = gaussian_blur_matrix(28, 4.0)
    assert np.allclose(b, b.T)
    assert gaussian_blur_matrix(64, 4.0)[32].sum() == pytest.approx(1.0, abs=1e-12)   # a full kernel inside
    assert b[0].sum() < 0.6                                    # at the border: zero outside
    field = np.zeros((1, 1, 28, 28))
    field[0, 0, 14, 14] = 1
    blurred = b @ field @ b.T
    assert blurred[0, 0, 14, 14] == pytest.approx(1 / (2 * np.pi * 16), rel=1e-3)   # 2-D Gaussian peak


def test_elastic_field_is_smooth_and_scaled_by_alpha():
    rng = np.random.default_rng(0)
    field = elastic_field(64, (28, 28), alpha=34.0, sigma=4.0, rng=rng)
    assert field.shape == (64, 2, 28, 28)
    neighbour_change = np.abs(np.diff(field, axis=3)).mean()
    assert neighbour_change < 0.2 * np.abs(field).mean()       # neighbours move together
    assert 0.5 < np.abs(field[:, :, 8:20, 8:20]).mean() < 3     # displacements of a pixel or so
    again = elastic_field(64, (28, 28), alpha=68.0, sigma=4.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(again, 2 * field)


def test_unknown_name_and_bad_parameters_raise_typed_errors():
    with pytest.raises(SifirError, match="unknown augmentation 'blur'.*none, shift, affine, elastic"):
        make_augment("blur")
    with pytest.raises(SifirError):
        Augment(scale=(1.1, 0.9))
    with pytest.raises(SifirError, match=r"\(N, C, H, W\)"):
        Augment()(np.zeros((28, 28), np.float32), np.random.default_rng(0))


def test_none_is_the_identity():
    x = digit_batch()
    assert make_augment("none")(x, np.random.default_rng(0)) is x
    assert make_augment(None)(x, np.random.default_rng(0)) is x


def test_flip_mirrors_exactly_half_the_time():
    x = digit_batch(64, seed=3)
    flipped = Augment(shift=0.0, flip=True)(x, np.random.default_rng(0))
    mirrored = np.array([np.array_equal(f, a[..., ::-1]) for f, a in zip(flipped, x)])
    unchanged = np.array([np.array_equal(f, a) for f, a in zip(flipped, x)])
    assert np.all(mirrored | unchanged) and 20 < mirrored.sum() < 44   # every image one or the other


def test_whole_pixel_shifts_copy_pixels_without_blur():
    x = digit_batch(32, seed=5)
    out = make_augment("flip")(x, np.random.default_rng(0))
    framed = np.pad(x[:, 0], ((0, 0), (2, 2), (2, 2)), constant_values=BACKGROUND)
    for image, moved in zip(x[:, 0], out[:, 0]):
        # the output is the input (or its mirror) moved by whole pixels: one of 2·25 exact copies
        candidates = [framed_view for src in (np.pad(image, 2, constant_values=BACKGROUND),
                                              np.pad(image[:, ::-1], 2, constant_values=BACKGROUND))
                      for dy in range(5) for dx in range(5) for framed_view in [src[dy:dy + 28, dx:dx + 28]]]
        assert any(np.array_equal(moved, c) for c in candidates)
    assert set(np.unique(out)) <= set(np.unique(framed))   # no value in between: nothing mixed


def test_erase_paints_one_background_rectangle_on_about_half():
    fill = -0.81   # another data set's background: the augmenters take it as given
    x = np.full((200, 1, 28, 28), 2.0, np.float32)
    erase = Erase(lambda batch, rng: batch.copy(), fill=fill)
    y = erase(x, np.random.default_rng(0))
    painted = y[:, 0] == np.float32(fill)
    assert np.all((y == 2.0) | (y == np.float32(fill)))
    some = painted.any(axis=(1, 2))
    assert 70 < some.sum() < 130
    for mask in painted[some]:   # a filled rectangle: its bounding box is all painted
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert 0.02 * 784 * 0.5 <= mask.sum() <= 0.4 * 784 * 1.5
    assert make_augment("erase", fill).fill == fill
