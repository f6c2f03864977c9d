"""The training room's API with real requests: the options it refuses (422, naming them), the
token, Host and Origin checks (403), runs that stream to several watchers at once, pause, step,
resume and stop, divergence, the queue, a closed tab, and a server that stops its runs when it
stops. Runs train the seed network on the real MNIST in processes of their own.

Every wait is for a condition (an event in the stream, a process gone), never for a time.
"""
import json
import os
import signal
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from conftest import load_loadtest
from sifir import io
from sifir.web import app as server
from test_cli import sifir
from test_web_api import data_url, png

pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
loadtest = load_loadtest()
WAIT = 180   # seconds before a wait gives up: generous, the machine may be busy


# -- a watcher: an event stream read in a thread ------------------------------------------------------------
class Watcher:
    """Reads GET /api/learn/events in a thread; ``wait_for`` blocks until an event matches."""

    def __init__(self, base, token):
        self.events, self.cond = [], threading.Condition()
        self.closed = threading.Event()
        self.client = httpx.Client(base_url=base, headers={"X-Sifir-Token": token}, timeout=None, trust_env=False)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            with self.client.stream("GET", "/api/learn/events") as response:
                kind = None
                for line in response.iter_lines():
                    if self.closed.is_set():
                        return
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind:
                        with self.cond:
                            self.events.append((kind, json.loads(line[5:])))
                            self.cond.notify_all()
        except httpx.HTTPError:
            pass
        finally:
            with self.cond:
                self.events.append(("closed", {}))
                self.cond.notify_all()

    def wait_for(self, predicate, what="an event", after=-1):
        """(index, data) of the first event after index ``after`` for which predicate(kind, data)."""
        deadline = time.monotonic() + WAIT
        with self.cond:
            while True:
                for i, (kind, data) in enumerate(self.events):
                    if i > after and predicate(kind, data):
                        return i, data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} in {[k for k, _ in self.events][-30:]}")
                self.cond.wait(left)

    def of(self, run_id, kind=None):
        with self.cond:
            return [(k, d) for k, d in self.events if d.get("run") == run_id and (kind is None or k == kind)]

    def close(self):
        self.closed.set()
        self.client.close()


def ended(run_id):
    return lambda kind, data: kind == "end" and data.get("run") == run_id


@pytest.fixture(scope="module")
def live(mnist_dir):
    """`sifir serve` without a model, as a user starts it: (base URL, token, client with the token)."""
    with loadtest.start_server(env={"SIFIR_STATE_DIR": "/nonexistent-state"}) as srv:
        client = httpx.Client(base_url=srv.url, headers={"X-Sifir-Token": srv.token}, timeout=120, trust_env=False)
        yield srv, client
        client.close()


@pytest.fixture
def room(live):
    """The live server with no runs left over from the previous test."""
    srv, client = live
    for run in client.get("/api/learn").json()["runs"]:
        client.delete(f"/api/learn/runs/{run['id']}")
    yield srv, client
    for run in client.get("/api/learn").json()["runs"]:
        client.delete(f"/api/learn/runs/{run['id']}")


def start(client, **options):
    response = client.post("/api/learn/runs", json=options)
    assert response.status_code == 201, response.text
    return response.json()


