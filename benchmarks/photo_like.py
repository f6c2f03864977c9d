"""Photo-like pictures of handwritten digits, made from MNIST test digits, to measure reading.

A phone photo of a digit on paper is, to a good approximation,

    pixel = camera( light(x, y) · paper(x, y) · ink(x, y) ) + noise

so each picture is built in that order:

- **ink**: MNIST test digits (bright strokes on black, 0..255) scaled up with a bicubic filter to
  a random size and used as the ink's coverage; the ink's colour is black, blue or pencil grey
  (a reflectance per RGB channel), so coverage 1 multiplies the paper by that colour. Several
  digits stand in a row with random gaps (some touch or overlap a little), on a slightly wavy
  baseline and each slightly slanted, as a hand writes them.
- **paper**: white to cream, with fibre-like texture (smoothed noise), optionally ruled (light
  blue lines, sometimes a red margin) or squared (a grey grid); the lines cross the digits.
- **light**: a gradient in a random direction (the far side of the page gets 55–85 % of the
  near side's light, as under a desk lamp), vignetting, and sometimes a soft-edged shadow (a
  hand or the phone) over part of the page; sometimes the page does not fill the frame and a
  darker table shows along one side.
- **camera**: the whole picture turned by a few degrees, defocus blur, sensor noise, then JPEG
  at quality 60–90.

Every random choice comes from one seed, so a set of pictures is the same on every machine.
The pictures are RGB uint8 arrays; ``jpeg_bytes`` encodes one as a phone would store it. Needs
NumPy, SciPy (``ndimage``) and Pillow, as sifir's reading does.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["PhotoSettings", "PENS", "photo", "blank_photo", "jpeg_bytes", "render_digits"]

# Reflectance of the ink per RGB channel (paper is ~0.85): ballpoint black, ballpoint blue, pencil.
PENS = {"black": (0.10, 0.10, 0.12), "blue": (0.12, 0.18, 0.55), "pencil": (0.38, 0.38, 0.40)}
RULED_BLUE = (0.62, 0.78, 0.92)   # reflectance of a ruled line (light blue)
MARGIN_RED = (0.92, 0.45, 0.45)
GRID_GREY = (0.66, 0.68, 0.72)


@dataclass(frozen=True)
class PhotoSettings:
    """How hard the pictures are. The defaults are the benchmark's "photo-like, uneven light"."""

    light_far: tuple[float, float] = (0.55, 0.85)   # light at the far side of the gradient (near: 1)
    vignette: tuple[float, float] = (0.0, 0.25)     # share of light lost in the corners
    shadow: float = 0.3          # chance of a soft-edged shadow over part of the page
    shadow_depth: tuple[float, float] = (0.55, 0.8)
    table: float = 0.2           # chance the page edge shows, with a darker table beyond it
    ruled: float = 0.3           # chance of ruled lines (else squared paper with the next chance)
    squared: float = 0.15
    margin: float = 0.1          # chance of a red margin line
    rotation: float = 5.0        # degrees, ± (the whole picture)
    slant: float = 6.0           # degrees, ± (each digit)
    blur: tuple[float, float] = (0.4, 1.4)    # camera defocus, Gaussian σ in px
    noise: tuple[float, float] = (1.5, 5.0)   # sensor noise, σ in grey levels
    jpeg: tuple[int, int] = (60, 90)
    pens: tuple[str, ...] = ("black", "black", "blue", "pencil")


CLEAN = PhotoSettings(light_far=(1.0, 1.0), vignette=(0.0, 0.0), shadow=0.0, table=0.0, ruled=0.0,
                      squared=0.0, margin=0.0, rotation=0.0, slant=0.0, blur=(0.0, 0.0), noise=(0.0, 0.0),
                      jpeg=(95, 95), pens=("black",))


