"""recipe: presets plus options become one checked recipe, a ready run, and a command line."""
import math
import shlex

import numpy as np
import pytest

from sifir import cli, models, optim
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
    Recipe(model="seed", workers=3),
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


def test_workers_default_to_every_usable_core_and_are_recorded():
    from sifir import parallel
    recipe = Recipe(model="mlp").resolved()
    assert recipe.workers is None and "--workers" not in recipe.command()
    run = build_run(recipe, 1000)
    assert run.trainer.workers == parallel.usable_cores() and run.info(None)["workers"] == run.trainer.workers
    assert build_run(Recipe(model="mlp", workers=1).resolved(), 1000).trainer.workers == 1
    # the tutorial's tiny network stays on one worker unless asked
    assert build_run(Recipe(model="seed").resolved(), 1000).trainer.workers == 1
    assert build_run(Recipe(model="seed", workers=2).resolved(), 1000).trainer.workers == 2
    with pytest.raises(RecipeError, match="--workers"):
        Recipe(model="seed", workers=3).resolved(Limits(max_workers=2))
