#!/usr/bin/env python
"""An exponential moving average (EMA) of the weights as a lever for `best`: paired, in one run.

    ema ← ema + (1 − d)·(w − ema)      after every optimizer step, for each decay d

The run trains exactly as `sifir train --model best --seed S` does (the averages only read the
weights: they ride along as extra buffers of the optimizer, so the workers update their share
of them with their share of the weights). After each epoch the weights and every average are
written to --out; then each epoch from --from on is read on the validation images: the weights as
trained, and each average with its BatchNorm statistics measured again (the running statistics
belong to the trained weights: an average read with them scores far lower early in training).
Each variant's best validation epoch (ties: the earlier) is then read on the test images, in
--views views and alone. The choice may look at the validation columns only.

    python benchmarks/weight_ema.py --seed 0 --data-dir ../shared/mnist --views 9

About 18 minutes per seed on a 2-core machine (training, then 44 validation readings).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sifir import optim  # noqa: E402
from sifir import recipe as recipes  # noqa: E402
from sifir.nn.norm import _BatchNorm  # noqa: E402
from sifir.train import evaluate  # noqa: E402

DECAYS = (0.999, 0.9995, 0.9998)
NAMES = tuple(f"ema{k}" for k in range(len(DECAYS)))
BN_IMAGES = 10_000     # training images (as they are, in order) that measure an average's BatchNorm statistics


class AveragingAdamW(optim.AdamW):
    """AdamW that also keeps an EMA of the weights per decay, as optimizer buffers (so the
    data-parallel workers share them out like Adam's own sums)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        for name in NAMES:
            setattr(self, name, [p.data.copy() for p in self.params])

    def _update(self, i, p):
        super()._update(i, p)
        for name, decay in zip(NAMES, DECAYS):
            average = getattr(self, name)[i]
            average += p.data.dtype.type(1 - decay) * (p.data - average)

    def _buffers(self):
        return {**super()._buffers(), **{name: getattr(self, name) for name in NAMES}}


def train(data, recipe, out: Path) -> None:
    optim.OPTIMIZERS["adamw"] = AveragingAdamW
    holder = {}

    def save_epoch(result):
        run = holder["run"]
        arrays = {f"trained.{k}": np.array(v) for k, v in run.model.state_dict().items()}
        names = [n for n, _ in run.model.named_parameters()]
        for name in NAMES:
            arrays.update({f"{name}.{n}": np.array(a) for n, a in zip(names, getattr(run.optimizer, name))})
        np.savez(out / f"epoch{result.epoch:02d}.npz", **arrays)
        print(f"epoch {result.epoch}: validation {result.val_acc:.2%} ({result.seconds:.1f} s)", flush=True)

    run = recipes.build_run(recipe, len(data.train_x), on_epoch=save_epoch, facts=data.facts)
    assert isinstance(run.optimizer, AveragingAdamW)
    holder["run"] = run
    run.trainer.fit(data.train_x, data.train_y, data.val_x, data.val_y, epochs=recipe.epochs)


def state(arrays: dict, variant: str) -> dict:
    """The network's state for one variant: the trained weights and statistics, with an average's weights."""
    out = {k[len("trained."):]: v for k, v in arrays.items() if k.startswith("trained.")}
    if variant != "trained":
        out.update({k[len(variant) + 1:]: v for k, v in arrays.items() if k.startswith(variant + ".")})
    return out


def measure_batchnorm(net, x, batch: int = 500) -> None:
    """BatchNorm's running statistics as the plain mean over ``x``'s batches (dropout off)."""
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.running_mean[:] = 0
        m.running_var[:] = 1
        m.train()
    for k, start in enumerate(range(0, len(x), batch)):
        for m in norms:
            m.momentum = 1.0 / (k + 1)
        net(x[start:start + batch])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--views", type=int, default=None, help="test-time views (default: the preset's)")
    p.add_argument("--from", dest="first", type=int, default=10, help="the first epoch read (default 10)")
    p.add_argument("--out", default=None, help="folder for the epochs' weights (default: weight-ema-sS)")
    args = p.parse_args(argv)
    recipe = recipes.Recipe(model="best", seed=args.seed, data_dir=args.data_dir).resolved()
    data = recipes.load_data(recipe)
    out = Path(args.out or f"weight-ema-s{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / f"epoch{recipe.epochs:02d}.npz").exists():
        train(data, recipe, out)
    net = recipe.build_model(len(data.facts.classes))
    epochs = [dict(np.load(out / f"epoch{e:02d}.npz")) for e in range(args.first, recipe.epochs + 1)]
    variants = ("trained", *NAMES)

    def load(arrays, variant):
        net.load_state_dict(state(arrays, variant))
        if variant != "trained":
            measure_batchnorm(net, data.train_x[:BN_IMAGES])
        return net.eval()
    validation = {v: [evaluate(load(f, v), data.val_x, data.val_y)[1] for f in epochs] for v in variants}
    views = args.views or recipe.views
    for v in variants:
        best = int(np.argmax(validation[v]))
        model = load(epochs[best], v)
        label = "trained weights" if v == "trained" else f"EMA d = {DECAYS[NAMES.index(v)]}"
        print(f"{label}: validation by epoch {', '.join(f'{a:.2%}' for a in validation[v])}; best epoch "
              f"{args.first + best} ({validation[v][best]:.2%}): test {evaluate(recipes.in_views(model, views, data.facts), data.test_x, data.test_y)[1]:.2%} "
              f"in {views} views, {evaluate(model, data.test_x, data.test_y)[1]:.2%} alone", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