# -- runs ----------------------------------------------------------------------------------------------------
def test_two_watchers_see_one_run_that_reproduces_sifir_train_bit_for_bit(room, tmp_path, mnist_dir):
    srv, client = room
    watchers = [Watcher(srv.url, srv.token), Watcher(srv.url, srv.token)]
    try:
        for w in watchers:
            w.wait_for(lambda k, d: k == "hello", "hello")
        run = start(client, model="seed", epochs=1, lr=0.1)
        for w in watchers:
            w.wait_for(ended(run["id"]), "end of the run")
        seen = [[(k, d.get("step"), d.get("batch")) for k, d in w.of(run["id"])] for w in watchers]
        assert seen[0] == seen[1]                                   # the same reports, in the same order
        kinds = [k for k, _, _ in seen[0]]
        for kind in ("started", "look", "batch", "epoch", "end"):
            assert kind in kinds, kind
        batches = [d for _, d in watchers[0].of(run["id"], "batch")]
        steps = [b["step"] for b in batches]
        assert steps == sorted(steps) and steps[-1] == 860 and len(steps) >= 2   # the curve gains points
        assert all(np.isfinite(b["loss"]) and 0 <= b["acc"] <= 1 for b in batches)
        _, epoch = watchers[0].of(run["id"], "epoch")[0]
        assert np.array(epoch["confusion"]).sum() == 5000 and epoch["val_acc"] > 0.9
        end = watchers[0].of(run["id"], "end")[0][1]
        assert end["state"] == "done" and end["has_weights"] and end["test_accuracy"] > 0.9
        look = watchers[0].of(run["id"], "look")[-1][1]
        assert look["first_layer"]["shape"] == [10, 28, 28] and [l["name"] for l in look["layers"]] == [
            "1.weight", "3.weight"]
        assert [d["units"] for d in look["dead"]] == [10, 10]
    finally:
        for w in watchers:
            w.close()

    download = client.get(f"/api/learn/runs/{run['id']}/model.npz")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    (tmp_path / "web.npz").write_bytes(download.content)
    assert run["command"] == "sifir train --model seed --epochs 1"
    cli = sifir(*run["command"].split()[1:], "--data-dir", mnist_dir, "--quiet", "--out", tmp_path / "cli.npz",
                env={"SIFIR_STATE_DIR": str(tmp_path)})
    assert cli.returncode == 0, cli.stderr
    web, web_meta = io.read_npz(tmp_path / "web.npz")
    cli_arrays, cli_meta = io.read_npz(tmp_path / "cli.npz")
    assert web.keys() == cli_arrays.keys() and all(np.array_equal(web[k], cli_arrays[k]) for k in web)
    assert web_meta["info"]["test_accuracy"] == cli_meta["info"]["test_accuracy"]
    assert sifir("evaluate", tmp_path / "web.npz", "--data-dir", mnist_dir).returncode == 0


def test_pause_step_resume_stop_and_use_the_weights(room):
    srv, client = room
    w = Watcher(srv.url, srv.token)
    try:
        run = start(client, model="seed", epochs=3, paused=True)
        rid = run["id"]
        w.wait_for(lambda k, d: k == "state" and d.get("run") == rid and d["state"] == "paused", "paused")
        assert not w.of(rid, "batch")                                # paused before the first batch
        client.post(f"/api/learn/runs/{rid}/step").raise_for_status()
        i, _ = w.wait_for(lambda k, d: k == "batch" and d.get("run") == rid, "the step's batch")
        w.wait_for(lambda k, d: k == "state" and d.get("run") == rid and d["state"] == "paused", "paused again",
                   after=i)
        assert [d["step"] for _, d in w.of(rid, "batch")] == [1]     # exactly one update
        client.post(f"/api/learn/runs/{rid}/step").raise_for_status()
        w.wait_for(lambda k, d: k == "look" and d.get("run") == rid and d["step"] == 2, "a look after the step")
        looks = [d for _, d in w.of(rid, "look")]
        assert [d["step"] for d in looks] == [0, 1, 2] and looks[-1]["layers"][0]["update_ratio"] > 0
        assert looks[0]["first_layer"]["data"] != looks[-1]["first_layer"]["data"]        # W1 changed
        client.post(f"/api/learn/runs/{rid}/pace", json={"value": 50}).raise_for_status()
        client.post(f"/api/learn/runs/{rid}/resume").raise_for_status()
        w.wait_for(lambda k, d: k == "batch" and d.get("run") == rid and d["step"] >= 5, "training again")
        client.post(f"/api/learn/runs/{rid}/stop").raise_for_status()
        _, end = w.wait_for(ended(rid), "the stop")
        assert end["state"] == "stopped" and end["has_weights"]
        assert client.post(f"/api/learn/runs/{rid}/resume").status_code == 409
    finally:
        w.close()
    described = client.post(f"/api/learn/runs/{rid}/use")
    assert described.status_code == 200, described.text
    model = client.get("/api/model").json()
    assert model["file"] == f"run {run['label']}" and model["info"]["command"] == run["command"]
    assert model["parameters"]["weights"] == 7940
    answer = client.post("/api/predict", json={"image": data_url(png(np.pad(np.full((16, 4), 255), 6)))})
    assert answer.status_code == 200 and len(answer.json()["probabilities"]) == 10


