"""A training run that reports what it sees as it goes: the process the Learn page drives.

    ctx = multiprocessing.get_context("spawn")
    server_end, run_end = ctx.Pipe()
    ctx.Process(target=watch.main, args=(recipe.options(), run_end, {"pin": None})).start()
    server_end.send({"op": "pause"})        # commands go down the pipe …
    server_end.recv()                       # … reports come up: {"type": "batch", …}

The run lives in a process of its own beside the web server: a server's threads and a fork do not
mix, a long computation would stall its event loop, and a process of its own is the one that can
later create data-parallel workers of its own. It trains with the very recipe, data and
``Trainer`` that ``sifir train`` uses, so ``recipe.command()`` reproduces it bit for bit:
everything it looks at between two batches runs the model in eval mode (no dropout drawn, no
BatchNorm statistics updated) and draws no random number.

Commands (dicts with "op"): pause, resume, step (one batch, then pause), stop, pin (a 28×28 input
whose probabilities every report carries, or None), pace (batches per second, None: full speed),
snapshot (the weights now, with the model file's info).

Reports (dicts with "type"), all small and JSON-ready:
    started   the recipe, its command, the architecture, the sizes of data, batches and sample
    batch     every REPORT_EVERY seconds at most: training loss and accuracy over the batches
              since the last one (the smoothed curve), learning rate, speed, time left, the pin
    look      when the time it costs stays under LOOK_SHARE of the run (and at every pause, step
              and epoch): loss and accuracy on a fixed validation sample, the first layer's weights
              as pictures, each layer's ‖∂L/∂W‖ and update-to-weight ratio, the dead units
    epoch     the epoch's figures, the confusion matrix and per-digit accuracy on the validation
              images, the current mistakes and the images that just became right or wrong
    state     loading, running, paused
    snapshot  the weights asked for
    end       done, stopped, diverged or failed, with the message, the test accuracy and the
              final weights (the best epoch's when done, as ``sifir train`` saves them)

The numbers come from ``sifir.figures``, the functions ``sifir report`` draws from.
"""
from __future__ import annotations

import base64
import math
import os
import signal
import time

import numpy as np

from . import figures, io, metrics, nn
from .activations import hidden_activations
from .data.mnist import MEAN, STD
from .errors import SifirError, TrainingDiverged
from .recipe import Recipe, build_run, load_data, test_accuracies
from .train import Interrupted, predict_logits

REPORT_EVERY = 0.1       # seconds between batch reports at most: the curve's points
HEAR_EVERY = 0.02        # seconds between looks for a command (a poll costs ~50 µs: not every batch)
LOOK_SHARE = 0.03        # looks may take this share of the run's time …
LOOK_GAP = 0.25          # … and come this often at most (seconds)
SAMPLE = 1000            # validation images of the running estimate (the first ones: fixed)
MAX_PICTURES = 64        # first-layer pictures sent at most (mlp's W1 has 800 rows)
MISTAKES = 16            # mistakes in the strip
CHANGED = 12             # just-right and just-wrong images shown of each


class StopRun(Exception):
    """The server asked the run to stop (or is gone)."""


def main(options: dict, conn, settings: dict | None = None) -> None:
    """The training process: run ``options`` (a ``Recipe``'s fields) and report on ``conn``."""
    if hasattr(os, "setpgrp"):   # Ctrl-C in the server's terminal stops the server, which stops us
        os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        Watch(options, conn, settings or {}).run()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass   # the server is gone: no one to report to, nothing to keep running for
    finally:
        conn.close()


