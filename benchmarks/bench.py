#!/usr/bin/env python
"""sifir against PyTorch (and scikit-learn) on the same networks, data, batches and cores.

One run measures every row at each core count (default: one core and every core, plus two when
the machine has more, for the scaling from one to two). At c cores, sifir trains and infers as
a user's ``sifir train`` does (``parallel.default_workers``): a network with convolutions on c
worker processes sharing each batch (inference: c threads), an MLP big enough on c worker
processes sharing each layer's units (``sifir.split``; inference: one thread whose BLAS runs c
threads), with BLAS on one thread in each worker; a small MLP in one process whose BLAS runs c
threads. PyTorch runs c threads (``torch.set_num_threads`` and every BLAS/OpenMP pool),
scikit-learn c BLAS threads.
Every row trains one architecture in each framework from the same initial weights, on the same
55,000 MNIST training images, with the same batch size and optimizer. Epochs are interleaved
(every framework at every core count, then the next epoch in rotated order), so a busy machine
slows all of them alike. Each run first trains one untimed warm-up epoch on 5,000 images.

    python benchmarks/bench.py --markdown --json bench.json        # everything, ~15 min on 2 cores
    python benchmarks/bench.py --rows mlp800,lenet5 --epochs 2 --markdown
    python benchmarks/bench.py --epochs 1 --train-images 2000 --fast-images 3000 --fast-seeds 1 \\
        --memory-images 1000 --markdown                          # a quick check that everything runs

Printed: the goal table (sifir's time over PyTorch's for every row and core count, and whether
it meets its goal); seconds per epoch, test accuracy and GFLOP/s against the measured GEMM
peak; inference (all 10,000 test images, and one image); the speed-up from one core to two;
the `fast` preset against the best-known one-epoch PyTorch recipe (time to the trained model,
test accuracy, 3 seeds); and the peak memory of a `cnn` preset training run in each framework.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

try:
    import sklearn.neural_network  # noqa: F401  (loaded now, so the thread limits below reach its libraries)
    import torch
    import torch.nn.functional as F
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError as e:  # the benchmark tools are an extra, not a dependency of sifir
    sys.exit(f"bench.py needs PyTorch and threadpoolctl ({e.name} is missing): pip install -e '.[bench]'")

from sifir import __version__ as sifir_version
from sifir import models, nn, optim, parallel
from sifir.data import mnist
from sifir.recipe import Recipe, build_run, load_data
from sifir.train import Trainer, evaluate, predict_logits

from before_after import lenet5 as lenet5_layers  # noqa: E402  (benchmarks/ is on the path)
from machine import cpu_name  # noqa: E402

TRAIN_SIZE = 55_000  # the first 55,000 training images; the last 5,000 are sifir's validation split
HERE = Path(__file__).resolve().parent

# The goals: sifir's seconds over PyTorch's, at every core count (one interleaved run).
TRAIN_GOALS = {"mlp128": 0.8, "mlp800": 0.8, "lenet5": 1.0, "cnn": 1.0}
INFERENCE_GOAL = 1.0
FAST_GOAL = 1.0
FAST_ACCURACY = 0.99


# -- the rows ---------------------------------------------------------------------------------
@dataclass
class Row:
    key: str
    title: str
    build: Callable[[], nn.Module]       # the sifir model; PyTorch's is a copy of it
    optimizer: str                       # "sgd", "adam" or "adamw"
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    sklearn_hidden: tuple | None = None  # hidden sizes for MLPClassifier, None: no scikit-learn run
    note: str = ""


def mlp(hidden: int) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def lenet5() -> nn.Module:
    return lenet5_layers(nn)


def preset_row(key: str, name: str) -> Row | None:
    if name not in models.PRESETS:
        return None
    p = models.PRESETS[name]
    opt = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[p.optimizer]
    return Row(key, f"`{name}` architecture: {opt}, batch {p.batch_size}", p.build, p.optimizer, p.lr, p.batch_size,
               weight_decay=p.weight_decay, note="the preset's layers and optimizer; constant learning rate, "
               "no augmentation or label smoothing")


def all_rows() -> dict[str, Row]:
    rows = [
        Row("seed", "seed 784-10-10, SGD lr 0.1, batch 64", models.seed, "sgd", 0.1, 64, sklearn_hidden=(10,),
            note="scikit-learn has no ReLU before its softmax"),
        Row("mlp128", "784-128-10, Adam, batch 128", mlp(128), "adam", 1e-3, 128, sklearn_hidden=(128,)),
        Row("mlp800", "784-800-10, Adam, batch 128", mlp(800), "adam", 1e-3, 128, sklearn_hidden=(800,)),
        Row("lenet5", "LeNet-5 (ReLU, max-pool), Adam, batch 128", lenet5, "adam", 1e-3, 128),
    ]
    for key, name in (("cnn", "cnn"), ("mlp_preset", "mlp")):
        row = preset_row(key, name)
        if row is not None:
            rows.append(row)
    return {r.key: r for r in rows}


DEFAULT_ROWS = ("seed", "mlp128", "mlp800", "lenet5", "cnn")


# -- core counts ------------------------------------------------------------------------------
def core_counts(text: str) -> list[int]:
    """"1,2,all" → [1, 2, N] (N: the cores this process may use), without repeats, ascending."""
    usable = parallel.usable_cores()
    counts = set()
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            counts.add(usable)
        elif part:
            counts.add(int(part))
    if not counts or min(counts) < 1:
        raise ValueError(f"--cores needs counts of at least 1, got {text!r}")
    return sorted(counts)


@contextmanager
def cores(c: int):
    """Every thread pool of this process (NumPy's and SciPy's BLAS, PyTorch's own and its
    OpenMP) at c threads. sifir's workers set their BLAS to one thread themselves."""
    torch.set_num_threads(c)
    with threadpool_limits(limits=c):
        yield


