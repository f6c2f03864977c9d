"""Training an MLP with its units split among worker processes (sifir.split): which networks
split, the same gradients and updates as one process, deterministic runs that learn (resume, a
killed worker and a diverging loss are tests/test_parallel.py's, for both ways of sharing the
work). Small networks and data: the point is the machinery, not the speed."""
import numpy as np
import pytest

from sifir import models, nn, optim, parallel, split
from sifir.train import predict_logits
from test_parallel import images, mlp, mlp2, no_workers_left, run, same, serial_gradients, weights


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


def test_the_trainer_splits_an_mlps_units_and_the_same_seed_gives_the_same_weights(monkeypatch):
    started = []
    monkeypatch.setattr(split.SplitUnits, "start", lambda self: started.append(self) or parallel.DataParallel.start(self))
    a, ta = run(epochs=3, network=mlp2, lr=3e-2)
    b, _ = run(epochs=3, network=mlp2, lr=3e-2)
    assert len(started) == 2 and same(weights(a), weights(b))
    assert ta.history[-1].val_acc > 0.9 and ta.history[-1].train_loss < ta.history[0].train_loss
    x, y = images(150)   # validation in the workers: what one process computes from the same weights
    np.testing.assert_allclose(ta.history[-1].val_acc, np.mean(predict_logits(a, x[125:]).argmax(1) == y[125:]))
    c, _ = run(epochs=3, network=mlp2, lr=3e-2, workers=3)   # another number of workers: other weights
    assert not same(weights(a), weights(c))
    assert no_workers_left()
