#!/usr/bin/env python
"""Other kernel sizes as a source of different mistakes for the `best` ensemble.

The five `best` networks of seeds 0–4 miss mostly the same test images (docs/benchmarks.md,
"Ensembles whose members hold out other blocks"): one recipe makes one kind of mistake. Simple
CNNs that differ in their kernel size alone (3×3, 5×5, 7×7) were reported to make mistakes that
an ensemble cancels (An et al. 2020, arXiv 2008.10400). This trains `best` with every 3×3
convolution made k×k, exactly as `sifir train --model best` trains otherwise, and reads groups of
model files together: each group's probabilities averaged, every network in the same views (29,
as `best` keeps it), on the validation images (to choose on) and the test images.

    python benchmarks/kernel_sizes.py 5 train --model best --seed 0 --quiet --data-dir ../shared/mnist --out best-k5-s0.npz
    python benchmarks/kernel_sizes.py read best-s0.npz … --groups 0,1,2,3,4 0,1,2,3,5 --data-dir ../shared/mnist

The kernel size comes first and must be odd (padding k//2 keeps the shapes); the rest is a
`sifir` command line, run with `best` so changed. Training took 27–29 minutes for k = 5 on a
2-core machine (about twice `best`'s 13: its two larger convolutions do 25/9 of the
multiply-adds); `read` about 1.7 minutes per network in 29 views.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sifir import cli, io, models, nn  # noqa: E402
from sifir import recipe as recipes  # noqa: E402
from sifir.train import predict_logits  # noqa: E402


def preset(k: int) -> models.Preset:
    """The `best` preset's recipe around ``models.best`` with each convolution k×k (built after
    the 3×3 one, so its random draws differ from the preset's)."""
    def build(classes: int = models.CLASSES, width: int = 128) -> nn.Sequential:
        layers = []
        for layer in models.best(classes, width):
            if isinstance(layer, nn.Conv2d):
                layer = nn.Conv2d(layer.in_channels, layer.out_channels, k, padding=k // 2, bias=False)
            layers.append(layer)
        return nn.Sequential(*layers)
    return dataclasses.replace(models.PRESETS["best"], build=build)


def read(argv) -> int:
    p = argparse.ArgumentParser(prog="kernel_sizes.py read", description="read model files alone and in groups")
    p.add_argument("models", nargs="+", help="model files (numbered from 0 in the order given)")
    p.add_argument("--groups", nargs="*", default=[], help="groups to read together: comma-separated numbers")
    p.add_argument("--views", type=int, default=29, help="views every network is read in (29: as `best` keeps it)")
    p.add_argument("--data-dir", help="MNIST folder (default: $SIFIR_DATA_DIR or the cache)")
    args = p.parse_args(argv)
    data = recipes.load_data(recipes.Recipe(model="best", data_dir=args.data_dir).resolved(), log=lambda *_: None)
    sets = {"validation": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}
    probs = []
    for i, path in enumerate(args.models):
        model = recipes.in_views(io.load_model(path)[0], args.views, data.facts)
        probs.append({name: np.exp(predict_logits(model, x)) for name, (x, _) in sets.items()})
        errors = {name: int(np.sum(probs[-1][name].argmax(1) != y)) for name, (_, y) in sets.items()}
        print(f"{i}: {path}: errors {errors}", flush=True)
    for group in args.groups:
        members = [int(i) for i in group.split(",")]
        errors = {name: int(np.sum(sum(probs[i][name] for i in members).argmax(1) != y))
                  for name, (_, y) in sets.items()}
        accuracy = {name: f"{1 - e / len(sets[name][1]):.2%}" for name, e in errors.items()}
        print(f"group {group}: errors {errors}, accuracy {accuracy}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["read"]:
        return read(argv[1:])
    if not argv or not argv[0].isdigit() or int(argv[0]) % 2 == 0:
        print(__doc__.split("\n\n")[-2].strip(), file=sys.stderr)
        return 2
    models.PRESETS["best"] = preset(int(argv[0]))   # forked workers inherit it
    return cli.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
