"""recipe: presets plus options become one checked recipe, a ready run, and a command line."""
import dataclasses
import math
import shlex

import numpy as np
import pytest

from sifir import cli, models, nn, optim
from sifir.recipe import Limits, Recipe, RecipeError, build_run


def test_unset_options_take_the_presets_recipe():
    r = Recipe(model="seed").resolved()
    preset = models.get("seed")
    assert (r.epochs, r.batch_size, r.lr, r.optimizer, r.schedule) == (
        preset.epochs, preset.batch_size, preset.lr, preset.optimizer, preset.schedule)
    assert r.augment == "none"
    assert Recipe(model="seed", lr=0.5).resolved().lr == 0.5


@pytest.mark.parametrize("field, value", [
    ("lr", -1.0), ("lr", 0.0), ("lr", math.nan), ("lr", math.inf), ("epochs", 0), ("epochs", 2.5),
    ("batch_size", 0), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-4),
    ("label_smoothing", 1.0), ("optimizer", "rmsprop"), ("schedule", "wavy"), ("augment", "blur"),
    ("patience", 0), ("validation", 0), ("validation", 60_000), ("seed", -1), ("model", "nonsense"),
    ("workers", 0), ("workers", 1.5),
])
def test_bad_values_name_their_option(field, value):
    with pytest.raises(RecipeError) as e:
        Recipe(**{"model": "seed", field: value}).resolved()
    assert e.value.field == field
    assert field.replace("_", "-") in str(e.value) or field == "model"


def test_limits_tighten_the_ranges():
    limits = Limits(max_epochs=5, max_batch_size=512, max_lr=10.0)
    with pytest.raises(RecipeError, match="--epochs"):
        Recipe(model="seed", epochs=6).resolved(limits)
    with pytest.raises(RecipeError, match="--batch-size"):
        Recipe(model="seed", epochs=5, batch_size=1024).resolved(limits)
    with pytest.raises(RecipeError, match="--lr"):
        Recipe(model="seed", epochs=5, lr=1e9).resolved(limits)
    assert Recipe(model="seed", epochs=5).resolved(limits).epochs == 5


@pytest.mark.parametrize("recipe", [
    Recipe(model="seed"),
    Recipe(model="seed", lr=0.5, epochs=3, seed=7),
    Recipe(model="mlp", optimizer="sgd", momentum=0.9, schedule="cosine", augment="shift", batch_size=32),
    Recipe(model="cnn", label_smoothing=0.05, weight_decay=0.0, patience=2, validation=1000),
    Recipe(model="custom"),
    Recipe(model="custom", hidden=(128, 64, 32), activation="leaky-relu", optimizer="adam", lr=0.0123456789),
    Recipe(model="seed", lr=0.1 + 0.2, momentum=1 / 3),   # floats whose short form would round
    Recipe(model="cnn", dataset="fashion-mnist", epochs=3, augment="shift"),
    Recipe(model="seed", dataset="idx", data_dir="/data/my letters"),
    Recipe(model="seed", workers=3),
    Recipe(model="best", kernels=(5,), seed=1),
    Recipe(model="best", kernels=[3, 5, 7]),   # a list (as a page or a file sends it) reads back as a tuple
    Recipe(model="cnn", kernels=(3,)),
])
def test_the_command_line_builds_the_same_recipe(recipe):
    recipe = recipe.resolved()
    command = recipe.command()
    argv = shlex.split(command)
    assert argv[:2] == ["sifir", "train"]
    args = cli.build_parser().parse_args(argv[1:])
    assert cli.recipe_from_args(args) == recipe


def test_command_names_only_what_differs_from_the_preset():
    assert Recipe(model="seed").resolved().command() == "sifir train --model seed"
    assert Recipe(model="seed", lr=0.25).resolved().command() == "sifir train --model seed --lr 0.25"
    # the preset's recipe for that data set is the default there
    assert Recipe(model="cnn", dataset="fashion-mnist").resolved().command() == \
        "sifir train --model cnn --dataset fashion-mnist"


