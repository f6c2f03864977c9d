#!/usr/bin/env python
"""Other kernel sizes as a source of different mistakes for the `best` ensemble: read model files
alone and in groups.

The five `best` networks of seeds 0–4 miss mostly the same test images (docs/benchmarks.md,
"Ensembles whose members hold out other blocks"): one recipe makes one kind of mistake. Simple
CNNs that differ in their kernel size alone (3×3, 5×5, 7×7) were reported to make mistakes that
an ensemble cancels (An et al. 2020, arXiv 2008.10400). `sifir train --model best --kernels 5`
trains `best` with every convolution 5×5; this reads groups of such model files together: each
group's probabilities averaged, every network in the same views (29, as `best` keeps it), on the
validation images (to choose on) and the test images.

    sifir train --model best --kernels 5 --seed 1 --data-dir ../shared/mnist --out best-k5-s1.npz
    python benchmarks/kernel_sizes.py read best-s0.npz … --groups 0,1,2,3,4 0,1,2,3,5 --data-dir ../shared/mnist \
        --cache probs/

Training took 27–32 minutes for k = 5 on a 2-core machine (about twice `best`'s 13: its two larger
convolutions do 25/9 of the multiply-adds); reading about 1.7 minutes per network in 29 views, the
first time (`--cache` keeps the probabilities for the next).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sifir import io  # noqa: E402
from sifir import recipe as recipes  # noqa: E402
from sifir.train import predict_logits  # noqa: E402


def read(argv) -> int:
    p = argparse.ArgumentParser(prog="kernel_sizes.py read", description="read model files alone and in groups")
    p.add_argument("models", nargs="+", help="model files (numbered from 0 in the order given)")
    p.add_argument("--groups", nargs="*", default=[], help="groups to read together: comma-separated numbers")
    p.add_argument("--views", type=int, default=29, help="views every network is read in (29: as `best` keeps it)")
    p.add_argument("--data-dir", help="MNIST folder (default: $SIFIR_DATA_DIR or the cache)")
    p.add_argument("--cache", help="keep each network's probabilities in this folder, named by the model file's "
                   "contents and the views, and read them back next time instead of computing them again")
    args = p.parse_args(argv)
    data = recipes.load_data(recipes.Recipe(model="best", data_dir=args.data_dir).resolved(), log=lambda *_: None)
    sets = {"validation": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}
    probs = []
    for i, path in enumerate(args.models):
        probs.append(_probabilities(path, args.views, data, sets, args.cache))
        print(f"{i}: {path}: {_scores(probs[-1], sets)}", flush=True)
    for group in args.groups:
        members = [int(i) for i in group.split(",")]
        mean = {name: sum(probs[i][name] for i in members) / len(members) for name in sets}
        print(f"group {group}: {_scores(mean, sets)}")
    return 0


def _scores(probs: dict, sets: dict) -> str:
    """Errors, accuracy, and the loss (mean −log of the true class's probability) per set. 14 errors
    in 5,000 images rank little, while the loss moves with every image; but with label smoothing it
    measures how sure the networks are as much as what they get wrong (docs/benchmarks.md)."""
    errors = {name: int(np.sum(probs[name].argmax(1) != y)) for name, (_, y) in sets.items()}
    accuracy = {name: f"{1 - e / len(sets[name][1]):.2%}" for name, e in errors.items()}
    loss = {name: round(float(-np.mean(np.log(np.maximum(probs[name][np.arange(len(y)), y], 1e-12)))), 5)
            for name, (_, y) in sets.items()}
    return f"errors {errors}, accuracy {accuracy}, loss {loss}"


def _probabilities(path, views: int, data, sets: dict, cache) -> dict:
    """{set name: the network's probabilities in ``views`` views}, from ``cache`` when it holds them
    for a file of these very bytes (and then saved there)."""
    kept = None
    if cache:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:20]
        kept = Path(cache) / f"{digest}-views{views}.npz"
        if kept.is_file():
            with np.load(kept) as saved:
                if all(name in saved and len(saved[name]) == len(x) for name, (x, _) in sets.items()):
                    return {name: saved[name] for name in sets}
    model = recipes.in_views(io.load_model(path)[0], views, data.facts)
    probs = {name: np.exp(predict_logits(model, x)) for name, (x, _) in sets.items()}
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, **probs)
    return probs


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["read"]:
        print(__doc__.split("\n\n")[-2].strip(), file=sys.stderr)
        return 2
    return read(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
