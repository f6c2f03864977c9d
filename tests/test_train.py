"""The training loop: learning, determinism, checkpoints that resume bit for bit, divergence."""
import numpy as np
import pytest

from sifir import nn, optim
from sifir.errors import ModelFileError, TrainingDiverged
from sifir.train import Interrupted, Trainer, evaluate


def blobs(n=600, seed=0):
    """Three Gaussian classes in 20 dimensions: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 20)) * 2
    y = rng.integers(0, 3, n)
    x = (centres[y] + rng.standard_normal((n, 20))).astype(np.float32)
    return x, y


def make(seed=0, lr=1e-2, total=None):
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.CosineLR(opt, total=total) if total else None
    return model, opt, sched


def request_stop_after(trainer, steps):
    """What Ctrl-C does: request a stop once ``steps`` batches are done in all (the batch finishes)."""
    def on_batch(i, n, loss):
        if trainer.epoch * n + i == steps:
            trainer._request_stop(None, None)
    trainer.on_batch = on_batch


def run(epochs, checkpoint_dir=None, stop_after=None, resume=None, seed=0, lr=1e-2):
    x, y = blobs()
    model, opt, sched = make(seed, lr, total=40)  # the same schedule whatever the stop
    trainer = Trainer(model, opt, batch_size=50, seed=seed, schedule=sched, checkpoint_dir=checkpoint_dir)
    if stop_after is not None:
        request_stop_after(trainer, stop_after)
    if resume:
        trainer.load_checkpoint(resume)
    trainer.fit(x[:500], y[:500], x[500:], y[500:], epochs=epochs)
    return model, trainer


def weights(model):
    return [p.data.copy() for p in model.parameters()]


def test_it_learns():
    model, trainer = run(5)
    x, y = blobs()
    assert evaluate(model, x[500:], y[500:])[1] > 0.9
    assert trainer.history[-1].train_loss < trainer.history[0].train_loss


def test_same_seed_same_weights_bit_for_bit():
    a, _ = run(3)
    b, _ = run(3)
    c, _ = run(3, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(weights(a), weights(b)))
    assert not all(np.array_equal(p, q) for p, q in zip(weights(a), weights(c)))


def test_resume_after_an_epoch_is_bit_identical(tmp_path):
    full, full_trainer = run(4)
    run(2, checkpoint_dir=tmp_path)
    resumed, trainer = run(4, resume=tmp_path)
    assert all(np.array_equal(p, q) for p, q in zip(weights(full), weights(resumed)))
    assert [r.val_acc for r in trainer.history] == [r.val_acc for r in full_trainer.history]


def test_interrupt_mid_epoch_then_resume_is_bit_identical(tmp_path):
    full, _ = run(3)
    with pytest.raises(Interrupted, match="checkpoint written"):
        run(3, checkpoint_dir=tmp_path, stop_after=17)  # batch 7 of epoch 2
    resumed, trainer = run(3, resume=tmp_path)
    assert all(np.array_equal(p, q) for p, q in zip(weights(full), weights(resumed)))
    assert trainer.epoch == 3


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    run(1, checkpoint_dir=tmp_path)
    nn.manual_seed(0)
    other = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3))
    trainer = Trainer(other, optim.Adam(other.parameters()))
    with pytest.raises(ModelFileError, match="another architecture"):
        trainer.load_checkpoint(tmp_path)


def test_divergence_stops_with_a_clear_message(tmp_path):
    x, y = blobs()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 3))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e30), batch_size=50, checkpoint_dir=tmp_path)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match=r"learning rate .* too large.*--lr"):
        trainer.fit(x * 1e6, y, epochs=3)


def test_a_loss_far_above_its_start_is_divergence_even_when_finite():
    x, y = blobs()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e4), batch_size=50)
    with pytest.raises(TrainingDiverged) as e:
        trainer.fit(x, y, epochs=3)
    d = e.value.details
    assert d["reason"] == "exploded" and d["loss"] > 10 * d["start"] and np.isfinite(d["loss"])
    assert (d["epoch"], d["batches"], d["lr"]) == (1, 12, 1e4) and 2 <= d["batch"] <= 12
    assert "far above" in str(e.value) and "--lr 1000" in str(e.value)


def test_an_overflow_is_divergence_and_names_the_set_learning_rate_not_the_scheduled_one():
    x, y = blobs()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 3))
    opt = optim.SGD(model.parameters(), lr=1e30)
    trainer = Trainer(model, opt, batch_size=50, schedule=optim.OneCycleLR(opt, total=36))
    with pytest.raises(TrainingDiverged) as e:
        trainer.fit(x * 1e6, y, epochs=3)
    assert e.value.details["reason"] in ("overflow", "exploded") and e.value.details["lr"] == 1e30
    assert "1e+30" in str(e.value) and "--lr 1e+29" in str(e.value)


def test_a_healthy_run_is_not_called_divergent():
    x, y = blobs()
    model, opt, _ = make(lr=0.05)
    seen = []
    trainer = Trainer(model, opt, batch_size=50, on_batch=lambda i, n, loss: seen.append(trainer.last_batch))
    trainer.fit(x, y, epochs=5)
    assert evaluate(model, x, y)[1] > 0.9
    assert len(seen) == 5 * 12 and all(size == 50 and 0 <= hits <= 50 for _, hits, size in seen)
    assert seen[-1][1] > 40     # last_batch counts the batch's right answers


def test_keep_best_and_early_stopping():
    x, y = blobs()
    model, opt, _ = make()
    seen = []
    trainer = Trainer(model, opt, batch_size=50, patience=1, on_epoch=seen.append)
    trainer.fit(x[:500], y[:500], x[500:], y[500:], epochs=30)
    assert len(seen) < 30  # stopped early
    best = max(seen, key=lambda r: r.val_acc)
    assert evaluate(model, x[500:], y[500:])[1] == pytest.approx(best.val_acc)


def test_training_stays_in_float32():
    x, y = blobs()
    model, opt, sched = make(total=20)
    seen = []
    Trainer(model, opt, batch_size=50, schedule=sched, on_batch=lambda i, n, loss: seen.append(loss)).fit(x, y, epochs=2)
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())
    assert all(a.dtype == np.float32 for a in opt.exp_sum + opt.exp_sum_sq)
    assert all(isinstance(loss, float) for loss in seen)
