"""How well sifir reads digits off photo-like pictures, before and after, and how fast.

    python benchmarks/photos.py --models /work/wt/models/sifir-mlp.npz /work/wt/models/sifir-cnn.npz
    python benchmarks/photos.py --models M.npz --baseline 39616a6          # + today's preprocessing then
    python benchmarks/photos.py --models M.npz --timing                     # + a 12 MP photo, end to end

The pictures (benchmarks/photo_like.py says how they are made) are MNIST *test* digits, never
seen in training, written as ink on paper and photographed under uneven light, with shadows,
ruled and squared paper, noise, blur and JPEG; each set has its own seeds, so every run and
every machine sees the same pictures:

- ``single``: one digit per picture (MNIST test images 0, 1, 2, …);
- ``four``: four-digit numbers, digits side by side with varied gaps, some touching
  (MNIST test images from 5,000 on);
- ``clean``: one digit, black on white, evenly lit, no noise (a scan): must stay as it was;
- ``nothing``: no digit at all: blank, ruled and squared paper under the same light, and
  textures; the right answer is "no digit found".

A picture counts as right when the number read is the number written (for ``single``, the one
digit). Every picture is read as `sifir predict` reads it: JPEG bytes -> ``reading.read_picture``.
``--baseline REV`` also reads them with ``preprocess.py`` as it was at git revision REV (one digit
per picture, as it could then), so the before and after are on the very same pictures.

``--timing`` writes a 4032×3024 (12 MP) photo-like JPEG and runs ``sifir predict`` on it as a
new process, ``--repeat`` times; the median wall time is the end-to-end figure (Python start,
imports, model, decode, reading). On a busy machine this is an upper bound.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photo_like  # noqa: E402

from sifir import io  # noqa: E402
from sifir.errors import ImageError  # noqa: E402
from sifir.reading import classify, read_picture  # noqa: E402

SEEDS = {"single": 0, "four": 100_000, "clean": 200_000, "nothing": 300_000, "timing": 400_000}


def mnist_test(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images = np.frombuffer(gzip.open(data_dir / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(data_dir / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return images.reshape(-1, 28, 28), labels


def pictures(kind: str, count: int, images: np.ndarray, labels: np.ndarray):
    """(JPEG bytes, the number written) for each picture of a set."""
    for k in range(count):
        seed = SEEDS[kind] + k
        if kind == "single":
            im, _ = photo_like.photo(images[k:k + 1], seed)
            yield photo_like.jpeg_bytes(im, seed), str(labels[k])
        elif kind == "four":
            at = 5000 + 4 * k
            im, _ = photo_like.photo(images[at:at + 4], seed)
            yield photo_like.jpeg_bytes(im, seed), "".join(map(str, labels[at:at + 4]))
        elif kind == "clean":
            at = 9000 + k
            im, _ = photo_like.photo(images[at:at + 1], seed, settings=photo_like.CLEAN)
            yield photo_like.jpeg_bytes(im, seed, photo_like.CLEAN), str(labels[at])
        elif kind == "nothing":
            yield photo_like.jpeg_bytes(nothing(seed), seed), ""


def nothing(seed: int) -> np.ndarray:
    """A picture with no digit: paper (plain, ruled, squared) under uneven light, or a texture."""
    rng = np.random.default_rng(seed)
    kind = seed % 4
    if kind < 3:
        settings = photo_like.PhotoSettings(ruled=[0.0, 1.0, 0.0][kind], squared=[0.0, 0.0, 1.0][kind])
        return photo_like.blank_photo(seed, settings=settings)
    from scipy import ndimage   # a texture: noise smoothed at a random scale, strong contrast
    h, w = int(rng.integers(480, 960)), int(rng.integers(640, 1280))
    grain = ndimage.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(1, 6))
    grain = (grain - grain.mean()) / grain.std()
    grey = np.clip(128 + 50 * grain, 0, 255)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)


def baseline_reader(rev: str):
    """``preprocess`` from preprocess.py at git revision ``rev``, imported on its own."""
    repo = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{rev}:src/sifir/preprocess.py"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp())
    (folder / "preprocess_then.py").write_text(source)
    spec = importlib.util.spec_from_file_location("preprocess_then", folder / "preprocess_then.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_now(model, data: bytes) -> str:
    try:
        return read_picture(model, data).number
    except ImageError:
        return ""


def read_then(model, data: bytes, then) -> str:
    try:
        return str(int(classify(model, then.preprocess_file(data)[None])[0].argmax()))
    except ImageError:
        return ""


def run_sets(models: dict, sets: dict, images, labels, then) -> dict:
    results = {}
    for kind, count in sets.items():
        if not count:
            continue
        right = {name: 0 for name in models}
        right_then = {name: 0 for name in models}
        started = time.perf_counter()
        for data, truth in pictures(kind, count, images, labels):
            for name, model in models.items():
                right[name] += read_now(model, data) == truth
                if then is not None:
                    right_then[name] += read_then(model, data, then) == truth
        results[kind] = {"pictures": count, "right": right, "right_then": right_then if then else None,
                         "seconds": time.perf_counter() - started}
        line = ", ".join(f"{n} {right[n] / count:.1%}" + (f" (then {right_then[n] / count:.1%})" if then else "")
                         for n in models)
        print(f"{kind:8s} {count:5d} pictures: {line}", flush=True)
    return results


def timing(model_path: Path, repeat: int) -> dict:
    images, labels = mnist_test(DATA_DIR)
    im, _ = photo_like.photo(images[7000:7004], SEEDS["timing"], size=(4032, 3024))
    folder = Path(tempfile.mkdtemp())
    path = folder / "photo-12mp.jpg"
    path.write_bytes(photo_like.jpeg_bytes(im, SEEDS["timing"]))
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "sifir", "predict", str(model_path), str(path)],
                             capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
    inside = []
    model, _ = io.load_model(model_path)
    for _ in range(repeat):
        started = time.perf_counter()
        read_picture(model, path)
        inside.append(time.perf_counter() - started)
    truth = "".join(map(str, labels[7000:7004]))
    print(f"12 MP photo ({path.stat().st_size / 1e6:.1f} MB JPEG), written {truth}: {out.stdout.strip()}")
    print(f"  sifir predict, end to end: median {statistics.median(walls):.2f} s of {repeat} "
          f"(min {min(walls):.2f}); reading alone (decode + find + model): median {statistics.median(inside):.3f} s")
    return {"end_to_end_s": walls, "reading_s": inside, "output": out.stdout.strip(), "written": truth}


def main(argv=None) -> int:
    global DATA_DIR
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", type=Path, required=True, help="model files (sifir train)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST folder (default: $SIFIR_DATA_DIR or the cache)")
    p.add_argument("--single", type=int, default=1000, help="pictures of one digit")
    p.add_argument("--four", type=int, default=300, help="pictures of four-digit numbers")
    p.add_argument("--clean", type=int, default=200, help="clean pictures of one digit")
    p.add_argument("--nothing", type=int, default=100, help="pictures without a digit")
    p.add_argument("--baseline", metavar="REV", help="also read with preprocess.py as of this git revision")
    p.add_argument("--timing", action="store_true", help="time `sifir predict` on a 12 MP photo")
    p.add_argument("--repeat", type=int, default=5, help="timing runs")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)

    from sifir.data.mnist import default_data_dir
    import os
    DATA_DIR = args.data_dir or Path(os.environ.get("SIFIR_DATA_DIR") or default_data_dir())
    images, labels = mnist_test(DATA_DIR)
    models = {}
    for path in args.models:
        model, info = io.load_model(path)
        models[info.get("preset", path.stem)] = model
    then = baseline_reader(args.baseline) if args.baseline else None
    sets = {"single": args.single, "four": args.four, "clean": args.clean, "nothing": args.nothing}
    results = {"sets": run_sets(models, sets, images, labels, then), "baseline": args.baseline}
    if args.timing:
        results["timing"] = timing(args.models[-1], args.repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


DATA_DIR = Path(".")

if __name__ == "__main__":
    sys.exit(main())
