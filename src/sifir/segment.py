"""Segmentation: an ink map -> the digits in it, each as its own set of pixels, in reading order.

Ink is found as connected strokes (8-connected components of the pixels at ≥ CORE of the
strongest ink; the fainter edge of a stroke, the anti-aliasing MNIST keeps, joins the stroke it
borders). Then, on pictures big enough to be photos of a page:

- **paper lines** (ruled or squared paper, a margin): a mark that spans LINE_SPAN of the
  picture and is thinner than 1/LINE_THIN of its length. A straight line is fitted through it and
  its band is cut out; where a digit's stroke crosses the band (ink above and below) the band is
  kept, so the digit is not cut in two;
- **the page's edge, a table beyond it**: a mark that runs along the picture's border;
- **blobs** (a shadow, a thumb, a filled shape): a mark whose strokes would be as wide as a third
  of the mark; digits are drawn with lines.

Everywhere: **specks** (under SPECK of the biggest mark) go. Pieces of one digit (a 5's detached
bar, a 4 written in two strokes) are joined when one stands above the other; digits are then
sorted into rows; marks much smaller than their row's digits (a dash, a dot, a comma) go, and a
mark far wider than a digit is two or more touching digits, cut where the ink is thinnest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .errors import ImageError, TooManyDigits
from .messages import t
from .photo import InkMap

__all__ = ["Region", "find_regions", "MAX_DIGITS"]

CORE = 0.5  # share of the strongest ink from which a pixel is the core of a stroke (a shadow
           # takes a third to a half of the paper's light; pen ink nine tenths)
GROW = 2  # px, and REACH of the picture's long side: fainter ink this close to a core belongs
REACH = 0.006  # to its stroke (a stroke's soft edge, a faint bit between two firm ones)
SPECK = 0.01  # a mark under this share of the biggest mark's area is a speck
LINE_SPAN = 0.5  # a paper line spans at least this share of the picture...
LINE_THIN = 120  # ...and is thinner than the picture's width over this (+ 2 px)
MAX_TILT = 8.0  # degrees: lines are looked for this far from level
FRAME_TOUCH = 0.3  # a mark along this share of a picture's side is the page edge or the table
BORDER = 0.005  # the picture's border: this share of its long side (at least a pixel) on each side
EDGE_NEAR = 0.15  # a long thin band this near a side (share of the picture) is the page's edge
BLOB = 0.3  # stroke width over the mark's length above which it is a filled blob, not lines
MIN_JUDGED = 12  # px: marks shorter than this are too small to tell strokes from blobs
PIECE = 0.6  # a mark under this share of a neighbour's area, and shorter, may be a piece of it
SMALL = 0.5  # a mark less tall than this share of its row's tallest is not a digit
DASH = 4.0  # a mark this many times wider than tall is a dash or a bar, not a digit (photos)
SPLIT = 1.15  # a mark wider than this many times its height may hold more than one digit
DIGIT_WIDTH = 0.75  # a digit's usual width, in heights, for guessing how many touch
SLANTS = np.tan(np.radians(np.arange(-20, 21, 5)))   # slants of the cut between touching digits
SURELY = 1.45  # … and one wider than this many times its height surely does
PULL = 0.5  # a cut's cost grows by this share of the usual ink per digit's width off the even cut
VALLEY = 0.65  # touching digits are cut only where a column holds under this share of the usual ink
MIN_DIGIT = 0.03  # in a photo, a digit is at least this share of the picture's long side tall
MAX_DIGITS = 20
EIGHT = np.ones((3, 3), bool)


@dataclass
class Region:
    """One digit: its pixels are ``mask`` (bool) within the box rows ``top:bottom``, columns
    ``left:right`` of the ink map; ``row`` counts the text rows from the top."""

    top: int
    left: int
    bottom: int
    right: int
    mask: np.ndarray
    row: int = 0


@dataclass
class _Group:
    labels: set
    top: int
    left: int
    bottom: int
    right: int
    area: int
    row: int = 0
    may_split: bool = False

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def find_regions(m: InkMap) -> list[Region]:
    """The digits of an ink map, top row first and left to right in a row.

    Raises ImageError when no mark looks like a digit, or when more than MAX_DIGITS do (a page
    of text, a texture).
    """
    ink = np.where(_paper_lines(m.ink), 0.0, m.ink) if m.photo else m.ink
    faintest = m.faintest
    for attempt in range(2):
        labels, n = _strokes(ink)
        groups = _marks(labels, n, ink, photo=m.photo, faintest=faintest, strict=m.photo and not m.even)
        kept = np.zeros(n + 1, bool)
        kept[[next(iter(g.labels)) for g in groups]] = True
        strongest = float(ink[kept[labels]].max()) if groups else 0.0
        # What was strongest may have been the table or a shadow: measure the ink by the marks kept.
        if attempt or not groups or strongest >= 0.7:
            break
        ink, faintest = np.minimum(ink / strongest, 1.0), faintest / strongest
    if not groups:
        raise ImageError(t("photo.no_digit_marks"))
    least = MIN_DIGIT * max(ink.shape) if m.photo else 0.0
    regions = [r for g in _rows(_merge(groups), photo=m.photo, least=least) for r in _regions(g, labels)]
    if not regions:
        raise ImageError(t("photo.no_digit_marks"))
    if len(regions) > MAX_DIGITS:
        raise TooManyDigits(t("photo.too_many", count=len(regions), limit=MAX_DIGITS))
    return regions


def _strokes(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the strokes: connected ink that reaches the core level (≥ CORE) somewhere near, a
    hysteresis threshold. Fainter ink counts within a few pixels of the core (a stroke's soft
    edge, a faint bit between two firm ones), not beyond (a shadow that touches a stroke)."""
    core = ink >= CORE
    reach = max(GROW, round(REACH * max(ink.shape)))
    near = ndimage.maximum_filter(core, size=2 * reach + 1)
    return ndimage.label((ink > 0) & near, structure=EIGHT)