@pytest.mark.parametrize("options, pictures, layers, dead", [
    ({"model": "cnn"}, [32, 3, 3], ["0.weight", "4.weight", "9.weight", "12.weight"], [32, 64, 128]),
    ({"model": "custom", "hidden": [16, 8], "activation": "sigmoid"}, [16, 28, 28],
     ["1.weight", "3.weight", "5.weight"], [16, 8]),
])
def test_one_step_of_other_networks_shows_their_first_layer(room, options, pictures, layers, dead):
    """A convolution's first layer is its filters; a custom MLP's, its own W1. One step is enough."""
    srv, client = room
    w = Watcher(srv.url, srv.token)
    try:
        run = start(client, epochs=1, step=True, **options)
        _, look = w.wait_for(lambda k, d: k == "look" and d.get("run") == run["id"] and d["step"] == 1, "the look")
        assert look["first_layer"]["shape"] == pictures
        assert [entry["name"] for entry in look["layers"]] == layers and look["layers"][0]["update_ratio"] > 0
        assert [d["units"] for d in look["dead"]] == dead    # a convolution's units are its channels
        assert client.get("/api/learn").json()["runs"][0]["command"].startswith(f"sifir train --model {options['model']}")
    finally:
        w.close()


def test_a_diverging_run_says_why_keeps_nothing_and_can_be_reset(room):
    srv, client = room
    w = Watcher(srv.url, srv.token)
    try:
        run = start(client, model="seed", epochs=1, lr=1e9)
        _, end = w.wait_for(ended(run["id"]), "the verdict")
    finally:
        w.close()
    assert end["state"] == "diverged" and "far above" in end["message"] and "1e+08" in end["message"]
    d = end["diverged"]
    assert (d["reason"], d["epoch"], d["batch"], d["lr"]) == ("exploded", 1, 2, 1e9) and d["loss"] > 1e10
    assert not end["has_weights"]
    refused = client.get(f"/api/learn/runs/{run['id']}/model.npz")
    assert refused.status_code == 409 and refused.json()["code"] == "no_weights"
    assert client.delete(f"/api/learn/runs/{run['id']}").status_code == 200
    assert client.get("/api/learn").json()["runs"] == []


def test_a_second_run_waits_in_line_when_the_machine_has_no_room(room):
    srv, client = room
    slots = client.get("/api/learn").json()["room"]["slots"]
    w = Watcher(srv.url, srv.token)
    try:
        runs = [start(client, model="seed", epochs=1, paused=True, label=f"r{i}") for i in range(slots + 1)]
        first, last = runs[0], runs[-1]
        w.wait_for(lambda k, d: k == "state" and d.get("run") == first["id"] and d["state"] == "paused", "A paused")
        assert client.get("/api/learn").json()["runs"][-1]["state"] == "queued"
        client.post(f"/api/learn/runs/{last['id']}/step")      # wished while queued: kept for its start
        for run in runs[:-1]:
            client.post(f"/api/learn/runs/{run['id']}/stop")
        w.wait_for(lambda k, d: k == "batch" and d.get("run") == last["id"], "B started and stepped")
        w.wait_for(lambda k, d: k == "state" and d.get("run") == last["id"] and d["state"] == "paused", "B paused")
    finally:
        w.close()


# -- options the room refuses ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(trained_seed_model):
    from fastapi.testclient import TestClient
    app = server.create_app(trained_seed_model, token="secret-token")
    with TestClient(app, base_url="http://127.0.0.1:8000", headers={"X-Sifir-Token": "secret-token"}) as c:
        yield c


