"""Averaged weights (sifir.average, Trainer(average=K), recipe option and --average): the window's
mean, that it changes nothing in training, the choice on validation, checkpoints and resume, one
worker and two, and the command line."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

from sifir import io, optim
from sifir.average import WindowAverage
from sifir.errors import ModelFileError
from sifir.recipe import Recipe, RecipeError, build_run
from sifir.train import Interrupted, Trainer, evaluate
from test_parallel import convnet, images, no_workers_left, same, weights
from test_parallel import run as train_spots


def test_the_window_keeps_the_last_k_states_and_averages_them():
    avg = WindowAverage(3)
    states = [{"w": np.full((2, 2), float(e), np.float32), "b": np.array([e, -e], np.float32)} for e in range(1, 6)]
    for e, s in enumerate(states, 1):
        avg.add(e, s)
        s["w"] += 100   # the window holds copies: the model keeps training
        assert avg.full == (e >= 3)
    assert avg.epochs == (3, 5)
    mean = avg.mean()
    assert mean["w"].dtype == np.float32
    np.testing.assert_array_equal(mean["w"], np.full((2, 2), 4.0))   # (3 + 4 + 5) / 3
    np.testing.assert_array_equal(mean["b"], [4.0, -4.0])
    with pytest.raises(ValueError):
        WindowAverage(1)


def run(workers=1, average=3, epochs=5, record=None, **options):
    """test_parallel's small convnet at a constant learning rate (the weights keep moving:
    averaging has something to do); ``record`` collects each epoch's weights."""
    def prepare(trainer):
        if record is not None:
            trainer.on_epoch = lambda r: record.append(copy.deepcopy(dict(trainer.model.state_dict())))
    return train_spots(workers, epochs, lr=3e-2, one_cycle=False, average=average, prepare=prepare, **options)


def mean_of(states):
    return {k: np.mean([s[k] for s in states], axis=0, dtype=np.float64).astype(np.float32) for k in states[0]}


@pytest.mark.parametrize("workers", [1, 2])
def test_averaging_changes_nothing_in_training_and_measures_the_last_epochs_mean(workers):
    plain_model, plain = run(workers, average=None)
    states = []
    model, trainer = run(workers, record=states)
    # the same steps: every epoch's validation score and the best epoch as without averaging
    assert [r.val_acc for r in trainer.history] == [r.val_acc for r in plain.history]
    assert (trainer.best_acc, trainer.best_epoch) == (plain.best_acc, plain.best_epoch)
    assert same(list(trainer.best_state.values()), list(plain.best_state.values()))
    assert plain.average_score is None and plain.best_source == "epoch"
    # the mean of epochs 3–5 (weights and BatchNorm statistics), measured on the validation images
    x, y = images(150)
    probe = convnet(dropout=0.25)
    probe.load_state_dict(mean_of(states[2:]))
    assert trainer.average.epochs == (3, 5)
    assert trainer.average_score == evaluate(probe, x[125:], y[125:])[1]
    # kept only when it reads more validation images right than the best epoch
    if trainer.average_score > trainer.best_acc:
        assert trainer.best_source == "average" and same(weights(model), weights(probe))
    else:
        assert trainer.best_source == "epoch" and same(weights(model), weights(plain_model))
    assert no_workers_left()