# -- marks -----------------------------------------------------------------------------------------
def _marks(labels: np.ndarray, n: int, ink: np.ndarray, *, photo: bool, faintest: float,
           strict: bool) -> list[_Group]:
    """Every connected mark that could be (part of) a digit, as a one-label group. ``strict``: an
    unevenly lit photo, where whatever reaches the border is the page's edge, a shadow, or a
    digit cut in two by the frame (a drawing's digit may touch the border)."""
    if n == 0:
        return []
    area = np.bincount(labels.ravel(), minlength=n + 1)
    inked = labels > 0
    boundary = inked & ~ndimage.binary_erosion(inked, EIGHT, border_value=0)
    edge = np.bincount(labels[boundary], minlength=n + 1)
    h, w = labels.shape
    z = max(1, round(BORDER * max(h, w)))   # the border: its outer z rows and columns
    on = np.stack([np.bincount(side.ravel(), minlength=n + 1) / z
                   for side in (labels[:z], labels[-z:], labels[:, :z], labels[:, -z:])])
    marks = []
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        top, bottom, left, right = box[0].start, box[0].stop, box[1].start, box[1].stop
        longest = max(bottom - top, right - left)
        if (strict and on[:, lab].any()) or (photo and _page_edge(on[:, lab], top, left, bottom, right, h, w)):
            continue   # the page's edge, the table beyond it, a shadow's edge at the border
        if photo and longest >= MIN_JUDGED and 2 * area[lab] / max(1, edge[lab]) > BLOB * longest:
            continue   # filled: a shadow, a finger, a blot
        marks.append(_Group({lab}, top, left, bottom, right, int(area[lab])))
    biggest = max((g.area for g in marks), default=0)
    marks = [g for g in marks if g.area >= SPECK * biggest]
    if faintest > 0:   # too faint for ink: a stain, the paper's texture
        marks = [g for g in marks if _strongest(g, labels, ink) >= faintest]
    return marks


