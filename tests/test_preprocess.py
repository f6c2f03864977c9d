"""sifir.preprocess: user pictures -> MNIST-like 28×28, checked against real MNIST digits."""

import gzip
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from PIL import Image

from sifir import preprocess as pp
from sifir.errors import ImageError
from conftest import locate_mnist
from sifir.preprocess import load_image, preprocess, preprocess_array, preprocess_file



# ------------------------------------------------------------------------------------ helpers


def mnist_digits(n: int) -> np.ndarray:
    """The first n MNIST test images, uint8 (n, 28, 28): gzip + skip the 16-byte IDX header."""
    path = locate_mnist() / "t10k-images-idx3-ubyte.gz"   # fails, never skips, without MNIST
    with gzip.open(path) as f:
        raw = f.read(16 + n * 784)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 28, 28)


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """As MNIST: row and column index weighted by intensity."""
    i = np.arange(a.shape[0])
    m = a.sum()
    return float(a.sum(axis=1) @ i / m), float(a.sum(axis=0) @ i / m)


def ink_box(a: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def aligned_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over ±1 px shifts: centring rounds the centre of mass to whole pixels
    (as MNIST did), so a tiny change can tip a digit one pixel over."""
    return max(corr(np.roll(a, (dy, dx), (0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def assert_mnist_like(out: np.ndarray) -> None:
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)
    assert max(ink_box(out)) <= 22  # 20 px plus anti-aliasing fringe


def drawing(digit: np.ndarray, size=(160, 140), side=112, at=(20, 10)) -> Image.Image:
    """An MNIST digit drawn black on white, scaled to `side` px, pasted at `at` on white paper."""
    big = Image.fromarray(255 - digit).resize((side, side), Image.Resampling.BICUBIC)
    paper = Image.new("L", size, 255)
    paper.paste(big, at)
    return paper


def saved(im: Image.Image, path: Path, fmt: str = "PNG", **kw) -> Path:
    im.save(path, fmt, **kw)
    return path


def png_claiming(width: int, height: int, with_pixels: bool) -> bytes:
    """A valid 1-bit PNG of width×height zeros (or just its header): huge claim, tiny file."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data)
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    if with_pixels:
        z = zlib.compressobj(9)
        row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
        body += chunk(b"IDAT", b"".join(z.compress(row) for _ in range(height)) + z.flush())
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return mnist_digits(1)[0]  # a 7


@pytest.fixture(scope="module")
def paper(digit) -> Image.Image:
    return drawing(digit)


@pytest.fixture(scope="module")
def reference(paper) -> np.ndarray:
    return preprocess(np.asarray(paper))


# ------------------------------------------------------------------------- against real MNIST


@pytest.mark.parametrize("index", range(5))
def test_mnist_digit_drawn_into_big_png_and_jpeg_comes_back(tmp_path, index):
    d = mnist_digits(5)[index]
    same_centring = preprocess(d)
    png = saved(drawing(d, (300, 200), 150, (120, 25)).convert("RGB"), tmp_path / "d.png")
    jpg = saved(drawing(d, (300, 200), 84, (30, 90)).convert("RGB"), tmp_path / "d.jpg", "JPEG")
    for path in (png, jpg):
        out = preprocess_file(path)
        assert_mnist_like(out)
        assert aligned_corr(out, same_centring) > 0.9
        assert aligned_corr(out, d / 255.0) > 0.8


def test_mnist_itself_is_nearly_a_fixed_point():
    digits = mnist_digits(200)
    outs = np.stack([preprocess(d) for d in digits])
    for out, d in zip(outs, digits):
        assert_mnist_like(out)
        assert aligned_corr(out, d / 255.0) > 0.95
    # MNIST is already 20 px, centred by mass: most digits come back as they were.
    plain = np.array([corr(o, d) for o, d in zip(outs, digits)])
    assert np.median(plain) > 0.99
    assert np.abs(outs - digits / 255.0).mean() < 0.01


# ------------------------------------------------------------------------- every Pillow mode


def _alpha_ink(paper, rgb):
    ink = 255 - np.asarray(paper)
    return np.dstack([np.full_like(ink, c) for c in rgb] + [ink])


def _p_with_transparency(paper):
    p = paper.convert("RGB").quantize(64)
    return p, {"transparency": int(np.asarray(p)[0, 0])}  # the paper's index is see-through


MODES = {
    # name: (make image from the L drawing, format, save options, exact?)
    "L": (lambda im: im, "PNG", {}, True),
    "RGB": (lambda im: im.convert("RGB"), "PNG", {}, True),
    "RGBA black strokes on transparent": (
        lambda im: Image.fromarray(_alpha_ink(im, (0, 0, 0))), "PNG", {}, True),
    "RGBA white strokes on transparent (web canvas)": (
        lambda im: Image.fromarray(_alpha_ink(im, (255, 255, 255))), "PNG", {}, True),
    "RGBA opaque": (lambda im: im.convert("RGBA"), "PNG", {}, True),
    "LA": (lambda im: Image.fromarray(_alpha_ink(im, (0,))), "PNG", {}, True),
    "P": (lambda im: im.convert("P"), "PNG", {}, True),
    "P with transparency": (lambda im: _p_with_transparency(im)[0], "PNG", None, True),
    "GIF": (lambda im: im.convert("P"), "GIF", {}, True),
    "1": (lambda im: im.point(lambda v: 255 * (v >= 128)).convert("1", dither=0), "PNG", {}, False),
    "I;16": (lambda im: Image.fromarray(np.asarray(im).astype(np.uint16) * 257), "PNG", {}, True),
    "I": (lambda im: Image.fromarray(np.asarray(im).astype(np.int32) * 257), "TIFF", {}, True),
    "F": (lambda im: Image.fromarray(np.asarray(im, np.float32) / 255), "TIFF", {}, True),
    "CMYK TIFF": (lambda im: im.convert("CMYK"), "TIFF", {}, True),
    "CMYK JPEG": (lambda im: im.convert("CMYK"), "JPEG", {"quality": 95}, False),
    "JPEG": (lambda im: im, "JPEG", {"quality": 90}, False),
}


@pytest.mark.parametrize("name", MODES)
def test_every_mode_gives_the_same_digit(tmp_path, paper, reference, name):
    make, fmt, options, exact = MODES[name]
    im = make(paper)
    if options is None:  # P with transparency: the index goes along to the file
        options = _p_with_transparency(paper)[1]
    path = saved(im, tmp_path / f"d.{fmt.lower()}", fmt, **options)
    out = preprocess_file(path)
    assert_mnist_like(out)
    if exact:
        np.testing.assert_allclose(out, reference, atol=0.02)
    else:  # 1-bit and JPEG lose detail
        assert aligned_corr(out, reference) > 0.9


def test_alpha_is_ink_only_when_colour_says_nothing(paper, reference):
    ink = 255 - np.asarray(paper)
    # Coloured picture behind a partly transparent frame: colour decides, alpha doesn't.
    framed = np.dstack([np.asarray(paper)] * 3 + [np.full_like(ink, 255)])
    framed[:5, :, 3] = 0
    assert aligned_corr(preprocess_file(_png(framed)), reference) > 0.95
    # A blank white page with transparent rounded corners: still blank, not a digit.
    page = np.full((60, 80, 4), 255, np.uint8)
    page[:6, :6, 3] = page[:6, -6:, 3] = page[-6:, :6, 3] = page[-6:, -6:, 3] = 0
    with pytest.raises(ImageError, match="no digit found"):
        preprocess_file(_png(page))
    # Transparent everywhere: nothing drawn.
    with pytest.raises(ImageError, match="no digit found"):
        preprocess_file(_png(np.dstack([ink, ink, ink, np.zeros_like(ink)])))


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- MNIST's shape


def test_white_on_black_equals_black_on_white(tmp_path, paper, reference):
    negative = Image.fromarray(255 - np.asarray(paper))
    np.testing.assert_allclose(preprocess_file(saved(negative, tmp_path / "n.png")), reference)
    np.testing.assert_allclose(preprocess(255 - np.asarray(paper)), reference)
    assert_mnist_like(reference)
    assert max(ink_box(reference)) == 20


def test_inputs_in_any_number_format_agree(paper, reference):
    g = np.asarray(paper)
    for a in (g.astype(np.float32), g.astype(np.float64), g / 255.0, g.astype(np.uint16)):
        np.testing.assert_allclose(preprocess_array(a), reference, atol=1e-5)
    assert_mnist_like(preprocess_array(g < 128))  # boolean mask, True = ink


def test_sources_path_bytes_file_object_agree(tmp_path, paper, reference):
    path = saved(paper, tmp_path / "d.png")
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes())):
        np.testing.assert_array_equal(preprocess_file(source), reference)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(preprocess_file(f), reference)
    with pytest.raises(TypeError):
        load_image(42)