# -- sifir model → the same PyTorch model -----------------------------------------------------
def to_torch(model: nn.Module) -> torch.nn.Module:
    """A torch.nn.Sequential with the same layers and the same weights as a sifir Sequential."""
    layers = [_torch_layer(layer) for layer in model]
    net = torch.nn.Sequential(*layers)
    theirs = net.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name in theirs:
                theirs[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return net


def _torch_layer(layer: nn.Module) -> torch.nn.Module:
    T, c, kind = torch.nn, layer.config(), type(layer).__name__
    if kind == "Linear":
        return T.Linear(c["in_features"], c["out_features"], bias=c.get("bias", True))
    c = {k: tuple(v) if isinstance(v, list) else v for k, v in c.items()}
    if kind == "Conv2d":
        return T.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], stride=c.get("stride", 1),
                        padding=c.get("padding", 0), bias=c.get("bias", True))
    if kind == "MaxPool2d":
        return T.MaxPool2d(c["kernel_size"], stride=c.get("stride"))
    if kind == "AvgPool2d":
        return T.AvgPool2d(c["kernel_size"], stride=c.get("stride"))
    if kind in ("BatchNorm2d", "BatchNorm1d"):
        return getattr(T, kind)(c["num_features"], eps=c.get("eps", 1e-5), momentum=c.get("momentum", 0.1))
    if kind == "Dropout":
        return T.Dropout(c["p"])
    if kind == "LeakyReLU":
        return T.LeakyReLU(c["negative_slope"])
    simple = {"ReLU": T.ReLU, "Tanh": T.Tanh, "Sigmoid": T.Sigmoid, "Flatten": T.Flatten, "Identity": T.Identity}
    if kind in simple:
        return simple[kind]()
    raise SystemExit(f"bench.py does not know how to mirror sifir layer {kind} in PyTorch")


# -- work counted in FLOPs --------------------------------------------------------------------
def macs_per_image(model: nn.Module) -> tuple[int, int]:
    """(multiply-adds of one forward pass, those of the first learnable layer), from the
    output shapes: a Linear or Conv2d does out.size × (weight.size / out_channels) of them."""
    x = np.zeros((1, 1, 28, 28), np.float32)
    model.eval()
    total, first = 0, None
    for layer in model:
        x = layer(x)
        w = getattr(layer, "weight", None)
        if isinstance(w, nn.Parameter) and w.data.ndim >= 2:
            macs = x.size * (w.data.size // w.data.shape[0])
            total += macs
            first = macs if first is None else first
    model.train()
    return total, first or 0


def train_flops_per_epoch(model: nn.Module, n: int) -> float:
    """Forward 2·MACs; backward ≈ 2× forward (input and weight gradients), less the first
    layer's input gradient, which nobody needs."""
    total, first = macs_per_image(model)
    return n * (2 * total + 4 * total - 2 * first)


def gemm_peak(threads: int, n: int = 3072, repeats: int = 5) -> dict:
    """Best float32 GFLOP/s of an n×n matrix product, NumPy (its BLAS) and PyTorch, at ``threads``."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2.0 * n ** 3
    out = {}
    with cores(threads):
        for name, fn in (("numpy", lambda: a @ b), ("torch", lambda: ta @ tb)):
            fn()
            best = min(_timed(fn) for _ in range(repeats))
            out[name] = flops / best / 1e9
    out["peak"] = max(out["numpy"], out["torch"])
    out["size"] = n
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# -- one epoch in each framework --------------------------------------------------------------
class SifirRun:
    """sifir's Trainer as ``sifir train`` runs it: ``workers`` processes share each batch."""

    def __init__(self, row: Row, model: nn.Module, x, y, seed: int, workers: int):
        self.model = model
        opt = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[row.optimizer](
            model.parameters(), lr=row.lr, weight_decay=row.weight_decay)
        self.trainer = Trainer(model, opt, nn.CrossEntropyLoss(), batch_size=row.batch_size, seed=seed,
                               keep_best=False, workers=workers)
        self.x, self.y, self.workers = x, y, workers

    def epoch(self, n: int | None = None) -> float:
        t = time.perf_counter()
        self.trainer.fit(self.x[:n], self.y[:n], epochs=self.trainer.epoch + 1)
        return time.perf_counter() - t

    def accuracy(self, x, y) -> float:
        return evaluate(self.model, x, y, workers=self.workers)[1]


class TorchRun:
    """The loop a PyTorch user writes, doing what sifir's Trainer does per batch: shuffle,
    gather, forward, loss, backward, step, and sum the loss and correct predictions."""

    def __init__(self, row: Row, model: torch.nn.Module, x, y, seed: int):
        self.model = model
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[row.optimizer]
        self.opt = opt(model.parameters(), lr=row.lr, weight_decay=row.weight_decay)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.bs = row.batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self, n: int | None = None) -> float:
        t = time.perf_counter()
        x, y = self.x[:n], self.y[:n]
        self.model.train()
        order = torch.randperm(len(x), generator=self.gen)
        loss_sum = correct = 0.0
        for i in range(0, len(x), self.bs):
            idx = order[i:i + self.bs]
            xb, yb = x[idx], y[idx]
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += loss.item() * len(yb)
            correct += (logits.argmax(1) == yb).sum().item()
        return time.perf_counter() - t

    def accuracy(self, x, y) -> float:
        logits = torch_predict(self.model, torch.from_numpy(x))
        return float((logits.argmax(1).numpy() == y).mean())


