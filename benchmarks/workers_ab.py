#!/usr/bin/env python
"""One worker against every core's worth of workers, for MLPs and a CNN: which networks gain
from training on several processes? Epochs on the first N training images, the two settings
interleaved, medians over rounds. One worker runs BLAS on every core (its default); W workers
run BLAS on one thread each, and share each batch (a CNN: sifir.parallel) or each layer's units
(an MLP: sifir.split). The answer decides ``parallel.default_workers``.

With --inference, the same question for reading the 10,000 test images in batches of 1000
(``predict_logits``): one thread whose BLAS uses every core, against one thread per core with
BLAS on one each; the median of 7 calls per round. The answer decides
``parallel.inference_threads``.

    python benchmarks/workers_ab.py                      # 784-128-10, 784-800-10, LeNet-5; 20,000 images, 3 rounds
    python benchmarks/workers_ab.py --images 5000 --rounds 1
    python benchmarks/workers_ab.py --inference --rounds 5
    python benchmarks/workers_ab.py --small --rounds 5   # where splitting an MLP's units starts to pay
    python benchmarks/workers_ab.py --torch --rounds 5 --images 55000

With --torch, bench.py's rows 784-128-10, 784-800-10 and LeNet-5, each trained by one worker,
by every core's worth and by PyTorch on every core, their epochs interleaved in one process as in
bench.py (each framework's thread pools spin between its turns, which the others feel too).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from before_after import lenet5
from sifir import models, nn, optim, parallel
from sifir.data import mnist
from sifir.train import Trainer, predict_logits


def mlp(*hidden: int):
    return lambda: models.custom_mlp(hidden)


def networks(seed: bool = False, small: bool = False):
    """The networks compared; ``seed`` adds the seed preset's (its training stays on one worker:
    the preset says so), ``small`` MLPs around the size where splitting units starts to pay
    (``parallel.SPLIT_WEIGHTS``) and the ``mlp`` preset's network."""
    return {**({"784-10-10 (seed)": models.seed} if seed else {}),
            **({"784-32-10": mlp(32), "784-64-10": mlp(64)} if small else {}),
            "784-128-10": mlp(128), "784-800-10": mlp(800),
            **({"784-800-800-10 (mlp)": models.mlp} if small else {}),
            "LeNet-5": lambda: lenet5(nn)}


def epoch_seconds(build, x, y, workers: int) -> float:
    nn.manual_seed(0)
    model = build()
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss(), batch_size=128,
                      seed=0, keep_best=False, workers=workers)
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1)
    return time.perf_counter() - start


def inference_seconds(model, x, threads: int, calls: int = 7) -> float:
    """Median seconds of predict_logits over x in batches of 1000, ``threads`` threads."""
    predict_logits(model, x, 1000, workers=threads)   # untimed: first touches, thread start-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict_logits(model, x, 1000, workers=threads)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--inference", action="store_true", help="inference on the 10,000 test images instead of training")
    p.add_argument("--small", action="store_true", help="also MLPs of 32 and 64 hidden units and the mlp preset's")
    p.add_argument("--torch", action="store_true", help="one worker, every core and PyTorch, interleaved as in bench.py")
    args = p.parse_args(argv)
    if args.torch:
        return against_torch(args.data_dir, args.images, args.rounds)
    data = mnist.load_mnist(args.data_dir, download_missing=False, log=lambda *a: None)
    cores = parallel.usable_cores()
    if args.inference:
        return inference(mnist.normalize(data["test_images"]), args.rounds, cores)
    x = mnist.normalize(data["train_images"][:args.images])
    y = data["train_labels"][:args.images].astype(np.int64)
    print(f"{args.images:,} images, {args.rounds} rounds, {cores} usable cores")
    for name, build in networks(small=args.small).items():
        times = {1: [], cores: []}
        for r in range(args.rounds):
            for w in ([1, cores] if r % 2 == 0 else [cores, 1]):   # interleaved, order rotated
                times[w].append(epoch_seconds(build, x, y, w))
        one, many = statistics.median(times[1]), statistics.median(times[cores])
        print(f"{name}: 1 worker {one:.2f} s, {cores} workers {many:.2f} s, "
              f"{cores} workers / 1 worker {many / one:.2f}; default_workers: {parallel.default_workers(build(), cores)}")
    return 0


def against_torch(data_dir, images: int, rounds: int) -> int:
    import bench   # PyTorch and bench.py's runners: only for this mode
    cores = parallel.usable_cores()
    train_x, train_y, _, _ = bench.load(data_dir, images)
    print(f"{images:,} images, {rounds} rounds, {cores} usable cores, with PyTorch")
    rows = bench.all_rows()
    for key in ("mlp128", "mlp800", "lenet5"):
        row = rows[key]
        runs = {}
        for name, workers in (("1 worker", 1), (f"{cores} workers", cores)):
            nn.manual_seed(0)
            runs[name] = bench.SifirRun(row, row.build(), train_x, train_y, 0, workers=workers)
        nn.manual_seed(0)
        runs["PyTorch"] = bench.TorchRun(row, bench.to_torch(row.build()), train_x, train_y, 0)
        times = {name: [] for name in runs}
        names = list(runs)
        with bench.cores(cores):
            for run in runs.values():
                run.epoch(min(2000, images))   # untimed warm-up
            for r in range(rounds):
                for name in names[r % 3:] + names[:r % 3]:   # who goes first rotates
                    times[name].append(runs[name].epoch())
        med = {name: statistics.median(t) for name, t in times.items()}
        print(f"{row.title}: " + ", ".join(f"{name} {s:.2f} s" for name, s in med.items())
              + f"; 1 worker / PyTorch {med['1 worker'] / med['PyTorch']:.2f}, "
              f"{cores} workers / PyTorch {med[f'{cores} workers'] / med['PyTorch']:.2f}")
    return 0


def inference(x, rounds: int, cores: int) -> int:
    print(f"inference, {len(x):,} images in batches of 1000, {rounds} rounds, {cores} usable cores")
    for name, build in networks(seed=True).items():
        nn.manual_seed(0)
        model = build()
        times = {1: [], cores: []}
        for r in range(rounds):
            for w in ([1, cores] if r % 2 == 0 else [cores, 1]):
                times[w].append(inference_seconds(model, x, w))
        one, many = statistics.median(times[1]), statistics.median(times[cores])
        print(f"{name}: 1 thread {one * 1e3:.1f} ms, {cores} threads {many * 1e3:.1f} ms, "
              f"{cores} threads / 1 thread {many / one:.2f}; inference_threads: {parallel.inference_threads(model, cores)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
