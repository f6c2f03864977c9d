"""The measuring tools in benchmarks/ that need no other framework: they run, and they measure
what they say (no timing is asserted: benchmarks are not tests)."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import layer_times  # noqa: E402


def test_layer_times_times_every_part_of_a_step():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model = layer_times.lenet5()
    before = [p.data.copy() for p in model.parameters()]
    times = layer_times.time_layers(model, x, y, batch=16, rounds=3, lr=1e-3)
    layers = len(list(model))
    assert len(times) == 2 * layers + 2
    assert all(len(v) == 3 and min(v) > 0 for v in times.values())
    assert "0 Conv2d forward" in " ".join(times) and "optimizer step" in times
    # the steps really trained the network
    assert any(not np.array_equal(a, p.data) for a, p in zip(before, model.parameters()))


def test_layer_times_skips_the_input_gradient_that_training_skips():
    # An MLP begins with Flatten: training's backward stops at the first Linear layer and skips
    # its input gradient (the largest product of the pass), and so must the timing.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model = layer_times.build("mlp128")
    first, asked = model[1], []
    backward = first.backward
    first.backward = lambda g, need_input_grad=True: asked.append(need_input_grad) or backward(g, need_input_grad)
    times = layer_times.time_layers(model, x, y, batch=16, rounds=2, lr=1e-3)
    assert asked == [False] * 4                          # two untimed rounds, two timed
    assert " 1 Linear backward" in times and " 0 Flatten backward" not in times
    assert all(len(v) == 2 for v in times.values())


def test_layer_times_command_line(mnist_dir):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "layer_times.py"), "--data-dir", str(mnist_dir),
                          "--model", "seed", "--rounds", "2", "--batch", "32"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "seed, batch 32, 2 steps" in out
    assert " 1 Linear forward" in out and "whole step" in out


def test_before_after_compares_two_copies_of_the_package(mnist_dir):
    # the checkout against a copy of itself, on a few hundred images: both versions train
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "before_after.py"), str(REPO / "src" / "sifir"),
                          "--rows", "lenet5,mlp128", "--epochs", "1", "--images", "256", "--workers", "2",
                          "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["lenet5", "mlp128"]
    assert all("workers 2: before" in line and "after/before" in line for line in lines)


def test_results_table_trains_each_seed_once_and_quotes_the_median(mnist_dir, tmp_path):
    script = [sys.executable, str(REPO / "benchmarks" / "results.py"), "--presets", "seed", "--seeds", "0,1,2",
              "--train-args", "--epochs 1", "--data-dir", str(mnist_dir), "--json", str(tmp_path / "r.json"),
              "--markdown"]
    first = subprocess.run(script, capture_output=True, text=True, timeout=600, check=True).stdout
    assert first.count("running: sifir train --model seed") == 3
    import json
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    accs = sorted(r["test_accuracy"] for r in runs)
    assert len(set(accs)) == 3 and all(0.5 < a < 1 for a in accs)   # three seeds, three different networks
    row = next(line for line in first.splitlines() if line.startswith("| `seed`"))
    assert f"{accs[1]:.2%} [{accs[0]:.2%}–{accs[2]:.2%}]" in row
    assert "`sifir train --model seed --seed S --epochs 1`" in row
    assert "Machine:" in first and "cores" in first
    again = subprocess.run(script, capture_output=True, text=True, timeout=600, check=True).stdout
    assert "running:" not in again and row in again   # resumed from the file: nothing trained twice


def test_results_ensemble_is_built_from_the_seeds_already_trained(mnist_dir, tmp_path):
    import json
    script = [sys.executable, str(REPO / "benchmarks" / "results.py"), "--presets", "seed", "--seeds", "0,1",
              "--ensemble", "2", "--train-args", "--epochs 1", "--data-dir", str(mnist_dir),
              "--json", str(tmp_path / "r.json"), "--markdown"]
    out = subprocess.run(script, capture_output=True, text=True, timeout=600, check=True).stdout
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    singles = {r["seed"]: r for r in runs if not r["ensemble"]}
    (pair,) = [r for r in runs if r["ensemble"] == 2]
    # its members are the very networks of the single runs: read back, not trained again
    assert [m["test_accuracy"] for m in pair["members"]] == [singles[0]["test_accuracy"], singles[1]["test_accuracy"]]
    import os
    assert all(os.path.samefile(m["file"], singles[m["seed"]]["model"]) for m in pair["members"])
    row = next(line for line in out.splitlines() if "× 2 (ensemble)" in line)
    assert f"{pair['test_accuracy']:.2%}" in row and "sifir train --model seed --seed 0 --epochs 1 --ensemble 2" in row


def test_results_reads_a_run_trained_before_views_in_the_views_its_command_keeps_now(mnist_dir, tmp_path):
    import results

    from sifir import io, nn
    from test_cli import sifir
    out = tmp_path / "seed-s0.npz"
    assert sifir("train", "--model", "seed", "--epochs", "1", "--data-dir", mnist_dir, "--out", out, "--quiet",
                 env={"SIFIR_STATE_DIR": str(tmp_path)}).returncode == 0
    alone = io.load_model(out)[1]["test_accuracy"]
    # a record as a run without views left it; its command now keeps the network in 5 views
    run = {"preset": "seed", "seed": 0, "extra": ["--epochs", "1", "--views", "5"], "model": str(out),
           "test_accuracy": alone}
    assert results.read_in_views(run, str(mnist_dir))
    model, info = io.load_model(out)
    assert isinstance(model, nn.Views) and model.views == 5 and info["recipe"]["views"] == 5
    assert run["views"] == 5 and run["one_view_test_accuracy"] == alone == info["one_view_test_accuracy"]
    assert run["test_accuracy"] == info["test_accuracy"]
    assert not results.read_in_views(run, str(mnist_dir))   # once is enough
    row = results.table({"runs": [{**run, "seconds_per_epoch": 1.0, "wall_seconds": 60.0, "command": "c"}],
                         "machine": "m"}, ["seed"], None).splitlines()[2]
    assert f"{run['test_accuracy']:.2%} (5 views) | {alone:.2%} |" in row


def test_results_table_quotes_averaged_runs_beside_their_best_epochs_own_weights():
    import results
    runs = [{"preset": "best", "seed": s, "test_accuracy": a, "plain_test_accuracy": p, "kept": k, "views": 1,
             "seconds_per_epoch": 50.0, "wall_seconds": 1000.0, "extra": ["--average", "5"], "command": "c"}
            for s, a, p, k in [(0, 0.9972, 0.9970, "average"), (1, 0.9969, 0.9969, "epoch"), (2, 0.9971, 0.9968, "average")]]
    row = results.table({"runs": runs, "machine": "m"}, ["best"], None).splitlines()[2]
    assert "| 99.71% [99.69%–99.72%] | – | 99.69% [99.68%–99.70%] (kept: average, epoch, average) | 50.0 |" in row
    assert "`sifir train --model best --seed S --average 5`" in row


def test_results_quotes_an_ensemble_of_other_options_by_its_own_members():
    import results
    singles = [{"preset": "best", "seed": s, "test_accuracy": 0.997, "views": 1, "seconds_per_epoch": 37.0,
                "wall_seconds": 760.0, "extra": [], "command": "c"} for s in (0, 1)]
    mixed = {"preset": "best", "seed": 0, "ensemble": 2, "ensemble_extra": ["--kernels", "3", "5"],
             "test_accuracy": 0.9976, "wall_seconds": 1700.0, "command": "sifir train --model best --ensemble 2 "
             "--kernels 3 5 --quiet --out x", "members": [{"test_accuracy": 0.997}, {"test_accuracy": 0.9968}]}
    row = results.table({"runs": [*singles, mixed], "machine": "m"}, ["best"], 2).splitlines()[3]
    # seed 1's single run is 3×3, the ensemble's second member 5×5: the members' own accuracies are quoted
    assert "99.76% (members 99.69% [99.68%–99.70%])" in row
    assert "`sifir train --model best --ensemble 2 --kernels 3 5`" in row


def test_watch_cost_trains_the_same_weights_from_the_page_and_the_cli(mnist_dir):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "watch_cost.py"), "--models", "seed",
                          "--rounds", "1", "--threads", "1", "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    cli = re.search(r"seed  cli  round 1: epoch ([\d.]+) s", out.stdout)
    page = re.search(r"seed  page round 1: epoch ([\d.]+) s", out.stdout)
    assert cli and page and float(cli.group(1)) > 0 and float(page.group(1)) > 0   # exact seconds, not "0.2"
    row = next(line for line in out.stdout.splitlines() if line.split()[:2] == ["1", "seed"])
    assert row.endswith("yes")   # both sides reached the same test accuracy


def test_views_compares_each_network_with_itself_in_views(trained_seed_model, mnist_dir, tmp_path):
    from sifir import io, nn
    model, info = io.load_model(trained_seed_model)
    kept = io.save_model(tmp_path / "kept.npz", nn.Views(model, 9, fill=-0.42), info)
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "views.py"), str(trained_seed_model), str(kept),
                          "--views", "5", "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()
    first, second = (line.split(": ", 1)[1] for line in out[:2])
    assert first == second   # the network is taken out of the views it is kept in: the same figures
    assert first.startswith("validation ") and ", 5 views " in first and "  test " in first
    assert out[2] == "median over 2 models:" and out[3].startswith("  validation: one view")


def test_turned_views_compares_sets_of_views_and_chooses_on_validation(trained_seed_model, mnist_dir, tmp_path):
    from sifir import io, nn
    model, info = io.load_model(trained_seed_model)
    kept = io.save_model(tmp_path / "kept.npz", nn.Views(model, 29, fill=-0.42), info)
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "turned_views.py"), str(trained_seed_model),
                          str(kept), "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=600, check=True).stdout.splitlines()
    first = out[1:8]
    assert out[0].endswith("seed.npz:") and first == out[9:16]   # the network out of its views: the same figures
    assert first[0].startswith("  9 moves (9 views): validation ") and first[-1].startswith("  29: 27 + image scaled (29 views)")
    chosen = next(line for line in out if line.startswith("chosen on the validation images: "))
    assert chosen.split(": ", 1)[1] in {line.split(" (")[0].strip() for line in first}
    assert out[-8] == "the 2 models as one (probabilities averaged):" and len(out[-7:]) == 7


def test_weight_ema_averages_ride_along_without_changing_training():
    import weight_ema
    from sifir import models, nn, optim

    def trained(optimizer_type):
        nn.manual_seed(0)
        net = models.build("seed")
        opt = optimizer_type(net.parameters(), lr=1e-2, weight_decay=1e-4)
        start = [p.data.copy() for p in net.parameters()]
        rng = np.random.default_rng(0)
        loss = nn.CrossEntropyLoss()
        for _ in range(3):
            x, y = rng.standard_normal((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
            loss(net(x), y)
            net.zero_grad()
            net.backward(loss.backward())
            opt.step()
        return net, opt, start
    plain, _, _ = trained(optim.AdamW)
    net, opt, start = trained(weight_ema.AveragingAdamW)
    for a, b in zip(plain.parameters(), net.parameters()):
        np.testing.assert_array_equal(a.data, b.data)     # the averages only read the weights
    assert set(opt._buffers()) == {"exp_sum", "exp_sum_sq", *weight_ema.NAMES}
    # after three steps from w0: ema = d³·w0 + Σ (1−d)·d^(3−t)·w_t ≠ w3, and between the weights seen
    for name, decay in zip(weight_ema.NAMES, weight_ema.DECAYS):
        average = getattr(opt, name)[0]
        assert not np.array_equal(average, net.parameters()[0].data)
        assert np.abs(average - start[0]).max() < np.abs(net.parameters()[0].data - start[0]).max()
    state = weight_ema.state({"trained.0.weight": 1, "trained.0.bias": 2, "ema0.0.weight": 3}, "ema0")
    assert state == {"0.weight": 3, "0.bias": 2}


@pytest.mark.parametrize("model, extra, count", [("lenet5", [], 25), ("lenet5", ["--eval"], 12), ("mlp128", [], 8)])
def test_layer_ab_compares_two_copies_layer_by_layer(model, extra, count):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "layer_ab.py"), str(REPO / "src" / "sifir"),
                          "--model", model, "--batch", "8", "--rounds", "2", *extra],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert ("inference" if extra else "training") in lines[0]
    parts = lines[1:-1]
    # every layer's forward; in training the backward of each from the last to the first that learns
    # (an MLP's Flatten has none, as in Sequential.backward) and the optimizer's step
    assert len(parts) == count
    assert all("after/before" in line for line in parts) and lines[-1].startswith("sum of the fastest")
    assert ("optimizer step" in parts[-1]) == (not extra)
    if model == "mlp128":   # Flatten comes before the first layer that learns: no backward
        assert not any("Flatten backward" in line for line in parts)


def test_sides_and_blocks_times_both_products_and_every_block_size():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sides_and_blocks.py"), "--rounds", "1",
                          "--networks", "fast"], capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    products = [line for line in lines if line.strip().startswith("n ")]
    assert len(products) == 8 and all(float(line.split()[-1]) > 0 for line in products)
    adam = [line for line in lines if line.startswith("Adam step, fast")]
    assert len(adam) == 1 and adam[0].count("blocks of") == 5


def test_sides_and_blocks_leaves_the_block_size_as_it_was():
    import sides_and_blocks
    from sifir import optim
    before = optim.BLOCK
    sides_and_blocks.adam_blocks("fast", rounds=1)
    assert optim.BLOCK == before


@pytest.mark.parametrize("network", ["fast", "cnn"])   # Adam, and AdamW with its decay pass
def test_adam_passes_are_the_optimizers_own_update(network):
    # The passes the script times must be the optimizer's: a step made of them gives the same
    # weights and moments as Adam.step, bit for bit.
    import adam_passes
    ours, opt = adam_passes.build(network)
    theirs, ref = adam_passes.build(network)
    adam_passes.step_by_passes(opt)
    ref.step()
    assert opt.step_count == ref.step_count == 2
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert np.array_equal(a.data, b.data)
        assert np.array_equal(opt.exp_sum[i], ref.exp_sum[i]) and np.array_equal(opt.exp_sum_sq[i], ref.exp_sum_sq[i])
    once, _ = adam_passes.build(network)       # the same parameters after their first step only
    assert any(not np.array_equal(a.data, b.data) for a, b in zip(ours, once))


def test_adam_passes_times_every_pass_and_leaves_the_state_as_it_was():
    import adam_passes
    params, opt = adam_passes.build("fast")
    before = [p.data.copy() for p in params] + [m.copy() for m in opt.exp_sum + opt.exp_sum_sq]
    each, whole = adam_passes.timed_passes(params, opt, rounds=2)
    assert list(each) == [name for name, _ in adam_passes.passes(opt)] and len(each) == 10
    assert min(each.values()) > 0 and whole > 0 and opt.step_count == 1
    after = [p.data for p in params] + opt.exp_sum + opt.exp_sum_sq
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "adam_passes.py"), "--network", "fast",
                          "--rounds", "1"], capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("Adam, fast (212,730 parameters)") and len(lines) == 13
    assert "√V" in out and lines[-1].split()[:3] == ["the", "whole", "step"]


def test_workers_ab_compares_one_worker_with_every_core(mnist_dir):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "workers_ab.py"), "--images", "2000",
                          "--rounds", "1", "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.strip().splitlines()
    assert out[0].startswith("2,000 images, 1 rounds") and len(out) == 4
    rows = dict(line.split(": ", 1) for line in out[1:])
    assert set(rows) == {"784-128-10", "784-800-10", "LeNet-5"}
    # every network compared is big enough for every core: the MLPs split their units, LeNet-5 its batches
    from sifir import parallel
    assert all(row.endswith(f"default_workers: {parallel.usable_cores()}") for row in rows.values())


def test_workers_ab_compares_one_inference_thread_with_every_core(mnist_dir):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "workers_ab.py"), "--inference",
                          "--rounds", "1", "--data-dir", str(mnist_dir)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.strip().splitlines()
    assert out[0].startswith("inference, 10,000 images in batches of 1000, 1 rounds") and len(out) == 5
    rows = dict(line.split(": ", 1) for line in out[1:])
    assert set(rows) == {"784-10-10 (seed)", "784-128-10", "784-800-10", "LeNet-5"}
    assert all(" threads / 1 thread " in row for row in rows.values())
    from sifir import parallel
    assert rows["784-10-10 (seed)"].endswith("inference_threads: 1")
    assert rows["LeNet-5"].endswith(f"inference_threads: {parallel.usable_cores()}")


def test_wider_best_widens_only_the_third_stage():
    import wider_best
    from sifir import models, nn
    wide, best = wider_best.preset(256), models.PRESETS["best"]
    net = wide.build()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 256]
    assert [type(m) for m in net] == [type(m) for m in best.build()]   # the same layers, one wider
    assert [m.in_features for m in net if isinstance(m, nn.Linear)] == [256 * 7 * 7, 128]
    assert wide.build(classes=26)[-1].out_features == 26
    assert (wide.optimizer, wide.lr, wide.epochs, wide.augment, wide.views) == \
           (best.optimizer, best.lr, best.epochs, best.augment, best.views)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    net.eval()
    assert net(x).shape == (2, 10)
    assert wider_best.main([]) == 2 and models.PRESETS["best"] is best   # no width: usage, nothing changed


def test_kernel_sizes_reads_files_alone_and_in_groups(trained_seed_model, mnist_dir, tmp_path):
    def read(cache):
        return subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernel_sizes.py"), "read",
                               str(trained_seed_model), str(trained_seed_model), "--groups", "0", "0,1", "--views", "5",
                               "--data-dir", str(mnist_dir), "--cache", str(cache)],
                              capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()
    out = read(tmp_path / "cache")
    alone = [line.split(": errors ")[1] for line in out[:2]]
    assert alone[0] == alone[1] and alone[0].startswith("{'validation': ") and ", loss {'validation': 0." in alone[0]
    # a group of one is the network, and two copies of one network average to that network
    assert out[2].split(": errors ")[1] == out[3].split(": errors ")[1] == alone[0]
    # the one file's probabilities were kept once, and read back they give the same lines
    assert len(list((tmp_path / "cache").iterdir())) == 1 and read(tmp_path / "cache") == out
