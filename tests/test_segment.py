"""sifir.segment: the digits of an ink map, each on its own, in reading order; no paper lines,
page edges, specks or blobs among them."""
import numpy as np
import pytest
from PIL import Image

from sifir import photo, segment
from sifir.errors import ImageError, TooManyDigits
from sifir.preprocess import find_digits, preprocess
from test_preprocess import aligned_corr, mnist_digits


def big(digit: np.ndarray, side: int = 112) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float32)


def page(digits, gaps, size=(400, 900), top=120, side=112) -> tuple[np.ndarray, list[int]]:
    """Dark digits on white paper in a row; each digit's field starts ``gaps[k]`` px after the
    previous digit's ink ends (negative: they overlap). Returns the page and each ink's centre x."""
    paper = np.zeros(size, np.float32)
    x, centres = 60, []
    for k, d in enumerate(digits):
        ink = big(d, side)
        cols = np.flatnonzero(ink.max(axis=0) > 25)
        ink = ink[:, cols[0]:cols[-1] + 1]
        region = paper[top:top + side, x:x + ink.shape[1]]
        np.maximum(region, ink, out=region)
        centres.append(x + ink.shape[1] // 2)
        x += ink.shape[1] + (gaps[k] if k < len(gaps) else 0)
    return 255 - paper, centres


@pytest.fixture(scope="module")
def digits():
    return mnist_digits(20)   # 7 2 1 0 4 1 4 9 5 9 0 6 9 0 1 5 9 7 3 4


def test_a_number_is_read_left_to_right(digits):
    grey, centres = page(digits[[1, 3, 4, 9]], gaps=[30, 12, 45])
    found = find_digits(grey)
    assert len(found) == 4 and [d.row for d in found] == [0] * 4
    lefts = [d.box[0] for d in found]
    assert lefts == sorted(lefts)
    for d, centre, expected in zip(found, centres, digits[[1, 3, 4, 9]]):
        left, top, width, height = d.box
        assert left <= centre <= left + width and 110 <= top and top + height <= 240
        assert aligned_corr(d.image, preprocess(expected)) > 0.9   # each digit as it is alone


def test_two_rows(digits):
    first, _ = page(digits[[1, 3]], gaps=[30], size=(200, 600), top=40)
    second, _ = page(digits[[4, 9, 8]], gaps=[30, 30], size=(200, 600), top=40)
    found = find_digits(np.vstack([first, second]))
    assert [d.row for d in found] == [0, 0, 1, 1, 1]


def test_touching_digits_are_cut_a_wide_zero_is_not(digits):
    zero = digits[3]
    grey, _ = page([zero, zero], gaps=[-6])                    # two 0s overlapping by 6 px
    assert len(find_digits(grey)) == 2
    wide = np.asarray(Image.fromarray(zero).resize((40, 28), Image.Resampling.BICUBIC))
    paper = np.full((300, 500), 255, np.float32)
    paper[60:228, 100:340] = 255 - np.asarray(Image.fromarray(wide).resize((240, 168), Image.Resampling.BICUBIC),
                                              np.float32)
    assert len(find_digits(paper)) == 1                      # aspect 1.4, but a loop: one digit


def test_a_digit_in_two_strokes_is_one_digit():
    five = np.zeros((120, 90), np.float32)
    five[0:12, 20:85] = 255            # the bar, lifted off
    five[22:70, 15:28] = 255           # the back
    five[60:72, 15:75] = 255           # the belly's top
    five[60:115, 65:78] = 255          # … its right side
    five[103:115, 10:78] = 255         # … its bottom
    paper = np.full((300, 300), 255, np.float32)
    paper[80:200, 100:190] -= five
    found = find_digits(paper)
    assert len(found) == 1 and found[0].box[1:] == (80, 75, 115)   # bar and body, one box


def test_paper_lines_are_left_out_digits_crossing_them_kept(digits):
    grey, _ = page(digits[[1, 3, 4, 9]], gaps=[30, 12, 45])
    ruled = grey.copy()
    for y in range(20, 400, 70):                             # light lines across the whole page
        ruled[y:y + 2] = np.minimum(ruled[y:y + 2], 150)
    ruled[:, 30:32] = np.minimum(ruled[:, 30:32], 150)      # a margin
    found = find_digits(ruled)
    clean = find_digits(grey)
    assert len(found) == 4
    for a, b in zip(found, clean):
        assert aligned_corr(a.image, b.image) > 0.9
    with pytest.raises(ImageError, match="no digit found"):
        find_digits(np.where(np.arange(400)[:, None] % 70 < 2, 150.0, 255.0) * np.ones((1, 900)))


def test_the_page_edge_and_blobs_are_no_digits(digits):
    grey, _ = page(digits[[7]], gaps=[])
    grey[:, :40] = 60                                        # the table beyond the page's edge
    grey[300:380, 600:700] = 90                              # a filled blot
    found = find_digits(grey)
    assert len(found) == 1 and 60 <= found[0].box[0] < 200


def test_specks_are_dropped(digits):
    grey, _ = page(digits[[0]], gaps=[])
    rng = np.random.default_rng(0)
    for y, x in rng.integers(0, 400, (30, 2)):
        grey[y:y + 2, x + 400:x + 402] = 0                   # pepper, away from the digit
    (d,) = find_digits(grey)
    assert aligned_corr(d.image, preprocess(page(digits[[0]], gaps=[])[0])) > 0.99


def test_more_digits_than_a_number_says_so(digits):
    rows = [page(digits[k:k + 6], gaps=[20] * 5, size=(140, 800), top=10, side=100)[0] for k in (0, 6, 12, 0)]
    with pytest.raises(TooManyDigits, match="24 digit-like marks, more than the 20"):
        find_digits(np.vstack(rows))


def test_segment_needs_an_ink_map_only(digits):
    m = photo.ink_map(page(digits[[5, 6]], gaps=[30])[0])
    regions = segment.find_regions(m)
    assert len(regions) == 2 and all(r.mask.any() and r.mask.shape == (r.bottom - r.top, r.right - r.left)
                                     for r in regions)
