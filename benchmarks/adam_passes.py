#!/usr/bin/env python
"""Adam's update pass by pass: what each NumPy call of ``optim.Adam._update`` costs over one
network's parameters, beside the whole step (docs/performance.md, "784-800-10 at one core: how
far from the line").

Each pass is a whole sweep over the parameters, block by block as the optimizer goes
(``optim.BLOCK`` numbers at a time), from the same state every time (restored, untimed, before
each call). ``passes`` writes the calls as ``_update`` does, one line each, and the tests hold
the two to the same numbers, bit for bit.

    python benchmarks/adam_passes.py                     # 784-800-10, Adam, one BLAS thread
    python benchmarks/adam_passes.py --network cnn       # a preset, with its optimizer (AdamW)

Printed are medians in milliseconds per step and each pass's share of their sum.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import numpy as np

from sifir import models, optim
from sides_and_blocks import network_with_gradients


def build(network: str, seed: int = 0):
    """(parameters with random gradients, an Adam or AdamW over them that has taken a step)."""
    params, make = network_with_gradients(network, seed)
    if not issubclass(make, optim.Adam):
        raise SystemExit(f"{network} trains with {make.__name__}, not Adam")
    opt = make(params)
    opt.step()                                  # moments that are not all zeros
    return params, opt


def passes(opt: optim.Adam) -> list[tuple[str, Callable]]:
    """The calls of ``Adam._update`` for its next step, in order, each as fn(w, g, m, v, tmp)
    on one block (no L2 weight decay: sifir's Adam rows and presets have none)."""
    if opt.weight_decay and not opt.decoupled:
        raise ValueError("Adam with L2 weight decay adds a pass that is not written here")
    dt = opt.params[0].data.dtype.type
    step_size, eps = opt._step_constants(opt.step_count + 1)
    b1, b2, step, eps = dt(opt.beta1), dt(opt.beta2), dt(step_size), dt(eps)
    out = []
    if opt.decoupled and opt.weight_decay:
        decay = dt(1 - opt.lr * opt.weight_decay)
        out.append(("w ← w·(1 − lr·λ)", lambda w, g, m, v, tmp: np.multiply(w, decay, out=w)))
    return out + [
        ("M ← β1·M", lambda w, g, m, v, tmp: np.multiply(m, b1, out=m)),
        ("M ← M + g", lambda w, g, m, v, tmp: np.add(m, g, out=m)),
        ("tmp ← g²", lambda w, g, m, v, tmp: np.multiply(g, g, out=tmp)),
        ("V ← β2·V", lambda w, g, m, v, tmp: np.multiply(v, b2, out=v)),
        ("V ← V + tmp", lambda w, g, m, v, tmp: np.add(v, tmp, out=v)),
        ("tmp ← √V", lambda w, g, m, v, tmp: np.sqrt(v, out=tmp)),
        ("tmp ← tmp + ε'", lambda w, g, m, v, tmp: np.add(tmp, eps, out=tmp)),
        ("tmp ← M / tmp", lambda w, g, m, v, tmp: np.divide(m, tmp, out=tmp)),
        ("tmp ← s·tmp", lambda w, g, m, v, tmp: np.multiply(tmp, step, out=tmp)),
        ("w ← w − tmp", lambda w, g, m, v, tmp: np.subtract(w, tmp, out=w)),
    ]


def sweep(opt: optim.Adam, fns) -> None:
    """fns, one after another on every block of every parameter, as ``Adam._update`` walks them."""
    for i, p in enumerate(opt.params):
        for block in optim._blocks(p.data, p.grad, opt.exp_sum[i], opt.exp_sum_sq[i], opt._scratch[i]):
            for fn in fns:
                fn(*block)


def step_by_passes(opt: optim.Adam) -> None:
    """One whole step of ``opt`` made of ``passes`` (what the tests compare with ``opt.step``)."""
    fns = [fn for _, fn in passes(opt)]
    opt.step_count += 1
    sweep(opt, fns)


def timed_passes(params, opt, rounds: int) -> tuple[dict, float]:
    """({pass: median seconds of one sweep}, median seconds of ``opt.step()``), interleaved."""
    state = [a for i, p in enumerate(params) for a in (p.data, opt.exp_sum[i], opt.exp_sum_sq[i])]
    saved = [a.copy() for a in state]

    def restore():
        for a, s in zip(state, saved):
            np.copyto(a, s)

    named = passes(opt)
    times = {name: [] for name, _ in named}
    whole = []
    for _ in range(rounds):
        for name, fn in named:
            restore()
            t = time.perf_counter()
            sweep(opt, [fn])
            times[name].append(time.perf_counter() - t)
        restore()
        count = opt.step_count
        t = time.perf_counter()
        opt.step()
        whole.append(time.perf_counter() - t)
        opt.step_count = count                  # the same constants next round
    restore()
    return {name: statistics.median(v) for name, v in times.items()}, statistics.median(whole)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", default="mlp800", choices=["mlp800", *models.PRESETS],
                   help="mlp800 or a preset trained with Adam or AdamW")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (needs threadpoolctl)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be at least 1")
    params, opt = build(args.network)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.threads):
        each, whole = timed_passes(params, opt, args.rounds)
    total = sum(each.values())
    size = sum(q.data.size for q in params)
    print(f"{type(opt).__name__}, {args.network} ({size:,} parameters), blocks of {optim.BLOCK:,}, "
          f"{args.rounds} rounds, ms per step")
    for name, t in each.items():
        print(f"  {name:<18} {t * 1e3:7.3f}  {t / total:6.1%}")
    print(f"  {'sum of the passes':<18} {total * 1e3:7.3f}")
    print(f"  {'the whole step':<18} {whole * 1e3:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
