#!/usr/bin/env python
"""Turned views as a lever for accuracy: do a trained network's 9 views (the image and its
one-pixel moves) read more digits right with copies turned by a few degrees, or made a little
smaller and larger, beside them?

Each distinct view of the validation images (the last 5,000 training images, held out by the
recipe) and of the 10,000 test images is read once per model; every candidate set of views then
averages the probabilities of its members. Same networks, same images: a paired comparison. A set
is chosen on the validation images alone (the highest mean over the models; a tie keeps the set
of fewer views), the test columns only report. With several models, the same sets are also read
by all the models together (an ensemble: their probabilities averaged).

    python benchmarks/turned_views.py runs/best-s0.npz runs/best-s1.npz runs/best-s2.npz runs/best-s3.npz runs/best-s4.npz
    python benchmarks/turned_views.py sifir-best.npz --data-dir ../shared/mnist

About 12 minutes for five `best` networks on a 2-core machine (37 views of 15,000 images each).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sifir import io, nn  # noqa: E402
from sifir.data.datasets import IMAGE_SHAPE  # noqa: E402
from sifir.nn.views import SCALES, TURN, VIEW_SETS, View  # noqa: E402
from sifir.train import predict_logits  # noqa: E402
from views import data_of  # noqa: E402  (benchmarks/ is the script's folder)

MOVES9 = VIEW_SETS[9]
CANDIDATES = {
    "9 moves": MOVES9,
    "9 + image turned ±6°": MOVES9 + (View(0, 0, False, -TURN), View(0, 0, False, TURN)),
    "9 + image turned ±3°, ±6°": MOVES9 + tuple(View(0, 0, False, a) for a in (-3.0, 3.0, -TURN, TURN)),
    "9 + image scaled": MOVES9 + tuple(View(0, 0, False, 0.0, s) for s in SCALES),
    "9 + image turned ±6° and scaled": MOVES9 + (View(0, 0, False, -TURN), View(0, 0, False, TURN))
    + tuple(View(0, 0, False, 0.0, s) for s in SCALES),
    "27: 9, each turned ±6° too": VIEW_SETS[27],
    "29: 27 + image scaled": VIEW_SETS[29],
}


def view_probabilities(model: nn.Module, info: dict, data_dir: str | None) -> tuple[dict, dict]:
    """({(split, view): probabilities}, {split: labels}) for every view any candidate uses."""
    data = data_of(info, data_dir)
    net = model.net if isinstance(model, nn.Views) else model
    reader = nn.Views(net, 1, fill=(0.0 - data.facts.mean) / data.facts.std, image=IMAGE_SHAPE)
    views = sorted({v for candidate in CANDIDATES.values() for v in candidate})
    probs = {}
    for split, x in (("validation", data.val_x), ("test", data.test_x)):
        for view in views:
            probs[split, view] = nn.softmax(predict_logits(net, reader.shown(x, view)))
    return probs, {"validation": data.val_y, "test": data.test_y}


def accuracy(probs: dict, labels, split: str, views) -> float:
    mean = sum(probs[split, v] for v in views) / len(views)
    return float(np.mean(mean.argmax(axis=1) == labels[split]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model files (e.g. one preset trained with several seeds)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    rows, every = [], []
    for path in args.models:
        model, info = io.load_model(path)
        probs, labels = view_probabilities(model, info, args.data_dir)
        every.append(probs)
        acc = {(split, name): accuracy(probs, labels, split, views)
               for name, views in CANDIDATES.items() for split in ("validation", "test")}
        rows.append(acc)
        print(f"{path}:", flush=True)
        for name, views in CANDIDATES.items():
            print(f"  {name} ({len(views)} views): validation {acc['validation', name]:.2%}, test {acc['test', name]:.2%}")
    print(f"over {len(rows)} models (validation mean, then test median [min-max] and per model):")
    for name, views in CANDIDATES.items():
        tests = [r["test", name] for r in rows]
        print(f"  {name} ({len(views)}): validation {statistics.mean(r['validation', name] for r in rows):.3%}; "
              f"test {statistics.median(tests):.2%} [{min(tests):.2%}-{max(tests):.2%}] "
              f"({', '.join(f'{a:.2%}' for a in tests)})")
    chosen = max(CANDIDATES, key=lambda name: (statistics.mean(r["validation", name] for r in rows), -len(CANDIDATES[name])))
    print(f"chosen on the validation images: {chosen}")
    if len(every) > 1:
        together = {key: sum(probs[key] for probs in every) / len(every) for key in every[0]}
        print(f"the {len(every)} models as one (probabilities averaged):")
        for name, views in CANDIDATES.items():
            print(f"  {name}: validation {accuracy(together, labels, 'validation', views):.2%}, "
                  f"test {accuracy(together, labels, 'test', views):.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