class SklearnRun:
    """MLPClassifier with the same hidden sizes, solver, batch and learning rate; one
    ``partial_fit`` is one epoch (it keeps the optimizer's state between calls)."""

    def __init__(self, row: Row, x, y, seed: int):
        from sklearn.neural_network import MLPClassifier
        solver = {"sgd": {"solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False},
                  "adam": {"solver": "adam"}}[row.optimizer]
        self.clf = MLPClassifier(hidden_layer_sizes=row.sklearn_hidden, activation="relu", alpha=0.0,
                                 batch_size=row.batch_size, learning_rate_init=row.lr, max_iter=1,
                                 shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=10 ** 9, **solver)
        self.x, self.y = x.reshape(len(x), -1), y

    def epoch(self, n: int | None = None) -> float:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.x[:n], self.y[:n], classes=np.arange(10))
        return time.perf_counter() - t

    def accuracy(self, x, y) -> float:
        return float(self.clf.score(x.reshape(len(x), -1), y))


def torch_predict(model, x, batch_size: int = 1000):
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train()
    return out


# -- inference --------------------------------------------------------------------------------
# Seconds each framework's inference waits before it is timed: the thread pools of whatever ran
# before (another framework's BLAS or OpenMP threads) spin on for up to about 0.1 s after their
# last call, taking a core from the next one's threads; an inference of 10,000 images lasts about
# as long.
SETTLE = 0.3
# Rounds of an inference measurement: in each, every framework is timed in turn (who goes first
# rotates), so that a busy moment of the shared machine falls on all of them alike instead of on
# whichever was measured then.
ROUNDS = 5


def inference(sifir_model, torch_model, sk, test_x, c: int, repeats: int = 15, single: int = 300) -> dict:
    """Seconds for all test images (batches of 1000) and one image's latency, in eval mode, at
    c cores: sifir's batches shared by c threads (predict_logits), PyTorch with c threads. Each
    is the median of ``repeats`` (all images) or ``single`` (one image) timed calls, spread
    over ROUNDS interleaved rounds (``_interleaved_medians``)."""
    tx = torch.from_numpy(test_x)
    one, tone = test_x[:1], tx[:1]
    flat = test_x.reshape(len(test_x), -1)
    sifir_model.eval()
    torch_model.eval()
    with cores(c), torch.inference_mode():
        threads = parallel.inference_threads(sifir_model, c)
        every = {"sifir": lambda: predict_logits(sifir_model, test_x, 1000, workers=threads),
                 "torch": lambda: torch_predict(torch_model, tx)}
        single_image = {"sifir": lambda: sifir_model(one), "torch": lambda: torch_model(tone)}
        if sk is not None:
            every["sklearn"] = lambda: sk.clf.predict_proba(flat)
            single_image["sklearn"] = lambda: sk.clf.predict_proba(flat[:1])
        all_s = _interleaved_medians(every, repeats)
        torch_model.eval()                                  # torch_predict leaves it training
        one_s = _interleaved_medians(single_image, single)
    sifir_model.train()
    torch_model.train()
    return {name: {"all_s": all_s[name], "one_s": one_s[name]} for name in every}