def test_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((30, 50), np.uint8)
    upright[:10, :20] = 255  # top-left mark: orientation visible
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored = Image.fromarray(np.rot90(upright))  # the camera's sideways pixels
    path = saved(stored, tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(load_image(path), upright)


def test_animated_image_gives_first_frame(tmp_path):
    first = np.zeros((40, 40), np.uint8)
    first[10:30, 18:22] = 255
    second = np.full((40, 40), 255, np.uint8)
    path = tmp_path / "anim.gif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(second)])
    assert Image.open(path).n_frames == 2
    np.testing.assert_array_equal(load_image(path), first)


# ------------------------------------------------------------------------- nothing to read


@pytest.mark.parametrize(
    "level, word", [(255, "blank"), (0, "blank"), (128, "uniform"), (30, "blank")]
)
def test_flat_pictures_hold_no_digit(tmp_path, level, word):
    path = saved(Image.new("L", (100, 80), level), tmp_path / "flat.png")
    with pytest.raises(ImageError, match=f"no digit found: the picture is {word}"):
        preprocess_file(path)


def test_noisy_blank_photo_holds_no_digit(tmp_path):
    rng = np.random.default_rng(0)
    paper = (240 + rng.normal(0, 4, (120, 160))).clip(0, 255).astype(np.uint8)
    path = saved(Image.fromarray(paper), tmp_path / "paper.jpg", "JPEG")
    with pytest.raises(ImageError, match="no digit found"):
        preprocess_file(path)


def test_all_ink_with_no_contrast(tmp_path):
    """Ink everywhere (a page filled with black marker): nothing stands out."""
    rgb = Image.new("RGB", (64, 64), (20, 20, 30))
    with pytest.raises(ImageError, match="no digit found"):
        preprocess_file(saved(rgb, tmp_path / "ink.png"))


# ------------------------------------------------------------------------ odd shapes and sizes


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1)])
def test_one_pixel_wide_picture(shape):
    a = np.full(shape, 255, np.uint8).ravel()
    a[1000:2000] = 0  # a dark dash along a 1-px-wide strip of paper
    out = preprocess(a.reshape(shape))
    assert_mnist_like(out)
    assert sorted(ink_box(out)) == [1, 20]


