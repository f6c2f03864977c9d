#!/usr/bin/env python
"""sifir against PyTorch (and scikit-learn) on the same networks, data, batches and threads.

Every row trains one architecture in each framework from the same initial weights, on the same
55,000 MNIST training images, with the same batch size, optimizer and thread count. Epochs are
interleaved (sifir, PyTorch, scikit-learn, then the next epoch in rotated order), so a busy
machine slows all of them alike. Each framework first trains one untimed warm-up epoch on the
first 5,000 images (caches, memory allocator and thread pools settle in far fewer steps).

    python benchmarks/bench.py --markdown                  # the default rows, 2 threads
    python benchmarks/bench.py --rows seed,mlp128 --epochs 5 --threads 1 --json out.json

Printed per row: seconds per epoch (median of the timed epochs), the ratio sifir/PyTorch, test
accuracy after all epochs, and the fraction of this machine's float32 GEMM peak each reached.
Then inference: all 10,000 test images (batches of 1000) and one image's latency.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
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
from sifir import models, nn, optim
from sifir.data import mnist
from sifir.train import Trainer, evaluate, predict_logits

from before_after import lenet5 as lenet5_layers  # noqa: E402  (benchmarks/ is on the path)

TRAIN_SIZE = 55_000  # the first 55,000 training images; the last 5,000 are sifir's validation split


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
    return Row(key, f"`{name}` preset: {opt}, batch {p.batch_size}", p.build, p.optimizer, p.lr, p.batch_size,
               weight_decay=p.weight_decay, note="the preset's layers and optimizer; constant learning rate, "
               "no augmentation or label smoothing")


def all_rows() -> dict[str, Row]:
    rows = [
        Row("seed", "seed 784-10-10, SGD lr 0.1, batch 64", models.seed, "sgd", 0.1, 64, sklearn_hidden=(10,),
            note="scikit-learn has no ReLU before its softmax"),
        Row("mlp128", "784-128-10, Adam, batch 128", mlp(128), "adam", 1e-3, 128, sklearn_hidden=(128,)),
        Row("mlp800", "784-800-10, Adam, batch 128", mlp(800), "adam", 1e-3, 128, sklearn_hidden=(800,)),
    ]
    if hasattr(nn, "Conv2d") and hasattr(nn, "MaxPool2d"):
        rows.append(Row("lenet5", "LeNet-5 (ReLU, max-pool), Adam, batch 128", lenet5, "adam", 1e-3, 128))
    for key, name in (("cnn", "cnn"), ("mlp_preset", "mlp")):
        row = preset_row(key, name)
        if row is not None:
            rows.append(row)
    return {r.key: r for r in rows}


DEFAULT_ROWS = ("seed", "mlp128", "mlp800", "lenet5", "cnn")


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
    """Best float32 GFLOP/s of an n×n matrix product, NumPy (its BLAS) and PyTorch."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2.0 * n ** 3
    out = {}
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
    def __init__(self, row: Row, model: nn.Module, x, y, seed: int):
        self.model = model
        opt = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}[row.optimizer](
            model.parameters(), lr=row.lr, weight_decay=row.weight_decay)
        self.trainer = Trainer(model, opt, nn.CrossEntropyLoss(), batch_size=row.batch_size, seed=seed,
                               keep_best=False)
        self.x, self.y = x, y

    def epoch(self, n: int | None = None) -> float:
        t = time.perf_counter()
        self.trainer.fit(self.x[:n], self.y[:n], epochs=self.trainer.epoch + 1)
        return time.perf_counter() - t

    def accuracy(self, x, y) -> float:
        return evaluate(self.model, x, y)[1]


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
def inference(sifir_model, torch_model, sk, test_x, repeats: int = 5, single: int = 300) -> dict:
    """Seconds for all test images (batches of 1000, median of ``repeats``) and one image's
    latency (median of ``single`` calls), in eval mode."""
    tx = torch.from_numpy(test_x)
    one, tone = test_x[:1], tx[:1]
    sifir_model.eval()
    torch_model.eval()
    out = {"sifir": {}, "torch": {}}
    out["sifir"]["all_s"] = _median_time(lambda: predict_logits(sifir_model, test_x, 1000), repeats)
    out["torch"]["all_s"] = _median_time(lambda: torch_predict(torch_model, tx), repeats)
    torch_model.eval()
    out["sifir"]["one_s"] = _median_time(lambda: sifir_model(one), single)
    with torch.inference_mode():
        out["torch"]["one_s"] = _median_time(lambda: torch_model(tone), single)
    if sk is not None:
        flat = test_x.reshape(len(test_x), -1)
        out["sklearn"] = {"all_s": _median_time(lambda: sk.clf.predict_proba(flat), repeats),
                          "one_s": _median_time(lambda: sk.clf.predict_proba(flat[:1]), single)}
    sifir_model.train()
    torch_model.train()
    return out


