"""The training room: runs the Learn view starts, drives and watches.

    GET    /api/learn                      what may be trained here: presets, limits, slots, runs
    GET    /api/learn/events               Server-Sent Events: every run's reports, as they come
    POST   /api/learn/runs                 start a run: {"model": "seed", "lr": 0.1, …} (422 if out of range)
    POST   /api/learn/runs/{id}/{action}   pause, resume, step (one batch, then pause), stop
    POST   /api/learn/runs/{id}/pace       {"value": batches per second, or null for full speed}
    POST   /api/learn/runs/{id}/pin        {"image": "data:image/png;base64,…"}: the learner's drawing
    POST   /api/learn/runs/{id}/use        the Draw view reads with this run's weights from now on
    GET    /api/learn/runs/{id}/model.npz  the weights as a model file, for ``sifir evaluate/predict/serve``
    DELETE /api/learn/runs/{id}            reset: stop it if it trains, and forget it

The web side only drives runs and passes on what they report: each run trains in a process of
its own (``sifir.watch``, started with "spawn": a fork of a threaded server is unsafe) that does
the computing; a thread per run reads its reports, keeps what a newly opened tab needs (the
curves so far, the latest pictures) and hands each report, as JSON, to every open event stream.

Fair use of the machine: at most ``slots`` runs train at once (one per four cores, at least one);
a run started beyond that waits in line and starts when one ends. When no tab has watched for
``grace`` seconds a run pauses (a closed tab leaves nothing training), and after ``abandon``
seconds more it is stopped. Closing the server stops every run and waits for its process.
The routes sit behind the app's ``Guard``: this launch's token, Host and Origin.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import multiprocessing
import os
import threading
import time
from dataclasses import replace

from fastapi import Body, Query, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from .. import io, models
from ..augment import AUGMENTS
from ..data.mnist import normalize
from ..messages import languages
from ..optim import OPTIMIZERS, SCHEDULES
from ..recipe import Limits, Recipe, RecipeError
from .app import ApiError
from .predict import decode_image_field, read_digits

log = logging.getLogger("sifir.web")

# What a page may ask for: enough for every lesson, not enough to make the machine unusable.
PAGE_LIMITS = Limits(max_epochs=50, max_batch_size=1024, models=("seed", "mlp", "cnn", models.CUSTOM),
                     max_layers=4, max_width=1024)
OPTIONS = ("model", "hidden", "activation", "epochs", "batch_size", "lr", "optimizer", "momentum",
           "weight_decay", "schedule", "label_smoothing", "augment", "patience", "seed")
MAX_RUNS = 4             # runs kept at once (finished ones too), at least: A and B of a comparison, and room
MAX_PACE = 10_000        # batches per second a paced run may be asked for
QUEUE_SIZE = 256         # reports waiting for one slow tab; past that it is dropped and reconnects
ENDED = ("done", "stopped", "diverged", "failed")
ACTIONS = ("pause", "resume", "step", "stop")


def add_routes(app, *, data_dir=None, limits: Limits = PAGE_LIMITS, slots: int | None = None,
               grace: float = 10.0, abandon: float = 600.0) -> "LearnRoom":
    room = app.state.learn = LearnRoom(data_dir=data_dir, limits=limits, slots=slots, grace=grace,
                                       abandon=abandon, draw=app.state.draw)

    @app.get("/api/learn", summary="What may be trained here")
    def learn_info() -> dict:
        """The presets with their recipes (a form's defaults), the choices and limits, how many
        runs train at once, and the runs there are."""
        return room.describe()

    @app.get("/api/learn/events", summary="Every run's reports, as Server-Sent Events")
    async def events(request: Request):
        """First a "hello" event with the room and every run so far (curves, latest pictures),
        then each report as it comes: batch, look, epoch, state, pin, end, run, removed, room."""
        queue = room.subscribe(asyncio.get_running_loop())

        async def stream():
            try:
                while True:
                    item = await queue.get()
                    if item is None:   # this tab fell too far behind: it reconnects and catches up
                        return
                    yield item
            finally:
                room.unsubscribe(queue)

        return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store"})

    @app.post("/api/learn/runs", status_code=201, summary="Start a run")
    def start(body: dict = Body(..., examples=[{"model": "seed", "lr": 0.1, "epochs": 1}]),
              lang: str = Query("en", description="language of the error messages")) -> dict:
        """The options of ``sifir train`` (unset ones take the preset's), within this server's
        limits; plus "pin" (a drawing to follow), "pace" (batches per second), "paused" (start
        paused) and "step" (one batch, then pause). 422 names the option that is out of range."""
        recipe, settings = parse_start(body, room.limits, lang)
        return room.start(recipe, settings).summary()

    @app.post("/api/learn/runs/{run_id}/pace", summary="Slow a run down to watch it, or let it run")
    def pace(run_id: str, body: dict = Body(..., examples=[{"value": 20}])) -> dict:
        run = room.get(run_id)
        run.command({"op": "pace", "value": parse_pace(body.get("value"))})
        return run.summary(full=False)

    @app.post("/api/learn/runs/{run_id}/pin", summary="Follow a drawing's probabilities")
    def pin(run_id: str, body: dict = Body(..., examples=[{"image": "data:image/png;base64,…"}])) -> dict:
        run = room.get(run_id)
        run.set_pin(parse_pin(body.get("image")))
        return run.summary(full=False)

    @app.post("/api/learn/runs/{run_id}/use", summary="Read drawings with this run's weights")
    def use(run_id: str) -> dict:
        run = room.get(run_id)
        model, info = run.model()
        return app.state.draw.use(model, info, f"run {run.label}")

    @app.get("/api/learn/runs/{run_id}/model.npz", summary="This run's weights as a model file")
    def download(run_id: str) -> Response:
        run = room.get(run_id)
        model, info = run.model()
        name = f"sifir-{run.recipe.model}-run{run.id}.npz"
        return Response(io.model_bytes(model, info), media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    @app.post("/api/learn/runs/{run_id}/{action}", summary="Pause, resume, step or stop a run")
    def act(run_id: str, action: str) -> dict:
        if action not in ACTIONS:
            raise ApiError(404, "not_found", f"no action '{action[:40]}': use one of {', '.join(ACTIONS)}")
        run = room.get(run_id)
        run.act(action)
        return run.summary(full=False)

    @app.delete("/api/learn/runs/{run_id}", summary="Reset: stop a run and forget it")
    def reset(run_id: str) -> dict:
        room.remove(run_id)
        return {"removed": run_id}

    return room


# -- the request's parts ----------------------------------------------------------------------------
def parse_start(body, limits: Limits, lang: str) -> tuple[Recipe, dict]:
    if lang not in languages():
        lang = "en"
    if not isinstance(body, dict):
        raise ApiError(422, "bad_request", "send the run's options as a JSON object, e.g. {\"model\": \"seed\"}")
    settings = {"pin": parse_pin(body.get("pin")), "pace": parse_pace(body.get("pace")),
                "paused": body.get("paused") is True, "step": body.get("step") is True}
    unknown = sorted(set(body) - set(OPTIONS) - {"pin", "pace", "paused", "step", "label"})
    if unknown:
        raise ApiError(422, "bad_option", f"unknown option '{unknown[0][:40]}'; the options are: {', '.join(OPTIONS)}")
    options = {k: body[k] for k in OPTIONS if body.get(k) is not None}
    if isinstance(options.get("hidden"), list):
        options["hidden"] = tuple(options["hidden"])
    for name in ("lr", "momentum", "weight_decay", "label_smoothing"):   # JSON's 1 is a float here too
        if isinstance(options.get(name), int) and not isinstance(options[name], bool):
            options[name] = float(options[name])
    try:
        recipe = Recipe(**options).resolved(limits)
    except RecipeError as e:
        raise ApiError(422, "bad_option", e.render(lang), field=e.field) from None
    except TypeError as e:   # a value of a kind no option takes
        raise ApiError(422, "bad_option", str(e)) from None
    settings["label"] = str(body.get("label") or "")[:8]
    return recipe, settings


def parse_pace(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_PACE:
        raise ApiError(422, "bad_option", f"'pace' must be a number of batches per second in (0, {MAX_PACE:,}] "
                                          f"or null (full speed), got {value!r:.40}")
    return float(value)


def parse_pin(image):
    """A drawing (data URL) -> the 28×28 input the network gets, normalised, as nested lists."""
    if image is None:
        return None
    if not isinstance(image, str):
        raise ApiError(422, "bad_image", "'image' must be a data URL such as data:image/png;base64,…, or null")
    digits, _ = read_digits(decode_image_field(image))   # as the Draw view reads it: the first digit found
    return normalize(digits[0].image[None])[0].tolist()


# -- one run ------------------------------------------------------------------------------------------------
class LiveRun:
    """A run as the server knows it: its process, what it reported, and how to talk to it."""

    def __init__(self, room: "LearnRoom", run_id: str, recipe: Recipe, settings: dict):
        self.room, self.id, self.recipe = room, run_id, recipe
        self.label = settings.pop("label", "") or run_id
        self.settings = settings
        self.state = "queued"
        self.started = None                  # the "started" report
        self.points, self.epochs = [], []    # batch reports; epoch reports (images of the last one only)
        self.samples = []                    # the running estimate of each look: {step, epoch, loss, acc}
        self.look = self.pin = self.end = None
        self.pid = None
        self.final = None                    # (architecture, weights, info) once ended
        self.process = self.conn = None
        self.send_lock = threading.Lock()
        self.snapshots: dict[int, list] = {}
        self.snapshot_ids = itertools.count(1)
        self.unwatched_since = None          # set by the room when it pauses the run for lack of watchers

    # -- the process ---------------------------------------------------------------------------------
    def launch(self) -> None:
        from .. import watch
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        options = self.recipe.options()
        self.process = ctx.Process(target=watch.main, args=(options, child, self.settings),
                                   name=f"sifir-run-{self.id}", daemon=False)
        self.process.start()
        child.close()
        self.state = "loading"
        threading.Thread(target=self._read, name=f"sifir-run-{self.id}-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            self.room.record(self, message)
        self.process.join()
        if self.state not in ENDED:   # the process died without its last word
            log.warning("run %s: the training process ended with exit code %s", self.id, self.process.exitcode)
            self.room.record(self, {"type": "end", "state": "failed", "weights": None,
                                    "message": f"the training process ended unexpectedly (exit code "
                                               f"{self.process.exitcode})"})
        self.conn.close()

    def command(self, message: dict) -> None:
        if self.state in ENDED:
            raise ApiError(409, "run_ended", f"run {self.label} has ended ({self.state}); reset it to train again")
        if self.conn is None:   # queued: keep the wish for its start
            if message["op"] == "pace":
                self.settings["pace"] = message["value"]
            elif message["op"] == "pin":
                self.settings["pin"] = message["image"]
            return
        try:
            with self.send_lock:
                self.conn.send(message)
        except (OSError, ValueError):
            raise ApiError(409, "run_ended", f"run {self.label} has ended; reset it to train again") from None

    def act(self, action: str) -> None:
        if self.conn is None and self.state == "queued":
            if action == "stop":
                self.room.record(self, {"type": "end", "state": "stopped", "weights": None,
                                        "message": "stopped before it started"})
                return
            self.settings.update({"pause": {"paused": True}, "resume": {"paused": False, "step": False},
                                  "step": {"paused": False, "step": True}}[action])
            return
        if action == "resume":
            self.unwatched_since = None
        self.command({"op": action})

    def set_pin(self, image) -> None:
        if image is None:
            self.pin = None
        self.command({"op": "pin", "image": image})

    def model(self):
        """(model, info): the final weights once ended, else the weights of this moment."""
        if self.final is None and self.state not in ENDED:
            if self.state in ("queued", "loading"):
                raise ApiError(409, "not_started", f"run {self.label} has not started training yet")
            done, slot = threading.Event(), []
            ident = next(self.snapshot_ids)
            self.snapshots[ident] = [done, slot]
            self.command({"op": "snapshot", "id": ident})
            if not done.wait(120):
                self.snapshots.pop(ident, None)
                raise ApiError(503, "busy", f"run {self.label} did not answer in time; try again")
            architecture, weights, info = slot[0]
        elif self.final is None:
            raise ApiError(409, "no_weights", f"run {self.label} has no weights to keep: it {self.state} before "
                                              "finishing an epoch; reset it and try a smaller learning rate")
        else:
            architecture, weights, info = self.final
        return io.model_from(architecture, weights, f"run {self.label}"), info

    def stop_process(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.is_alive():
            try:
                with self.send_lock:
                    self.conn.send({"op": "stop"})
            except (OSError, ValueError):
                pass
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)

    # -- what it reported ----------------------------------------------------------------------------
    def take(self, m: dict) -> dict | None:
        """Keep what a report changes; the event for the page (None: nothing to tell)."""
        kind = m.get("type")
        if kind == "state":
            self.state = m["state"] if self.state not in ENDED else self.state
            self.pid = m.get("pid", self.pid)
        elif kind == "started":
            self.started = m
        elif kind == "batch":
            self.points.append(m)
            if "pin" in m:
                self.pin = {"pin": m["pin"], "step": m["step"]}
        elif kind == "look":
            self.look = m
            self.samples.append({"step": m["step"], "epoch": m["epoch"], **m["sample"]})
            if "pin" in m:
                self.pin = {"pin": m["pin"], "step": m["step"]}
        elif kind == "pin":
            self.pin = {"pin": m["pin"], "step": m["step"]}
        elif kind == "epoch":
            if self.epochs:   # only the newest epoch keeps its pictures
                self.epochs[-1] = {k: v for k, v in self.epochs[-1].items() if k not in ("mistakes", "changed")}
            self.epochs.append(m)
        elif kind in ("snapshot", "end"):
            weights = m.pop("weights", None)
            snapshot = (m.pop("architecture", None), weights, m.pop("info", None)) if weights is not None else None
            if kind == "snapshot":
                waiting = self.snapshots.pop(m.get("id"), None)
                if waiting:
                    waiting[1].append(snapshot)
                    waiting[0].set()
                return None
            self.state, self.end, self.final = m["state"], m, snapshot
            m["has_weights"] = snapshot is not None
            for done, slot in self.snapshots.values():   # asked just before the end: the end answers
                if snapshot is not None:
                    slot.append(snapshot)
                    done.set()
        return {"run": self.id, **m}

    def summary(self, full: bool = True) -> dict:
        out = {"id": self.id, "label": self.label, "state": self.state, "recipe": self.recipe.options(),
               "command": self.recipe.command(), "pid": self.pid, "has_weights": self.final is not None}
        if full:
            out.update({"started": self.started, "points": self.points, "epochs": self.epochs, "samples": self.samples,
                        "look": self.look, "pin": self.pin, "end": self.end})
        return out


# -- the room ------------------------------------------------------------------------------------------------
class LearnRoom:
    def __init__(self, data_dir=None, limits: Limits = PAGE_LIMITS, slots: int | None = None,
                 grace: float = 10.0, abandon: float = 600.0, draw=None):
        self.data_dir, self.limits = data_dir, limits
        self.slots = slots or max(1, (os.cpu_count() or 1) // 4)
        self.max_runs = max(MAX_RUNS, self.slots + 2)   # room for one waiting in line
        self.grace, self.abandon = grace, abandon
        self.runs: dict[str, LiveRun] = {}
        self.ids = itertools.count(1)
        self.lock = threading.RLock()
        self.watchers: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}
        self.unwatched_since = time.monotonic()
        self.closed = threading.Event()
        threading.Thread(target=self._keep_watch, name="sifir-learn-watch", daemon=True).start()

    # -- runs ---------------------------------------------------------------------------------------------
    def start(self, recipe: Recipe, settings: dict) -> LiveRun:
        with self.lock:
            if self.closed.is_set():
                raise ApiError(503, "closing", "the server is shutting down")
            if len(self.runs) >= self.max_runs:
                raise ApiError(409, "too_many_runs", f"there are already {self.max_runs} runs: reset one to start another")
            run = LiveRun(self, str(next(self.ids)), replace(recipe, data_dir=self.data_dir), settings)
            self.runs[run.id] = run
            self._publish("run", run.summary())
            self._launch_waiting()
            return run

    def get(self, run_id: str) -> LiveRun:
        run = self.runs.get(run_id)
        if run is None:
            raise ApiError(404, "no_run", f"no run '{run_id[:20]}' (it may have been reset)")
        return run

    def remove(self, run_id: str) -> None:
        with self.lock:
            run = self.get(run_id)
            del self.runs[run_id]
            self._publish("removed", {"run": run_id})
        threading.Thread(target=self._stop_and_schedule, args=(run,), daemon=True).start()

    def _stop_and_schedule(self, run: LiveRun) -> None:
        run.stop_process()
        with self.lock:
            self._launch_waiting()

    def _launch_waiting(self) -> None:
        training = [r for r in self.runs.values() if r.process is not None and r.state not in ENDED]
        for run in self.runs.values():
            if len(training) >= self.slots or self.closed.is_set():
                break
            if run.state == "queued":
                run.launch()
                training.append(run)
                self._publish("state", {"run": run.id, "state": run.state})

    def record(self, run: LiveRun, message: dict) -> None:
        """A report from ``run``'s process: keep it, tell every tab, start a waiting run at an end."""
        with self.lock:
            event = run.take(message)
            if event is None or run.id not in self.runs:
                return
            self._publish(message["type"], event)
            if message["type"] == "end":
                self._launch_waiting()

    # -- watchers --------------------------------------------------------------------------------------------
    def subscribe(self, loop) -> asyncio.Queue:
        queue = asyncio.Queue(QUEUE_SIZE)
        with self.lock:   # the hello and the events after it: nothing lost or told twice in between
            queue.put_nowait({"event": "hello", "data": _json({"room": self.room_info(len(self.watchers) + 1),
                                                               "runs": [r.summary() for r in self.runs.values()]})})
            self.watchers[queue] = loop
            self.unwatched_since = None
            self._publish("room", self.room_info())
            for run in self.runs.values():   # paused for lack of watchers: someone is back
                if run.unwatched_since is not None and run.state == "paused":
                    run.unwatched_since = None
                    _quietly(run.command, {"op": "resume"})
        return queue

    def unsubscribe(self, queue) -> None:
        with self.lock:
            self.watchers.pop(queue, None)
            if not self.watchers:
                self.unwatched_since = time.monotonic()
            self._publish("room", self.room_info())

    def _publish(self, kind: str, data: dict) -> None:
        item = {"event": kind, "data": _json(data)}
        for queue, loop in list(self.watchers.items()):
            try:
                loop.call_soon_threadsafe(_offer, queue, item)
            except RuntimeError:   # that loop has closed
                self.watchers.pop(queue, None)

    def _keep_watch(self) -> None:
        """Pause runs nobody watches after ``grace`` seconds; stop them after ``abandon`` more."""
        while not self.closed.wait(min(1.0, self.grace / 4)):
            with self.lock:
                since = self.unwatched_since
                if since is None:
                    continue
                idle = time.monotonic() - since
                for run in list(self.runs.values()):
                    if run.process is None or run.state in ENDED:
                        continue
                    if idle >= self.grace + self.abandon:   # paused by us or by the learner: end it
                        _quietly(run.command, {"op": "stop"})
                    elif idle >= self.grace and run.unwatched_since is None and run.state != "paused":
                        run.unwatched_since = time.monotonic()
                        _quietly(run.command, {"op": "pause"})

    # -- the whole room -------------------------------------------------------------------------------------
    def room_info(self, watchers: int | None = None) -> dict:
        return {"slots": self.slots, "cpus": os.cpu_count(), "max_runs": self.max_runs,
                "watchers": len(self.watchers) if watchers is None else watchers}

    def describe(self) -> dict:
        presets = {name: _recipe_defaults(name) for name in self.limits.models or (*models.PRESETS, models.CUSTOM)}
        lim = self.limits
        return {"room": self.room_info(), "presets": presets,
                "choices": {"optimizer": list(OPTIMIZERS), "schedule": list(SCHEDULES), "augment": list(AUGMENTS),
                            "activation": list(models.ACTIVATIONS)},
                "limits": {"epochs": lim.max_epochs, "batch_size": lim.max_batch_size, "layers": lim.max_layers,
                           "width": lim.max_width, "pace": MAX_PACE},
                "runs": [r.summary(full=False) for r in self.runs.values()]}

    def close(self) -> None:
        """Stop every run and wait for its process (the server is shutting down)."""
        self.closed.set()
        with self.lock:
            runs = list(self.runs.values())
            for queue, loop in list(self.watchers.items()):   # end the event streams
                try:
                    loop.call_soon_threadsafe(_offer, queue, None)
                except RuntimeError:
                    pass
        for run in runs:
            run.stop_process()


def _recipe_defaults(name: str) -> dict:
    r = Recipe(model=name).resolved()
    return {"description": models.get(name).description, **{k: getattr(r, k) for k in OPTIONS if k != "model"}}


def _offer(queue: asyncio.Queue, item) -> None:
    """Put ``item`` for one tab; a tab too far behind gets the end of its stream instead."""
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)


def _quietly(command, message: dict) -> None:
    """A command the room sends of its own accord: a run that ended meanwhile needs none."""
    try:
        command(message)
    except ApiError:
        pass


def _json(data) -> str:
    # the training process sends NaN and infinities as null already: strict JSON for JSON.parse
    return json.dumps(data, separators=(",", ":"), allow_nan=False)