@pytest.mark.parametrize("body, field, words", [
    ({"model": "seed", "lr": -1}, "lr", "--lr must be a number in (0, inf]"),
    ({"model": "seed", "lr": "fast"}, "lr", "--lr must be a number"),
    ({"model": "seed", "lr": None, "epochs": 0}, "epochs", "--epochs must be a whole number from 1 to 50"),
    ({"model": "seed", "epochs": 51}, "epochs", "from 1 to 50"),
    ({"model": "seed", "epochs": 2.5}, "epochs", "whole number"),
    ({"model": "seed", "batch_size": 2048}, "batch_size", "--batch-size must be a whole number from 1 to 1,024"),
    ({"model": "best"}, "model", "not offered here"),
    ({"model": "nonsense"}, "model", "unknown model"),
    ({"model": "custom", "hidden": []}, "hidden", "1 to 4 widths"),
    ({"model": "custom", "hidden": [10, 10, 10, 10, 10]}, "hidden", "1 to 4 widths"),
    ({"model": "custom", "hidden": [5000]}, "hidden", "from 1 to 1,024"),
    ({"model": "custom", "hidden": ["ten"]}, "hidden", "whole number"),
    ({"model": "custom", "activation": "elu"}, "activation", "relu, sigmoid, tanh, leaky-relu"),
    ({"model": "seed", "activation": "tanh"}, "activation", "only to --model custom"),
    ({"model": "seed", "optimizer": "rmsprop"}, "optimizer", "sgd, adam, adamw"),
    ({"model": "seed", "momentum": 1}, "momentum", "--momentum"),
    ({"model": "seed", "schedule": "wavy"}, "schedule", "constant, step, cosine, onecycle"),
    ({"model": "seed", "augment": "blur"}, "augment", "none, shift, affine, elastic"),
    ({"model": "seed", "seed": -1}, "seed", "--seed"),
    ({"model": "seed", "weight_decay": -0.1}, "weight_decay", "--weight-decay"),
    ({"model": "seed", "label_smoothing": 1}, "label_smoothing", "--label-smoothing"),
    ({"model": "seed", "patience": 0}, "patience", "--patience"),
])
def test_every_bad_option_is_422_naming_it(api, body, field, words):
    response = api.post("/api/learn/runs", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["code"] == "bad_option" and answer["field"] == field and words in answer["error"]


@pytest.mark.parametrize("body, words", [
    ({"model": "seed", "data_dir": "/etc"}, "unknown option 'data_dir'"),   # no server paths from a page
    ({"model": "seed", "validation": 10}, "unknown option 'validation'"),    # the real 55,000/5,000 split
    ({"model": "seed", "pace": 0}, "'pace' must be"),
    ({"model": "seed", "pace": "fast"}, "'pace' must be"),
    ({"model": "seed", "pin": 7}, "'image' must be a data URL"),
    ({"model": "seed", "pin": "data:image/png;base64,AAAA"}, "cannot read"),
])
def test_other_bad_parts_of_a_start_are_422(api, body, words):
    response = api.post("/api/learn/runs", json=body)
    assert response.status_code == 422 and words in response.json()["error"], response.text


def test_the_body_must_be_a_json_object(api):
    assert api.post("/api/learn/runs", json=[1, 2]).status_code == 422
    assert api.post("/api/learn/runs", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400


def test_refusals_speak_the_pages_language(api):
    response = api.post("/api/learn/runs?lang=tr", json={"model": "seed", "batch_size": 4096})
    assert response.json()["error"] == "--batch-size 1 ile 1.024 arasında bir tam sayı olmalı; gelen: 4096"


def test_unknown_runs_and_actions(api):
    assert api.post("/api/learn/runs/99/pause").json()["code"] == "no_run"
    assert api.delete("/api/learn/runs/99").status_code == 404
    assert api.get("/api/learn/runs/99/model.npz").status_code == 404


def test_the_room_tells_the_form_its_presets_and_limits(api):
    described = api.get("/api/learn").json()
    assert set(described["presets"]) == {"seed", "mlp", "cnn", "custom"}
    assert described["presets"]["seed"]["lr"] == 0.1 and described["presets"]["custom"]["hidden"] == [100]
    assert described["limits"] == {"epochs": 50, "batch_size": 1024, "layers": 4, "width": 1024, "pace": 10000}
    assert described["room"]["slots"] >= 1


# -- nothing let in ----------------------------------------------------------------------------------------------
def test_the_training_api_needs_this_launchs_token(live):
    srv, _ = live
    with httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        for method, path in (("GET", "/api/learn"), ("GET", "/api/learn/events"), ("POST", "/api/learn/runs"),
                             ("DELETE", "/api/learn/runs/1"), ("GET", "/api/learn/runs/1/model.npz")):
            for headers in ({}, {"X-Sifir-Token": "guessed"}, {"X-Sifir-Token": srv.token[:-1]}):
                response = c.request(method, path, headers=headers, json={} if method == "POST" else None)
                assert response.status_code == 403, (method, path, headers)
                assert response.json()["code"] == "bad_token" and "?token=" in response.json()["error"]
        assert c.get("/api/learn", headers={"X-Sifir-Token": srv.token}).status_code == 200
        assert c.get(f"/api/learn?token={srv.token}").status_code == 200
        assert c.get("/api/learn").status_code == 403
        page = c.get(f"/?token={srv.token}")     # opening the printed address leaves the token in a cookie
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert c.get("/api/learn").status_code == 200   # … which the page's own requests then carry
    with httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        assert "set-cookie" not in c.get("/?token=wrong").headers
        assert c.get("/").status_code == 200 and c.get("/api/learn").status_code == 403   # the page, not the API


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost:1",
                                  "attacker.test", "192.168.1.10:{port}"])