def test_a_preset_can_train_differently_per_data_set_and_mnist_keeps_its_recipe():
    mnist, fashion = Recipe(model="cnn").resolved(), Recipe(model="cnn", dataset="fashion-mnist").resolved()
    assert (mnist.epochs, mnist.augment) == (5, "shift")   # MNIST's cnn recipe as it always was
    assert fashion.augment == "flip" and fashion.epochs == models.get("cnn").recipes["fashion-mnist"]["epochs"] > 5
    assert Recipe(model="cnn", dataset="kmnist").resolved() == dataclasses.replace(mnist, dataset="kmnist")
    with pytest.raises(RecipeError, match="unknown data set 'svhn'.*mnist, fashion-mnist") as e:
        Recipe(model="cnn", dataset="svhn").resolved()
    assert e.value.field == "dataset"


def test_the_last_layer_follows_the_number_of_classes():
    from sifir.data.inputs import DataFacts
    facts = DataFacts("emnist-balanced", "EMNIST Balanced", tuple(str(i) for i in range(47)), 0.17, 0.33)
    for name in models.PRESETS:
        run = build_run(Recipe(model=name, dataset="emnist-balanced").resolved(), 1000, facts=facts)
        out = run.model.eval()(np.zeros((2, 1, 28, 28), np.float32))
        assert out.shape == (2, 47), name
    assert models.build("seed")[3].weight.shape == (10, 10)   # the tutorial's W2


def test_build_run_is_seeded_and_follows_the_recipe():
    recipe = Recipe(model="seed", optimizer="sgd", momentum=0.9, schedule="onecycle", seed=3).resolved()
    a, b = build_run(recipe, 1000), build_run(recipe, 1000)
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert np.array_equal(p.data, q.data), name
    assert isinstance(a.optimizer, optim.SGD) and a.optimizer.momentum == 0.9
    assert isinstance(a.schedule, optim.OneCycleLR)
    assert a.trainer.batch_size == recipe.batch_size and a.trainer.seed == 3
    other = build_run(Recipe(model="seed", seed=4).resolved(), 1000)
    assert not np.array_equal(a.model[1].weight.data, other.model[1].weight.data)


# -- a network of the learner's own ------------------------------------------------------------
@pytest.mark.parametrize("activation, layer", [("relu", "ReLU"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh"),
                                                ("leaky-relu", "LeakyReLU")])
def test_a_custom_mlp_has_the_widths_and_activation_asked_for(activation, layer):
    recipe = Recipe(model="custom", hidden=[32, 16], activation=activation).resolved()
    assert recipe.hidden == (32, 16) and recipe.activation == activation
    model = build_run(recipe, 1000).model
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear", layer, "Linear", layer, "Linear"]
    assert [m.weight.shape for m in model if hasattr(m, "weight")] == [(32, 784), (16, 32), (10, 16)]
    x = np.random.default_rng(0).normal(size=(5, 1, 28, 28)).astype(np.float32)
    assert model(x).shape == (5, 10)


def test_a_custom_mlp_takes_the_seed_presets_recipe_and_one_hidden_layer_by_default():
    recipe = Recipe(model="custom").resolved()
    seed = Recipe(model="seed").resolved()
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.epochs, recipe.schedule) == (
        seed.optimizer, seed.lr, seed.batch_size, seed.epochs, seed.schedule)
    assert recipe.hidden == models.CUSTOM_HIDDEN and recipe.activation == "relu"
    assert recipe.command() == "sifir train --model custom --hidden 100 --activation relu"


@pytest.mark.parametrize("options, field", [
    ({"model": "seed", "hidden": (10,)}, "hidden"), ({"model": "mlp", "activation": "tanh"}, "activation"),
    ({"model": "custom", "hidden": ()}, "hidden"), ({"model": "custom", "hidden": (0,)}, "hidden"),
    ({"model": "custom", "hidden": (10, 2.5)}, "hidden"), ({"model": "custom", "hidden": "64"}, "hidden"),
    ({"model": "custom", "hidden": (10,) * 17}, "hidden"), ({"model": "custom", "hidden": (9000,)}, "hidden"),
    ({"model": "custom", "activation": "elu"}, "activation"), ({"model": "custom", "activation": 3}, "activation"),
])
def test_bad_custom_options_name_their_option(options, field):
    with pytest.raises(RecipeError) as e:
        Recipe(**options).resolved()
    assert e.value.field == field and "--" + field in str(e.value)


