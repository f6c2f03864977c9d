"""Data-parallel training (sifir.parallel): the same gradients and BatchNorm statistics as one
process, deterministic and resumable runs, and clear errors that leave nothing running. Small
models and data: the point is the machinery, not the speed."""
import multiprocessing
import os
import signal
import sys
import threading

import numpy as np
import pytest

from sifir import nn, optim, parallel
from sifir.errors import SifirError
from sifir.train import Interrupted, Trainer, predict_logits
from test_train import request_stop_after


def images(n=120, seed=0):
    """Three classes of 8×8 images: a bright spot in one of three places, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.5
    for k in range(3):
        x[y == k, 0, 2 * k + 1:2 * k + 3, 2:6] += 2
    return x, y


def convnet(seed=0, dropout=0.0):
    """No bias before a BatchNorm: it would get a gradient of zero (plus rounding), and Adam
    turns rounding into steps of full size, which would differ between any two summation orders."""
    nn.manual_seed(seed)
    layers = [nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(4), nn.ReLU(),
              nn.Flatten(), nn.Linear(4 * 4 * 4, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(16, 3))


def mlp(hidden=(24,), seed=0, dropout=0.0, activation=nn.ReLU, bias=True):
    """8×8 images → hidden layers → 3 classes: a network whose units the workers split
    (sifir.split; tests/test_split.py)."""
    nn.manual_seed(seed)
    layers, width = [nn.Flatten()], 64
    for h in hidden:
        layers += [nn.Linear(width, h, bias=bias), activation()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 3, bias=bias))


def mlp2(dropout=0.0):
    """Two hidden layers: the gather and the sum of a middle layer too."""
    return mlp((16, 12), dropout=dropout)


# Both ways of training on several processes: each batch shared, and each layer's units shared
NETWORKS = pytest.mark.parametrize("network", [convnet, mlp2], ids=["batches", "units"])


def shift(x, rng):
    """A tiny augmentation: each image rolled by −1, 0 or 1 pixel (it draws from rng)."""
    return np.roll(x, int(rng.integers(-1, 2)), axis=3)


def serial_gradients(model, x, y):
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward(), need_input_grad=False)
    return loss, [p.grad.copy() for p in model.parameters()]


def no_workers_left():
    return multiprocessing.active_children() == []


@pytest.mark.parametrize("workers, batch", [(2, 37), (3, 64), (3, 2)])   # (3, 2): fewer images than workers
def test_gradients_and_statistics_are_those_of_one_process(workers, batch):
    x, y = images()
    idx = np.arange(batch)
    one = convnet()
    loss, expected = serial_gradients(one, x[idx], y[idx])
    model = convnet()
    runner = parallel.DataParallel(model, optim.Adam(model.parameters()), nn.CrossEntropyLoss(), workers, x, y,
                                   batch_size=64).start()
    try:
        parallel_loss, _ = runner.forward_backward(idx, np.random.default_rng(0))
        runner.step()
        runner.wait()
        total = runner.total                      # Σ of the workers' rows: the batch's gradient
        np.testing.assert_array_equal(total, runner.grads[:1 if batch < workers else workers].sum(axis=0))
        scale = max(np.abs(g).max() for g in expected)
        for g, a, b in zip(expected, runner.offsets, runner.offsets[1:]):
            np.testing.assert_allclose(total[a:b].reshape(g.shape), g, rtol=1e-4, atol=1e-6 * scale)
        assert parallel_loss == pytest.approx(loss, rel=1e-6)
        # BatchNorm normalised with the whole batch's statistics, and its running averages agree
        for bn_one, bn in ((one[2], model[2]), (one[6], model[6])):
            np.testing.assert_allclose(bn.mean, bn_one.mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(bn.inv_std, bn_one.inv_std, rtol=1e-5)
            np.testing.assert_allclose(bn.running_var, bn_one.running_var, rtol=1e-5)
    finally:
        runner.close()
    assert no_workers_left()


@NETWORKS
def test_the_update_is_the_optimizers_step_on_the_whole_gradient(network):
    from sifir import split
    x, y = images()
    idx = np.arange(48)
    one = network()
    opt_one = optim.AdamW(one.parameters(), lr=1e-2, weight_decay=0.1)
    serial_gradients(one, x[idx], y[idx])
    opt_one.step()
    model = network()
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    runner = (split.SplitUnits if network is mlp2 else parallel.DataParallel)(
        model, opt, nn.CrossEntropyLoss(), 2, x, y, batch_size=64).start()
    try:
        runner.forward_backward(idx, np.random.default_rng(0))
        runner.step()
        runner.wait()
        # Adam's first step is about lr·g/|g|: the rounding of a tiny gradient (other summation
        # orders) moves it by a little of lr = 1e-2, hence the absolute tolerance
        for p, q in zip(model.parameters(), one.parameters()):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-5)
        for m, m_one in zip(opt.exp_sum_sq, opt_one.exp_sum_sq):   # the state is the shared one
            np.testing.assert_allclose(m, m_one, rtol=1e-4, atol=1e-5 * m_one.max())
        assert opt.step_count == 1
    finally:
        runner.close()
    # afterwards the model owns private arrays again, with the trained values
    assert all(p.data.base is None for p in model.parameters())
    for p, q in zip(model.parameters(), one.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-5)


def run(workers=2, epochs=2, stop_after=None, resume=None, checkpoint_dir=None, sgd=False, lr=1e-2,
        one_cycle=True, prepare=None, network=convnet, **options):
    """A small network (``network``: a convnet unless said) trained on 8×8 spots, augmented;
    ``options`` go to the Trainer, ``prepare(trainer)`` runs before training."""
    x, y = images(150)
    model = network(dropout=0.25)
    opt = (optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if sgd
           else optim.AdamW(model.parameters(), lr=lr))
    sched = optim.OneCycleLR(opt, total=3 * 5) if one_cycle else None
    trainer = Trainer(model, opt, batch_size=25, seed=1, schedule=sched, augment=shift, workers=workers,
                      checkpoint_dir=checkpoint_dir, **options)
    if prepare is not None:
        prepare(trainer)
    if stop_after is not None:
        request_stop_after(trainer, stop_after)
    if resume:
        trainer.load_checkpoint(resume)
    trainer.fit(x[:125], y[:125], x[125:], y[125:], epochs=epochs)
    return model, trainer


def weights(model):
    return [p.data.copy() for p in model.parameters()] + [b.copy() for _, b in model.named_buffers()]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a, b))


def test_same_seed_and_workers_same_weights_and_it_learns():
    a, ta = run()
    b, _ = run()
    assert same(weights(a), weights(b))
    assert ta.history[-1].val_acc > 0.9
    assert ta.history[-1].train_loss < ta.history[0].train_loss
    # validation in the workers gives what one process computes from the same weights and buffers
    x, y = images(150)
    np.testing.assert_allclose(ta.history[-1].val_acc, np.mean(predict_logits(a, x[125:]).argmax(1) == y[125:]))
    assert no_workers_left()


@NETWORKS
@pytest.mark.parametrize("sgd", [False, True])
def test_interrupt_mid_epoch_then_resume_is_bit_identical(tmp_path, sgd, network):
    full, full_trainer = run(epochs=3, sgd=sgd, network=network)
    with pytest.raises(Interrupted, match="checkpoint written"):
        run(epochs=3, stop_after=7, checkpoint_dir=tmp_path, sgd=sgd, network=network)   # batch 2 of epoch 2
    assert no_workers_left()
    resumed, trainer = run(epochs=3, resume=tmp_path, sgd=sgd, network=network)
    assert same(weights(full), weights(resumed))
    assert [r.val_acc for r in trainer.history] == [r.val_acc for r in full_trainer.history]
    if sgd:   # the momentum, created by the workers in shared memory, was in the checkpoint
        assert all(b is not None for b in trainer.optimizer.momentum_buffer)


@NETWORKS
def test_a_killed_worker_stops_training_with_a_clear_error(network):
    x, y = images()
    model = network()
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=10, workers=3)

    def kill_one(i, n, loss):
        if i == 3:
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
    trainer.on_batch = kill_one
    with pytest.raises(parallel.WorkerError, match=r"worker \d of 3 .*stopped unexpectedly .*SIGKILL"):
        trainer.fit(x, y, epochs=2)
    assert no_workers_left()
    assert all(p.data.base is None for p in model.parameters())


class FailsInAWorker(nn.Identity):
    """Raises in every process but the one that created it."""

    def __init__(self):
        self.home = os.getpid()

    def forward(self, x):
        if os.getpid() != self.home:
            raise ValueError("something broke in here")
        return x


def test_an_error_in_a_worker_reaches_the_caller_as_one_message():
    x, y = images()
    model = convnet()
    model.layers.insert(0, FailsInAWorker())
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=20, workers=2)
    with pytest.raises(parallel.WorkerError, match="worker 1 of 2 failed: ValueError: something broke in here"):
        trainer.fit(x, y, epochs=1)
    assert isinstance(parallel.WorkerError("x"), SifirError)
    assert no_workers_left()


@NETWORKS
def test_divergence_stops_the_workers_too(network):
    from sifir.errors import TrainingDiverged
    x, y = images()
    model = network()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e30), batch_size=20, workers=2)
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged):
        trainer.fit(x * 1e6, y, epochs=3)
    assert no_workers_left()


def test_a_process_with_threads_trains_on_one_worker_and_says_why():
    x, y = images()
    model = convnet()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="busy-thread")
    thread.start()
    try:
        assert "busy-thread" in parallel.fork_problem()
        trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=20, workers=2)
        with pytest.warns(parallel.OneWorker, match="unsafe"):
            trainer.fit(x, y, epochs=1)
        assert trainer.history and no_workers_left()
    finally:
        stop.set()
        thread.join()
    assert parallel.fork_problem() is None


def train_to_file(path):
    """Runs in a fresh process: train with two workers, write the validation accuracy."""
    _, trainer = run(workers=2, epochs=2)
    with open(path, "w") as f:
        f.write(f"{trainer.history[-1].val_acc} {trainer.workers}")


def test_a_fresh_process_trains_on_every_worker_even_from_a_process_with_threads(tmp_path):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        process = parallel.fresh_process(train_to_file, str(tmp_path / "result"))
        process.join(120)
        assert process.exitcode == 0
    finally:
        stop.set()
        thread.join()
    accuracy, workers = (tmp_path / "result").read_text().split()
    _, same_run = run(workers=2, epochs=2)
    assert float(accuracy) == same_run.history[-1].val_acc and workers == "2"


def test_usable_cores_and_shares():
    assert 1 <= parallel.usable_cores() <= (os.cpu_count() or 1)
    assert parallel.shares(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert parallel.shares(2, 3) == [(0, 0), (0, 1), (1, 2)]


def test_blas_threads_are_limited_inside_the_block_only():
    import threadpoolctl

    def blas():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    def numpys():   # NumPy's own OpenBLAS, the one sifir's products run on
        return [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas" and os.path.basename(os.path.dirname(p["filepath"])) == "numpy.libs"]
    before, mine = blas(), numpys()
    assert len(mine) == 1
    for _ in range(2):   # the second time with the libraries found the first time
        with parallel.blas_threads(1):
            assert numpys() == [1]
        assert blas() == before
    # without threadpoolctl: NumPy's own OpenBLAS through ctypes (SciPy's copy, when loaded, is
    # left alone: nothing a worker runs calls it)
    get, put = parallel._openblas()
    n = get()
    put(1)
    assert get() == 1 and numpys() == [1]
    put(n)
    assert blas() == before


def test_blas_threads_without_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)   # import threadpoolctl fails
    limit = parallel._blas_limit.__wrapped__()                 # found afresh, not the cached one
    get, _ = parallel._openblas()
    n = get()
    with limit(1):
        assert get() == 1
    assert get() == n


# -- the command line: Ctrl-C and a killed worker, with real processes --------------------------
def children_of(pid):
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"   # a zombie is no longer running
    except OSError:
        return True


def start_training(tmp_path, mnist_dir, *args):
    import subprocess
    import sys
    return subprocess.Popen([sys.executable, "-m", "sifir", "train", "--model", "seed", "--data-dir", str(mnist_dir),
                             "--quiet", "--workers", "2", "--out", str(tmp_path / "m.npz"), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, SIFIR_STATE_DIR=str(tmp_path)))


def test_ctrl_c_with_workers_checkpoints_and_leaves_nothing_running(tmp_path, mnist_dir):
    from test_reliability import wait_for_line
    proc = start_training(tmp_path, mnist_dir, "--epochs", "3", "--checkpoint-dir", tmp_path / "ckpt")
    lines = wait_for_line(proc, "epoch   1/3")
    assert any(line.startswith("workers: 2") for line in lines)
    workers = children_of(proc.pid)
    assert len(workers) == 1                 # worker 0 is the process itself
    os.killpg(proc.pid, signal.SIGINT)       # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint written" in err and "Traceback" not in err
    assert all(gone(pid) for pid in workers)


def test_a_killed_worker_under_the_command_line_is_one_line_and_nothing_is_left(tmp_path, mnist_dir):
    from test_reliability import wait_for_line
    proc = start_training(tmp_path, mnist_dir, "--epochs", "50")
    wait_for_line(proc, "epoch   1/50")
    workers = children_of(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("sifir: error: training worker 1 of 2") and "SIGKILL" in lines[-1], err
    assert "Traceback" not in err and not (tmp_path / "m.npz").exists()
    assert all(gone(pid) for pid in workers)


# -- inference on every core: threads -----------------------------------------------------------
def test_inference_on_several_threads_gives_one_threads_logits():
    x, y = images(2500)
    model = convnet(dropout=0.25)
    model(x[:64])                                # BatchNorm's running statistics are not trivial
    one = predict_logits(model, x, batch_size=300, workers=1)
    for workers in (2, 3, 20):                   # 20: more threads than batches
        np.testing.assert_allclose(predict_logits(model, x, batch_size=300, workers=workers), one,
                                   rtol=1e-6, atol=1e-6)
    assert model.training                        # the mode is restored


def test_a_replica_shares_the_weights_but_not_what_forward_keeps():
    model = convnet()
    x, _ = images(8)
    model(x)
    kept = model[0].x
    clone = parallel.replica(model)
    assert clone[0] is not model[0] and clone[0].weight is model[0].weight
    assert clone[2].running_mean is model[2].running_mean
    clone.eval()
    clone(x[:3])
    assert model[0].x is kept and model.training  # the original's layers were not touched


def test_numbers_in_each_languages_style():
    from sifir.messages import number
    assert number(7940.5, "en", decimals=1) == "7,940.5"
    assert number(7940.5, "tr", decimals=1) == "7.940,5"
    assert number(0.01, "tr", decimals=2) == "0,01"


def test_workers_that_cannot_be_started_are_a_clear_error(monkeypatch):
    x, y = images()
    model = convnet()
    weights_before = [p.data.copy() for p in model.parameters()]

    def no_fork(self):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", no_fork)
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=20, workers=2)
    with pytest.raises(parallel.WorkerError, match="could not start 2 training workers .*--workers"):
        trainer.fit(x, y, epochs=1)
    assert all(np.array_equal(p.data, w) and p.data.base is None for p, w in zip(model.parameters(), weights_before))


def test_a_platform_without_fork_trains_on_one_worker_and_says_so(monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert "cannot fork" in parallel.fork_problem()
    x, y = images()
    model = convnet()
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=20, workers=4)
    with pytest.warns(parallel.OneWorker, match="cannot fork"):
        trainer.fit(x, y, epochs=1)
    assert trainer.history and no_workers_left()


def test_plain_batchnorm_refuses_a_batch_split_over_workers():
    from sifir.nn import plain
    x, y = images()
    model = plain.twin(convnet())
    trainer = Trainer(model, optim.Adam(model.parameters()), batch_size=20, workers=2)
    with pytest.raises(SifirError, match="plain BatchNorm .*one worker"):
        trainer.fit(x, y, epochs=1)
    assert no_workers_left()


def test_default_workers_give_convolutional_networks_and_big_mlps_every_core():
    from sifir import models
    assert parallel.default_workers(models.build("cnn"), 4) == 4
    assert parallel.default_workers(nn.Ensemble(models.build("fast"), models.build("fast")), 3) == 3
    assert parallel.default_workers(models.build("mlp"), 4) == 4          # its units split among the workers
    assert parallel.default_workers(models.build("seed"), 4) == 1         # too small to gain
    assert parallel.default_workers(models.custom_mlp([32]), 4) == 1
    # inference: threads for convolutions, one thread (BLAS on every core) for any MLP
    assert parallel.inference_threads(models.build("cnn"), 4) == 4
    assert parallel.inference_threads(models.build("mlp"), 4) == 1
