#!/usr/bin/env python
"""Test-time views as a lever for accuracy: does a trained network read more digits right when
it averages its probabilities over the image and its copies moved by one pixel (``nn.Views``)?

For each model file, the network inside (taken out of any views it is kept in) is read on the
validation images it was chosen on (the last 5,000 training images, as its recipe held them out)
and on the 10,000 test images: as they are, and in 5 and 9 views (the image, its four one-pixel
moves, and the diagonals), or 10 and 18 (the same with each mirror image, for pictures learned
mirrored, such as clothes). The same networks, the same images: a paired comparison. The median
over the models (several seeds of one preset) is the lever's effect; the validation columns are
the ones a choice may look at, the test columns only report.

    python benchmarks/views.py runs/best-s0.npz runs/best-s1.npz runs/best-s2.npz
    python benchmarks/views.py sifir-cnn.npz --views 5 --data-dir ../shared/mnist
    python benchmarks/views.py fashion-cnn.npz --views 5 9 10 18 --data-dir /usr/share/datasets/fashion-mnist
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sifir import io, nn  # noqa: E402
from sifir.recipe import VIEWS, Recipe, in_views, load_data  # noqa: E402
from sifir.train import evaluate  # noqa: E402


def data_of(info: dict, data_dir: str | None):
    """The data a model file's recipe trained on (``info`` from ``io.load_model``): its validation
    images held out as then, and its test images."""
    options = info.get("recipe") if isinstance(info.get("recipe"), dict) else {}
    recipe = Recipe(model=options.get("model", "mlp"), dataset=options.get("dataset", "mnist"),
                    validation=options.get("validation", 5000), data_dir=data_dir or options.get("data_dir"))
    return load_data(recipe.resolved(), log=lambda *a: None)


def split_accuracies(model: nn.Module, info: dict, views: list[int], data_dir: str | None) -> dict:
    """{(split, views): accuracy} for the network in ``model`` on its recipe's validation and test images."""
    data = data_of(info, data_dir)
    out = {}
    for v in [1, *views]:
        kept = in_views(model, v, data.facts)
        out["validation", v] = evaluate(kept, data.val_x, data.val_y)[1]
        out["test", v] = evaluate(kept, data.test_x, data.test_y)[1]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model files (e.g. one preset trained with several seeds)")
    p.add_argument("--views", type=int, nargs="+", choices=[v for v in VIEWS if v > 1], default=[5, 9])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    rows = []
    for path in args.models:
        model, info = io.load_model(path)
        acc = split_accuracies(model, info, args.views, args.data_dir)
        rows.append(acc)
        cells = "  ".join(f"{split} {acc[split, 1]:.2%}" + "".join(
            f", {v} views {acc[split, v]:.2%} ({acc[split, v] - acc[split, 1]:+.2%})" for v in args.views)
            for split in ("validation", "test"))
        print(f"{path}: {cells}", flush=True)
    if len(rows) > 1:
        print(f"median over {len(rows)} models:")
        for split in ("validation", "test"):
            plain = statistics.median(r[split, 1] for r in rows)
            parts = []
            for v in args.views:
                gains = sorted(r[split, v] - r[split, 1] for r in rows)
                parts.append(f"{v} views {statistics.median(r[split, v] for r in rows):.2%} "
                             f"(gain per model {gains[0]:+.2%} … {gains[-1]:+.2%})")
            print(f"  {split}: one view {plain:.2%}; " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