@pytest.mark.parametrize("options", [
    {"model": "seed", "kernels": (5,)}, {"model": "custom", "kernels": (3,)}, {"model": "fast", "kernels": (5,)},
    {"model": "best", "kernels": (4,)}, {"model": "best", "kernels": (9,)}, {"model": "best", "kernels": ()},
    {"model": "best", "kernels": (3,) * 9}, {"model": "best", "kernels": "5"}, {"model": "cnn", "kernels": (True,)},
])
def test_bad_kernel_sizes_are_refused(options):
    with pytest.raises(RecipeError) as e:
        Recipe(**options).resolved()
    assert e.value.field == "kernels" and "--kernels" in str(e.value) and "--kernels" in e.value.render("tr")


def test_kernel_sizes_build_the_network_and_default_to_the_presets():
    best = Recipe(model="best").resolved()
    assert best.kernels == (3,) and Recipe(model="seed").resolved().kernels is None
    assert best.command() == Recipe(model="best", kernels=(3,)).resolved().command() == "sifir train --model best"
    for model in ("cnn", "best"):
        for k in models.KERNELS:
            net = Recipe(model=model, kernels=(k,)).resolved().build_model()
            convs = [m for m in net if isinstance(m, nn.Conv2d)]
            assert convs and all(c.weight.data.shape[2:] == (k, k) and c.padding == (k // 2, k // 2) for c in convs)
            x = np.zeros((2, 1, 28, 28), np.float32)
            net.eval()
            assert net(x).shape == (2, 10)
    # 3×3 is the preset's network itself, draw for draw
    nn.manual_seed(0)
    a = models.build("best")
    nn.manual_seed(0)
    b = best.build_model()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))


def test_limits_can_narrow_the_models_and_the_network():
    limits = Limits(models=("seed", "custom"), max_layers=2, max_width=64)
    with pytest.raises(RecipeError, match="not offered here; choose one of: seed, custom"):
        Recipe(model="best").resolved(limits)
    with pytest.raises(RecipeError, match="1 to 2 widths"):
        Recipe(model="custom", hidden=(8, 8, 8)).resolved(limits)
    with pytest.raises(RecipeError, match="from 1 to 64"):
        Recipe(model="custom", hidden=(65,)).resolved(limits)
    assert Recipe(model="custom", hidden=(64, 64)).resolved(limits).hidden == (64, 64)


def test_messages_are_in_the_readers_language():
    with pytest.raises(RecipeError) as e:
        Recipe(model="seed", batch_size=100_000).resolved()
    assert e.value.render("en") == "--batch-size must be a whole number from 1 to 65,536, got 100000"
    assert e.value.render("tr") == "--batch-size 1 ile 65.536 arasında bir tam sayı olmalı; gelen: 100000"


def test_the_cli_trains_a_custom_mlp(tmp_path, mnist_dir):
    from sifir import io
    from test_cli import sifir
    out = tmp_path / "mine.npz"
    result = sifir("train", "--model", "custom", "--hidden", "32", "--activation", "tanh", "--epochs", "1",
                   "--validation", "1000", "--data-dir", mnist_dir, "--out", out, "--quiet",
                   env={"SIFIR_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    model, info = io.load_model(out)
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear", "Tanh", "Linear"]
    assert info["command"].startswith("sifir train --model custom --hidden 32 --activation tanh")
    assert info["test_accuracy"] > 0.85


def test_workers_default_to_every_usable_core_for_convolutions_and_big_mlps_and_are_recorded():
    from sifir import parallel
    recipe = Recipe(model="cnn").resolved()
    assert recipe.workers is None and "--workers" not in recipe.command()
    run = build_run(recipe, 1000)
    assert run.trainer.workers == parallel.usable_cores() and run.info(None)["workers"] == run.trainer.workers
    assert build_run(Recipe(model="cnn", workers=1).resolved(), 1000).trainer.workers == 1
    # a big MLP splits its units among every core; a small one is one process, its BLAS on every core
    assert build_run(Recipe(model="mlp").resolved(), 1000).trainer.workers == parallel.usable_cores()
    assert build_run(Recipe(model="custom", hidden=(32,)).resolved(), 1000).trainer.workers == 1
    assert build_run(Recipe(model="custom", hidden=(32,), workers=2).resolved(), 1000).trainer.workers == 2
    # the tutorial's tiny network stays on one worker unless asked
    assert build_run(Recipe(model="seed").resolved(), 1000).trainer.workers == 1
    assert build_run(Recipe(model="seed", workers=2).resolved(), 1000).trainer.workers == 2
    with pytest.raises(RecipeError, match="--workers"):
        Recipe(model="seed", workers=3).resolved(Limits(max_workers=2))
