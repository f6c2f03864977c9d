#!/usr/bin/env python
"""Where a training step's time goes: forward and backward of each layer, the loss and the
optimizer step, timed one by one on real MNIST batches.

    python benchmarks/layer_times.py --model lenet5 --threads 1

Each of --rounds steps trains on a random batch of the first 55,000 training images; the
table shows each part's fastest and median time in milliseconds (the fastest is the least
disturbed by other programs; compare versions with the same command, e.g. with
PYTHONPATH pointing at another copy of the package).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import sifir
from sifir import models, nn, optim
from sifir.data import mnist

from before_after import lenet5 as lenet5_layers  # the benchmarks' LeNet-5, built from a given nn


def lenet5() -> nn.Sequential:
    return lenet5_layers(nn)


# bench.py's MLP rows: 784 → hidden → 10 with a ReLU between
MLP_ROWS = {"mlp128": 128, "mlp800": 800}
NAMES = ("lenet5", *MLP_ROWS)


def build(name: str) -> nn.Sequential:
    if name == "lenet5":
        return lenet5()
    if name in MLP_ROWS:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, MLP_ROWS[name]), nn.ReLU(), nn.Linear(MLP_ROWS[name], 10))
    return models.PRESETS[name].build()


def time_layers(model: nn.Sequential, x, y, batch: int, rounds: int, lr: float, seed: int = 0):
    """{part: [seconds per round]} for every layer's forward and backward, the loss, the step.
    Backward stops at the first layer that learns, which skips its input gradient, as
    ``Sequential.backward`` does in training (nothing before it has a backward to time)."""
    rng = np.random.default_rng(seed)
    layers = list(model)
    first = model._first_learnable()               # where training's backward stops
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=lr)
    names = [f"{i:2d} {type(layer).__name__}" for i, layer in enumerate(layers)]
    times = {k: [] for k in [f"{n} forward" for n in names] + [f"{n} backward" for n in names[first:]]
             + ["loss forward + backward", "optimizer step"]}
    model.train()
    for r in range(rounds + 2):                     # two untimed rounds first
        idx = rng.integers(0, len(x), batch)
        h, yb, record = x[idx], y[idx], r >= 2
        for name, layer in zip(names, layers):
            t = time.perf_counter()
            h = layer.forward(h)
            if record:
                times[f"{name} forward"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss_fn.forward(h, yb)
        g = loss_fn.backward()
        if record:
            times["loss forward + backward"].append(time.perf_counter() - t)
        for p in model.parameters():
            p.grad = None
        for i in range(len(layers) - 1, first - 1, -1):
            t = time.perf_counter()
            g = layers[i].backward(g, need_input_grad=i > first)
            if record:
                times[f"{names[i]} backward"].append(time.perf_counter() - t)
        t = time.perf_counter()
        opt.step()
        if record:
            times["optimizer step"].append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lenet5",
                   help=f"{', '.join(NAMES)} (bench.py's rows) or a preset: {', '.join(models.PRESETS)}")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=50, help="timed training steps")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (needs threadpoolctl)")
    p.add_argument("--data-dir", default=None, help="folder with the four MNIST files")
    args = p.parse_args(argv)
    if args.model not in NAMES and args.model not in models.PRESETS:
        p.error(f"unknown model {args.model!r}")
    if args.batch < 1 or args.rounds < 1:
        p.error("--batch and --rounds must be at least 1")
    from threadpoolctl import threadpool_limits

    data = mnist.load_mnist(args.data_dir, log=lambda *a: print(*a, file=sys.stderr))
    x = mnist.normalize(data["train_images"][:55_000])
    y = data["train_labels"][:55_000].astype(np.int64)
    nn.manual_seed(0)
    model = build(args.model)
    with threadpool_limits(limits=args.threads):
        times = time_layers(model, x, y, args.batch, args.rounds, lr=1e-3)
    total_min = sum(min(v) for v in times.values())
    print(f"sifir {sifir.__version__} from {sifir.__file__}")
    print(f"{args.model}, batch {args.batch}, {args.rounds} steps, {args.threads} BLAS thread(s)")
    print(f"{'part':<32} {'fastest ms':>10} {'median ms':>10} {'share':>6}")
    for name, v in times.items():
        print(f"{name:<32} {min(v) * 1e3:10.2f} {statistics.median(v) * 1e3:10.2f} {min(v) / total_min:6.1%}")
    total_median = statistics.median(sum(parts) for parts in zip(*times.values()))
    print(f"{'whole step (sum of parts)':<32} {total_min * 1e3:10.2f} {total_median * 1e3:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