class Watch:
    def __init__(self, options: dict, conn, settings: dict):
        self.conn = conn
        self.recipe = Recipe(**options).resolved()
        self.pin = _pin_array(settings.get("pin"))
        self.pace = settings.get("pace")
        self.paused = bool(settings.get("paused"))
        self.stepping = bool(settings.get("step"))
        self.run_ = None
        self.before = None            # weights one update before a look, for the update ratio
        self.before_step = -1         # … and the update they were kept after
        self.look_due = False
        self.next_look = 0.0
        self.paused_seconds = 0.0
        self.window = [0.0, 0, 0, 0]   # loss·size, right answers, images, batches since the last report
        self.images = 0
        self.rate = None               # images per second, smoothed
        self.last_report = self.last_tick = self.last_heard = 0.0
        self.prev_pred = None

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> None:
        self.send({"type": "state", "state": "loading", "pid": os.getpid()})
        recipe = self.recipe
        try:   # a first run on a fresh machine downloads MNIST here
            self.data = data = load_data(recipe, log=lambda *a, **k: None)
        except SifirError as e:   # no data: the page says why, in the data module's words
            self.send({"type": "end", "state": "failed", "message": str(e), "weights": None})
            return
        self.run_ = run = build_run(recipe, len(data.train_x), on_batch=self.on_batch, on_epoch=self.on_epoch,
                                    facts=data.facts)
        self.model, self.trainer = run.model, run.trainer
        self.sample_x, self.sample_y = data.val_x[:SAMPLE], data.val_y[:SAMPLE]
        self.n_batches = math.ceil(len(data.train_x) / recipe.batch_size)
        self.started = time.perf_counter()
        self.send({"type": "started", "recipe": recipe.options(), "command": recipe.command(),
                   "architecture": io.describe(run.model), "parameters": io.count_parameters(run.model),
                   "train": len(data.train_x), "validation": len(data.val_x), "test": len(data.test_x),
                   "batches": self.n_batches, "epochs": recipe.epochs, "sample": len(self.sample_x)})
        self.look()
        if self.stepping:   # started with a step: its look compares with these weights
            self.keep_before()
        outcome, extra = "done", {}
        try:
            if self.paused:
                self.wait_while_paused()
            run.trainer.fit(data.train_x, data.train_y, data.val_x, data.val_y, epochs=recipe.epochs)
        except (StopRun, Interrupted):
            outcome = "stopped"
        except TrainingDiverged as e:
            outcome, extra = "diverged", {"message": str(e), "diverged": _json_safe(e.details)}
        except (SifirError, MemoryError) as e:
            outcome, extra = "failed", {"message": str(e) or type(e).__name__}
        except Exception as e:   # a bug: the page hears of it, the server's log gets the traceback
            self.send({"type": "end", "state": "failed", "message": f"{type(e).__name__}: {e}", "weights": None})
            raise
        self.finish(outcome, extra)

    def finish(self, outcome: str, extra: dict) -> None:
        """The end report: for a run that diverged, the last good epoch's weights if there is one."""
        trainer, model = self.trainer, self.model
        if outcome == "diverged" or outcome == "failed":
            if trainer.best_state is None:
                self.send({"type": "end", "state": outcome, **extra, "weights": None})
                return
            model.load_state_dict(trainer.best_state)
        self.look()   # the pictures of the weights it ends with (the best epoch's, as saved)
        snapshot = self.snapshot_of_model()
        self.send({"type": "end", "state": outcome, **extra, **snapshot, "seconds": self.active_seconds(),
                   "test_accuracy": snapshot["info"]["test_accuracy"]})

    # -- between two batches ------------------------------------------------------------------
    def on_batch(self, i: int, n: int, loss: float) -> None:
        loss, hits, size = self.trainer.last_batch
        w = self.window
        w[0] += loss * size
        w[1] += hits
        w[2] += size
        w[3] += 1
        self.images += size
        stepped = self.stepping   # this batch was one step: pause after it
        now = time.perf_counter()
        if self.look_due:         # the weights one update ago were kept: the look shows this update
            self.look()
        if self.pace:
            wait = 1 / self.pace - (now - self.last_tick)
            if wait > 0 and self.conn.poll(wait):   # wait, but hear a command at once
                self.handle_commands()
            now = self.last_tick = time.perf_counter()
        if now - self.last_heard >= HEAR_EVERY:
            self.last_heard = now
            self.handle_commands()
        if stepped or self.paused or i == n or now - self.last_report >= REPORT_EVERY:
            self.report_batch(i, n, now)   # a pause comes after the report of its last batch
        if not (self.look_due or stepped or self.paused) and (self.stepping or now >= self.next_look):
            self.keep_before()             # the next look comes after the next update
        if stepped:
            self.stepping, self.paused = False, True
        if self.paused:
            self.wait_while_paused()

    def report_batch(self, i: int, n: int, now: float) -> None:
        loss_x_size, hits, size, batches = self.window
        self.window = [0.0, 0, 0, 0]
        seconds = now - self.last_report if self.last_report else None
        self.last_report = now
        if seconds and size:   # images per second over this window, smoothed a little
            rate = size / seconds
            self.rate = rate if self.rate is None else 0.7 * self.rate + 0.3 * rate
        left = (self.recipe.epochs - self.trainer.epoch - 1) * self.n_batches + (n - i)
        report = {"type": "batch", "epoch": self.trainer.epoch + 1, "batch": i, "batches": n,
                  "step": self.trainer.optimizer.step_count, "loss": loss_x_size / max(1, size),
                  "acc": hits / max(1, size), "lr": self.trainer.optimizer.lr, "images_per_s": self.rate,
                  "seconds_left": left * self.recipe.batch_size / self.rate if self.rate else None,
                  "seconds": self.active_seconds()}
        if self.pin is not None:
            report["pin"] = self.pin_probabilities()
        self.send(report)

    def on_epoch(self, result) -> None:
        """Validation figures of the epoch: confusion matrix, per-digit accuracy, mistakes and
        the images whose answer changed since the last epoch."""
        data = self.data
        logits = predict_logits(self.model, data.val_x)
        pred = logits.argmax(axis=1)
        confusion = metrics.confusion_matrix(data.val_y, pred)
        wrong = figures.misclassified(self.model, data.val_x, data.val_y, MISTAKES, logits)
        changed = figures.changed_answers(self.prev_pred, pred, data.val_y)
        self.prev_pred = pred
        self.send({"type": "epoch", "epoch": result.epoch, "train_loss": result.train_loss,
                   "train_acc": result.train_acc, "val_loss": result.val_loss, "val_acc": result.val_acc,
                   "lr": result.lr, "step": self.trainer.optimizer.step_count, "seconds": self.active_seconds(),
                   "epoch_seconds": result.seconds,   # the Trainer's own timing, as `sifir train` prints it
                   "confusion": confusion.tolist(), "per_digit": metrics.per_class_accuracy(confusion).tolist(),
                   "mistakes": [{"index": int(k), "true": int(t), "pred": int(p), "p": float(q),
                                 "image": _digit_png(data.val_x[k])}
                                for k, t, p, q in zip(wrong["index"], wrong["true"], wrong["predicted"],
                                                      wrong["probability"])],
                   "changed": {kind: {"count": int(len(idx)),
                                      "images": [{"index": int(k), "true": int(data.val_y[k]), "pred": int(pred[k]),
                                                  "image": _digit_png(data.val_x[k])} for k in idx[:CHANGED]]}
                               for kind, idx in changed.items()}})
        self.keep_before()   # the pictures at the epoch's end, after the next update

    def look(self) -> None:
        """The heavier pictures: a running estimate on the fixed validation sample, the first
        layer's weights, the layers' gradient and update sizes, the dead units."""
        start = time.perf_counter()
        model = self.model
        hidden, logits = hidden_activations(model, self.sample_x)
        with np.errstate(over="ignore", invalid="ignore"):
            sample_loss = nn.CrossEntropyLoss()(logits, self.sample_y)
            sample_acc = float(np.mean(logits.argmax(axis=1) == self.sample_y))
        samples = [(f"{o.index} {type(o.layer).__name__}", o.output) for o in hidden]
        name, images = figures.first_layer_images(model)
        report_step = self.trainer.optimizer.step_count
        report = {"type": "look", "epoch": min(self.trainer.epoch + 1, self.recipe.epochs),
                  "step": self.trainer.optimizer.step_count,
                  "sample": {"loss": sample_loss, "acc": sample_acc},
                  "first_layer": _pictures(name, images[:MAX_PICTURES], len(images)),
                  "layers": figures.weight_changes(model, self.before if self.before_step != report_step else None),
                  "dead": figures.dead_units(samples)}
        if self.pin is not None:
            report["pin"] = self.pin_probabilities()
        self.send(report)
        self.before, self.look_due = None, False
        cost = time.perf_counter() - start
        self.next_look = time.perf_counter() + max(LOOK_GAP, cost / LOOK_SHARE)

    # -- commands ------------------------------------------------------------------------------------
    def handle_commands(self) -> None:
        while self.conn.poll():
            self.command(self.conn.recv())

    def wait_while_paused(self) -> None:
        self.send({"type": "state", "state": "paused", "epoch": self.trainer.epoch + 1,
                   "step": self.trainer.optimizer.step_count})
        if self.look_due:
            self.look()
        began = time.perf_counter()
        while self.paused:
            self.command(self.conn.recv())   # blocks until the next command (EOFError: the server is gone)
        self.paused_seconds += time.perf_counter() - began
        self.last_report = self.last_tick = time.perf_counter()   # the pause is no part of the speed
        self.send({"type": "state", "state": "running", "epoch": self.trainer.epoch + 1,
                   "step": self.trainer.optimizer.step_count})

    def command(self, c: dict) -> None:
        op = c.get("op")
        if op == "pause":
            self.paused = True
        elif op == "resume":
            self.paused = self.stepping = False
        elif op == "step":
            self.paused, self.stepping = False, True
            self.keep_before()
        elif op == "stop":
            raise StopRun
        elif op == "pin":
            self.pin = _pin_array(c.get("image"))
            self.send({"type": "pin", "pin": self.pin_probabilities() if self.pin is not None else None,
                       "step": self.trainer.optimizer.step_count})
        elif op == "pace":
            self.pace = c.get("value")
        elif op == "snapshot":
            self.send({"type": "snapshot", "id": c.get("id"), **self.snapshot_of_model()})

    # -- helpers ---------------------------------------------------------------------------------------
    def snapshot_of_model(self) -> dict:
        """The weights now and the model file's info, with the test accuracy they reach."""
        kept = self.run_.kept_model()   # the network, in the recipe's views (as `sifir train` keeps it)
        test_acc, one_view = test_accuracies(kept, self.data)
        return {"weights": {k: v.copy() for k, v in kept.state_dict().items()},
                "architecture": io.describe(kept), "info": _json_safe(self.run_.info(test_acc, one_view)),
                "step": self.trainer.optimizer.step_count}

    def keep_before(self) -> None:
        """Keep the weights as they are now; the next look shows how much the update after changed them."""
        self.before = {name: p.data.copy() for name, p in self.model.named_parameters()
                       if not name.endswith("bias") and p.data.ndim >= 2}
        self.before_step, self.look_due = self.trainer.optimizer.step_count, True

    def pin_probabilities(self) -> list[float]:
        with np.errstate(over="ignore", invalid="ignore"):
            return nn.softmax(predict_logits(self.model, self.pin).astype(np.float64))[0].tolist()

    def active_seconds(self) -> float:
        return time.perf_counter() - self.started - self.paused_seconds

    def send(self, message: dict) -> None:
        self.conn.send(_json_safe(message))


