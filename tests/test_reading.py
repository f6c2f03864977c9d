"""sifir.reading: the road `sifir predict` and the page take, on photo-like pictures of real MNIST
test digits (benchmarks/photo_like.py makes them: uneven light, shadows, paper lines, JPEG)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from sifir import cli, io
from sifir.errors import ImageError
from sifir.reading import describe, number_text, read_grey, read_picture
from test_preprocess import mnist_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import photo_like  # noqa: E402


@pytest.fixture(scope="module")
def model(trained_seed_model):
    return io.load_model(trained_seed_model)[0]


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    import gzip
    labels = np.frombuffer(gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return mnist_digits(400), labels[:400]


def test_photo_like_single_digits(model, test_digits):
    """The seed network (~93% on MNIST) reads most photo-like digits; with one level for the
    whole page (preprocessing before photos) it read 5 of 30."""
    images, labels = test_digits
    right = 0
    for k in range(30):
        picture, _ = photo_like.photo(images[k:k + 1], seed=k, size=(640, 480))
        reading = read_picture(model, photo_like.jpeg_bytes(picture, k))
        right += reading.number == str(labels[k])
    assert right >= 24


def test_photo_like_numbers(model, test_digits):
    images, labels = test_digits
    counted = read = 0
    for k in range(8):
        at = 100 + 4 * k
        picture, boxes = photo_like.photo(images[at:at + 4], seed=1000 + k, size=(800, 480))
        reading = read_picture(model, photo_like.jpeg_bytes(picture, k))
        counted += len(reading.digits) == 4
        if len(reading.digits) == 4:
            read += sum(d.digit == label for d, label in zip(reading.digits, labels[at:at + 4]))
            for d, (left, top, width, height) in zip(reading.digits, boxes):   # each where it was written
                x = d.box[0] + d.box[2] / 2
                assert left - 0.2 * width <= x <= left + 1.2 * width
    assert counted >= 7 and read >= 0.8 * 4 * counted
    assert reading.size == (800, 480)


def test_a_blank_photo_is_no_digit(model):
    for seed in range(3):
        with pytest.raises(ImageError, match="no digit found"):
            read_picture(model, photo_like.jpeg_bytes(photo_like.blank_photo(seed, size=(640, 480)), seed))


def test_boxes_are_in_the_pictures_pixels(model, test_digits):
    """A 12-megapixel JPEG is decoded at a quarter of its size; the boxes still fit the picture."""
    images, _ = test_digits
    level = photo_like.PhotoSettings(rotation=0.0)   # the boxes the generator gives are before a turn
    picture, boxes = photo_like.photo(images[:3], seed=5, size=(4032, 3024), settings=level)
    reading = read_picture(model, photo_like.jpeg_bytes(picture, 5))
    assert reading.size == (4032, 3024) and len(reading.digits) == 3
    for d, (left, top, width, height) in zip(reading.digits, boxes):   # each where it was written
        assert left <= d.box[0] + d.box[2] / 2 <= left + width and abs(d.box[1] - top) < 0.1 * height


def test_what_predict_prints(model, tmp_path, capsys, trained_seed_model, test_digits):
    one = read_grey(model, 255 - np.kron(test_digits[0][0], np.ones((4, 4), np.uint8)))
    line = describe("seven.png", one)
    assert line.startswith(f"seven.png: {one.digits[0].digit} (") and ", runner-up " in line
    images, _ = test_digits
    paper = np.full((200, 500), 255, np.uint8)
    for k in range(3):
        paper[40:152, 40 + 150 * k:152 + 150 * k] = 255 - np.kron(images[k], np.ones((4, 4), np.uint8))
    three = read_grey(model, paper)
    expected = f"row.png: {three.number} (" + ", ".join(
        f"{d.digit} {round(100 * d.confidence)}%" for d in three.digits) + ")"
    assert describe("row.png", three) == expected and len(three.number) == 3
    from PIL import Image
    Image.fromarray(paper).save(tmp_path / "row.png")
    assert cli.main(["predict", str(trained_seed_model), str(tmp_path / "row.png")]) == 0
    assert capsys.readouterr().out.strip() == expected.replace("row.png", str(tmp_path / "row.png"))


def test_number_text():
    assert number_text([2, 0, 2, 6], [0, 0, 0, 0]) == "2026"
    assert number_text([0, 2, 1, 2, 5], [0, 0, 0, 1, 1]) == "021 25"
    assert number_text([], []) == ""
