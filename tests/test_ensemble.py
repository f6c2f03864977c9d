"""Ensembles: averaged probabilities, one model file, and every front end treating it as one model."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from sifir import io, models, nn
from sifir.activations import hidden_activations
from sifir.errors import ModelFileError
from sifir.nn.gradcheck import gradcheck


def small_member(seed: int) -> nn.Module:
    nn.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 4))


def test_forward_is_the_log_of_the_mean_probability():
    members = [small_member(s) for s in range(3)]
    ensemble = nn.Ensemble(*members)
    x = np.random.default_rng(0).standard_normal((6, 1, 3, 4)).astype(np.float32)
    mean = np.mean([nn.softmax(m(x).astype(np.float64)) for m in members], axis=0)
    out = ensemble(x)
    np.testing.assert_allclose(np.exp(out), mean, rtol=1e-5)
    np.testing.assert_allclose(nn.softmax(out.astype(np.float64)), mean, rtol=1e-5)   # softmax(log p̄) = p̄
    assert (out.argmax(1) == mean.argmax(1)).all()


def test_one_member_is_that_network():
    member = small_member(0)
    x = np.random.default_rng(1).standard_normal((5, 1, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(nn.softmax(nn.Ensemble(member)(x)), nn.softmax(member(x)), rtol=1e-5, atol=1e-7)


def test_gradients_match_central_differences():
    ensemble = nn.Ensemble(*[small_member(s) for s in range(3)])
    x = np.random.default_rng(2).standard_normal((4, 1, 3, 4))
    errors = gradcheck(ensemble, x)
    assert max(errors.values()) < 1e-6, errors
    assert {"input", "0.1.weight", "2.3.bias"} <= set(errors)


def test_an_ensemble_needs_members():
    with pytest.raises(ValueError):
        nn.Ensemble()


def seed_ensemble(k: int = 3) -> nn.Ensemble:
    members = []
    for s in range(k):
        nn.manual_seed(s)
        members.append(models.build("seed"))
    return nn.Ensemble(*members)


def test_file_round_trip(tmp_path):
    ensemble = seed_ensemble()
    path = io.save_model(tmp_path / "ens.npz", ensemble, {"preset": "seed", "ensemble": 3})
    loaded, info = io.load_model(path)
    assert isinstance(loaded, nn.Ensemble) and len(loaded) == 3 and info["ensemble"] == 3
    x = np.random.default_rng(3).standard_normal((8, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), ensemble.eval()(x))
    assert io.describe(loaded) == io.describe(ensemble)
    assert io.count_parameters(loaded)["weights"] == 3 * 7940


def rewrite_meta(path, out, change):
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(arrays.pop(io.META_KEY)))
    change(meta, arrays)
    np.savez(out, **arrays, **{io.META_KEY: np.array(json.dumps(meta))})
    return out


def test_damaged_members_are_named(tmp_path):
    path = io.save_model(tmp_path / "ens.npz", seed_ensemble(), {})

    def nan_in_member_two(meta, arrays):
        arrays["1.1.weight"] = np.full_like(arrays["1.1.weight"], np.nan)
    with pytest.raises(ModelFileError, match=r"'1\.1\.weight' holds NaN"):
        io.load_model(rewrite_meta(path, tmp_path / "nan.npz", nan_in_member_two))

    def member_missing(meta, arrays):
        del arrays["2.3.bias"]
    with pytest.raises(ModelFileError, match=r"missing array '2\.3\.bias'"):
        io.load_model(rewrite_meta(path, tmp_path / "missing.npz", member_missing))

    def no_members(meta, arrays):
        meta["architecture"]["members"] = []
    with pytest.raises(ModelFileError, match="bad ensemble"):
        io.load_model(rewrite_meta(path, tmp_path / "empty.npz", no_members))

    def member_is_garbage(meta, arrays):
        meta["architecture"]["members"][1] = {"type": "Nonsense"}
    with pytest.raises(ModelFileError, match="unknown layer type 'Nonsense'"):
        io.load_model(rewrite_meta(path, tmp_path / "garbage.npz", member_is_garbage))

    # a damaged zip member (bytes overwritten inside one member's array) is a damaged file, named
    data = bytearray(path.read_bytes())
    start = data.find(b"2.1.weight.npy") + 200
    data[start:start + 64] = b"\xff" * 64
    damaged = tmp_path / "flipped.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="flipped.npz"):
        io.load_model(damaged)


def test_the_page_sees_the_first_members_layers():
    ensemble = seed_ensemble(2)
    x = np.random.default_rng(4).standard_normal((1, 1, 28, 28)).astype(np.float32)
    hidden, output = hidden_activations(ensemble, x)
    assert [h.index for h in hidden] == ["0.2", "0.4"]
    np.testing.assert_array_equal(output, ensemble.eval()(x))


def test_predict_and_evaluate_read_an_ensemble_file(tmp_path, trained_seed_model, mnist_dir):
    single, info = io.load_model(trained_seed_model)
    path = io.save_model(tmp_path / "pair.npz", nn.Ensemble(single, single), {**info, "ensemble": 2})
    run = lambda *a: subprocess.run([sys.executable, "-m", "sifir", *map(str, a)], capture_output=True, text=True)
    one = run("evaluate", trained_seed_model, "--data-dir", mnist_dir)
    two = run("evaluate", path, "--data-dir", mnist_dir)
    assert one.returncode == two.returncode == 0, two.stderr
    # two copies of one network average to that network: the very same accuracy
    assert one.stdout.splitlines()[-1] == two.stdout.splitlines()[-1]
    from sifir.data import mnist
    from PIL import Image
    digit = mnist.load_mnist(mnist_dir, download_missing=False)["test_images"][0]
    Image.fromarray(255 - digit).save(tmp_path / "seven.png")
    a, b = run("predict", trained_seed_model, tmp_path / "seven.png"), run("predict", path, tmp_path / "seven.png")
    assert a.returncode == b.returncode == 0, b.stderr
    assert a.stdout.split(":")[1].split()[0] == b.stdout.split(":")[1].split()[0]


# -- sifir train --ensemble K -------------------------------------------------------------------
def train(*args, state):
    from test_cli import sifir
    return sifir("train", *map(str, args), env={"SIFIR_STATE_DIR": str(state), "OPENBLAS_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("pair")
    out = folder / "pair.npz"
    result = train("--model", "seed", "--epochs", "1", "--ensemble", "2", "--data-dir", mnist_dir,
                   "--out", out, "--quiet", state=folder)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_ensemble_saves_one_model_of_k_networks(trained_pair, mnist_dir):
    out, result = trained_pair
    model, info = io.load_model(out)
    assert isinstance(model, nn.Ensemble) and len(model) == 2
    assert info["ensemble"] == 2 and [m["seed"] for m in info["members"]] == [0, 1]
    assert info["command"] == f"sifir train --model seed --epochs 1 --data-dir {mnist_dir} --ensemble 2"
    assert info["dataset"]["name"] == "mnist" and info["input"]["mean"] == 0.1307
    # each member is the network `sifir train --seed S` trains, kept beside the ensemble
    alone = [io.load_model(m["file"]) for m in info["members"]]
    assert [i["seed"] for _, i in alone] == [0, 1] and [m["test_accuracy"] for m in info["members"]] == [
        i["test_accuracy"] for _, i in alone]
    assert [i["command"] for _, i in alone] == [f"sifir train --model seed --epochs 1 {s}--data-dir {mnist_dir}"
                                                 for s in ("", "--seed 1 ")]
    for (member, _), inside in zip(alone, model):
        assert all(np.array_equal(a.data, b.data) for a, b in zip(member.parameters(), inside.parameters()))
    assert alone[0][1]["test_accuracy"] != alone[1][1]["test_accuracy"]   # two seeds, two networks
    # the ensemble's accuracy is its own averaged answer's, on the 10,000 test images
    from sifir.recipe import Recipe, load_data
    from sifir.train import evaluate
    data = load_data(Recipe(model="seed", data_dir=str(mnist_dir)).resolved(), log=lambda *a: None)
    assert info["test_accuracy"] == evaluate(model, data.test_x, data.test_y)[1] > 0.85
    lines = result.stdout.splitlines()
    assert "ensemble: network 1 of 2 (seed 0)" in lines and "ensemble: network 2 of 2 (seed 1)" in lines
    assert lines[-1] == f"test accuracy: {info['test_accuracy']:.2%}"


def test_the_same_command_reads_finished_members_back_and_retrains_a_damaged_one(trained_pair, mnist_dir,
                                                                                tmp_path):
    import shutil
    out, _ = trained_pair
    copy = tmp_path / "pair.npz"
    shutil.copytree(out.with_name("pair.members"), tmp_path / "pair.members")
    (tmp_path / "pair.members" / "seed-1.npz").write_bytes(b"not a model file")   # a damaged member
    result = train("--model", "seed", "--epochs", "1", "--ensemble", "2", "--data-dir", mnist_dir,
                   "--out", copy, "--quiet", state=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ensemble: network 1 of 2 (seed 0) already trained by this recipe") for line in lines)
    assert "ensemble: network 2 of 2 (seed 1)" in lines      # trained again: same seed, same weights
    a, b = io.load_model(out), io.load_model(copy)
    assert a[1]["test_accuracy"] == b[1]["test_accuracy"]
    # another recipe (more epochs) does not take these members for its own
    other = train("--model", "seed", "--epochs", "2", "--ensemble", "2", "--data-dir", mnist_dir,
                  "--out", copy, "--quiet", "--lr", "0.2", state=tmp_path)
    assert other.returncode == 0 and "already trained" not in other.stdout


def test_a_member_saved_with_other_views_is_quoted_as_the_ensemble_reads_it(trained_pair, mnist_dir, tmp_path):
    import shutil
    out, _ = trained_pair
    shutil.copytree(out.with_name("pair.members"), tmp_path / "pair.members")
    first = tmp_path / "pair.members" / "seed-0.npz"
    model, info = io.load_model(first)
    # as a version that read this network in 9 views would have saved it (the same network)
    io.save_model(first, model, {**info, "views": 9, "test_accuracy": 0.5})
    result = train("--model", "seed", "--epochs", "1", "--ensemble", "2", "--data-dir", mnist_dir,
                   "--out", tmp_path / "pair.npz", "--quiet", state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"(test accuracy {info['test_accuracy']:.2%})" in result.stdout and "50.00%" not in result.stdout
    assert io.load_model(tmp_path / "pair.npz")[1]["members"][0]["test_accuracy"] == info["test_accuracy"]


def test_members_differ_in_seed_alone_and_share_the_validation_block(tmp_path):
    from sifir.ensembles import finished_member, member_recipes
    from sifir.recipe import Recipe
    recipe = Recipe(model="seed", seed=7, fold=2).resolved()
    members = member_recipes(recipe, 3)
    assert [(m.seed, m.fold) for m in members] == [(7, 2), (8, 2), (9, 2)]
    rest = [{k: v for k, v in r.options().items() if k != "seed"} for r in (recipe, *members)]
    assert all(r == rest[0] for r in rest)
    # a member file from before folds (no "fold" in its recipe) held out the last block: fold 0
    nn.manual_seed(0)
    old = Recipe(model="seed").resolved()
    options = {k: v for k, v in old.options().items() if k != "fold"}
    path = io.save_model(tmp_path / "seed-0.npz", models.build("seed"), {"recipe": options})
    assert finished_member(path, old) is not None
    assert finished_member(path, Recipe(model="seed", fold=1).resolved()) is None


def test_members_take_the_kernel_sizes_in_turn(tmp_path):
    from sifir.ensembles import finished_member, member_path, member_recipes
    from sifir.recipe import Recipe
    members = member_recipes(Recipe(model="best", kernels=(3, 5)).resolved(), 5)
    assert [(m.seed, m.kernels) for m in members] == [(0, (3,)), (1, (5,)), (2, (3,)), (3, (5,)), (4, (3,))]
    assert [member_path(tmp_path / "e.npz", m).name for m in members[:2]] == ["seed-0.npz", "seed-1-k5.npz"]
    # each member is the single run of its seed and kernel size
    assert members[1].command() == "sifir train --model best --kernels 5 --seed 1"
    assert members[2] == Recipe(model="best", seed=2).resolved()
    # a 3×3 member saved before kernel sizes (no "kernels" in its recipe) is the 3×3 member
    old = {k: v for k, v in members[0].options().items() if k != "kernels"}
    path = io.save_model(tmp_path / "seed-0.npz", models.build("best"), {"recipe": old})
    assert finished_member(path, members[0]) is not None
    assert finished_member(path, dataclasses.replace(members[1], seed=0)) is None
    # a file's recipe comes back from JSON with a list: still the same member
    path = io.save_model(tmp_path / "seed-1-k5.npz", members[1].build_model(), {"recipe": members[1].options()})
    assert finished_member(path, members[1]) is not None and finished_member(path, members[3]) is None
    # so do a custom MLP's widths: its members are found again too
    custom = Recipe(model="custom", hidden=(8, 4)).resolved()
    path = io.save_model(tmp_path / "custom.npz", custom.build_model(), {"recipe": custom.options()})
    assert finished_member(path, custom) is not None


def test_an_ensemble_of_two_kernel_sizes_trains_each_member_with_its_own(tmp_path, mnist_dir):
    # cnn, one epoch on 5,000 training images: the other 55,000 are validation
    out = tmp_path / "mix.npz"
    result = train("--model", "cnn", "--kernels", "5", "3", "--ensemble", "2", "--epochs", "1", "--validation",
                   "55000", "--data-dir", mnist_dir, "--out", out, "--quiet", state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ensemble: network 1 of 2 (seed 0, 5×5)" in result.stdout.splitlines()
    # the second member trains on as many workers as the first: no thread left behind by the first
    # (a progress bar's monitor) keeps this process from forking them
    workers = [line for line in result.stdout.splitlines() if line.startswith("workers: ")]
    assert len(workers) == 2 and workers[0] == workers[1] and "note:" not in result.stderr
    model, info = io.load_model(out)
    sizes = [[m.weight.data.shape[2] for m in member if isinstance(m, nn.Conv2d)] for member in model]
    assert sizes == [[5, 5], [3, 3]] and [m["kernels"] for m in info["members"]] == [[5], [3]]
    assert info["command"].startswith("sifir train --model cnn --kernels 5 3 ") and info["test_accuracy"] > 0.9
    assert sorted(p.name for p in (tmp_path / "mix.members").iterdir()) == ["seed-0-k5.npz", "seed-1.npz"]


@pytest.mark.parametrize("extra, message", [
    (["--ensemble", "0"], "--ensemble must be a whole number from 2 to 64"),
    (["--ensemble", "65"], "--ensemble must be a whole number from 2 to 64"),
    (["--ensemble", "2", "--checkpoint-dir", "ck"], "leave out --checkpoint-dir and --resume"),
    (["--model", "cnn", "--kernels", "3", "5"], "--kernels 3 5 gives several kernel sizes"),
    (["--kernels", "5"], "--kernels applies only to the models whose convolutions"),
])
def test_bad_ensemble_options_are_refused_before_training(extra, message, tmp_path, mnist_dir):
    result = train("--model", "seed", "--data-dir", mnist_dir, "--out", tmp_path / "e.npz", *extra, state=tmp_path)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "e.npz").exists() and not (tmp_path / "e.members").exists()


def test_the_page_says_it_reads_with_an_ensemble(trained_pair):
    from fastapi.testclient import TestClient

    from sifir.web import app as server
    from test_web_api import LOCAL, data_url, png
    out, _ = trained_pair
    with TestClient(server.create_app(out), base_url=LOCAL) as client:
        model = client.get("/api/model").json()
        assert model["ensemble"] == 2 and [h["index"] for h in model["hidden"]] == ["0.2", "0.4"]
        digit = np.zeros((28, 28), np.uint8)
        digit[4:24, 12:16] = 255   # a one
        answer = client.post("/api/predict", json={"image": data_url(png(digit))}).json()
    assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-6
    from sifir.messages import page_messages
    assert "{count}" in page_messages("en")["ensemble"] and "{count}" in page_messages("tr")["ensemble"]
