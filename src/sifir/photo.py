"""Photo cleanup: a grey picture -> where the ink is, as bright-on-black coverage in [0, 1].

A photo of paper is light × paper × ink: the light falls off across the page (a desk lamp, a
window), the corners are darker (vignetting), a hand or the phone casts a shadow. One level for
the paper, as a scan would have, is too dark for one side of the page and too bright for the
other. So the paper's level is estimated everywhere and taken away:

1. polarity: most of a picture is paper (or the black of a drawing canvas), so its median says
   which end of the grey scale the ink is at; dark ink on light paper is turned over, so ink is
   always bright from here on, as in MNIST;
2. the paper's level, from a coarse grid of cells (each cell's lower quartile: the paper between
   the strokes, since ink is now the bright side), opened morphologically with a window 15 % of
   the picture's short side wide: a grey opening removes every bright thing narrower than its window (the
   strokes) and keeps what is wider (a shadow, the light's slope: an opening keeps ramps as
   they are), then widened by a cell (so a sharp edge leaves no rim) and enlarged back to the
   picture;
3. ink = what stands above that level, scaled so the strongest ink is 1; what is faint beside
   it (paper texture, sensor noise, JPEG ringing: below 10 % of the ink, or below a few times the
   noise, measured from the paper itself) is paper.

A picture whose paper is even (a drawing canvas, a scan, an MNIST digit) keeps one level, as
before: then nothing here differs from taking the paper's median. A picture under MIN_PHOTO_SIDE
pixels on its short side is a crop or a drawing, never a photo of a page, and is taken as even.

Big photos are shrunk first (whole-pixel box averages, to at most WORK_PIXELS), so a 12-megapixel
photo costs what a 1-megapixel one does; ``InkMap.scale`` maps back to the picture's pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import ImageError

__all__ = ["InkMap", "ink_map", "as_grey_255", "shrink", "MIN_CONTRAST", "WORK_PIXELS"]

MIN_CONTRAST = 32.0  # of 255: less between paper and ink is paper texture or JPEG noise
NOISE_FLOOR = 0.1  # share of the ink's contrast below which a pixel is paper (shading, grain)
NOISE_SIGMAS = 3.0  # ink must also stand this many noise σ above the paper
CONTRAST_SIGMAS = 6.0  # the strongest ink must stand this many σ above the paper, or nothing does
MIN_INK_SHARE = 0.2  # in a photo of paper, ink takes at least this share of the paper's light
MAX_LEVEL = 1e6  # pictures come in any range near 0..255 (16-bit too); far beyond is a mistake
WORK_PIXELS = 1_200_000  # bigger pictures are shrunk to at most this many pixels first
MIN_PHOTO_SIDE = 64  # below this on the short side: a crop or a drawing, with even paper
GRID = 96  # cells on the picture's long side for the paper's level
QUANTILE = 25  # percentile of a cell's pixels that is paper (ink is the bright minority)
OPENING = 0.15  # the opening's window, as a share of the grid's short side (a stroke is thinner)
EVEN_PAPER = 10.0  # grey levels: paper whose cells (the lighter 55 in 100) vary less than this is one level


@dataclass(frozen=True)
class InkMap:
    """Ink coverage of a picture: ``ink`` float32 (H, W) in [0, 1], bright ink on black, 0 where
    there is only paper. ``scale``: the picture's pixels per pixel of ``ink`` (1 unless shrunk);
    ``contrast``: grey levels between paper and the strongest ink; ``noise``: σ of the paper's grey,
    in grey levels; ``photo``: whether the picture was big enough to be treated as a photo;
    ``faintest``: on the scale of ``ink``, the least a mark of real ink reaches somewhere (a
    photo of dark ink on paper: MIN_INK_SHARE of the paper's light; else 0); ``even``: whether the
    paper had one level (a drawing, a scan, an evenly lit page)."""

    ink: np.ndarray
    scale: float
    contrast: float
    noise: float
    photo: bool
    faintest: float = 0.0
    even: bool = True


def ink_map(grey) -> InkMap:
    """2-D grey picture (0..255; floats all in [0, 1] count as 0..1) -> its InkMap.

    Raises ImageError ("no digit found: …") when nothing stands out from the paper.
    """
    x = as_grey_255(grey)
    if np.ptp(x) < MIN_CONTRAST:
        kind = "uniform" if 48.0 < x.mean() < 208.0 else "blank"
        raise ImageError(f"no digit found: the picture is {kind} (no contrast)")
    x, scale = shrink(x)
    photo = min(x.shape) >= MIN_PHOTO_SIDE

    level = float(np.median(_sample(x)))
    dark_ink = level - x.min() > x.max() - level   # paper nearer the light end: turn it over
    if dark_ink:
        x = 255.0 - x
        level = 255.0 - level
    paper = paper_level(x, level) if photo else level
    even = np.isscalar(paper)
    x -= paper

    # Most pixels are paper: their median is the paper's level (the cells' quartile lies a little
    # below it), their spread the paper's noise (robust: the median absolute deviation).
    if photo:
        x -= np.median(_sample(x))
    noise = float(1.4826 * np.median(np.abs(_sample(x))))
    contrast = float(x.max())
    # ink takes a good share of the paper's light (pencil a third, pen nine tenths); a stain or the
    # paper's own texture in a photo takes a little
    faintest = MIN_INK_SHARE * (255.0 - level) if photo and dark_ink else 0.0
    if contrast < max(MIN_CONTRAST, CONTRAST_SIGMAS * noise, faintest):
        raise ImageError("no digit found: nothing stands out from the background")
    x /= contrast
    x[x < max(NOISE_FLOOR, NOISE_SIGMAS * noise / contrast)] = 0.0
    return InkMap(ink=x, scale=scale, contrast=contrast, noise=noise, photo=photo, faintest=faintest / contrast,
                  even=even)


def _sample(x: np.ndarray, most: int = 250_000) -> np.ndarray:
    """Every k-th row and column of a big picture: enough pixels for a median, k² times quicker."""
    k = math.ceil(math.sqrt(x.size / most))
    return x[::k, ::k] if k > 1 else x


def paper_level(x: np.ndarray, level: float) -> np.ndarray | float:
    """The paper's grey level at every pixel of ``x`` (ink bright), or ``level`` where it is even."""
    h, w = x.shape
    cell = max(1, math.ceil(max(h, w) / GRID))
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    padded = np.pad(x, ((0, gh * cell - h), (0, gw * cell - w)), mode="edge")
    cells = padded.reshape(gh, cell, gw, cell).transpose(0, 2, 1, 3).reshape(gh, gw, cell * cell)
    k = (cell * cell * QUANTILE) // 100
    coarse = np.partition(cells, k, axis=-1)[..., k]
    low, high = np.percentile(coarse, [5, 60])
    if high - low < EVEN_PAPER:   # most cells are the same paper: strokes are the rest
        return level
    window = max(3, round(min(gh, gw) * OPENING))
    coarse = ndimage.grey_opening(coarse, size=(window, window), mode="nearest")
    # Widened by a cell, so that at a sharp edge (the page's, a shadow's) the enlarged level covers
    # the darker side fully: its rim left as a band of "ink" would pass for a stroke.
    coarse = ndimage.grey_dilation(coarse, size=(3, 3), mode="nearest")
    # back to full size: each cell's value sits at its centre, linear in between
    rows = _interpolation(gh, cell, h)
    cols = _interpolation(gw, cell, w)
    return (rows @ coarse @ cols.T).astype(np.float32)


def _interpolation(cells: int, cell: int, n: int) -> np.ndarray:
    """(n, cells) weights that interpolate cell centres linearly to n pixels (clamped at the ends)."""
    at = (np.arange(n) + 0.5) / cell - 0.5   # pixel centres in cell coordinates
    at = np.clip(at, 0, cells - 1)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    frac = (at - lo).astype(np.float32)
    weights = np.zeros((n, cells), np.float32)
    np.add.at(weights, (np.arange(n), lo), 1 - frac)
    np.add.at(weights, (np.arange(n), hi), frac)
    return weights


def shrink(x: np.ndarray, work_pixels: int = WORK_PIXELS) -> tuple[np.ndarray, float]:
    """A picture over ``work_pixels`` -> averaged over f×f blocks (f whole, the least that fits),
    and f. A digit a photo shows is hundreds of pixels tall: a tenth of that still holds it."""
    f = math.ceil(math.sqrt(x.size / work_pixels)) if x.size > work_pixels else 1
    if f == 1:
        return x, 1.0
    h, w = (x.shape[0] // f) * f, (x.shape[1] // f) * f
    if h == 0 or w == 0:   # a very long thin strip: keep it as it is
        return x, 1.0
    return x[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3), dtype=np.float32), float(f)


def as_grey_255(grey) -> np.ndarray:
    """Validate a 2-D grey picture and copy it to float32 0..255."""
    a = np.asarray(grey)
    if a.ndim != 2 or a.size == 0:
        raise ImageError(f"expected a 2-D grey image, got an array of shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise ImageError(f"expected grey pixel numbers, got dtype {a.dtype}")
    x = a.astype(np.float32)
    if not np.isfinite(x).all():
        raise ImageError("the image has NaN or infinite pixels")
    if np.abs(x).max() > MAX_LEVEL:  # also keeps float32 differences below far from overflow
        raise ImageError(f"pixel values reach {np.abs(x).max():.3g}: expected grey levels 0..255")
    if a.dtype == bool or (np.issubdtype(a.dtype, np.floating) and x.min() >= 0 and x.max() <= 1):
        x *= 255.0  # the 0..1 convention (bool too); a 0..255 image this dark is blank anyway
    return x
