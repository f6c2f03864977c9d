"""Write the seed corpora of fuzz_preprocess.py and fuzz_model.py (tiny, deterministic files).

    python fuzz/make_corpus.py        # rewrites fuzz/corpus_images/ and fuzz/corpus_models/

A seed is a starting point for mutation: one small valid file per kind of input the reader
handles (each picture format and Pillow mode; each family of layers) reaches its code early,
and the fuzzer mutates from there. Each file stays well under 50 KB so runs stay fast.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sifir import io, nn

HERE = Path(__file__).resolve().parent


def stroke(size: int = 16) -> np.ndarray:
    """A dark '7'-like stroke on white paper, uint8."""
    a = np.full((size, size), 255, np.uint8)
    a[3, 4:12] = 0  # the bar
    for i in range(4, 13):  # the diagonal
        a[i, 12 - (i - 4) // 2] = 0
    return a


def images(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    grey = Image.fromarray(stroke())
    grey.save(folder / "stroke-grey.png")
    Image.new("L", (8, 8), 255).save(folder / "blank.png")
    # palette picture whose background index is transparent (tRNS chunk)
    pal = grey.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal.save(folder / "palette-transparent.png", transparency=int(np.asarray(pal)[0, 0]))
    # strokes on a fully transparent background: the shape lives in alpha
    rgba = Image.new("RGBA", grey.size, (255, 255, 255, 0))
    rgba.putalpha(Image.fromarray(255 - stroke()))
    rgba.save(folder / "alpha-strokes.png")
    Image.fromarray(stroke().astype(np.uint16) * 257).save(folder / "grey-16bit.png")
    grey.convert("CMYK").save(folder / "stroke-cmyk.jpg", quality=50)
    grey.save(folder / "stroke-grey.jpg", quality=50)
    grey.convert("RGB").save(folder / "stroke.gif")
    grey.convert("RGB").save(folder / "stroke.bmp")
    grey.save(folder / "stroke.tiff")
    Image.fromarray(stroke() < 128).save(folder / "stroke-1bit.tiff")  # mode "1"
    Image.fromarray(stroke().astype(np.float32) / 255).save(folder / "stroke-float.tiff")  # mode "F"


def models(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    nn.manual_seed(0)
    io.save_model(folder / "mlp-tiny.npz.seed", nn.Sequential(
        nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.1), nn.Linear(3, 2, bias=False)),
        {"preset": "fuzz"})
    io.save_model(folder / "cnn-tiny.npz.seed", nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8, 2), nn.Softmax()))
    io.save_model(folder / "act-tiny.npz.seed", nn.Sequential(
        nn.Linear(2, 2), nn.BatchNorm1d(2), nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid(),
        nn.AvgPool2d(1), nn.Identity()))
    io.save_model(folder / "ensemble-tiny.npz.seed", nn.Ensemble(
        nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(),
                                                                   nn.Linear(3, 2))), {"ensemble": 2})
    # fuzz_model.py reads an input not starting with "PK" as: byte 0 picks the arrays of one
    # of the model seeds (sorted by name), the rest is the JSON description packed with them.
    # (Named .npz.seed, since the repository ignores *.npz.)
    for index, path in enumerate(sorted(folder.glob("*.npz.seed"))):
        _, meta = io.read_npz(path)
        name = path.name.removesuffix(".npz.seed")
        (folder / f"{name}.json.seed").write_bytes(bytes([index]) + json.dumps(meta).encode())


if __name__ == "__main__":
    images(HERE / "corpus_images")
    models(HERE / "corpus_models")
    for folder in ("corpus_images", "corpus_models"):
        for path in sorted((HERE / folder).iterdir()):
            print(f"{path.relative_to(HERE)}  {path.stat().st_size} bytes")
