"""Turn a user's picture into MNIST-like 28×28 inputs, the way MNIST itself was made.

MNIST digits are bright ink on black, size-normalised so that the longer side of the ink's
bounding box is 20 px (keeping the aspect ratio, with anti-aliasing), then pasted into a 28×28
field so that the centre of mass of the ink sits at the field's centre (LeCun et al.). A network
trained on MNIST only reads pictures prepared the same way, so that is what this module does,
after ``photo`` has found the ink (the paper's uneven light taken away) and ``segment`` has split
it into digits (paper lines, specks, shadows and the page's edge left out).

    load_image(source)      path, bytes or binary file  ->  float32 2-D grey, 0..255
    load_photo(source)      the same, a big JPEG decoded at a fraction of its size, + its size
    find_digits(grey)       2-D grey array  ->  [Digit(image (28, 28), box, row)], reading order
    preprocess(grey)        2-D grey array  ->  float32 (28, 28) in [0, 1]: all its digits' ink as one
    preprocess_file(source) = preprocess(load_image(source))

Only the loaders need Pillow, and import it when called; the rest is NumPy and SciPy's ndimage.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np

from sifir.errors import ImageError
from sifir.photo import WORK_PIXELS, ink_map
from sifir.segment import find_regions

__all__ = ["Digit", "find_digits", "find_whole", "load_image", "load_photo", "preprocess", "preprocess_array",
           "preprocess_file"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # a digit photo is a few MB at most; refuse before reading more
MAX_PIXELS = 40_000_000  # checked from the header, before decoding: stops decompression bombs

SIZE = 28  # MNIST field
BOX = 20  # longer side of the ink's bounding box in MNIST
ALPHA_VARIES = 0.25  # alpha spread (of 1) from which transparency can carry the drawing
COLOUR_VARIES = 64.0  # grey spread (of 255) among opaque pixels from which colour draws the picture


# --------------------------------------------------------------------------------------- reading


def load_image(source) -> np.ndarray:
    """Read a picture as float32 2-D grey in 0..255 (dark = 0).

    `source` is a path, the file's bytes, or a binary file object. EXIF orientation is applied,
    animated images give their first frame, and transparency is flattened (see `_flatten_alpha`).
    Raises ImageError naming the file when it is too big or Pillow cannot read it.
    """
    return _decode(source, draft=False)[0]


def load_photo(source) -> tuple[np.ndarray, tuple[int, int]]:
    """Like `load_image`, for reading digits off a photo: a JPEG bigger than the reading needs
    (over photo.WORK_PIXELS) is decoded at ½, ¼ or ⅛ of its size, the least that fits, straight
    from its compressed blocks (as galleries make thumbnails), several times faster than decoding
    it whole. Returns the grey picture and the picture's own (width, height)."""
    return _decode(source, draft=True)


