#!/usr/bin/env python
"""One worker against every core's worth of workers, for an MLP and a CNN: which networks gain
from sifir.parallel? Epochs on the first N training images, the two settings interleaved,
medians over rounds. One worker runs BLAS on every core (its default); W workers run BLAS on
one thread each. The answer decides ``parallel.default_workers``.

    python benchmarks/workers_ab.py                      # 784-128-10, 784-800-10, LeNet-5; 20,000 images, 3 rounds
    python benchmarks/workers_ab.py --images 5000 --rounds 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from before_after import lenet5
from sifir import nn, optim, parallel
from sifir.data import mnist
from sifir.train import Trainer


def networks():
    return {"784-128-10": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10)),
            "784-800-10": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 800), nn.ReLU(), nn.Linear(800, 10)),
            "LeNet-5": lambda: lenet5(nn)}


def epoch_seconds(build, x, y, workers: int) -> float:
    nn.manual_seed(0)
    model = build()
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(), batch_size=128,
                      seed=0, keep_best=False, workers=workers)
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    data = mnist.load_mnist(args.data_dir, download_missing=False, log=lambda *a: None)
    x = mnist.normalize(data["train_images"][:args.images])
    y = data["train_labels"][:args.images].astype(np.int64)
    cores = parallel.usable_cores()
    print(f"{args.images:,} images, {args.rounds} rounds, {cores} usable cores")
    for name, build in networks().items():
        times = {1: [], cores: []}
        for r in range(args.rounds):
            for w in ([1, cores] if r % 2 == 0 else [cores, 1]):   # interleaved, order rotated
                times[w].append(epoch_seconds(build, x, y, w))
        one, many = statistics.median(times[1]), statistics.median(times[cores])
        print(f"{name}: 1 worker {one:.2f} s, {cores} workers {many:.2f} s, "
              f"{cores} workers / 1 worker {many / one:.2f}; default_workers: {parallel.default_workers(build(), cores)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