def _interleaved_medians(fns: dict, repeats: int, rounds: int = ROUNDS, budget_s: float = 20.0) -> dict:
    """{name: median seconds of a call of fns[name]}, over about ``repeats`` timed calls each,
    in ``rounds`` rounds; in each round every function in turn (who goes first rotates) waits
    SETTLE seconds, makes one untimed call and then its share of the timed ones. Fewer calls
    (at least one a round) when one is so slow that ``repeats`` of them would exceed ``budget_s``."""
    names = list(fns)
    times = {name: [] for name in names}
    per_round = {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE)
            first = _timed(fns[name])                        # untimed: caches and threads wake
            if name not in per_round:
                fit = int(budget_s / rounds / max(first, 1e-9))
                per_round[name] = max(1, min(-(-repeats // rounds), fit))
            times[name] += [_timed(fns[name]) for _ in range(per_round[name])]
    return {name: statistics.median(times[name]) for name in names}


# -- a row ------------------------------------------------------------------------------------
def run_row(row: Row, data, epochs: int, warmup: int, seed: int, counts: list[int], peaks: dict, log) -> dict:
    """Every framework at every core count, epochs interleaved; then inference."""
    train_x, train_y, test_x, test_y = data
    runs = {}
    for c in counts:
        nn.manual_seed(seed)
        torch.manual_seed(seed)
        model = row.build()     # the same initial weights at every core count
        runs[("sifir", c)] = SifirRun(row, model, train_x, train_y, seed, workers=parallel.default_workers(model, c))
        runs[("torch", c)] = TorchRun(row, to_torch(model), train_x, train_y, seed)
        if row.sklearn_hidden is not None:
            runs[("sklearn", c)] = SklearnRun(row, train_x, train_y, seed)
    names = list(runs)
    times = {name: [] for name in names}
    if warmup:  # caches, allocator and thread pools settle; not timed
        for name in names:
            with cores(name[1]):
                log(f"  {row.key}: {name[0]} at {name[1]} core(s), warm-up on {warmup:,} images: "
                    f"{runs[name].epoch(warmup):.2f} s")
    for e in range(epochs):
        order = names[e % len(names):] + names[:e % len(names)]  # rotate who goes first
        for name in order:
            with cores(name[1]):
                times[name].append(runs[name].epoch())
            log(f"  {row.key}: {name[0]} at {name[1]} core(s), epoch {e + 1}: {times[name][-1]:.2f} s")
    model = runs[("sifir", counts[0])].model
    flops = train_flops_per_epoch(model, len(train_x))
    result = {"key": row.key, "title": row.title, "note": row.note, "parameters": model.num_parameters(),
              "batch_size": row.batch_size, "optimizer": row.optimizer, "lr": row.lr,
              "train_gflop_per_epoch": flops / 1e9, "cores": {}}
    for c in counts:
        fw = {}
        for (name, cc), run in runs.items():
            if cc != c:
                continue
            med = statistics.median(times[(name, c)])
            with cores(c):
                accuracy = run.accuracy(test_x, test_y)
            fw[name] = {"epoch_seconds": times[(name, c)], "median_s": med, "min_s": min(times[(name, c)]),
                        "test_accuracy": accuracy, "gflops": flops / med / 1e9,
                        "peak_fraction": flops / med / 1e9 / peaks[c]["peak"]}
        entry = {"frameworks": fw, "ratio": fw["sifir"]["median_s"] / fw["torch"]["median_s"],
                 "ratio_fastest": fw["sifir"]["min_s"] / fw["torch"]["min_s"]}
        entry["inference"] = inference(runs[("sifir", c)].model, runs[("torch", c)].model, runs.get(("sklearn", c)),
                                       test_x, c)
        result["cores"][str(c)] = entry
    return result


# -- the fast preset against the best-known one-epoch PyTorch recipe --------------------------
class AnchorNet(torch.nn.Module):
    """tuomaso/train_mnist_fast's final network: conv 5×5 24 → pool → ReLU → conv 3×3 32 →
    pool → ReLU → 800 → 256 → 10 (99.04 % mean after one epoch, 0.76 s on a GTX 1660 Ti)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 24, 5, 1)
        self.conv2 = torch.nn.Conv2d(24, 32, 3, 1)
        self.fc1 = torch.nn.Linear(800, 256)
        self.fc2 = torch.nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def torch_anchor_recipe(x, y, test_x, test_y, seed: int) -> dict:
    """That repository's recipe, as it runs it: Adam lr 0.01 betas (0.7, 0.9), one-cycle to 0.01
    without momentum cycling, batch 256, one epoch over all 60,000 training images shuffled once
    (their saved data set) then taken in order. Seconds of the training loop, test accuracy."""
    torch.manual_seed(seed)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    data, labels = torch.from_numpy(x)[order], torch.from_numpy(y)[order]
    model = AnchorNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.7, 0.9))
    batches = (len(data) - 1) // 256 + 1
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=batches, cycle_momentum=False)
    start = time.perf_counter()
    model.train()
    for i in range(batches):
        out = model(data[256 * i:256 * (i + 1)])
        loss = F.nll_loss(out, labels[256 * i:256 * (i + 1)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(torch.from_numpy(test_x[i:i + 2000])) for i in range(0, len(test_x), 2000)]).argmax(1)
    return {"seconds": seconds, "test_accuracy": float((pred.numpy() == test_y).mean())}


def sifir_fast_preset(data, seed: int, c: int, images: int | None) -> dict:
    """`sifir train --model fast --workers c --seed s` as the CLI runs it (its recipe, its
    validation split); seconds of the training (``fit``, validation included), test accuracy."""
    recipe = Recipe(model="fast", seed=seed, workers=c).resolved()
    n = min(len(data.train_x), images or len(data.train_x))
    run = build_run(recipe, n)
    start = time.perf_counter()
    run.trainer.fit(data.train_x[:n], data.train_y[:n], data.val_x, data.val_y, epochs=recipe.epochs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "test_accuracy": evaluate(run.model, data.test_x, data.test_y)[1],
            "epochs": recipe.epochs}


def run_fast(data_dir, counts: list[int], seeds: int, images: int | None, log) -> dict:
    data = load_data(Recipe(model="fast", data_dir=data_dir).resolved(), log=lambda *a: None)
    raw = mnist.load_mnist(data_dir, log=lambda *a: None)
    n = min(60_000, images or 60_000)
    x = mnist.normalize(raw["train_images"][:n])
    y = raw["train_labels"][:n].astype(np.int64)
    runs = [(name, c) for c in counts for name in ("sifir", "torch")]
    results = {f"{name} {c}": [] for name, c in runs}
    for s in range(seeds):
        order = runs[s % len(runs):] + runs[:s % len(runs)]
        for name, c in order:
            with cores(c):
                r = (sifir_fast_preset(data, s, c, images and int(images * 55 / 60)) if name == "sifir"
                     else torch_anchor_recipe(x, y, data.test_x, data.test_y, s))
            results[f"{name} {c}"].append(r)
            log(f"  fast: {name} at {c} core(s), seed {s}: {r['seconds']:.2f} s, test {r['test_accuracy']:.2%}")
    out = {"seeds": seeds, "images": images, "cores": {}}
    for c in counts:
        entry = {}
        for name in ("sifir", "torch"):
            rs = results[f"{name} {c}"]
            entry[name] = {"seconds": [r["seconds"] for r in rs], "median_s": statistics.median(r["seconds"] for r in rs),
                           "test_accuracy": [r["test_accuracy"] for r in rs],
                           "median_accuracy": statistics.median(r["test_accuracy"] for r in rs)}
        entry["ratio"] = entry["sifir"]["median_s"] / entry["torch"]["median_s"]
        out["cores"][str(c)] = entry
    return out


# -- peak memory of a cnn preset training run -------------------------------------------------
MEMORY_SIFIR = """
import sys
from sifir.recipe import Recipe, build_run, load_data
workers, data_dir, n = int(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3])
recipe = Recipe(model="cnn", epochs=1, augment="none", workers=workers, data_dir=data_dir).resolved()
data = load_data(recipe, log=lambda *a: None)
build_run(recipe, n).trainer.fit(data.train_x[:n], data.train_y[:n], data.val_x, data.val_y, epochs=1)
"""

MEMORY_TORCH = """
import sys
import torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[4])
from bench import to_torch
from sifir import models, nn
from sifir.recipe import Recipe, load_data
threads, data_dir, n = int(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3])
torch.set_num_threads(threads)
recipe = Recipe(model="cnn", data_dir=data_dir).resolved()
data = load_data(recipe, log=lambda *a: None)
nn.manual_seed(0)
model = to_torch(models.build("cnn"))
opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
x, y = torch.from_numpy(data.train_x[:n]), torch.from_numpy(data.train_y[:n])
order = torch.randperm(n)
for i in range(0, n, recipe.batch_size):
    idx = order[i:i + recipe.batch_size]
    loss = F.cross_entropy(model(x[idx]), y[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
model.eval()
with torch.inference_mode():
    val = torch.from_numpy(data.val_x)
    torch.cat([model(val[i:i + 1000]) for i in range(0, len(val), 1000)])
"""


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, peak resident set VmHWM) of a process, in kB; (0, 0) once it is gone."""
    pss = hwm = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
        with open(f"/proc/{pid}/status") as f:
            hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        pass
    return pss, hwm


def peak_memory(script: str, args: list[str]) -> dict:
    """Run ``script`` in a fresh Python; sample the proportional set size (PSS: shared pages
    counted once, split among the processes sharing them) of it and its children every 20 ms.
    Returns the peak of the sum, and the largest peak resident set of any one process."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args])
    peak = {"pss": 0, "hwm": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            sizes = [_memory_kb(p) for p in _tree(proc.pid)]
            peak["pss"] = max(peak["pss"], sum(pss for pss, _ in sizes))
            peak["hwm"] = max([peak["hwm"]] + [hwm for _, hwm in sizes])
            stop.wait(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"the memory run failed (exit code {code}): {args}")
    return {"peak_pss_mb": peak["pss"] / 1024, "max_rss_mb": peak["hwm"] / 1024}


def run_memory(data_dir, c: int, images: int, log) -> dict:
    out = {"cores": c, "images": images,
           "sifir": peak_memory(MEMORY_SIFIR, [str(c), data_dir or "", str(images)]),
           "torch": peak_memory(MEMORY_TORCH, [str(c), data_dir or "", str(images), str(HERE)])}
    log(f"  memory: sifir {out['sifir']['peak_pss_mb']:.0f} MB, PyTorch {out['torch']['peak_pss_mb']:.0f} MB")
    return out


# -- machine and output -----------------------------------------------------------------------
def machine_info() -> dict:
    cpu = cpu_name()
    import sklearn
    blas = [{"owner": _owner(lib.get("filepath", "")),
             **{k: lib.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                        "num_threads", "filepath")}}
            for lib in threadpool_info()]
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS")) or k in ("NPY_DISABLE_CPU_FEATURES",)}
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": parallel.usable_cores(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "sklearn": sklearn.__version__, "sifir": sifir_version, "thread_pools": blas,
            "blas_environment": env, "load_average": list(os.getloadavg())}


def _owner(path: str) -> str:
    """Which package ships a thread-pool library, from where it lies."""
    for part, name in (("numpy", "NumPy"), ("scipy", "SciPy"), ("torch", "PyTorch"), ("scikit_learn", "scikit-learn"),
                       ("sklearn", "scikit-learn")):
        if f"/{part}" in path:
            return name
    return Path(path).name


def goals(report: dict) -> list[dict]:
    """Every goal of the run: what, at how many cores, sifir/PyTorch, the goal, met or not."""
    out = []
    for r in report["rows"]:
        for c, entry in r["cores"].items():
            if r["key"] in TRAIN_GOALS:
                out.append({"what": f"{r['title']}: training", "cores": int(c), "ratio": entry["ratio"],
                            "goal": TRAIN_GOALS[r["key"]]})
            inf = entry["inference"]
            for part, label in (("all_s", "inference, 10,000 images"), ("one_s", "inference, one image")):
                out.append({"what": f"{r['title']}: {label}", "cores": int(c),
                            "ratio": inf["sifir"][part] / inf["torch"][part], "goal": INFERENCE_GOAL})
    fast = report.get("fast")
    if fast:
        for c, entry in fast["cores"].items():
            accurate = entry["sifir"]["median_accuracy"] >= FAST_ACCURACY
            out.append({"what": "`fast` preset (median test accuracy "
                                f"{entry['sifir']['median_accuracy']:.2%}) against PyTorch's best-known one-epoch "
                                f"recipe ({entry['torch']['median_accuracy']:.2%})",
                        "cores": int(c), "ratio": entry["ratio"], "goal": FAST_GOAL, "accurate": accurate})
    for g in out:
        g["met"] = g["ratio"] <= g["goal"] and g.get("accurate", True)
    return out


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    blas = "; ".join(f"{b['owner']}: {b['internal_api']}" + (f" {b['version']}" if b["version"] else "")
                     + (f" ({b['architecture']} kernels)" if b["architecture"] else "") for b in m["thread_pools"])
    env = ", ".join(f"{k}={v}" for k, v in m["blas_environment"].items()) or "none set"
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs; Python {m['python']}, NumPy {m['numpy']}, "
        f"PyTorch {m['torch']}, scikit-learn {m['sklearn']}. Thread pools (threadpoolctl): {blas}. "
        f"BLAS/OpenMP environment variables: {env}.",
        f"Cores: {', '.join(map(str, s['cores']))} (sifir as `sifir train` chooses: that many worker processes "
        f"with BLAS on one thread each, sharing each batch for the convolutional rows and each layer's units for "
        f"the MLPs of 50,000 weights or more; one process with that many BLAS threads for the seed network; "
        f"inference of an MLP in one thread with that many BLAS threads; "
        f"PyTorch and scikit-learn: that many threads). Timed epochs per row: {s['epochs']} on "
        f"{s['train_images']:,} images, interleaved, after an untimed warm-up epoch on {s['warmup_images']:,}; "
        f"seconds are the median. Load average at start / end: "
        f"{' '.join(f'{v:.1f}' for v in m['load_average'])} / {' '.join(f'{v:.1f}' for v in report['load_average_end'])}.",
        "",
        "### Goals (sifir's time over PyTorch's; one interleaved run)",
        "",
        "| what | cores | sifir/PyTorch | goal | met |",
        "|---|---:|---:|---:|---|",
    ]
    for g in report["goals"]:
        lines.append(f"| {g['what']} | {g['cores']} | **{g['ratio']:.2f}** | ≤ {g['goal']:.1f} | "
                     f"{'yes' if g['met'] else 'no'} |")
    for c in map(str, s["cores"]):
        peak = report["gemm_peak"][c]
        lines += ["", f"### Training at {c} core(s)", "",
                  f"float32 GEMM peak at {c} thread(s) ({peak['size']}×{peak['size']}, best of 5): NumPy "
                  f"{peak['numpy']:.0f} GFLOP/s, PyTorch {peak['torch']:.0f} GFLOP/s; \"% peak\" is of "
                  f"{peak['peak']:.0f} GFLOP/s.", "",
                  "| network | sifir s/epoch | PyTorch s/epoch | sifir/PyTorch | fastest epochs | scikit-learn s/epoch "
                  "| test acc sifir / PyTorch / sklearn | GFLOP/epoch | GFLOP/s sifir / PyTorch | % peak sifir / PyTorch |",
                  "|---|---:|---:|---:|---:|---:|---|---:|---|---|"]
        for r in report["rows"]:
            e = r["cores"][c]
            fw = e["frameworks"]
            sk = fw.get("sklearn")
            accs = " / ".join(f"{fw[k]['test_accuracy']:.2%}" if k in fw else "–" for k in ("sifir", "torch", "sklearn"))
            sk_s = f"{sk['median_s']:.2f}" if sk else "–"
            lines.append(f"| {r['title']} | {fw['sifir']['median_s']:.2f} | {fw['torch']['median_s']:.2f} | "
                         f"**{e['ratio']:.2f}** | {e['ratio_fastest']:.2f} | {sk_s} | "
                         f"{accs} | {r['train_gflop_per_epoch']:.1f} | "
                         f"{fw['sifir']['gflops']:.1f} / {fw['torch']['gflops']:.1f} | "
                         f"{fw['sifir']['peak_fraction']:.1%} / {fw['torch']['peak_fraction']:.1%} |")
        lines += ["", f"Inference at {c} core(s), eval mode: all 10,000 test images in batches of 1000 (median of 15 "
                  "passes, fewer when slow), and one image (median of 300 calls), each spread over 5 rounds in which "
                  "every framework takes its turn.", "",
                  "| network | sifir 10k (ms) | PyTorch 10k (ms) | sifir/PyTorch | sifir 1 image (µs) | "
                  "PyTorch 1 image (µs) | sifir/PyTorch |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in report["rows"]:
            inf = r["cores"][c]["inference"]
            si, to = inf["sifir"], inf["torch"]
            lines.append(f"| {r['title']} | {si['all_s'] * 1e3:.1f} | {to['all_s'] * 1e3:.1f} | "
                         f"{si['all_s'] / to['all_s']:.2f} | {si['one_s'] * 1e6:.0f} | {to['one_s'] * 1e6:.0f} | "
                         f"{si['one_s'] / to['one_s']:.2f} |")
    if 1 in s["cores"] and 2 in s["cores"]:
        lines += ["", "### Scaling from one core to two (seconds per epoch at 1 over seconds at 2)", "",
                  "| network | sifir | PyTorch |", "|---|---:|---:|"]
        for r in report["rows"]:
            one, two = r["cores"]["1"]["frameworks"], r["cores"]["2"]["frameworks"]
            lines.append(f"| {r['title']} | {one['sifir']['median_s'] / two['sifir']['median_s']:.2f}× | "
                         f"{one['torch']['median_s'] / two['torch']['median_s']:.2f}× |")
    fast = report.get("fast")
    if fast:
        lines += ["", f"### The `fast` preset against the best-known one-epoch PyTorch recipe ({fast['seeds']} seeds)", "",
                  "sifir: `sifir train --model fast` (its recipe; 55,000 training images, validation included in "
                  "the time). PyTorch: tuomaso/train_mnist_fast's final recipe (conv 5×5 24 → pool → conv 3×3 32 → "
                  "pool → 256 → 10, Adam lr 0.01 betas (0.7, 0.9), one-cycle, batch 256, one epoch on 60,000 "
                  "images). Seconds: training only, median over the seeds.", "",
                  "| cores | sifir s | PyTorch s | sifir/PyTorch | sifir test accuracy (median; each seed) | "
                  "PyTorch test accuracy (median; each seed) |", "|---:|---:|---:|---:|---|---|"]
        for c, e in fast["cores"].items():
            each = {k: ", ".join(f"{a:.2%}" for a in e[k]["test_accuracy"]) for k in ("sifir", "torch")}
            lines.append(f"| {c} | {e['sifir']['median_s']:.2f} | {e['torch']['median_s']:.2f} | **{e['ratio']:.2f}** | "
                         f"{e['sifir']['median_accuracy']:.2%}; {each['sifir']} | "
                         f"{e['torch']['median_accuracy']:.2%}; {each['torch']} |")
    mem = report.get("memory")
    if mem:
        lines += ["", f"### Peak memory of a `cnn` preset training run ({mem['cores']} cores, {mem['images']:,} images "
                  "and the 5,000 validation images)", "",
                  "PSS: the sum over the run's processes of their proportional set size (a shared page counted "
                  "once), sampled every 20 ms; RSS: the largest peak resident set (VmHWM) of any one process.", "",
                  "| framework | peak PSS (MB) | largest RSS (MB) |", "|---|---:|---:|",
                  f"| sifir | {mem['sifir']['peak_pss_mb']:.0f} | {mem['sifir']['max_rss_mb']:.0f} |",
                  f"| PyTorch | {mem['torch']['peak_pss_mb']:.0f} | {mem['torch']['max_rss_mb']:.0f} |"]
    notes = [f"- {r['title']}: {r['note']}" for r in report["rows"] if r["note"]]
    if report["skipped"]:
        notes.append(f"- not run: {', '.join(report['skipped'])}")
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="folder with the four MNIST files (default: $SIFIR_DATA_DIR or the user cache)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per row and core count (after the warm-up)")
    p.add_argument("--warmup-images", type=int, default=5000,
                   help="each run first trains one untimed epoch on this many images (0: none)")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                   help="comma-separated rows: seed, mlp128, mlp800, lenet5, cnn, mlp_preset (none: '')")
    p.add_argument("--cores", default="1,2,all", help="core counts to run at ('all': every usable core)")
    p.add_argument("--train-images", type=int, default=TRAIN_SIZE,
                   help="train on the first N images (fewer: a quick check that every row runs)")
    p.add_argument("--fast-seeds", type=int, default=3, help="seeds of the fast-preset comparison (0: skip it)")
    p.add_argument("--fast-images", type=int, default=None, help="fewer training images for the fast comparison")
    p.add_argument("--memory-images", type=int, default=10_000,
                   help="training images of the cnn memory runs (0: skip them)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true", help="print the results as Markdown tables")
    p.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    try:
        args.cores = core_counts(args.cores)
    except ValueError as e:
        p.error(str(e))
    if not 0 < args.train_images <= TRAIN_SIZE:
        p.error(f"--train-images must be between 1 and {TRAIN_SIZE}")
    if args.warmup_images < 0 or args.fast_seeds < 0 or args.memory_images < 0:
        p.error("--warmup-images, --fast-seeds and --memory-images must be 0 or more")
    args.warmup_images = min(args.warmup_images, args.train_images)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    available = all_rows()
    wanted = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in available and k not in DEFAULT_ROWS]
    if unknown:
        sys.exit(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    skipped = [f"{k} (needs the preset)" for k in wanted if k not in available]
    selected = [available[k] for k in wanted if k in available]

    report = {"machine": machine_info(), "settings": {"cores": args.cores, "epochs": args.epochs, "seed": args.seed,
                                                      "train_images": args.train_images,
                                                      "warmup_images": args.warmup_images},
              "skipped": skipped, "rows": []}
    log(f"machine: {report['machine']['cpu']}; cores {args.cores}; BLAS {report['machine']['thread_pools']}")
    data = load(args.data_dir, args.train_images)
    report["gemm_peak"] = {str(c): gemm_peak(c) for c in args.cores}
    log(f"GEMM peak: {report['gemm_peak']}")
    for row in selected:
        log(f"row {row.key}: {row.title}")
        result = run_row(row, data, args.epochs, args.warmup_images, args.seed, args.cores,
                         {c: report["gemm_peak"][str(c)] for c in args.cores}, log)
        report["rows"].append(result)
        log("  → " + ", ".join(f"{c} core(s): sifir/torch {e['ratio']:.2f}" for c, e in result["cores"].items()))
    if args.fast_seeds:
        log("the fast preset against the best-known one-epoch PyTorch recipe")
        report["fast"] = run_fast(args.data_dir, args.cores, args.fast_seeds, args.fast_images, log)
    if args.memory_images:
        log("peak memory of a cnn preset training run")
        report["memory"] = run_memory(args.data_dir, max(args.cores), args.memory_images, log)
    report["goals"] = goals(report)
    report["load_average_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        print(markdown(report))
    else:
        for g in report["goals"]:
            print(f"{g['what']} at {g['cores']} core(s): {g['ratio']:.2f} (goal ≤ {g['goal']:.1f}: "
                  f"{'met' if g['met'] else 'not met'})")
    return 0


def load(data_dir, n: int = TRAIN_SIZE):
    data = mnist.load_mnist(data_dir, log=lambda *a: print(*a, file=sys.stderr))
    x = mnist.normalize(data["train_images"][:n])
    y = data["train_labels"][:n].astype(np.int64)
    test_x = mnist.normalize(data["test_images"])
    test_y = data["test_labels"].astype(np.int64)
    return x, y, test_x, test_y


if __name__ == "__main__":
    sys.exit(main())