def test_the_average_is_kept_only_when_it_scores_higher_on_validation(monkeypatch):
    import sifir.train
    model = convnet()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), average=2)
    own = {k: v.copy() for k, v in model.state_dict().items()}
    trainer.average.add(1, {k: v - 1 for k, v in own.items()})
    trainer.average.add(2, own)
    trainer.best_state, trainer.best_acc, trainer.best_epoch = {k: v + 5 for k, v in own.items()}, 0.8, 1
    for score, kept in [(0.85, "average"), (0.8, "epoch"), (0.75, "epoch")]:   # a tie keeps the best epoch's
        monkeypatch.setattr(sifir.train, "evaluate", lambda m, x, y: (0.1, score))
        trainer._try_average(None, None)
        assert (trainer.best_source, trainer.average_score) == (kept, score)
        for k, v in model.state_dict().items():
            np.testing.assert_allclose(v, own[k] - 0.5 if kept == "average" else own[k] + 5, atol=1e-6)
    trainer.average.window.popleft()   # one epoch is no average: nothing is tried
    trainer.average_score = None
    trainer._try_average(None, None)
    assert trainer.average_score is None


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupt_then_resume_averages_the_same_epochs(tmp_path, workers):
    full, full_trainer = run(workers)
    with pytest.raises(Interrupted, match="checkpoint written"):
        run(workers, stop_after=18, checkpoint_dir=tmp_path)   # epoch 4 of 5: the window has 3 epochs
    resumed, trainer = run(workers, resume=tmp_path)
    assert same(weights(full), weights(resumed))
    assert (trainer.average_score, trainer.best_source) == (full_trainer.average_score, full_trainer.best_source)
    assert trainer.average.epochs == (3, 5)


def test_a_checkpoint_with_another_window_is_refused(tmp_path):
    with pytest.raises(Interrupted):
        run(stop_after=18, checkpoint_dir=tmp_path)
    with pytest.raises(ModelFileError, match=r"averages the last 3 epochs' weights \(--average\), this run 0"):
        run(average=None, resume=tmp_path)
    arrays, meta = io.read_npz(tmp_path / "checkpoint.npz", "sifir-checkpoint")
    del arrays[next(k for k in arrays if k.startswith("average.1."))]
    io.write_npz_atomic(tmp_path / "checkpoint.npz", arrays, meta)
    with pytest.raises(ModelFileError, match="damaged checkpoint"):
        run(resume=tmp_path)


def test_the_recipe_takes_average_from_the_preset_and_checks_it():
    assert Recipe(model="seed").resolved().average == 0
    recipe = Recipe(model="seed", epochs=4, average=3).resolved()
    assert "--average 3" in recipe.command()
    run_ = build_run(recipe, 100)
    assert run_.trainer.average.k == 3
    assert build_run(Recipe(model="seed").resolved(), 100).trainer.average is None
    for bad in (-1, 5, 2.5, True):
        with pytest.raises(RecipeError, match="--average") as e:
            Recipe(model="seed", epochs=4, average=bad).resolved()
        assert e.value.field == "average"
        assert "--average" in e.value.render("tr")


def test_sifir_train_average_end_to_end(tmp_path, mnist_dir):
    out = tmp_path / "m.npz"
    done = subprocess.run([sys.executable, "-m", "sifir", "train", "--model", "seed", "--epochs", "4", "--lr", "0.5",
                           "--schedule", "constant", "--average", "3", "--validation", "1000",
                           "--data-dir", str(mnist_dir), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env={**os.environ, "SIFIR_STATE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    _, info = io.load_model(out)
    assert info["average"] == 3 and info["average_epochs"] == [2, 4] and info["kept"] in ("average", "epoch")
    assert 0 < info["average_score"] <= 1 and 0 < info["plain_test_accuracy"] <= 1
    assert "--average 3" in info["command"]
    if info["kept"] == "average":
        assert info["average_score"] > info["history"][info["best_epoch"] - 1]["val_acc"]
        assert "kept: the mean of the weights of epochs 2–4" in done.stdout
        assert f"its test accuracy {info['plain_test_accuracy']:.2%}" in done.stdout
    else:
        assert info["plain_test_accuracy"] == info["test_accuracy"]
        assert "the mean of the weights of epochs 2–4 read" in done.stdout
    evaluated = subprocess.run([sys.executable, "-m", "sifir", "evaluate", str(out), "--data-dir", str(mnist_dir)],
                               capture_output=True, text=True)
    assert f"{info['test_accuracy']:.2%}" in evaluated.stdout
