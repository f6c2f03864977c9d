"""The training loop: shuffled mini-batches, forward, loss, backward, optimizer step.

    for each epoch:
        for each batch (x, y) of a fresh permutation:
            z = model(x); L = loss(z, y)            # forward
            g = loss.backward(); model.backward(g)  # backward: fills every p.grad
            optimizer.step()                        # w ← w − lr·∂L/∂w (or Adam's refinement)
        measure validation accuracy; keep the best weights; write a checkpoint

One seeded generator drives shuffling and augmentation, the nn generator drives dropout;
both are saved in checkpoints so an interrupted run resumes bit for bit. With ``workers`` > 1
the batches are shared by that many processes (``sifir.parallel``): the same loop, each step's
forward and backward split over the workers.

With ``average`` = K, the mean of the weights at the ends of the last K epochs (``sifir.average``)
is measured on the validation images when training ends, and kept instead of the best epoch's
weights when it scores higher than they do.

A run that diverges stops with ``TrainingDiverged`` instead of training on to a useless model:
when the loss is NaN or infinite, when it rises DIVERGED_FACTOR times above where it started,
or when a number overflows float32 (NumPy is told to raise on overflow while training: a
healthy network never gets near 3.4e38; in a worker process the overflow ends the run as a
failed worker).
"""
from __future__ import annotations

import copy
import math
import signal
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import io, nn, parallel, split
from .average import WindowAverage
from .errors import ModelFileError, TrainingDiverged
from .messages import t
from .nn import init as nn_init

CHECKPOINT_FORMAT = "sifir-checkpoint"
CHECKPOINT_NAME = "checkpoint.npz"
# A batch loss this many times above the first one (or above a uniform guess's ln C, when that
# is larger: a resumed run starts low) means the steps overshoot: the learning rate 1e9 takes
# the seed network's loss from 2.3 to 6e16 in one step, then every ReLU dies and it sits at
# ln 10 reading 10 % right. The largest loss of a healthy run is its first.
DIVERGED_FACTOR = 10.0


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 1000, workers: int | None = None) -> np.ndarray:
    """Logits for many inputs, in eval mode and in batches (bounded memory). With several
    batches, ``workers`` threads share them (default: ``parallel.inference_threads``: every usable
    core for a network with convolutions, else one thread whose BLAS uses every core)."""
    was_training = model.training
    model.eval()
    try:
        if workers is None:
            workers = parallel.inference_threads(model) if len(x) > batch_size else 1
        if workers > 1:
            return np.concatenate(parallel.map_batches(model, x, batch_size, workers))
        return np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000,
             workers: int | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on a dataset (``workers`` as in predict_logits)."""
    return scores(predict_logits(model, x, batch_size, workers), y)


def scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of logits against labels."""
    return nn.CrossEntropyLoss()(logits, y), float(np.mean(logits.argmax(axis=1) == y))


class Interrupted(Exception):
    """Raised after Ctrl-C once the current batch is done and a checkpoint is written."""


