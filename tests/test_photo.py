"""sifir.photo: the paper's uneven light taken away; what is left is the ink, and only the ink."""
import numpy as np
import pytest

from sifir import photo
from sifir.errors import ImageError
from test_preprocess import mnist_digits


def lit_page(digit: np.ndarray, light: np.ndarray, at=(150, 250), side=120) -> np.ndarray:
    """An MNIST digit written dark on paper (reflectance 0.85, ink 0.1) under ``light`` (H, W)."""
    from PIL import Image
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
    cover = np.zeros(light.shape, np.float32)
    cover[at[0]:at[0] + side, at[1]:at[1] + side] = ink
    return 255 * light * 0.85 * (1 - 0.88 * cover)


def falloff(h=480, w=640, far=0.55) -> np.ndarray:
    """Light from the left: 1 at the left edge, ``far`` at the right (a desk lamp's fall-off)."""
    return np.tile(np.linspace(1.0, far, w, dtype=np.float32), (h, 1))


def test_uneven_light_leaves_the_ink_and_nothing_else():
    digit = mnist_digits(1)[0]
    m = photo.ink_map(lit_page(digit, falloff()))
    inside = np.zeros(m.ink.shape, bool)
    inside[150:270, 250:370] = True
    assert m.ink[~inside].max() == 0.0                     # the dark side of the page is no ink
    assert m.ink[inside].max() == 1.0 and (m.ink[inside] > 0.5).sum() > 500
    assert not m.even and m.photo
    # one level for the whole page, as a scan would have it, takes the dark side for ink
    grey = lit_page(digit, falloff())
    one_level = np.median(grey) - grey
    assert (one_level[:, -40:] > 0.1 * one_level.max()).mean() > 0.9


def test_even_paper_keeps_one_level():
    """A drawing, a scan, MNIST itself: the paper is one level, the median, as before."""
    digit = mnist_digits(2)[1]
    m = photo.ink_map(digit)
    assert m.even and not m.photo and m.noise == 0.0
    np.testing.assert_allclose(m.ink, np.where(digit / 255.0 >= 0.1, digit / 255.0, 0.0), atol=1e-6)
    page = lit_page(digit, np.ones((480, 640), np.float32))
    assert photo.ink_map(page).even


def test_shadow_with_a_sharp_edge_is_taken_away():
    light = np.ones((480, 640), np.float32)
    light[:, 400:] = 0.6                                   # a hand's shadow over the right third
    m = photo.ink_map(lit_page(mnist_digits(1)[0], light, at=(150, 120)))
    assert m.ink[:, 300:].max() < 0.5                      # at most a faint rim where the edge is


def test_blank_paper_under_uneven_light_holds_no_digit():
    rng = np.random.default_rng(0)
    grey = 255 * 0.85 * falloff() + rng.normal(0, 4, (480, 640))
    with pytest.raises(ImageError, match="no digit found"):
        photo.ink_map(grey)


def test_big_pictures_are_shrunk_by_whole_blocks():
    x = np.zeros((3000, 4000), np.float32)
    small, factor = photo.shrink(x)
    assert factor == 4 and small.shape == (750, 1000) and small.size <= photo.WORK_PIXELS
    x[:4, :4] = 16.0
    assert photo.shrink(x)[0][0, 0] == pytest.approx(16.0)   # an average over 4×4 blocks
    strip = np.zeros((1, 5_000_000), np.float32)             # cannot be shrunk by whole blocks
    assert photo.shrink(strip)[1] == 1.0
    m = photo.ink_map(np.pad(np.kron(255 - mnist_digits(1)[0], np.ones((40, 40))), 400, constant_values=255))
    assert m.scale == 2.0 and m.ink.shape == (960, 960)   # 1920² → 960²
