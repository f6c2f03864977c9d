#!/usr/bin/env python
"""Two versions of sifir on the same rows, epochs interleaved: did a change make it faster?

The other version is a copy of a ``sifir`` package folder (for example this repository's
files as of an earlier commit). It is imported under the name ``sifir_before``; its training
core (nn, optim, train) must use relative imports, as sifir's does.

    mkdir -p /tmp/before && cp -r src/sifir /tmp/before/
    git show REV:src/sifir/optim.py > /tmp/before/sifir/optim.py      # … the files to compare
    python benchmarks/before_after.py /tmp/before/sifir --threads 1 --epochs 4
    python benchmarks/before_after.py /tmp/before/sifir --rows lenet5 --workers 2 --epochs 3

Prints seconds per epoch (median) for both, their ratio, and the last epoch's training loss.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MLP_ROWS = {  # (hidden sizes, optimizer, learning rate, batch size, final ReLU)
    "seed": ((10,), "sgd", 0.1, 64, True),
    "mlp128": ((128,), "adam", 1e-3, 128, False),
    "mlp800": ((800,), "adam", 1e-3, 128, False),
}


def lenet5(nn):
    """LeNet-5 as usually written today: ReLU and max-pooling instead of tanh and subsampling
    (the LeNet-5 row of bench.py and layer_times.py), built from the given ``nn`` module."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def cnn(nn):
    """The cnn preset's layers (sifir.models.cnn), written out so that both versions build them."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


CNN_ROWS = {"lenet5": lenet5, "cnn": cnn}  # Adam lr 1e-3, batch 128
ROWS = [*MLP_ROWS, *CNN_ROWS]


def make_trainer(pkg, row: str, seed: int, workers: int = 1):
    nn, optim, train = pkg.nn, pkg.optim, pkg.train
    nn.manual_seed(seed)
    if row in CNN_ROWS:
        model = CNN_ROWS[row](nn)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        return train.Trainer(model, opt, batch_size=128, seed=seed, keep_best=False, workers=workers)
    hidden, opt_name, lr, batch, final_relu = MLP_ROWS[row]
    layers, width = [nn.Flatten()], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, 10))
    if final_relu:  # the seed network ends in ReLU, as the tutorial's does
        layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    opt = {"sgd": optim.SGD, "adam": optim.Adam}[opt_name](model.parameters(), lr=lr)
    return train.Trainer(model, opt, batch_size=batch, seed=seed, keep_best=False, workers=workers)


def import_copy(folder: Path, name: str):
    """Import the package in ``folder`` under another name (from a temporary copy)."""
    tmp = Path(tempfile.mkdtemp(prefix="sifir-before-"))
    shutil.copytree(folder, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp))
    pkg = importlib.import_module(name)
    for sub in ("nn", "optim", "train"):
        importlib.import_module(f"{name}.{sub}")
    return pkg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path, help="folder of the other sifir package (the one holding __init__.py)")
    p.add_argument("--rows", default="seed,mlp128,mlp800", help=f"comma-separated, from {', '.join(ROWS)}")
    p.add_argument("--epochs", type=int, default=4, help="timed epochs per version, after one untimed epoch")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (needs threadpoolctl)")
    p.add_argument("--workers", type=int, default=1, help="training processes (both versions alike)")
    p.add_argument("--images", type=int, default=55_000, help="train on the first N images (at most 55,000)")
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST files")
    args = p.parse_args(argv)
    unknown = [r for r in args.rows.split(",") if r not in ROWS]
    if unknown:
        p.error(f"unknown row(s) {', '.join(unknown)}")
    if not 0 < args.images <= 55_000:
        p.error("--images must be between 1 and 55000")
    if not (args.before / "__init__.py").is_file():
        p.error(f"{args.before} is not a package folder (no __init__.py)")

    from threadpoolctl import threadpool_limits

    import sifir
    import sifir.train
    from sifir.data import mnist

    before = import_copy(args.before, "sifir_before")
    data = mnist.load_mnist(args.data_dir, log=lambda *a: print(*a, file=sys.stderr))
    x = mnist.normalize(data["train_images"][:args.images])
    y = data["train_labels"][:args.images].astype(np.int64)
    with threadpool_limits(limits=args.threads):
        for row in args.rows.split(","):
            trainers = {"before": make_trainer(before, row, 0, args.workers),
                        "after": make_trainer(sifir, row, 0, args.workers)}
            times = {k: [] for k in trainers}
            for e in range(args.epochs + 1):  # epoch 0 is untimed
                for name in (list(trainers) if e % 2 else list(trainers)[::-1]):
                    t = time.perf_counter()
                    trainers[name].fit(x, y, epochs=e + 1)
                    if e:
                        times[name].append(time.perf_counter() - t)
            b, a = (statistics.median(times[k]) for k in ("before", "after"))
            losses = {k: trainers[k].history[-1].train_loss for k in trainers}
            print(f"{row:<7} threads {args.threads}, workers {args.workers}: before {b:.2f} s/epoch, after {a:.2f} s/epoch, "
                  f"after/before {a / b:.2f}  (epochs before {[round(t, 2) for t in times['before']]}, "
                  f"after {[round(t, 2) for t in times['after']]}; last loss {losses['before']:.4f} / "
                  f"{losses['after']:.4f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