class Trainer:
    """Trains ``model`` with ``optimizer``; ``fit`` returns the per-epoch history.

    Optional: ``schedule`` (stepped per batch), ``augment(x, rng) -> x`` (applied to each
    training batch), ``on_batch(i, n, loss)`` and ``on_epoch(result)`` callbacks,
    ``checkpoint_dir`` (a checkpoint after every epoch, and on Ctrl-C), ``patience`` (early
    stopping after that many epochs without a better validation accuracy) and ``keep_best``
    (end with the weights of the best validation epoch), ``workers`` (processes sharing each
    batch; 1, the default, trains in this process alone), ``average`` (K ≥ 2: at the end, the
    mean of the last K epochs' weights, kept when it beats the best epoch on validation).
    """

    def __init__(self, model: nn.Module, optimizer, loss_fn=None, *, batch_size: int = 64,
                 seed: int = 0, schedule=None, augment: Callable | None = None,
                 on_batch: Callable | None = None, on_epoch: Callable | None = None,
                 checkpoint_dir=None, patience: int | None = None, keep_best: bool = True,
                 workers: int = 1, average: int | None = None):
        self.model, self.optimizer = model, optimizer
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.batch_size, self.seed = batch_size, seed
        self.schedule, self.augment = schedule, augment
        self.on_batch, self.on_epoch = on_batch, on_epoch
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.patience, self.keep_best = patience, keep_best
        self.workers = workers
        self.rng = np.random.default_rng(seed)
        self.history: list[EpochResult] = []
        self.best_acc, self.best_state, self.best_epoch = -1.0, None, 0
        self.average = WindowAverage(average) if average and average > 1 else None
        self.average_score = None      # the window's mean on the validation images, once training ends
        self.best_source = "epoch"     # "average" when that mean is what fit ended with
        self.epoch = 0                 # epochs completed
        self._position = None          # mid-epoch resume point, from a checkpoint
        self._stop_requested = False
        self._start_loss = None        # the first batch's loss (floored at ln C): divergence is far above it
        self._batch = (0, 0)           # (batch index, batches) being trained
        self.last_batch = None         # (loss, correct, size) of the batch just trained, for on_batch

    # -- the loop -------------------------------------------------------------------------
    def fit(self, train_x, train_y, val_x=None, val_y=None, epochs: int = 10) -> list[EpochResult]:
        previous = signal.getsignal(signal.SIGINT)
        installed = _install_sigint(self._request_stop)
        runner = None
        try:
            if self.epoch < epochs:
                runner = self._start_workers(train_x, train_y, val_x)
            while self.epoch < epochs:
                try:
                    result = self._train_epoch(train_x, train_y, val_x, val_y, runner)
                except FloatingPointError as e:   # from np.errstate(over="raise") on _train_epoch
                    raise self._diverged("overflow", detail=str(e)) from None
                if self.average is not None:   # the weights are whole here: every worker's update is done
                    self.average.add(result.epoch, self.model.state_dict())
                self.history.append(result)
                self.epoch += 1
                improved = self._track_best(result)
                if self.checkpoint_dir:
                    self.save_checkpoint()
                if self.on_epoch:
                    self.on_epoch(result)
                if self.patience and not improved and self.epoch - self.best_epoch >= self.patience:
                    break
        except BaseException:
            if runner is not None:   # stop the workers at once: their step will never be finished
                runner.close(abort=True)
                runner = None
            raise
        finally:
            if runner is not None:
                runner.close()
            if installed:
                signal.signal(signal.SIGINT, previous)
        if self.keep_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            if self.average is not None and val_x is not None:
                self._try_average(val_x, val_y)
        return self.history

    def _try_average(self, val_x, val_y) -> None:
        """The mean of the last K epochs' weights (of all of them when training stopped sooner)
        in place of the best epoch's, when it reads more validation images right than they do;
        a tie keeps the best epoch's."""
        if len(self.average.window) < 2:
            return
        self.model.load_state_dict(self.average.mean())
        self.average_score = evaluate(self.model, val_x, val_y)[1]
        if self.average_score > self.best_acc:
            self.best_source = "average"
        else:
            self.best_source = "epoch"
            self.model.load_state_dict(self.best_state)

    @property
    def splits_units(self) -> bool:
        """Whether the workers share each layer's units (an MLP: ``split.SplitUnits``) rather
        than each batch."""
        return self.workers > 1 and split.linear_layers(self.model) is not None

    def _start_workers(self, train_x, train_y, val_x):
        """The other processes of a data-parallel run, or None for one worker (or when this
        process cannot fork: then a warning says why)."""
        if self.workers <= 1:
            return None
        problem = parallel.fork_problem()
        if problem is not None:
            warnings.warn(problem, parallel.OneWorker, stacklevel=3)
            return None
        runner = split.SplitUnits if self.splits_units else parallel.DataParallel
        return runner(self.model, self.optimizer, self.loss_fn, self.workers, train_x, train_y,
                      augment=self.augment, batch_size=self.batch_size, eval_x=val_x).start()

    @np.errstate(over="raise")   # an overflow is divergence: fit says so
    def _train_epoch(self, x, y, val_x, val_y, runner=None) -> EpochResult:
        start = time.perf_counter()
        n, bs = len(x), self.batch_size
        n_batches = math.ceil(n / bs)
        if self._position is None:
            # Remember the generator before the shuffle: a mid-epoch checkpoint replays it.
            epoch_rng_state = self.rng.bit_generator.state
            order = self.rng.permutation(n)
            first, sums = 0, np.zeros(3)
        else:  # resuming inside an epoch
            epoch_rng_state, first, sums, rng_state = self._position
            self.rng.bit_generator.state = epoch_rng_state
            order = self.rng.permutation(n)
            self.rng.bit_generator.state = rng_state
            self._position = None
        self.model.train()
        params = self.model.parameters()  # walked once per epoch, not once per batch
        last_good = sums[0] / sums[2] if sums[2] else None
        loss_sum, correct, seen = (float(v) for v in sums)  # plain floats: cheaper per batch
        outputs = _outputs(self.model) if runner is not None else None   # the logits stay in the workers
        for b in range(first, n_batches):
            idx = order[b * bs:(b + 1) * bs]
            self._batch = (b, n_batches)   # where a divergence is reported
            if runner is not None:  # every worker: forward and backward of its share
                loss, hits = runner.forward_backward(idx, self.rng)
                classes = outputs
            else:
                xb, yb = x[idx], y[idx]
                if self.augment is not None:
                    xb = self.augment(xb, self.rng)
                logits = self.model(xb)
                loss = self.loss_fn(logits, yb)
                classes = logits.shape[1]
            self._check_loss(loss, classes, last_good)
            if runner is None:
                hits = int(np.count_nonzero(logits.argmax(axis=1) == yb))
            loss_sum += loss * len(idx)
            correct += hits
            seen += len(idx)
            last_good = loss
            if runner is not None:
                runner.step()
            else:
                for p in params:  # model.zero_grad()
                    p.grad = None
                self.model.backward(self.loss_fn.backward(), need_input_grad=False)
                self.optimizer.step()
            self.last_batch = (loss, hits, len(idx))
            if self.schedule is not None:
                self.schedule.step()
            if self.on_batch:
                self.on_batch(b + 1, n_batches, loss)
            if self._stop_requested:
                if runner is not None:
                    runner.wait()   # every worker's update done: the state is whole
                sums = np.array([loss_sum, correct, seen])
                self._position = (epoch_rng_state, b + 1, sums, self.rng.bit_generator.state)
                if self.checkpoint_dir:
                    path = self.save_checkpoint()
                    raise Interrupted(f"interrupted in epoch {self.epoch + 1} after batch {b + 1}/"
                                      f"{n_batches}; checkpoint written to {path}")
                raise Interrupted(f"interrupted in epoch {self.epoch + 1} after batch {b + 1}/{n_batches}")
        val_loss = val_acc = None
        if runner is not None:
            runner.wait()
        if val_x is not None:
            val_loss, val_acc = (scores(runner.predict(val_x), val_y) if runner is not None
                                 else evaluate(self.model, val_x, val_y))
        return EpochResult(self.epoch + 1, loss_sum / seen, correct / seen, val_loss, val_acc,
                           self.optimizer.lr, time.perf_counter() - start)

    def _check_loss(self, loss: float, classes: int, last_good) -> None:
        """Raise TrainingDiverged when the batch loss is NaN/inf or has exploded."""
        if not math.isfinite(loss):
            raise self._diverged("not_finite", loss=loss, last_good=last_good)
        if self._start_loss is None:
            self._start_loss = max(loss, math.log(classes))
        elif loss > DIVERGED_FACTOR * self._start_loss:
            raise self._diverged("exploded", loss=loss, start=self._start_loss)

    def _diverged(self, reason: str, **values) -> TrainingDiverged:
        """The verdict, in words ("train.diverged_<reason>") and as details for a front end."""
        lr = self.schedule.base_lr if self.schedule is not None else self.optimizer.lr   # as the user set it
        b, n_batches = self._batch
        where = {"epoch": self.epoch + 1, "batch": b + 1, "batches": n_batches}
        why = t(f"train.diverged_{reason}", **values)
        if values.get("last_good") is not None:
            why += t("train.last_good", last_good=values["last_good"])
        message = t("train.diverged", why=why, lr=f"{lr:g}", smaller=f"{lr / 10:g}", **where)
        return TrainingDiverged(message, reason=reason, lr=lr, **where, **values)

    def _track_best(self, result: EpochResult) -> bool:
        score = result.val_acc if result.val_acc is not None else -result.train_loss
        if score > self.best_acc:
            self.best_acc, self.best_epoch = score, result.epoch
            if self.keep_best:
                self.best_state = copy.deepcopy(dict(self.model.state_dict()))
            return True
        return False

    def _request_stop(self, signum, frame):
        if self._stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop_requested = True

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, folder=None) -> Path:
        """Everything needed to continue bit for bit: weights, optimizer and schedule state,
        both random generators, epoch, history, best weights, and a mid-epoch position."""
        folder = Path(folder or self.checkpoint_dir)
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.best_state is not None:
            arrays.update({f"best.{k}": v for k, v in self.best_state.items()})
        if self.average is not None:   # a resumed run averages the same epochs
            arrays.update(self.average.arrays())
        opt_state = self.optimizer.state_dict()
        buffer_shapes = {}
        for name, items in opt_state.pop("buffers").items():
            buffer_shapes[name] = len(items)
            for i, a in enumerate(items):
                if a is not None:
                    arrays[f"optim.{name}.{i}"] = a
        position = None
        if self._position is not None:
            epoch_state, first, sums, rng_state = self._position
            position = {"epoch_rng": epoch_state, "first_batch": first, "sums": sums.tolist(),
                        "rng": rng_state}
        meta = {
            "format": CHECKPOINT_FORMAT, "version": io.FORMAT_VERSION,
            "architecture": io.describe(self.model), "epoch": self.epoch,
            "optimizer": {"type": type(self.optimizer).__name__, **opt_state, "buffers": buffer_shapes},
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "rng": self.rng.bit_generator.state, "nn_rng": nn_init.get_rng().bit_generator.state,
            "history": [asdict(r) for r in self.history],
            "best": {"score": self.best_acc, "epoch": self.best_epoch},
            "average": {"k": self.average.k, "epochs": self.average.meta()} if self.average is not None else None,
            "position": position, "batch_size": self.batch_size, "seed": self.seed,
        }
        return io.write_npz_atomic(folder / CHECKPOINT_NAME, arrays, meta)

    def load_checkpoint(self, folder) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` into this trainer."""
        path = Path(folder) / CHECKPOINT_NAME
        arrays, meta = io.read_npz(path, CHECKPOINT_FORMAT)
        try:
            self._restore(path, arrays, meta)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise ModelFileError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None

    def _restore(self, path, arrays, meta) -> None:
        if meta.get("architecture") != io.describe(self.model):
            raise ModelFileError(f"{path}: the checkpoint is of another architecture than the model being trained")
        opt = meta["optimizer"]
        if opt.get("type") != type(self.optimizer).__name__:
            raise ModelFileError(f"{path}: checkpoint optimizer is {opt.get('type')}, "
                                 f"not {type(self.optimizer).__name__}")
        self.model.load_state_dict(io.check_state(path, self.model, arrays, prefix="model."))
        if any(k.startswith("best.") for k in arrays):
            self.best_state = {k: v.copy() for k, v in
                               io.check_state(path, self.model, arrays, prefix="best.").items()}
        buffers = {name: [arrays.get(f"optim.{name}.{i}") for i in range(count)]
                   for name, count in opt["buffers"].items()}
        self.optimizer.load_state_dict({"lr": opt["lr"], "step_count": opt["step_count"], "buffers": buffers})
        if self.schedule is not None and meta.get("schedule"):
            self.schedule.load_state_dict(meta["schedule"])
        self.rng.bit_generator.state = meta["rng"]
        nn_init.get_rng().bit_generator.state = meta["nn_rng"]
        self.epoch = int(meta["epoch"])
        self.history = [EpochResult(**r) for r in meta["history"]]
        self.best_acc, self.best_epoch = meta["best"]["score"], meta["best"]["epoch"]
        average = meta.get("average")
        if (self.average is None) != (average is None) or (average and average["k"] != self.average.k):
            raise ModelFileError(t("train.checkpoint_average", path=path, saved=average["k"] if average else 0,
                                   run=self.average.k if self.average else 0))
        if average:
            self.average.restore(average["epochs"], arrays, list(self.model.state_dict()))
        pos = meta.get("position")
        if pos:
            self._position = (pos["epoch_rng"], pos["first_batch"], np.array(pos["sums"]), pos["rng"])


def _install_sigint(handler) -> bool:
    """Catch Ctrl-C only in the main thread (signals can't be set elsewhere)."""
    try:
        signal.signal(signal.SIGINT, handler)
        return True
    except ValueError:
        return False


def _outputs(model: nn.Module) -> int:
    """The number of outputs (classes) of a network: the rows of its last weight matrix."""
    weights = [p.data for p in model.parameters() if p.data.ndim == 2]
    return int(weights[-1].shape[0]) if weights else 10
