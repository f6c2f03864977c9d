"""The cost of watching: `sifir train` against the same run trained from the page with a tab
streaming its reports, side by side, interleaved, on the same machine.

    python benchmarks/watch_cost.py                         # seed and mlp, 1 epoch, 3 rounds, all cores and one
    python benchmarks/watch_cost.py --models seed --epochs 2 --rounds 5 --threads all

Each round runs, for each model and thread count, `sifir train --model M --epochs E` as a
process, then the same recipe started through the training API of a `sifir serve` (one per
thread count, started by this script on a free loopback port) while an event-stream client reads
every report, as an open tab does. Two figures per side:

- epoch: the Trainer's own seconds per epoch, which hold everything done between two batches
  (for the CLI from the saved model's history: `sifir train` prints them with one decimal; for the
  page from each epoch's report);
- whole: wall-clock seconds from the start to the saved model (the CLI process's lifetime) or to
  the run's last report (the page: spawning the training process, loading the data, training, the
  test accuracy) — what a learner waits for.

It prints the medians and the ratios page/CLI (the goal: at most 1.10); both sides train the same
weights (the script checks the test accuracy is the same number). "all" threads is the BLAS
default, "1" sets OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 for both sides.
Only 127.0.0.1 is ever contacted. Timings mean something only on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest  # noqa: E402  (start_server: `sifir serve` on a free loopback port)
from sifir import io  # noqa: E402

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli_run(model: str, epochs: int, env: dict, data_dir) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "sifir", "train", "--model", model, "--epochs", str(epochs), "--quiet",
                   "--out", str(Path(tmp) / "m.npz"), *(["--data-dir", str(data_dir)] if data_dir else [])]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env,
                                                                             "SIFIR_STATE_DIR": tmp})
        whole = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"sifir train failed: {done.stderr.strip()}")
        # the Trainer's own seconds, from the model file: the printed "s per epoch" has one decimal
        # (0.2 for a 0.24 s epoch of the seed network), too coarse for a ratio
        _, info = io.load_model(Path(tmp) / "m.npz")
    epoch = statistics.mean(h["seconds"] for h in info["history"])
    test = float(re.search(r"test accuracy: ([\d.]+)%", done.stdout).group(1))
    return {"epoch": epoch, "whole": whole, "test": test}


def page_run(server, model: str, epochs: int) -> dict:
    """Start the run through the API with an event stream open; wait for its end."""
    import httpx
    headers = {"X-Sifir-Token": server.token}
    reports, finished = [], threading.Event()

    def watch():
        with httpx.Client(base_url=server.url, headers=headers, timeout=None, trust_env=False) as c:
            with c.stream("GET", "/api/learn/events") as stream:
                kind = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        reports.append((kind, json.loads(line[5:])))
                        if kind == "end":
                            finished.set()
                            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with httpx.Client(base_url=server.url, headers=headers, timeout=60, trust_env=False) as c:
        while not reports:   # the stream's hello: a tab is watching
            time.sleep(0.01)
        start = time.perf_counter()
        run = c.post("/api/learn/runs", json={"model": model, "epochs": epochs})
        run.raise_for_status()
        finished.wait()
        whole = time.perf_counter() - start
        c.delete(f"/api/learn/runs/{run.json()['id']}")
    watcher.join(10)
    end = [d for k, d in reports if k == "end"][0]
    if end["state"] != "done":
        raise RuntimeError(f"the page's run ended {end['state']}: {end.get('message')}")
    epochs_seen = [d["epoch_seconds"] for k, d in reports if k == "epoch"]
    return {"epoch": statistics.mean(epochs_seen), "whole": whole, "test": round(100 * end["test_accuracy"], 2),
            "reports": len(reports)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=["seed", "mlp"], choices=["seed", "mlp", "cnn"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--threads", nargs="+", default=["all", "1"], choices=["all", "1"])
    p.add_argument("--data-dir", help="MNIST folder (default: $SIFIR_DATA_DIR or the user cache)")
    args = p.parse_args(argv)
    results = {}
    for threads in args.threads:
        env = ONE_THREAD if threads == "1" else {}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)   # the server, and so its training processes, start with these
        try:
            with tempfile.TemporaryDirectory() as state, loadtest.start_server(
                    args=["--data-dir", args.data_dir] if args.data_dir else [], env={"SIFIR_STATE_DIR": state}) as srv:
                for r in range(args.rounds):
                    for model in args.models:
                        for side in ("cli", "page") if r % 2 == 0 else ("page", "cli"):   # alternate who goes first
                            out = cli_run(model, args.epochs, env, args.data_dir) if side == "cli" else \
                                page_run(srv, model, args.epochs)
                            results.setdefault((threads, model, side), []).append(out)
                            print(f"threads {threads:>3}  {model:<5} {side:<4} round {r + 1}: epoch {out['epoch']:.2f} s, "
                                  f"whole {out['whole']:.2f} s, test {out['test']:.2f}%", flush=True)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    print(f"\nmedians over {args.rounds} rounds, {args.epochs} epoch(s), on {os.cpu_count()} cores:")
    print(f"{'threads':>7} {'model':<6} {'CLI epoch':>10} {'page epoch':>11} {'ratio':>6} "
          f"{'CLI whole':>10} {'page whole':>11} {'ratio':>6}  same weights")
    for threads in args.threads:
        for model in args.models:
            cli, page = results[(threads, model, "cli")], results[(threads, model, "page")]
            ce, pe = statistics.median(x["epoch"] for x in cli), statistics.median(x["epoch"] for x in page)
            cw, pw = statistics.median(x["whole"] for x in cli), statistics.median(x["whole"] for x in page)
            same = {x["test"] for x in cli} == {x["test"] for x in page}
            print(f"{threads:>7} {model:<6} {ce:>9.2f}s {pe:>10.2f}s {pe / ce:>6.3f} {cw:>9.2f}s {pw:>10.2f}s "
                  f"{pw / cw:>6.3f}  {'yes' if same else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