def _strongest(g: _Group, labels: np.ndarray, ink: np.ndarray) -> float:
    box = (slice(g.top, g.bottom), slice(g.left, g.right))
    return float(ink[box][np.isin(labels[box], list(g.labels))].max())


def _page_edge(on: np.ndarray, top: int, left: int, bottom: int, right: int, h: int, w: int) -> bool:
    """Whether a mark lies along the picture's border, as the page's edge, the table beyond it and
    a shadow's edge do: it runs along FRAME_TOUCH of a side in the border (``on``: its pixels there,
    per border row, for the top, bottom, left and right), or it is a band along a side it touches,
    longer than twice its depth, or a long thin band near a side (an edge the light estimate
    blurred). A digit that merely touches the border, as a big drawn 1 does, is kept."""
    height, width = bottom - top, right - left
    at_top, at_bottom, at_left, at_right = on
    if max(at_top, at_bottom) >= FRAME_TOUCH * w or max(at_left, at_right) >= FRAME_TOUCH * h:
        return True
    if ((at_top or at_bottom) and width > 2 * height) or ((at_left or at_right) and height > 2 * width):
        return True
    near_side = left < EDGE_NEAR * w or right > (1 - EDGE_NEAR) * w
    near_end = top < EDGE_NEAR * h or bottom > (1 - EDGE_NEAR) * h
    return bool((height >= 0.5 * h and width <= 0.5 * EDGE_NEAR * w and near_side)
                or (width >= 0.5 * w and height <= 0.5 * EDGE_NEAR * h and near_end))


def _paper_lines(ink: np.ndarray) -> np.ndarray:
    """The pixels of the straight lines that cross a photo (ruled or squared paper, a margin), less
    those where a stroke crosses a line: bool, the shape of ``ink``."""
    soft = ink > 0
    across = _horizontal_lines(soft)
    down = _horizontal_lines(soft.T).T
    rest = (ink >= CORE) & ~(across | down)
    # keep a line's pixels where a stroke crosses it: firm ink close on both sides of the line
    reach = int(max(ink.shape) / LINE_THIN) + 4
    return (across & ~_both_sides(rest, reach)) | (down & ~_both_sides(rest.T, reach).T)


def _both_sides(rest: np.ndarray, reach: int) -> np.ndarray:
    """Pixels with ``rest`` within ``reach`` above them and within ``reach`` below them."""
    above = np.zeros_like(rest)
    below = np.zeros_like(rest)
    for k in range(1, reach + 1):
        above[k:] |= rest[:-k]
        below[:-k] |= rest[k:]
    return above & below


