#!/usr/bin/env python
"""Two choices of the MLP training path, timed on this machine (docs/performance.md, "Which side
first, and longer blocks"):

1. x·Wᵀ for a batch x (n × k) and a layer W (h × k), as NumPy writes it and as (W·xᵀ)ᵀ, which
   hands BLAS the result's other side as its rows. ``Linear.forward`` takes the second when the
   batch is narrower than the layer (n < h).
2. One Adam step over a network's parameters with blocks of several sizes (``optim.BLOCK``):
   784-800-10, the presets, and ``big`` (784-4096-4096-10, 20 million parameters, 80 MB an
   array: far more than the caches hold).

    python benchmarks/sides_and_blocks.py                  # one BLAS thread
    python benchmarks/sides_and_blocks.py --threads 2

Every case takes its turn in each round; printed are medians in milliseconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from sifir import models, nn, optim

SHAPES = [(128, 784, 800), (64, 784, 800), (256, 784, 800), (1000, 784, 800), (128, 784, 128),
          (1000, 784, 128), (128, 800, 10), (1000, 800, 10)]
BLOCKS = [1 << 15, 1 << 16, 1 << 17, 1 << 21, 1 << 25]   # 2²⁵: whole arrays, for every network here


def interleaved(cases: dict, rounds: int, calls: int) -> dict:
    """{name: median seconds of a call}, every case taking its turn in each round."""
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            fn()                                    # untimed: caches settle on this case
            for _ in range(calls):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}


def product_sides(rounds: int) -> None:
    rng = np.random.default_rng(0)
    print("x·Wᵀ: result n × h from k inputs      x @ W.T   (W @ x.T).T   ratio")
    for n, k, h in SHAPES:
        x, w = rng.random((n, k), dtype=np.float32), rng.random((h, k), dtype=np.float32)
        calls = max(3, int(2e8 / (n * k * h)))     # about 0.2 GFLOP a round
        t = interleaved({"xw": lambda: x @ w.T, "wx": lambda: (w @ x.T).T}, rounds, calls)
        print(f"  n {n:5d}  k {k:4d}  h {h:4d}           {t['xw'] * 1e3:8.3f}  {t['wx'] * 1e3:10.3f}"
              f"   {t['wx'] / t['xw']:5.2f}")


def network_with_gradients(name: str, seed: int = 0):
    """(the parameters of network ``name``, each with a random gradient; the optimizer class it
    trains with): ``mlp800`` (784-800-10, Adam), ``big`` (784-4096-4096-10, Adam) or a preset."""
    nn.manual_seed(seed)
    if name in ("mlp800", "big"):
        model = models.custom_mlp((800,) if name == "mlp800" else (4096, 4096))
        make = optim.Adam
    else:
        model = models.PRESETS[name].build()
        make = optim.OPTIMIZERS[models.PRESETS[name].optimizer]
    params = model.parameters()
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad = rng.standard_normal(p.data.shape).astype(p.data.dtype)
    return params, make


def adam_blocks(name: str, rounds: int) -> None:
    params, make = network_with_gradients(name)
    size = sum(p.data.size for p in params)
    original = optim.BLOCK
    try:
        steppers = {}
        for block in BLOCKS:
            optim.BLOCK = block                     # the scratch buffers are sized at construction
            opt = make(params, lr=1e-9)             # a tiny step: the weights barely move

            def step(opt=opt, block=block):
                optim.BLOCK = block
                opt.step()
            steppers[block] = step
        t = interleaved(steppers, rounds, 10 if size < 5_000_000 else 1)
    finally:
        optim.BLOCK = original
    print(f"{make.__name__} step, {name} ({size:,} parameters): "
          + "  ".join(f"blocks of {b:,}: {t[b] * 1e3:.3f} ms" for b in BLOCKS))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (needs threadpoolctl)")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--networks", default="mlp800,cnn,best,fast,big",
                   help="for Adam's blocks: mlp800, big or presets")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be at least 1")
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.threads):
        print(f"{args.threads} BLAS thread(s), {args.rounds} rounds")
        product_sides(args.rounds)
        for name in filter(None, args.networks.split(",")):
            adam_blocks(name, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
