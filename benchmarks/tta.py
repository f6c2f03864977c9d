#!/usr/bin/env python
"""Test-time augmentation as a lever for accuracy: does averaging a trained network's
probabilities over a few shifted copies of each test image read more digits right?

For each model file: test accuracy on the 10,000 test images as they are, and with the mean
probabilities over the image and its copies shifted by one pixel left, right, up and down (5
views; `--views 9` adds the diagonals). The same models, the same images: a paired comparison.
The median over the models (several seeds of one preset) is the lever's effect.

    python benchmarks/tta.py runs/best-0.npz runs/best-1.npz runs/best-2.npz
    python benchmarks/tta.py sifir-cnn.npz --views 9 --data-dir ../shared/mnist

The model is still chosen on validation only; nothing here looks at the test set to choose.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

from sifir import io, nn
from sifir.data.load import evaluation_data
from sifir.train import predict_logits

SHIFTS = {5: [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]}
SHIFTS[9] = SHIFTS[5] + [(1, 1), (1, -1), (-1, 1), (-1, -1)]


def shifted(x: np.ndarray, dy: int, dx: int, background: float) -> np.ndarray:
    """(N, 1, 28, 28) images moved by whole pixels, the uncovered border filled with background."""
    out = np.full_like(x, background)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def accuracies(model, x, y, views: int, background: float) -> tuple[float, float]:
    probs = [nn.softmax(predict_logits(model, shifted(x, dy, dx, background)).astype(np.float64))
             for dy, dx in SHIFTS[views]]
    plain = float(np.mean(probs[0].argmax(axis=1) == y))
    averaged = float(np.mean(np.mean(probs, axis=0).argmax(axis=1) == y))
    return plain, averaged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model files (e.g. one preset trained with several seeds)")
    p.add_argument("--views", type=int, choices=sorted(SHIFTS), default=5)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    rows = []
    for path in args.models:
        model, info = io.load_model(path)
        facts = io.data_facts(path, model, info)
        x, y = evaluation_data(facts, None, args.data_dir)
        plain, averaged = accuracies(model, x, y, args.views, (0.0 - facts.mean) / facts.std)
        rows.append((plain, averaged))
        print(f"{path}: {plain:.2%} as they are, {averaged:.2%} averaged over {args.views} views "
              f"({averaged - plain:+.2%})", flush=True)
    if len(rows) > 1:
        plain, averaged = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        gains = sorted(r[1] - r[0] for r in rows)
        print(f"median over {len(rows)} models: {plain:.2%} → {averaged:.2%}; "
              f"gain per model {gains[0]:+.2%} … {gains[-1]:+.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