def _tilt(ys: np.ndarray, xs: np.ndarray) -> float:
    """tan θ of the tilt, within ±MAX_TILT°, along which the ink's counts are most peaked (the sum
    of their squares is largest): a whole degree apart first, then finer around the best."""
    step = max(1, len(xs) // 50_000)   # a sample of the ink is plenty to find the tilt
    ys, xs = ys[::step].astype(np.float64), xs[::step].astype(np.float64)

    def peaked(degrees: float) -> float:
        offset = np.round(ys - xs * np.tan(np.radians(degrees))).astype(np.int64)
        counts = np.bincount(offset - offset.min())
        return float(counts @ counts)

    best = max(np.arange(-MAX_TILT, MAX_TILT + 0.01, 1.0), key=peaked)
    for fine in (0.25, 0.05):
        best = max(best + np.arange(-4, 5) * fine, key=peaked)
    return float(np.tan(np.radians(best)))


def _horizontal_lines(soft: np.ndarray) -> np.ndarray:
    """Nearly horizontal lines, found as a Hough transform restricted to small tilts finds them:
    for each tilt, count the ink along every line of that tilt (a histogram of y − x·tan θ); the
    camera's tilt is where the counts are most peaked, and a line is a run of counts (three rows
    together, for what the tilt's rounding spreads) that covers LINE_SPAN of the picture's width,
    in a band thinner than a pen's stroke."""
    h, w = soft.shape
    ys, xs = np.nonzero(soft)
    lines = np.zeros_like(soft)
    if len(xs) < LINE_SPAN * w:
        return lines
    along = ys - xs * _tilt(ys, xs)
    bins = np.round(along - np.floor(along.min())).astype(np.int64)
    counts = np.bincount(bins)
    full = np.convolve(counts, np.ones(3), mode="same") >= LINE_SPAN * w
    thickest = w / LINE_THIN + 2
    on_line = np.zeros(len(counts), bool)
    starts = np.flatnonzero(full & ~np.r_[False, full[:-1]])
    stops = np.flatnonzero(full & ~np.r_[full[1:], False]) + 1
    for start, stop in zip(starts, stops):
        if stop - start <= thickest + 2:
            on_line[start:stop] = True
    band = on_line[bins]
    lines[ys[band], xs[band]] = True
    return lines


# -- digits ------------------------------------------------------------------------------------------
def _merge(groups: list[_Group]) -> list[_Group]:
    """Join marks that are pieces of one digit: one stands above the other (they share at least
    half of the narrower one's columns) and together they are not much taller than the taller;
    or one is a small piece (a 5's bar, a 4's stroke) close beside a bigger one, and together
    they are no wider than a digit."""
    groups = list(groups)
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i], groups[j]
                if _one_digit(a, b):
                    groups[i] = _Group(a.labels | b.labels, min(a.top, b.top), min(a.left, b.left),
                                       max(a.bottom, b.bottom), max(a.right, b.right), a.area + b.area)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return groups


def _one_digit(a: _Group, b: _Group) -> bool:
    overlap = min(a.right, b.right) - max(a.left, b.left)
    tall = max(a.bottom, b.bottom) - min(a.top, b.top)
    wide = max(a.right, b.right) - min(a.left, b.left)
    if overlap >= 0.5 * min(a.width, b.width) and tall <= 1.9 * max(a.height, b.height):
        return True
    small, big = (a, b) if a.area < b.area else (b, a)
    gap = max(0, -overlap, max(a.top, b.top) - min(a.bottom, b.bottom))
    return (small.area < PIECE * big.area and small.height < 0.75 * big.height
            and gap <= 0.25 * big.height and wide <= 1.3 * tall)


def _rows(groups: list[_Group], *, photo: bool, least: float) -> list[_Group]:
    """Sort into text rows (top to bottom) and each row left to right; drop what is no digit by its
    size in its row, or by being under ``least`` px tall."""
    rows: list[list[_Group]] = []
    for g in sorted(groups, key=lambda g: (g.top + g.bottom) / 2):
        middle = (g.top + g.bottom) / 2
        for row in rows:
            top = np.median([r.top for r in row])
            bottom = np.median([r.bottom for r in row])
            if top <= middle <= bottom:
                row.append(g)
                break
        else:
            rows.append([g])
    tallest = max(g.height for g in groups)
    out = []
    for r, row in enumerate(sorted(rows, key=lambda row: min(g.top for g in row))):
        row_tallest = max(g.height for g in row)
        if row_tallest < SMALL * tallest:
            continue   # a row of small marks beside the number: notes, specks
        for g in sorted(row, key=lambda g: (g.left + g.right) / 2):
            if g.height < max(least, SMALL * row_tallest) or (photo and g.width > DASH * g.height):
                continue
            g.row = r
            g.may_split = g.height >= 0.75 * row_tallest   # a touching pair is as tall as its row
            out.append(g)
    # rows numbered 0, 1, … in the order kept
    renumber = {r: k for k, r in enumerate(sorted({g.row for g in out}))}
    for g in out:
        g.row = renumber[g.row]
    return out