def render_digits(digits: np.ndarray, rng: np.random.Generator, height: int,
                  settings: PhotoSettings) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Ink coverage (0..1, float32) of MNIST digits written in a row, digit boxes (left, top, w, h).

    Each digit is scaled so its 28×28 field is ``height`` px tall (the ink itself ~20/28 of it),
    slanted a little, and placed after the previous one with a gap of −10 %…+45 % of a digit's
    ink width, on a baseline that wanders by a few percent of the height.
    """
    pieces = []
    for d in digits:
        side = max(8, int(round(height * rng.uniform(0.9, 1.1))))
        big = np.asarray(Image.fromarray(d).resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        if settings.slant:
            big = ndimage.rotate(big, rng.uniform(-settings.slant, settings.slant), reshape=False, order=1)
        big = big.clip(0, 1)
        cols = np.flatnonzero(big.max(axis=0) > 0.1)
        rows = np.flatnonzero(big.max(axis=1) > 0.1)
        pieces.append((big[:, cols[0]:cols[-1] + 1], rows[0], rows[-1] + 1))
    widths = [p[0].shape[1] for p in pieces]
    mean_w = float(np.mean(widths))
    gaps = [int(round(rng.uniform(-0.10, 0.45) * mean_w)) for _ in pieces[1:]]
    total_w = sum(widths) + sum(gaps) + 2
    canvas_h = int(height * 1.3) + 2
    coverage = np.zeros((canvas_h, total_w), np.float32)
    boxes = []
    x = 1
    wander = rng.uniform(-0.04, 0.04, len(pieces)) * height
    for k, (piece, top, bottom) in enumerate(pieces):
        y = int(round(canvas_h / 2 - piece.shape[0] / 2 + wander[k]))
        y = int(np.clip(y, 0, canvas_h - piece.shape[0]))
        h, w = piece.shape
        region = coverage[y:y + h, x:x + w]
        np.maximum(region, piece[:, :region.shape[1]], out=region)
        boxes.append((x, y + int(top), w, int(bottom - top)))
        if k < len(gaps):
            x += w + gaps[k]
    return coverage, boxes


def photo(digits: np.ndarray, seed: int, *, size: tuple[int, int] | None = None,
          settings: PhotoSettings = PhotoSettings()) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """An RGB uint8 photo of ``digits`` (uint8 (n, 28, 28) MNIST images) written in a row.

    Returns the picture and each digit's box (left, top, width, height) in it, before the
    camera's turn (a few pixels off after it). ``size`` is (width, height); random by default.
    """
    rng = np.random.default_rng(seed)
    width, height = size or (int(rng.integers(640, 1280)), int(rng.integers(480, 960)))
    n = len(digits)
    # digit height: singles fill 20–60 % of the picture's height; a row must fit 85 % of the width
    digit_h = rng.uniform(0.2, 0.6) * height
    digit_h = min(digit_h, 0.85 * width / (n * 0.75 + 0.2 * (n - 1)))
    coverage, boxes = render_digits(digits, rng, int(digit_h), settings)
    ch, cw = coverage.shape
    if cw > width or ch > height:   # a rare wide row: shrink it to fit
        factor = min(width / cw, height / ch) * 0.95
        coverage = ndimage.zoom(coverage, factor, order=1)
        boxes = [tuple(int(v * factor) for v in b) for b in boxes]
        ch, cw = coverage.shape
    edge = int(0.05 * min(width, height))   # in the frame, also after the camera's turn
    left = int(rng.integers(min(edge, width - cw), max(edge, width - cw - edge) + 1))
    top = int(rng.integers(min(edge, height - ch), max(edge, height - ch - edge) + 1))
    ink = np.zeros((height, width), np.float32)
    ink[top:top + ch, left:left + cw] = coverage
    boxes = [(bx + left, by + top, bw, bh) for bx, by, bw, bh in boxes]
    pen = PENS[settings.pens[int(rng.integers(len(settings.pens)))]]
    lines_every = max(12.0, digit_h * rng.uniform(0.8, 1.4))
    return _photograph(ink, pen, rng, settings, lines_every), boxes


def blank_photo(seed: int, *, size: tuple[int, int] | None = None,
                settings: PhotoSettings = PhotoSettings()) -> np.ndarray:
    """A photo-like picture of paper with nothing written on it (ruled or squared as drawn)."""
    rng = np.random.default_rng(seed)
    width, height = size or (int(rng.integers(640, 1280)), int(rng.integers(480, 960)))
    ink = np.zeros((height, width), np.float32)
    return _photograph(ink, PENS["black"], rng, settings, max(12.0, height * rng.uniform(0.08, 0.2)))


def _photograph(ink: np.ndarray, pen, rng, s: PhotoSettings, lines_every: float) -> np.ndarray:
    # the scene is a margin bigger than the picture, so the camera's turn shows no empty corners
    margin = int(np.ceil(np.tan(np.radians(s.rotation)) * max(ink.shape) / 2)) + 2 if s.rotation else 0
    ink = np.pad(ink, margin)
    height, width = ink.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # paper: a tint and fibres (noise smoothed at a fine and, drawn small and enlarged, a coarse scale)
    tint = (np.array([0.86, 0.85, 0.82]) + rng.uniform(-0.03, 0.03, 3)).astype(np.float32)
    fine = ndimage.gaussian_filter(rng.standard_normal((height, width), np.float32), 1.5) * 0.04
    coarse = ndimage.gaussian_filter(rng.standard_normal((height // 8 + 2, width // 8 + 2), np.float32), 1.5)
    coarse = ndimage.zoom(coarse, 8, order=1)[:height, :width] * 0.1
    paper = tint[None, None, :] * (1 + fine + coarse)[..., None]

    # printed lines, under the ink: a line's coverage depends on one coordinate only
    def draw_lines(colour, positions, vertical, thick):
        coord = np.arange(width if vertical else height, dtype=np.float32)
        cover = np.zeros_like(coord)
        for p in positions:
            np.maximum(cover, np.clip(thick / 2 + 0.5 - np.abs(coord - p), 0, 1), out=cover)
        cover = (cover[None, :] if vertical else cover[:, None])[..., None]
        paper[:] = paper * (1 - cover + cover * np.array(colour, np.float32))
    if rng.random() < s.ruled:
        offset = rng.uniform(0, lines_every)
        draw_lines(RULED_BLUE, np.arange(offset, height, lines_every), False, rng.uniform(1, 2.5))
    elif rng.random() < s.squared / max(1e-9, 1 - s.ruled):
        step = lines_every / rng.uniform(2, 4)
        thick = rng.uniform(0.8, 1.6)
        draw_lines(GRID_GREY, np.arange(rng.uniform(0, step), height, step), False, thick)
        draw_lines(GRID_GREY, np.arange(rng.uniform(0, step), width, step), True, thick)
    if rng.random() < s.margin:
        draw_lines(MARGIN_RED, [rng.uniform(0.05, 0.15) * width], True, rng.uniform(1.5, 3))

    # ink multiplies the paper by the pen's colour where it covers
    cover = ink[..., None]
    page = paper * (1 - cover + cover * np.array(pen, np.float32))

    # the page edge and a table beyond it
    if rng.random() < s.table:
        side = int(rng.integers(4))
        depth = rng.uniform(0.03, 0.12)
        tilt = np.tan(np.radians(rng.uniform(-4, 4)))
        u, v, extent = [(xx, yy, width), (width - 1 - xx, yy, width),
                        (yy, xx, height), (height - 1 - yy, xx, height)][side]
        edge = depth * extent + tilt * (v - v.mean())
        beyond = np.clip(edge - u + 0.5, 0, 1)[..., None]
        grain = ndimage.gaussian_filter(rng.standard_normal((height, width), np.float32), 3)
        table = np.array([0.35, 0.27, 0.2], np.float32) * rng.uniform(0.5, 1.2) * (1 + grain[..., None] * 0.5)
        page = page * (1 - beyond) + table * beyond

    # light: gradient in a random direction, vignetting, maybe a soft shadow
    angle = rng.uniform(0, 2 * np.pi)
    along = (xx - width / 2) * np.cos(angle) + (yy - height / 2) * np.sin(angle)
    along = (along - along.min()) / max(1e-6, np.ptp(along))
    far = rng.uniform(*s.light_far)
    light = 1 - (1 - far) * along
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    light *= 1 - rng.uniform(*s.vignette) * r2 / 2
    if rng.random() < s.shadow:
        a = rng.uniform(0, 2 * np.pi)
        cut = rng.uniform(0.55, 0.85)   # share of the page on the lit side
        proj = (xx - width / 2) * np.cos(a) + (yy - height / 2) * np.sin(a)
        threshold = np.quantile(proj[::8, ::8], cut)
        softness = rng.uniform(2, 0.05 * max(width, height))
        inside = 1 / (1 + np.exp(-(proj - threshold) / softness))
        light *= 1 - (1 - rng.uniform(*s.shadow_depth)) * inside
    exposure = rng.uniform(0.95, 1.15) * 255
    image = (page * light[..., None] * exposure).astype(np.float32)

    # camera: turn, defocus, noise, (JPEG when saved)
    if s.rotation:
        turn = rng.uniform(-s.rotation, s.rotation)
        image = np.stack([np.asarray(Image.fromarray(image[..., c], "F").rotate(
            turn, Image.Resampling.BILINEAR)) for c in range(3)], axis=-1)
        image = image[margin:height - margin, margin:width - margin]
    sigma = rng.uniform(*s.blur)
    if sigma > 0:
        image = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    noise = rng.uniform(*s.noise)
    if noise > 0:
        image = image + rng.standard_normal(image.shape, np.float32) * noise
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, seed: int, settings: PhotoSettings = PhotoSettings()) -> bytes:
    """The picture as a JPEG file at a quality drawn from ``settings.jpeg``."""
    quality = int(np.random.default_rng(seed + 7919).integers(settings.jpeg[0], settings.jpeg[1] + 1))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def main(argv=None) -> int:
    """Write one photo-like picture of a number: ``--digits 2026`` takes, for each digit, the next
    MNIST test image of that digit (the first 2, the first 0, the second 2, the first 6)."""
    import argparse
    import gzip
    import os
    from pathlib import Path

    p = argparse.ArgumentParser(description="Write a photo-like JPEG of a number written with MNIST test digits.")
    p.add_argument("--digits", default="2026", help="the number to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the picture's light, paper and camera")
    p.add_argument("--size", default="1200x800", help="WIDTHxHEIGHT")
    p.add_argument("--data-dir", type=Path, help="MNIST folder (default: $SIFIR_DATA_DIR or the cache)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.data_dir is None:
        from sifir.data.mnist import default_data_dir
        args.data_dir = Path(os.environ.get("SIFIR_DATA_DIR") or default_data_dir())
    images = np.frombuffer(gzip.open(args.data_dir / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(args.data_dir / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    images = images.reshape(-1, 28, 28)
    used: dict[int, int] = {}
    indices = []
    for ch in args.digits:
        d = int(ch)
        indices.append(int(np.flatnonzero(labels == d)[used.get(d, 0)]))
        used[d] = used.get(d, 0) + 1
    width, height = map(int, args.size.split("x"))
    picture, _ = photo(images[indices], args.seed, size=(width, height))
    args.out.write_bytes(jpeg_bytes(picture, args.seed))
    print(f"wrote {args.out}: {args.digits} from MNIST test images {', '.join(map(str, indices))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