@pytest.mark.parametrize("transpose", [False, True])
def test_one_pixel_line_in_big_picture(transpose):
    a = np.full((21, 5000), 255, np.uint8)
    a[10, 100:4900] = 0  # 4800:1 aspect
    a = a.T if transpose else a
    out = preprocess(a)
    assert_mnist_like(out)
    assert ink_box(out) == ((20, 1) if transpose else (1, 20))


def test_tiny_pictures():
    """Decision: no minimum size. 1×1 can hold no contrast, so it is blank; a dot in 3×3 is
    ink and is scaled up like any small digit."""
    with pytest.raises(ImageError, match="no digit found"):
        preprocess(np.zeros((1, 1), np.uint8))
    dot = np.full((3, 3), 255, np.uint8)
    dot[1, 1] = 0
    out = preprocess(dot)
    assert_mnist_like(out)
    assert ink_box(out) == (20, 20)


def test_bad_arrays_are_refused():
    for bad in (np.zeros((2, 2, 3)), np.zeros((0, 5)), np.array(["a"]).reshape(1, 1)):
        with pytest.raises(ImageError):
            preprocess(bad)
    with pytest.raises(ImageError, match="NaN"):
        preprocess(np.array([[0.0, np.nan]]))
    with pytest.raises(ImageError, match="0..255"):
        preprocess(np.array([[0.0, 1e30]], np.float32))


# ------------------------------------------------------------------------- files gone wrong


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("shopping list: eggs, milk\n")
    with pytest.raises(ImageError, match=r"cannot read image '.*notes\.png': not a picture"):
        load_image(path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.png"):
        load_image(empty)
    with pytest.raises(ImageError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_truncated_png(tmp_path, paper):
    whole = saved(paper, tmp_path / "whole.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageError, match=r"cannot read image '.*cut\.png': .*truncated"):
        load_image(cut)


@pytest.mark.parametrize(
    "width, height, with_pixels",
    [
        (100_000, 100_000, False),  # header only: Pillow's own bomb check refuses at open
        (30_000, 30_000, True),  # a real 900-megapixel 1-bit PNG of ~100 KB
        (7_000, 7_000, True),  # 49 MP: under Pillow's limit, over ours
    ],
)
def test_decompression_bomb_is_refused_cheaply(tmp_path, width, height, with_pixels):
    resource = pytest.importorskip("resource")  # Unix: peak memory of this process
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(width, height, with_pixels))
    assert path.stat().st_size < 200_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageError, match=r"bomb\.png.*(megapixel|decompression bomb)"):
        load_image(path)
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grew < 100_000  # decoding would take ≥ 49 MB, at 30000² ~900 MB


def test_file_over_size_limit(tmp_path, paper, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:
        paper.save(f, "PNG")
        f.truncate(pp.MAX_FILE_BYTES + 1)  # a valid picture padded past the limit
    with pytest.raises(ImageError, match=r"huge\.png.*over the 20 MB limit"):
        load_image(path)
    monkeypatch.setattr(pp, "MAX_FILE_BYTES", 100)
    data = path.read_bytes()[:1000]
    with pytest.raises(ImageError, match="<bytes>.*limit"):
        load_image(data)
    with pytest.raises(ImageError, match="<file object>.*limit"):
        load_image(io.BytesIO(data))


# ------------------------------------------------------------------------------ properties


def test_import_needs_only_numpy():
    code = "import sys, sifir.preprocess; assert 'PIL' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _grey_arrays():
    shapes = array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=64)
    as_uint8 = arrays(np.uint8, shapes, elements=st.integers(0, 255))
    as_float = arrays(
        st.sampled_from([np.float32, np.float64]),
        shapes,
        elements=st.floats(-300, 300, allow_nan=False, width=32),
    )
    return as_uint8 | as_float


@settings(max_examples=300, deadline=None)
@given(_grey_arrays())
def test_any_small_array_gives_mnist_input_or_image_error(a):
    try:
        out = preprocess(a)
    except ImageError:
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