def _regions(g: _Group, labels: np.ndarray) -> list[Region]:
    """The group's pixels as one Region, or several when it is touching digits (``_cuts``)."""
    mask = np.isin(labels[g.top:g.bottom, g.left:g.right], list(g.labels))
    pieces = [mask]
    if g.may_split and g.height >= MIN_JUDGED and SPLIT * g.height < g.width <= DASH * g.height:
        pieces = _cuts(mask, round(g.width / (DIGIT_WIDTH * g.height)), sure=g.width > SURELY * g.height)
    regions = []
    for piece in pieces:
        rows, cols = np.flatnonzero(piece.any(axis=1)), np.flatnonzero(piece.any(axis=0))
        if len(rows):
            regions.append(Region(g.top + int(rows[0]), g.left + int(cols[0]), g.top + int(rows[-1]) + 1,
                                  g.left + int(cols[-1]) + 1, piece[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1],
                                  g.row))
    return regions


def _cuts(mask: np.ndarray, n: int, sure: bool = False) -> list[np.ndarray]:
    """A mark of up to n touching digits -> its pieces, cut where its ink is thinnest.

    Handwriting slants, so a cut is a slanted line: for each slant in SLANTS, the ink is counted
    along lines of that slant (a histogram of x − slant·y); each cut is searched within 45 % of a
    digit's width of the even cut, at the slant and place with the least ink, and made only when
    that is under VALLEY of the mark's usual count (a wide 0 has no such place: it stays whole),
    or, when ``sure`` (a mark wider than any one digit), wherever it crosses no loop.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    hy, hx = np.nonzero(ndimage.binary_fill_holes(mask) & ~mask)   # inside loops: never cut there
    step = w / n
    shifted, profiles = [], []
    for slant in SLANTS:
        at = np.round(xs - slant * (ys - h / 2)).astype(np.int64)
        low = int(at.min())
        profile = ndimage.uniform_filter1d(np.bincount(at - low).astype(np.float64), 3)
        holes = np.round(hx - slant * (hy - h / 2)).astype(np.int64) - low
        holes = holes[(holes >= 0) & (holes < len(profile))]
        profile[holes] = np.inf
        shifted.append((at, low))
        profiles.append(profile)
    straight = profiles[len(SLANTS) // 2]
    usual = float(np.median(straight[(straight > 0) & np.isfinite(straight)]))
    label = np.zeros(len(xs), np.int64)
    last = 0
    for k in range(1, n):
        best = None
        for (at, low), profile in zip(shifted, profiles):
            lo, hi = int(k * step - 0.45 * step) - low, int(k * step + 0.45 * step) + 1 - low
            lo, hi = max(lo, last - low + 1, 1), min(hi, len(profile) - 1)
            if hi > lo:
                # the least ink, and of two thin places the one nearer the even cut
                cost = profile[lo:hi] + PULL * usual * np.abs(np.arange(lo, hi) + low - k * step) / step
                i = _middle_of_valley(profile, lo + int(np.argmin(cost)), lo, hi)
                if best is None or cost[i - lo] < best[0]:
                    best = (cost[i - lo], profile[i], at, i + low)
        if best is not None and (best[1] <= VALLEY * usual or (sure and np.isfinite(best[1]))):
            label += best[2] >= best[3]
            last = best[3]
    pieces = []
    for k in range(int(label.max()) + 1):
        piece = np.zeros_like(mask)
        piece[ys[label == k], xs[label == k]] = True
        rows = np.flatnonzero(piece.any(axis=1))
        if len(rows) == 0 or rows[-1] - rows[0] + 1 < 0.6 * h:
            return [mask]   # a piece much shorter than the mark is a tail or a bar, not a digit
        pieces.append(piece)
    return pieces


def _middle_of_valley(profile: np.ndarray, i: int, lo: int, hi: int) -> int:
    """The middle of the flat bottom around ``i`` (within lo:hi): a flat stretch is one stroke
    running from one digit to the next, and its middle is the fairest place to part them."""
    floor = profile[i] * 1.15 + 1e-9
    first, last = i, i
    while first > lo and profile[first - 1] <= floor:
        first -= 1
    while last < hi - 1 and profile[last + 1] <= floor:
        last += 1
    return (first + last) // 2