def _median_time(fn, repeats: int, budget_s: float = 20.0) -> float:
    """Median over ``repeats`` timed calls after a few untimed ones; fewer (at least 3) when
    one call is so slow that ``repeats`` of them would exceed ``budget_s``."""
    first = _timed(fn)
    for _ in range(min(2, repeats - 1)):
        fn()
    repeats = max(3, min(repeats, int(budget_s / max(first, 1e-9))))
    return statistics.median(_timed(fn) for _ in range(repeats))


# -- a row ------------------------------------------------------------------------------------
def run_row(row: Row, data, epochs: int, warmup: int, seed: int, peak: float, log) -> dict:
    train_x, train_y, test_x, test_y = data
    nn.manual_seed(seed)
    torch.manual_seed(seed)
    model = row.build()
    runs = {"sifir": SifirRun(row, model, train_x, train_y, seed),
            "torch": TorchRun(row, to_torch(model), train_x, train_y, seed)}
    if row.sklearn_hidden is not None:
        runs["sklearn"] = SklearnRun(row, train_x, train_y, seed)
    names = list(runs)
    times = {name: [] for name in names}
    if warmup:  # caches, allocator and thread pools settle; not timed
        for name in names:
            log(f"  {row.key}: {name} warm-up on {warmup:,} images: {runs[name].epoch(warmup):.2f} s")
    for e in range(epochs):
        order = names[e % len(names):] + names[:e % len(names)]  # rotate who goes first
        for name in order:
            times[name].append(runs[name].epoch())
            log(f"  {row.key}: {name} epoch {e + 1}: {times[name][-1]:.2f} s")
    flops = train_flops_per_epoch(model, len(train_x))
    result = {"key": row.key, "title": row.title, "note": row.note, "parameters": model.num_parameters(),
              "batch_size": row.batch_size, "optimizer": row.optimizer, "lr": row.lr,
              "train_gflop_per_epoch": flops / 1e9, "frameworks": {}}
    for name, run in runs.items():
        med = statistics.median(times[name])
        result["frameworks"][name] = {
            "epoch_seconds": times[name], "median_s": med, "min_s": min(times[name]),
            "test_accuracy": run.accuracy(test_x, test_y),
            "gflops": flops / med / 1e9, "peak_fraction": flops / med / 1e9 / peak}
    fw = result["frameworks"]
    result["ratio"] = fw["sifir"]["median_s"] / fw["torch"]["median_s"]
    result["ratio_fastest"] = fw["sifir"]["min_s"] / fw["torch"]["min_s"]
    result["inference"] = inference(model, runs["torch"].model, runs.get("sklearn"), test_x)
    return result