def _pin_array(image):
    """The pinned drawing: 28×28 values already normalised like the training images, or None."""
    if image is None:
        return None
    return np.asarray(image, np.float32).reshape(1, 1, 28, 28)


def _pictures(name: str, images: np.ndarray, total: int) -> dict:
    """Weight pictures for the page: each image scaled by its own largest |w| into int8
    (−127 blue … 0 white … 127 red, as ``sifir report`` colours them), base64."""
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.abs(images).reshape(len(images), -1).max(axis=1)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        q = np.nan_to_num(np.round(127 * images / scale[:, None, None]), nan=0, posinf=127, neginf=-127)
    return {"name": name, "shape": list(images.shape), "total": int(total), "scale": scale.tolist(),
            "data": base64.b64encode(np.clip(q, -127, 127).astype(np.int8).tobytes()).decode("ascii")}


def _digit_png(x: np.ndarray) -> str:
    """A normalised (1, 28, 28) image as base64 of 784 grey bytes (the page draws them)."""
    grey = np.clip(np.round((x.reshape(28, 28) * STD + MEAN) * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(grey.tobytes()).decode("ascii")


def _json_safe(value):
    """Plain JSON: NaN and infinities become None, NumPy scalars plain numbers; arrays stay
    arrays (the weights travel to the server, not to the page)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