def test_a_host_header_that_is_not_ours_is_403_everywhere(live, host):
    """DNS rebinding: a site whose name points at 127.0.0.1 reaches the server with its own name."""
    srv, _ = live
    port = srv.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=srv.url, timeout=30, trust_env=False) as c:
        for path in ("/", "/api/model", "/api/learn", "/static/app.js"):
            response = c.get(path, headers={"Host": host.format(port=port), "X-Sifir-Token": srv.token})
            assert response.status_code == 403 and response.json()["code"] == "bad_host", (host, path)
        assert c.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "cross-site"}])
def test_a_request_from_another_site_changes_nothing(room, headers):
    srv, client = room
    for method, path in (("POST", "/api/learn/runs"), ("POST", "/api/predict"), ("DELETE", "/api/learn/runs/1")):
        response = client.request(method, path, headers=headers, json={"model": "seed"})
        assert response.status_code == 403 and response.json()["code"] == "bad_origin", (method, path)
    assert client.get("/api/learn").json()["runs"] == []            # nothing started
    own = client.post("/api/learn/runs", headers={"Origin": srv.url}, json={"model": "seed", "lr": -1})
    assert own.status_code == 422                                     # our own page gets through to the checks


# -- no runaway training ------------------------------------------------------------------------------------------
@contextmanager
def threaded_server(**learn_options):
    """The app in uvicorn on a thread of this process, so a test can set the room's timings."""
    import uvicorn

    from sifir.cli import listen_socket
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = server.create_app(None, token="t0k", port=port, learn_options=learn_options)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    while not uv.started:
        time.sleep(0.05)
    try:
        yield base, app, uv
    finally:
        uv.should_exit = True
        thread.join(30)


def process_gone(pid) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":   # a zombie has finished
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_a_closed_tab_leaves_nothing_training_and_a_stopped_server_no_process(mnist_dir):
    with threaded_server(grace=0.5, abandon=600) as (base, app, uv):
        w = Watcher(base, "t0k")
        client = httpx.Client(base_url=base, headers={"X-Sifir-Token": "t0k"}, timeout=60, trust_env=False)
        run = start(client, model="seed", epochs=50, pace=200)
        rid = run["id"]
        w.wait_for(lambda k, d: k == "batch" and d.get("run") == rid, "training")
        w.close()                                              # the tab is closed
        live_run = app.state.learn.get(rid)
        deadline = time.monotonic() + WAIT
        while live_run.state != "paused" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live_run.state == "paused" and live_run.unwatched_since is not None
        steps = live_run.points[-1]["step"]
        back = Watcher(base, "t0k")                            # someone opens the page again: it goes on
        back.wait_for(lambda k, d: k == "batch" and d.get("run") == rid and d["step"] > steps, "resumed")
        pid = live_run.pid
        assert pid
        back.close()
        client.close()
    assert process_gone(pid)                                   # the server's stop stopped the run


def test_a_run_nobody_comes_back_to_is_stopped_in_the_end(mnist_dir):
    with threaded_server(grace=0.3, abandon=0.5) as (base, app, uv):
        client = httpx.Client(base_url=base, headers={"X-Sifir-Token": "t0k"}, timeout=60, trust_env=False)
        run = start(client, model="seed", epochs=50, paused=True)   # paused by the learner, then left
        live_run = app.state.learn.get(run["id"])
        deadline = time.monotonic() + WAIT
        while live_run.state != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live_run.state == "stopped" and live_run.end["state"] == "stopped"
        assert process_gone(live_run.pid)
        client.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_or_killed_server_leaves_no_training_behind(mnist_dir, tmp_path, sig):
    """Ctrl-C: the server stops its runs as it shuts down. SIGKILL: nothing runs at all, and the
    training process notices its closed pipe and ends itself."""
    with loadtest.start_server(env={"SIFIR_STATE_DIR": str(tmp_path)}) as srv:
        client = httpx.Client(base_url=srv.url, headers={"X-Sifir-Token": srv.token}, timeout=60, trust_env=False)
        w = Watcher(srv.url, srv.token)
        run = start(client, model="seed", epochs=50, pace=100)
        _, state = w.wait_for(lambda k, d: k == "state" and d.get("run") == run["id"] and d.get("pid"), "the pid")
        w.wait_for(lambda k, d: k == "batch" and d.get("run") == run["id"], "training")
        os.kill(srv.pid, sig)
        w.wait_for(lambda k, d: k == "closed", "the stream's end")
        w.close()
        client.close()
        assert process_gone(srv.pid) and process_gone(state["pid"])