# -- machine and output -----------------------------------------------------------------------
def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sklearn
    blas = [{"owner": _owner(lib.get("filepath", "")),
             **{k: lib.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                        "num_threads", "filepath")}}
            for lib in threadpool_info()]
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS")) or k in ("NPY_DISABLE_CPU_FEATURES",)}
    return {"cpu": cpu, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
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


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    blas = "; ".join(f"{b['owner']}: {b['internal_api']}" + (f" {b['version']}" if b["version"] else "")
                     + (f" ({b['architecture']} kernels)" if b["architecture"] else "") for b in m["thread_pools"])
    env = ", ".join(f"{k}={v}" for k, v in m["blas_environment"].items()) or "none set"
    peak = report["gemm_peak"]
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs; Python {m['python']}, NumPy {m['numpy']}, "
        f"PyTorch {m['torch']}, scikit-learn {m['sklearn']}. Thread pools (threadpoolctl): {blas}. "
        f"BLAS/OpenMP environment variables: {env}.",
        f"Threads: {s['threads']} for every library. Timed epochs per row: {s['epochs']} on "
        f"{s['train_images']:,} images, interleaved, after an untimed warm-up epoch on {s['warmup_images']:,}; "
        f"seconds are the median; \"fastest epochs\" is the ratio of each one's fastest epoch. Test accuracy "
        f"is after all epochs. Load average at start / end: "
        f"{' '.join(f'{v:.1f}' for v in m['load_average'])} / {' '.join(f'{v:.1f}' for v in report['load_average_end'])}.",
        f"float32 GEMM peak ({peak['size']}×{peak['size']}, best of 5): NumPy {peak['numpy']:.0f} GFLOP/s, "
        f"PyTorch {peak['torch']:.0f} GFLOP/s; \"% peak\" below is of {peak['peak']:.0f} GFLOP/s.",
        "",
        "| network | sifir s/epoch | PyTorch s/epoch | sifir/PyTorch | fastest epochs | scikit-learn s/epoch "
        "| test acc sifir / PyTorch / sklearn | GFLOP/epoch | % peak sifir / PyTorch |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in report["rows"]:
        fw = r["frameworks"]
        sk = fw.get("sklearn")
        accs = " / ".join(f"{fw[k]['test_accuracy']:.2%}" if k in fw else "–" for k in ("sifir", "torch", "sklearn"))
        sk_s = f"{sk['median_s']:.2f}" if sk else "–"
        lines.append(f"| {r['title']} | {fw['sifir']['median_s']:.2f} | {fw['torch']['median_s']:.2f} | "
                     f"**{r['ratio']:.2f}** | {r['ratio_fastest']:.2f} | {sk_s} | {accs} | "
                     f"{r['train_gflop_per_epoch']:.1f} | "
                     f"{fw['sifir']['peak_fraction']:.1%} / {fw['torch']['peak_fraction']:.1%} |")
    lines += ["", "Inference in eval mode: all 10,000 test images in batches of 1000 (median of 5 passes, 3 "
              "when slow; scikit-learn takes all 10,000 in one call), and one image (median of 300 calls).", "",
              "| network | sifir 10k (ms) | PyTorch 10k (ms) | sifir/PyTorch | sifir 1 image (µs) | "
              "PyTorch 1 image (µs) | sifir/PyTorch | sklearn 10k (ms) / 1 image (µs) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        inf = r["inference"]
        si, to, sk = inf["sifir"], inf["torch"], inf.get("sklearn")
        sk_text = f"{sk['all_s'] * 1e3:.1f} / {sk['one_s'] * 1e6:.0f}" if sk else "–"
        lines.append(f"| {r['title']} | {si['all_s'] * 1e3:.1f} | {to['all_s'] * 1e3:.1f} | "
                     f"{si['all_s'] / to['all_s']:.2f} | {si['one_s'] * 1e6:.0f} | {to['one_s'] * 1e6:.0f} | "
                     f"{si['one_s'] / to['one_s']:.2f} | {sk_text} |")
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
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per row (after the warm-up)")
    p.add_argument("--warmup-images", type=int, default=5000,
                   help="each framework first trains one untimed epoch on this many images (0: none)")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                   help="comma-separated rows: seed, mlp128, mlp800, lenet5, cnn, mlp_preset")
    p.add_argument("--threads", type=int, default=2, help="threads for NumPy's BLAS, PyTorch and scikit-learn")
    p.add_argument("--train-images", type=int, default=TRAIN_SIZE,
                   help="train on the first N images (fewer: a quick check that every row runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", action="store_true", help="print the results as Markdown tables")
    p.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        p.error("--epochs and --threads must be at least 1")
    if not 0 < args.train_images <= TRAIN_SIZE:
        p.error(f"--train-images must be between 1 and {TRAIN_SIZE}")
    if args.warmup_images < 0:
        p.error("--warmup-images must be 0 or more")
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
    skipped = [f"{k} (needs sifir.nn.Conv2d/MaxPool2d or the preset)" for k in wanted if k not in available]
    selected = [available[k] for k in wanted if k in available]

    with threadpool_limits(limits=args.threads):
        torch.set_num_threads(args.threads)
        report = {"machine": machine_info(), "settings": {"threads": args.threads, "epochs": args.epochs,
                                                          "seed": args.seed, "train_images": args.train_images,
                                                          "warmup_images": args.warmup_images},
                  "skipped": skipped, "rows": []}
        log(f"machine: {report['machine']['cpu']}; threads {args.threads}; BLAS {report['machine']['thread_pools']}")
        data = load(args.data_dir, args.train_images)
        report["gemm_peak"] = gemm_peak(args.threads)
        log(f"GEMM peak: {report['gemm_peak']}")
        for row in selected:
            log(f"row {row.key}: {row.title}")
            result = run_row(row, data, args.epochs, args.warmup_images, args.seed, report["gemm_peak"]["peak"], log)
            report["rows"].append(result)
            fw = result["frameworks"]
            log(f"  → sifir {fw['sifir']['median_s']:.2f} s, torch {fw['torch']['median_s']:.2f} s, "
                f"ratio {result['ratio']:.2f}")
        report["load_average_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        print(markdown(report))
    else:
        for r in report["rows"]:
            fw = r["frameworks"]
            print(f"{r['key']:<11} " + "  ".join(f"{k} {v['median_s']:.2f} s/epoch ({v['test_accuracy']:.2%})"
                                               for k, v in fw.items()) + f"  sifir/torch {r['ratio']:.2f}")
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
