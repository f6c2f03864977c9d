"""Turn a user's picture into an MNIST-like 28×28 input, the way MNIST itself was made.

MNIST digits are bright ink on black, size-normalised so that the longer side of the ink's
bounding box is 20 px (keeping the aspect ratio, with anti-aliasing), then pasted into a 28×28
field so that the centre of mass of the ink sits at the field's centre (LeCun et al.). A network
trained on MNIST only reads pictures prepared the same way, so that is what `preprocess` does.

    load_image(source)      path, bytes or binary file  ->  float32 2-D grey, 0..255
    preprocess(grey)        2-D grey array               ->  float32 (28, 28) in [0, 1]
    preprocess_file(source) = preprocess(load_image(source))

Only `load_image` needs Pillow, and imports it when called; the rest is NumPy.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from sifir.errors import ImageError

__all__ = ["load_image", "preprocess", "preprocess_array", "preprocess_file"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # a digit photo is a few MB at most; refuse before reading more
MAX_PIXELS = 40_000_000  # checked from the header, before decoding: stops decompression bombs

SIZE = 28  # MNIST field
BOX = 20  # longer side of the ink's bounding box in MNIST
MIN_CONTRAST = 32.0  # of 255: less between background and ink is paper texture or JPEG noise
NOISE_FLOOR = 0.1  # share of the ink's contrast below which a pixel is background (shadows, grain)
MAX_LEVEL = 1e6  # preprocess works in any range near 0..255 (16-bit too); far beyond is a mistake
ALPHA_VARIES = 0.25  # alpha spread (of 1) from which transparency can carry the drawing
COLOUR_VARIES = 64.0  # grey spread (of 255) among opaque pixels from which colour draws the picture


# --------------------------------------------------------------------------------------- reading


def load_image(source) -> np.ndarray:
    """Read a picture as float32 2-D grey in 0..255 (dark = 0).

    `source` is a path, the file's bytes, or a binary file object. EXIF orientation is applied,
    animated images give their first frame, and transparency is flattened (see `_flatten_alpha`).
    Raises ImageError naming the file when it is too big or Pillow cannot read it.
    """
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
            im.load()
            im = ImageOps.exif_transpose(im)  # phones store pictures sideways plus an EXIF tag
            return _to_grey(im)
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


def preprocess(grey) -> np.ndarray:
    """2-D grey picture (0..255; floats all in [0, 1] count as 0..1) -> MNIST-like float32 (28, 28).

    Either polarity works (dark on light is inverted). Raises ImageError when there is no digit:
    a blank or uniform picture, or nothing that stands out from the background.
    """
    x = _as_grey_255(grey)

    # (1) polarity: the border is almost always background; MNIST has bright ink on black.
    if np.ptp(x) < MIN_CONTRAST:
        kind = "uniform" if 48.0 < x.mean() < 208.0 else "blank"
        raise ImageError(f"no digit found: the picture is {kind} (no contrast)")
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    background = float(np.median(border))
    if background - x.min() > x.max() - background:  # background nearer the light end
        x = 255.0 - x
        background = 255.0 - background

    # (2) contrast: measure ink from the background level and scale the strongest ink to 1.
    #     What is faint relative to it (shading, grain, JPEG ringing) becomes background; the
    #     rest keeps its shade, so an MNIST digit's anti-aliased edge passes through unchanged.
    x = x - background
    contrast = float(x.max())
    if contrast < MIN_CONTRAST:  # (3) e.g. a dark blot on a darker frame: nothing like ink
        raise ImageError("no digit found: nothing stands out from the background")
    x /= contrast
    x[x < NOISE_FLOOR] = 0.0

    # (4) crop to the ink's bounding box.
    rows = np.flatnonzero(x.any(axis=1))
    cols = np.flatnonzero(x.any(axis=0))
    x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    # (5) longer side to 20 px, aspect kept; a 1-px line keeps at least 1 px of thickness.
    h, w = x.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = _resample_matrix(h, nh) @ x @ _resample_matrix(w, nw).T

    # (6) paste so the centre of mass (intensity-weighted row/column index, as MNIST computes
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

    # (7) brightest ink = 1, like MNIST's strokes at 255.
    return np.clip(out / out.max(), 0.0, 1.0).astype(np.float32, copy=False)


def preprocess_array(a) -> np.ndarray:
    """A decoded 2-D grey array (uint8 0..255, or floats) -> (28, 28); the web server's entry."""
    return preprocess(a)


def preprocess_file(source) -> np.ndarray:
    """Path, bytes or binary file of a picture -> MNIST-like float32 (28, 28)."""
    return preprocess(load_image(source))


def _as_grey_255(grey) -> np.ndarray:
    """Validate and copy to float32 0..255."""
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
