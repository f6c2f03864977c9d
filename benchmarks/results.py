"""The results table: every preset trained on several seeds with the very command a user runs,
quoted as the median with min–max beside it, and the machine it ran on.

    python benchmarks/results.py --json results.json --markdown           # seed, mlp, cnn, best, fast × seeds 0,1,2
    python benchmarks/results.py --presets cnn --seeds 0,1,2,3,4 --json cnn.json
    python benchmarks/results.py --presets best --ensemble 5 --json best.json   # also the 5-network ensemble
    python benchmarks/results.py --presets best --ensemble 5 --ensemble-args '--kernels 3 5' --json best.json
    python benchmarks/results.py --json results.json --markdown --report-only   # the table from a saved run

Each run is `sifir train --model P --seed S --quiet --out …` in a fresh process (what a user
types, nothing tuned in between); its test accuracy, best validation epoch and seconds per epoch
come from the model file it writes. Runs already in the JSON file are not repeated, so a long
table can be built over several sittings (a full default run takes about an hour and a half on a
2-core machine: most of it the `best` preset's 20 epochs × 3 seeds). Models are kept in
--models (default: a folder beside the JSON file). An ensemble (`--ensemble K`) is `sifir train
--ensemble K`, whose members are the single runs of seeds S…S+K−1: those already trained here are
handed to it (linked into its members folder, which it reads back because they were trained by
the same recipe), so K = 5 after three seeds trains two more networks, not five. With
--ensemble-args (options for the ensemble alone, such as `--kernels 3 5`: members of 3×3 and 5×5
convolutions in turn), only the members that are such single runs are handed over; the 5×5 ones
are trained by the ensemble.

A preset whose kept model reads the test images in views (`best`: 9) is quoted as it is kept,
with the network on the image alone beside it: the lever's effect, seed by seed. A run in the
JSON file from before its preset read in views (or in other views) is brought up to date
without training again: views are read after training, so its network, read in the views its
command keeps now, is what this version's `sifir train` saves (the model file is rewritten).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from machine import cpu_name  # noqa: E402  (benchmarks/ is the script's folder)
from sifir import io, parallel  # noqa: E402
from sifir.ensembles import members_folder  # noqa: E402


def machine() -> str:
    """'Intel(R) Xeon(R) … , 2 cores, Linux': the processor and the cores this process may use."""
    return f"{cpu_name()}, {parallel.usable_cores()} cores, {platform.system()}"


def command(preset: str, seed: int, out: Path, extra: list[str]) -> list[str]:
    return ["sifir", "train", "--model", preset, "--seed", str(seed), *extra, "--quiet", "--out", str(out)]


def run_one(argv: list[str], data_dir: str | None) -> dict:
    """Train once in a fresh process; the facts from the model file it writes."""
    out = Path(argv[argv.index("--out") + 1])
    full = [sys.executable, "-m", "sifir", *argv[1:]] + (["--data-dir", data_dir] if data_dir else [])
    start = time.perf_counter()
    result = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    _, info = io.load_model(out)
    seconds = [h["seconds"] for h in info.get("history", [])]
    return {"command": shlex.join(argv), "test_accuracy": info["test_accuracy"], "best_epoch": info.get("best_epoch"),
            "epochs": info.get("epochs"), "seconds_per_epoch": statistics.median(seconds) if seconds else None,
            "wall_seconds": wall, "model": str(out), "members": info.get("members"),
            "views": info.get("views", 1), "one_view_test_accuracy": info.get("one_view_test_accuracy"),
            # with --average: what was kept, and the best epoch's own weights' test accuracy
            "kept": info.get("kept"), "plain_test_accuracy": info.get("plain_test_accuracy")}


def recipe_of(preset: str, extra: list[str], data_dir: str | None):
    """The recipe `sifir train --model PRESET EXTRA…` trains, as this sifir reads it."""
    from sifir import cli
    args = cli.build_parser().parse_args(["train", "--model", preset, *extra]
                                         + (["--data-dir", data_dir] if data_dir else []))
    return cli.recipe_from_args(args)


def read_in_views(run: dict, data_dir: str | None) -> bool:
    """A run trained before its preset read the test images in views: its network read in the
    views its command now keeps (what `sifir train` of this version saves after the very same
    training, since views are read after it), the model file and the record brought up to date.
    False when nothing needed doing."""
    from sifir.recipe import in_views, load_data, test_accuracies

    recipe = recipe_of(run["preset"], run.get("extra", []), data_dir)
    if run.get("views", 1) == recipe.views:
        return False
    model, info = io.load_model(run["model"])
    data = load_data(recipe, log=lambda *a: None)
    kept = in_views(model, recipe.views, data.facts)
    accuracy, one_view = test_accuracies(kept, data)
    info.update(test_accuracy=accuracy, views=recipe.views, one_view_test_accuracy=one_view)
    if isinstance(info.get("recipe"), dict):
        info["recipe"]["views"] = recipe.views
    io.save_model(run["model"], kept, info)
    run.update(test_accuracy=accuracy, views=recipe.views, one_view_test_accuracy=one_view)
    return True


def summarise(values: list[float]) -> str:
    """'99.45% [99.38–99.51%]' (median and range), or the one value."""
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2%}"
    return f"{med:.2%} [{min(values):.2%}–{max(values):.2%}]"


def table(results: dict, presets: list[str], ensemble: int | None) -> str:
    rows = ["| preset | seeds | test accuracy, median [min–max] | the network on the image alone (where read in views) "
            "| the best epoch's own weights (where averaged) | s/epoch (median) | wall per run (median) | command |",
            "| --- | ---: | --- | --- | --- | ---: | ---: | --- |"]
    for preset in presets:
        runs = [r for r in results["runs"] if r["preset"] == preset and not r.get("ensemble")]
        if runs:
            accs = [r["test_accuracy"] for r in runs]
            alone = [r["one_view_test_accuracy"] for r in runs if r.get("views", 1) > 1]
            plain = [r["plain_test_accuracy"] for r in runs if r.get("plain_test_accuracy") is not None]
            kept = ", ".join("average" if r.get("kept") == "average" else "epoch" for r in runs) if plain else ""
            spe = statistics.median([r["seconds_per_epoch"] for r in runs])
            wall = statistics.median([r["wall_seconds"] for r in runs])
            seeds = ",".join(str(r["seed"]) for r in runs)
            options = "".join(" " + shlex.quote(a) for a in runs[0].get("extra", []))
            views = f" ({runs[0]['views']} views)" if alone else ""
            plain_cell = f"{summarise(plain)} (kept: {kept})" if plain else "–"
            rows.append(f"| `{preset}` | {seeds} | {summarise(accs)}{views} | {summarise(alone)} | {plain_cell} | {spe:.1f} | "
                        f"{wall / 60:.1f} min | `sifir train --model {preset} --seed S{options}` |")
        singles = {r["seed"]: r for r in runs}
        for r in (r for r in results["runs"] if r["preset"] == preset and r.get("ensemble")):
            seeds = range(r["seed"], r["seed"] + r["ensemble"])
            if all(s in singles for s in seeds) and not r.get("ensemble_extra"):   # the members are these single runs
                member_accs = [singles[s]["test_accuracy"] for s in seeds]
            else:
                member_accs = [m["test_accuracy"] for m in r.get("members") or [] if m.get("test_accuracy") is not None]
            alone = summarise([r["one_view_test_accuracy"]] if r.get("one_view_test_accuracy") is not None else [])
            rows.append(f"| `{preset}` × {r['ensemble']} (ensemble) | {r['seed']}… | {r['test_accuracy']:.2%} "
                        f"(members {summarise(member_accs)}) | {alone} | – | – | {r['wall_seconds'] / 60:.1f} min (the members "
                        f"not trained above) | `{r['command'].split(' --quiet')[0]}` |")
    return "\n".join(rows) + f"\n\nMachine: {results['machine']}.\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="seed,mlp,cnn,best,fast", help="comma-separated presets")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (at least 3 for a median worth quoting)")
    p.add_argument("--ensemble", type=int, help="also train one K-network ensemble of each preset "
                   "(sifir train --ensemble K, seeds S…S+K−1)")
    p.add_argument("--ensemble-args", default="", help="more options for the ensemble alone, e.g. '--kernels 3 5'")
    p.add_argument("--train-args", default="", help="more options for every `sifir train`, e.g. '--dataset fashion-mnist'")
    p.add_argument("--data-dir", default=os.environ.get("SIFIR_DATA_DIR"), help="data folder (default $SIFIR_DATA_DIR)")
    p.add_argument("--json", default="results.json", help="results file (read to resume, then written)")
    p.add_argument("--models", help="folder for the trained models (default: RESULTS-models/ beside --json)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--report-only", action="store_true", help="train nothing; only print the table from --json")
    args = p.parse_args(argv)

    presets = [s for s in args.presets.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    extra = shlex.split(args.train_args)
    ensemble_extra = shlex.split(args.ensemble_args)
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    results["machine"] = results.get("machine") or machine()
    models = Path(args.models) if args.models else path.with_name(path.stem + "-models")
    models.mkdir(parents=True, exist_ok=True)
    done = {r["command"] for r in results["runs"]}
    tag = "-".join(a.lstrip("-") for a in extra).replace("/", "_")
    ensemble_tag = "".join("-" + a.lstrip("-") for a in ensemble_extra)   # -x5-kernels-3-5

    plan = []
    for preset in presets:
        for seed in seeds:
            plan.append((preset, seed, None))
        if args.ensemble:
            plan.append((preset, seeds[0], args.ensemble))
    for run in results["runs"] if not args.report_only else []:
        if run["preset"] in presets and Path(run["model"]).is_file() and read_in_views(run, args.data_dir):
            print(f"read in {run['views']} views: {run['command']} → {run['test_accuracy']:.2%} "
                  f"(one view {run['one_view_test_accuracy']:.2%})", flush=True)
            path.write_text(json.dumps(results, indent=1))
    for preset, seed, k in plan if not args.report_only else []:
        name = f"{preset}{'-' + tag if tag else ''}-s{seed}" + (f"-x{k}{ensemble_tag}" if k else "")
        options = extra + (["--ensemble", str(k), *ensemble_extra] if k else [])
        argv = command(preset, seed, models / f"{name}.npz", options)
        if shlex.join(argv) in done:
            continue
        if k:   # the single runs of its seeds are its first members (where it would train the same)
            for member_seed in range(seed, seed + k):
                single = models / f"{preset}{'-' + tag if tag else ''}-s{member_seed}.npz"
                kept = members_folder(models / f"{name}.npz") / f"seed-{member_seed}.npz"
                if single.is_file() and not kept.exists():   # a 5×5 member is seed-S-k5.npz: not this
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    os.link(single, kept)
        print(f"running: {shlex.join(argv)}", flush=True)
        r = run_one(argv, args.data_dir)
        r.update(preset=preset, seed=seed, ensemble=k, extra=extra, **({"ensemble_extra": ensemble_extra} if k else {}))
        results["runs"].append(r)
        path.write_text(json.dumps(results, indent=1))   # after every run: a long table survives a stop
        per_epoch = f"{r['seconds_per_epoch']:.1f} s/epoch, " if r["seconds_per_epoch"] else ""
        print(f"  test accuracy {r['test_accuracy']:.2%}, {per_epoch}{r['wall_seconds'] / 60:.1f} min", flush=True)
    path.write_text(json.dumps(results, indent=1))
    if args.markdown or args.report_only:
        print(table(results, presets, args.ensemble))
    return 0


if __name__ == "__main__":
    sys.exit(main())
