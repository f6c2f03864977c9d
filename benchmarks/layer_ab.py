#!/usr/bin/env python
"""Two versions of sifir, layer by layer, interleaved: which layers did a change make faster?

The other version is a copy of a ``sifir`` package folder, imported as ``sifir_before`` (as in
before_after.py). Both build the same network from the same seed; every round runs one training
step (or, with --eval, one inference batch) of each version, in alternating order, timing every
layer's forward and backward and the optimizer's step (Adam, lr 1e-3). Printed: each part's
fastest time for both and their ratio.

    mkdir -p /tmp/before && cp -r src/sifir /tmp/before/ && git show REV:src/sifir/nn/conv.py > /tmp/before/sifir/nn/conv.py
    python benchmarks/layer_ab.py /tmp/before/sifir --model cnn --batch 64 --clock cpu
    python benchmarks/layer_ab.py /tmp/before/sifir --model mlp800 --rounds 300

``--clock cpu`` times with the process's CPU time (one BLAS thread): on a machine shared with
other work it leaves out the time this process waited for a core, which wall-clock minima still
catch; memory-bound steps remain disturbed by the others' use of the caches and memory.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from before_after import import_copy, lenet5
from layer_times import MLP_ROWS


def build(pkg, name: str):
    """The network ``name`` (lenet5, mlp128, mlp800 or a preset) from package ``pkg``, seeded."""
    pkg.nn.manual_seed(0)
    if name == "lenet5":
        return lenet5(pkg.nn)
    if name in MLP_ROWS:   # bench.py's MLP rows
        return pkg.models.custom_mlp((MLP_ROWS[name],))
    return pkg.models.PRESETS[name].build()


def time_versions(models: dict, x, y, rounds: int, evaluate: bool, clock) -> dict:
    """{version: {part: [seconds per round]}}; versions alternate which goes first."""
    times = {name: {} for name in models}
    optimizers = {name: pkg.optim.Adam(model.parameters(), lr=1e-3) for name, (model, pkg) in models.items()}
    for r in range(rounds + 2):                  # two untimed rounds first
        for name in (list(models) if r % 2 else list(models)[::-1]):
            model, pkg = models[name]
            layers = list(model)
            model.train(not evaluate)
            h = x
            for i, layer in enumerate(layers):
                t = clock()
                h = layer.forward(h)
                if r >= 2:
                    times[name].setdefault(f"{i:2d} {type(layer).__name__} forward", []).append(clock() - t)
            if evaluate:
                continue
            loss = pkg.nn.CrossEntropyLoss()
            loss(h, y)
            g = loss.backward()
            for p in model.parameters():
                p.grad = None
            stop = next(i for i, layer in enumerate(layers) if layer.parameters())   # as Sequential.backward
            for i in range(len(layers) - 1, stop - 1, -1):
                t = clock()
                g = layers[i].backward(g, need_input_grad=i > stop)
                if r >= 2:
                    times[name].setdefault(f"{i:2d} {type(layers[i]).__name__} backward", []).append(clock() - t)
            t = clock()
            optimizers[name].step()
            if r >= 2:
                times[name].setdefault("optimizer step", []).append(clock() - t)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path, help="folder of the other sifir package (the one holding __init__.py)")
    p.add_argument("--model", default="cnn", help="lenet5, mlp128, mlp800 or a preset")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--eval", action="store_true", help="inference (eval mode, forward only) instead of training")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (needs threadpoolctl)")
    args = p.parse_args(argv)
    if not (args.before / "__init__.py").is_file():
        p.error(f"{args.before} is not a package folder (no __init__.py)")
    if args.batch < 1 or args.rounds < 1:
        p.error("--batch and --rounds must be at least 1")
    from threadpoolctl import threadpool_limits

    import sifir
    import sifir.models
    before = import_copy(args.before, "sifir_before")
    importlib.import_module("sifir_before.models")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    models = {"before": (build(before, args.model), before), "after": (build(sifir, args.model), sifir)}
    if args.eval:   # BatchNorm's running statistics from one training batch, the same in both
        for model, _ in models.values():
            model(x)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with threadpool_limits(limits=args.threads):
        times = time_versions(models, x, y, args.rounds, args.eval, clock)
    print(f"{args.model}, batch {args.batch}, {'inference' if args.eval else 'training'}, {args.rounds} rounds, "
          f"{args.clock} clock, fastest ms (median ms)")
    total = {"before": 0.0, "after": 0.0}
    for part in times["before"]:
        b, a = (min(times[k][part]) * 1e3 for k in ("before", "after"))
        total["before"] += b
        total["after"] += a
        print(f"{part:<26} before {b:8.3f} ({statistics.median(times['before'][part]) * 1e3:8.3f})  "
              f"after {a:8.3f} ({statistics.median(times['after'][part]) * 1e3:8.3f})  after/before {a / b:5.2f}")
    print(f"{'sum of the fastest':<26} before {total['before']:8.3f}  after {total['after']:8.3f}  "
          f"after/before {total['after'] / total['before']:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
