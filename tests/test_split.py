"""Training an MLP with its units split among worker processes (sifir.split): the same gradients
and updates as one process, deterministic and resumable runs, and the same clear errors that
leave nothing running. Small networks and data: the point is the machinery, not the speed."""
import multiprocessing
import os
import signal

import numpy as np
import pytest

from sifir import models, nn, optim, parallel, split
from sifir.train import Interrupted, Trainer, predict_logits
from test_parallel import images, no_workers_left, same, serial_gradients, shift, weights
from test_train import request_stop_after


def mlp(hidden=(24,), seed=0, dropout=0.0, activation=nn.ReLU, bias=True):
    """8×8 images → hidden layers → 3 classes."""
    nn.manual_seed(seed)
    layers, width = [nn.Flatten()], 64
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), activation()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 3, bias=bias))


def test_which_networks_split_their_units():
    assert split.linear_layers(mlp()) == [1, 3]
    assert split.linear_layers(mlp((8, 6, 4), dropout=0.2)) == [1, 4, 7, 10]
    assert split.linear_layers(models.build("seed")) == [1, 3]             # a ReLU after the last layer
    assert split.linear_layers(models.build("mlp")) == [1, 4, 7]
    assert split.linear_layers(models.custom_mlp([32, 16], "tanh")) is not None
    for other in (models.build("cnn"), nn.Sequential(nn.Flatten(), nn.Linear(64, 3)),   # one layer: no units
                  nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)),
                  nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3), nn.Dropout(0.5))):
        assert split.linear_layers(other) is None
    assert split.units(800, 2) == [(0, 400), (400, 800)]
    assert split.units(100, 3) == [(0, 32), (32, 64), (64, 100)]    # multiples of 16
    assert split.units(10, 3) == [(0, 3), (3, 6), (6, 10)]          # too narrow for that


@pytest.mark.parametrize("hidden, workers, batch", [((24,), 2, 37), ((24, 20), 3, 64), ((10, 7, 5), 2, 5),
                                                    ((4,), 3, 1), ((2,), 3, 9)])   # (2,), 3: a worker without units
def test_gradients_are_those_of_one_process(hidden, workers, batch):
    x, y = images()
    idx = np.arange(batch)
    loss, expected = serial_gradients(mlp(hidden), x[idx], y[idx])
    model = mlp(hidden)
    opt = optim.SGD(model.parameters(), lr=1.0)          # one step of lr 1 moves each weight by its gradient
    before = [p.data.copy() for p in model.parameters()]
    runner = split.SplitUnits(model, opt, nn.CrossEntropyLoss(), workers, x, y, batch_size=64).start()
    try:
        split_loss, correct = runner.forward_backward(idx, np.random.default_rng(0))
        runner.step()
        runner.wait()
        assert split_loss == pytest.approx(loss, rel=1e-6)
        scale = max(np.abs(g).max() for g in expected)
        for p, w, g in zip(model.parameters(), before, expected):
            np.testing.assert_allclose(w - p.data, g, rtol=1e-4, atol=1e-6 * scale)
            np.testing.assert_allclose(p.grad, g, rtol=1e-4, atol=1e-6 * scale)   # what the Learn page shows
    finally:
        runner.close()
    assert no_workers_left()


def test_the_update_is_the_optimizers_step_with_its_state_shared():
    x, y = images()
    idx = np.arange(48)
    one = mlp((20, 12))
    opt_one = optim.AdamW(one.parameters(), lr=1e-2, weight_decay=0.1)
    serial_gradients(one, x[idx], y[idx])
    opt_one.step()
    model = mlp((20, 12))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    runner = split.SplitUnits(model, opt, nn.CrossEntropyLoss(), 2, x, y, batch_size=64).start()
    try:
        runner.forward_backward(idx, np.random.default_rng(0))
        runner.step()
        runner.wait()
        for p, q in zip(model.parameters(), one.parameters()):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
        for m, m_one in zip(opt.exp_sum_sq, opt_one.exp_sum_sq):   # every worker's part, in the shared state
            np.testing.assert_allclose(m, m_one, rtol=1e-4, atol=1e-5 * m_one.max())
        assert opt.step_count == 1
    finally:
        runner.close()
    assert all(p.data.base is None for p in model.parameters())


def run(workers=2, epochs=2, stop_after=None, resume=None, checkpoint_dir=None, sgd=False, hidden=(16, 12),
        prepare=None, **options):
    """A small MLP with dropout trained on 8×8 spots, augmented; ``options`` go to the Trainer."""
    x, y = images(150)
    model = mlp(hidden, dropout=0.25)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if sgd else optim.AdamW(model.parameters(), lr=3e-2)
    trainer = Trainer(model, opt, batch_size=25, seed=1, schedule=optim.OneCycleLR(opt, total=3 * 5), augment=shift,
                      workers=workers, checkpoint_dir=checkpoint_dir, **options)
    if prepare is not None:
        prepare(trainer)
    if stop_after is not None:
        request_stop_after(trainer, stop_after)
    if resume:
        trainer.load_checkpoint(resume)
    trainer.fit(x[:125], y[:125], x[125:], y[125:], epochs=epochs)
    return model, trainer


def test_the_trainer_splits_an_mlps_units_and_the_same_seed_gives_the_same_weights(monkeypatch):
    started = []
    monkeypatch.setattr(split.SplitUnits, "start", lambda self: started.append(self) or parallel.DataParallel.start(self))
    a, ta = run(epochs=3)
    b, _ = run(epochs=3)
    assert len(started) == 2 and same(weights(a), weights(b))
    assert ta.history[-1].val_acc > 0.9 and ta.history[-1].train_loss < ta.history[0].train_loss
    x, y = images(150)   # validation in the workers: what one process computes from the same weights
    np.testing.assert_allclose(ta.history[-1].val_acc, np.mean(predict_logits(a, x[125:]).argmax(1) == y[125:]))
    c, _ = run(epochs=3, workers=3)   # another number of workers: other dropout masks, other weights
    assert not same(weights(a), weights(c))
    assert no_workers_left()


@pytest.mark.parametrize("sgd", [False, True])
def test_interrupt_mid_epoch_then_resume_is_bit_identical(tmp_path, sgd):
    full, full_trainer = run(epochs=3, sgd=sgd)
    with pytest.raises(Interrupted, match="checkpoint written"):
        run(epochs=3, stop_after=7, checkpoint_dir=tmp_path, sgd=sgd)   # batch 2 of epoch 2
    assert no_workers_left()
    resumed, trainer = run(epochs=3, resume=tmp_path, sgd=sgd)
    assert same(weights(full), weights(resumed))
    assert [r.val_acc for r in trainer.history] == [r.val_acc for r in full_trainer.history]
    if sgd:   # the momentum, created by each worker for its own units, was whole in the checkpoint
        assert all(b is not None for b in trainer.optimizer.momentum_buffer)


def test_a_killed_worker_stops_training_with_a_clear_error():
    x, y = images()
    model = mlp((32, 16))
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=10, workers=3)

    def kill_one(i, n, loss):
        if i == 3:
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
    trainer.on_batch = kill_one
    with pytest.raises(parallel.WorkerError, match=r"worker \d of 3 .*stopped unexpectedly .*SIGKILL"):
        trainer.fit(x, y, epochs=2)
    assert no_workers_left()
    assert all(p.data.base is None for p in model.parameters())


def test_divergence_stops_the_workers_too():
    from sifir.errors import TrainingDiverged
    x, y = images()
    model = mlp()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e30), batch_size=20, workers=2)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged):
        trainer.fit(x * 1e6, y, epochs=3)
    assert no_workers_left()