def _decode(source, *, draft: bool) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image, ImageOps  # only reading pictures needs Pillow

    name, data = _read_bytes(source)
    fail = f"cannot read image {name!r}"
    try:
        with warnings.catch_warnings():
            # Pillow warns (and errors at 2×) above its own global limit; make both refusals.
            # (catch_warnings is process-wide; at worst a racing thread also sees it as error.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow's UserWarnings (corrupt EXIF, TIFF tags past the end) are about metadata it
            # skipped; the pixels still decode. Printed with Pillow's source line they read like a crash.
            warnings.simplefilter("ignore", UserWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{fail}: {width}×{height} pixels {_too_many()}")
            im.seek(0)  # animated GIF/PNG/WebP, multi-page TIFF: the first frame
            if draft and im.format == "JPEG":
                scale = next((s for s in (1, 2, 4) if width * height <= WORK_PIXELS * s * s), 8)
                if scale > 1:
                    im.draft("L" if im.mode in ("RGB", "YCbCr") else im.mode, (width // scale, height // scale))
            im.load()
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)   # EXIF orientations a quarter turn off
            im = ImageOps.exif_transpose(im)  # phones store pictures sideways plus an EXIF tag
            return _to_grey(im), ((height, width) if turned else (width, height))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{fail}: the picture {_too_many()}") from e
    except Image.UnidentifiedImageError as e:
        raise ImageError(f"{fail}: not a picture format Pillow knows (PNG, JPEG, GIF, …)") from e
    except Exception as e:  # noqa: BLE001 - corrupt files surface as many exception types
        reason = str(e) or type(e).__name__
        raise ImageError(f"{fail}: {reason} (is the file damaged or truncated?)") from e


def _read_bytes(source) -> tuple[str, bytes]:
    """(name for messages, content); refuse a file over MAX_FILE_BYTES before reading it all."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            if os.path.getsize(name) > MAX_FILE_BYTES:
                raise ImageError(f"cannot read image {name!r}: {_too_big()}")
            with open(name, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise ImageError(f"cannot read image {name!r}: {e.strerror or e}") from e
    elif hasattr(source, "read"):
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else "<file object>"
        data = source.read(MAX_FILE_BYTES + 1)
        if not isinstance(data, bytes):
            raise ImageError(f"cannot read image {name!r}: open the file in binary mode ('rb')")
    else:
        raise TypeError(f"expected a path, bytes or a binary file, got {type(source).__name__}")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"cannot read image {name!r}: {_too_big()}")
    return name, data


def _too_many() -> str:
    return (
        f"is over the {MAX_PIXELS // 1_000_000}-megapixel limit for a picture "
        "(a decompression bomb, or a photo to scale down first)"
    )


def _too_big() -> str:
    return f"the file is over the {MAX_FILE_BYTES // (1024 * 1024)} MB limit for a picture"


def _to_grey(im) -> np.ndarray:
    """Any Pillow mode -> float32 grey 0..255."""
    mode = im.mode
    if mode.startswith("I;16"):  # 16-bit grey (PNG, TIFF): 65535 is white
        return np.asarray(im.convert("I"), np.float32) / 257.0
    if mode in ("I", "F"):  # 32-bit int or float: no fixed white level, so infer the scale
        return _rescale(np.asarray(im, np.float32))
    if "A" in mode or "a" in mode or "transparency" in im.info:  # RGBA LA PA La RGBa, tRNS
        rgba = im.convert("RGBA")
        colour = np.asarray(rgba.convert("L"), np.float32)
        alpha = np.asarray(rgba.getchannel("A"), np.float32) / 255.0
        return _flatten_alpha(colour, alpha)
    if mode not in ("1", "L", "P", "RGB", "CMYK", "YCbCr"):
        im = im.convert("RGB")  # LAB, HSV, …: via RGB, since Pillow has no direct route to L
    return np.asarray(im.convert("L"), np.float32)  # ITU-R 601 luma, as Pillow defines L


def _rescale(a: np.ndarray) -> np.ndarray:
    """32-bit pixels to 0..255: all in [0, 1] is the 0..1 convention; over 255 means 16+ bits."""
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
    top = float(a.max(initial=0.0))
    if top <= 1.0:
        return a * 255.0
    if top <= 255.0:
        return a
    return a * (255.0 / (65535.0 if top <= 65535.0 else top))


def _flatten_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Grey picture of an image with transparency.

    Usually: composite onto white, as a browser shows it on a white page. But a web canvas or a
    paint program often draws strokes of one colour (white or black) on a fully transparent
    background; then the colour says nothing and the shape lives only in alpha. Composited on
    white, white strokes would vanish. So when alpha varies, the opaque pixels are the minority
    (strokes, not a page with cut corners) and share one colour, alpha itself is the ink:
    opaque = dark stroke, transparent = light paper.
    """
    on_white = colour * alpha + 255.0 * (1.0 - alpha)
    if np.ptp(alpha) < ALPHA_VARIES:
        return on_white  # (nearly) constant alpha holds no drawing
    opaque = alpha >= alpha.max() / 2
    if opaque.mean() > 0.5:
        return on_white  # mostly opaque: the transparent bits are a frame, not the paper
    lo, hi = np.percentile(colour[opaque], [1, 99])
    if hi - lo > COLOUR_VARIES:
        return on_white  # colour draws the picture (a photo, coloured strokes with outlines)
    return 255.0 * (1.0 - alpha)


# --------------------------------------------------------------------------------------- preparing


@dataclass(frozen=True)
class Digit:
    """One digit found in a picture: ``image`` is its MNIST-like float32 (28, 28) input; ``box`` is
    (left, top, width, height) of its ink in the picture's pixels; ``row`` counts text rows from 0."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    row: int = 0


def find_digits(grey, *, scale: float = 1.0) -> list[Digit]:
    """Every digit in a 2-D grey picture (0..255; floats all in [0, 1] count as 0..1), in reading
    order: top row first, left to right. ``scale``: the picture's pixels per pixel of ``grey`` (when
    ``grey`` was decoded smaller, as `load_photo` does), for the boxes.

    Raises ImageError ("no digit found: …") when nothing in it looks like a digit, or when it holds
    more digit-like marks than a number has (segment.MAX_DIGITS).
    """
    m = ink_map(grey)
    factor = m.scale * scale
    digits = []
    for r in find_regions(m):
        crop = m.ink[r.top:r.bottom, r.left:r.right] * r.mask
        box = (round(r.left * factor), round(r.top * factor),
               max(1, round((r.right - r.left) * factor)), max(1, round((r.bottom - r.top) * factor)))
        digits.append(Digit(image=mnist_field(crop), box=box, row=r.row))
    return digits


def find_whole(grey, *, scale: float = 1.0) -> Digit:
    """All the ink of a 2-D grey picture as one item, for data sets whose pictures show one thing
    each (clothes, letters): no splitting into digits, no judging whether a mark looks like one.
    Its box spans every pixel of ink. Raises ImageError when nothing stands out from the paper."""
    m = ink_map(grey)
    rows, cols = np.flatnonzero(m.ink.any(axis=1)), np.flatnonzero(m.ink.any(axis=0))
    if not len(rows):
        raise ImageError("no digit found: nothing stands out from the background")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    factor = m.scale * scale
    box = (round(left * factor), round(top * factor),
           max(1, round((right - left) * factor)), max(1, round((bottom - top) * factor)))
    return Digit(image=mnist_field(m.ink[top:bottom, left:right]), box=box, row=0)


def preprocess(grey) -> np.ndarray:
    """2-D grey picture (0..255; floats all in [0, 1] count as 0..1) -> MNIST-like float32 (28, 28).

    Either polarity works (dark on light is inverted). The picture's digit is found as in
    `find_digits`; a picture with several digits gives them all in one field, as one digit.
    Raises ImageError when there is no digit: a blank or uniform picture, or nothing that stands
    out from the background.
    """
    m = ink_map(grey)
    regions = find_regions(m)
    top, left = min(r.top for r in regions), min(r.left for r in regions)
    bottom, right = max(r.bottom for r in regions), max(r.right for r in regions)
    mask = np.zeros((bottom - top, right - left), bool)
    for r in regions:
        mask[r.top - top:r.bottom - top, r.left - left:r.right - left] |= r.mask
    return mnist_field(m.ink[top:bottom, left:right] * mask)


def preprocess_array(a) -> np.ndarray:
    """A decoded 2-D grey array (uint8 0..255, or floats) -> (28, 28); the web server's entry."""
    return preprocess(a)


def preprocess_file(source) -> np.ndarray:
    """Path, bytes or binary file of a picture -> MNIST-like float32 (28, 28)."""
    return preprocess(load_image(source))


def mnist_field(x: np.ndarray) -> np.ndarray:
    """One digit's ink (2-D, bright on black, ≥ 0) -> the MNIST-like float32 (28, 28) field."""
    # (1) crop to the ink's bounding box.
    rows = np.flatnonzero(x.any(axis=1))
    cols = np.flatnonzero(x.any(axis=0))
    if len(rows) == 0:
        raise ImageError("no digit found: nothing stands out from the background")
    x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    # (2) longer side to 20 px, aspect kept; a 1-px line keeps at least 1 px of thickness.
    h, w = x.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = _resample_matrix(h, nh) @ x @ _resample_matrix(w, nw).T

    # (3) paste so the centre of mass (intensity-weighted row/column index, as MNIST computes
    #     it) lands on (14, 14); rounded to whole pixels and clipped so the digit stays inside.
    mass = float(x.sum())
    if not mass > 0.0:  # cannot happen for ink > 0 and positive weights; guard the division
        raise ImageError("no digit found: nothing stands out from the background")
    cy = float(x.sum(axis=1) @ np.arange(nh)) / mass
    cx = float(x.sum(axis=0) @ np.arange(nw)) / mass
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - nh))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - nw))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top : top + nh, left : left + nw] = x

    # (4) brightest ink = 1, like MNIST's strokes at 255.
    return np.clip(out / out.max(), 0.0, 1.0).astype(np.float32, copy=False)


def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of an anti-aliased linear resampler, rows summing to 1.

    Triangle (bilinear) filter centred on each output pixel; when shrinking, it widens to span
    the input pixels that fall into one output pixel, so it averages them rather than skipping
    them (what Pillow's BILINEAR resize does). Applied as R_rows @ img @ R_cols.T.
    """
    step = n_in / n_out  # input pixels per output pixel
    support = max(step, 1.0)
    centres = (np.arange(n_out) + 0.5) * step  # output pixel centres, in input coordinates
    dist = np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None])
    weights = np.clip(1.0 - dist / support, 0.0, None)  # the nearest input is ≤ 0.5 away: sum > 0
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
