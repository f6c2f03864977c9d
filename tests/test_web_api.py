"""The drawing page's JSON API, through FastAPI's TestClient: answers on real MNIST digits equal
the offline `sifir predict` path, and every bad request gets a 4xx JSON error, never a 500."""
import base64
import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sifir import cli, nn
from sifir.activations import hidden_activations, layer_outputs
from sifir.data import mnist
from sifir.preprocess import preprocess_file
from sifir.train import predict_logits
from sifir.web import app as server
from sifir.web import predict as predict_room

# Starlette asks for a successor of httpx in its TestClient; httpx is what it runs on here.
pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")

N_DIGITS = 30
LOCAL = "http://127.0.0.1"   # the Host the server answers to (TestClient's own "testserver" is refused)


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width×height pixels but holds almost no data: the header is all it takes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)   # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(trained_seed_model):
    from fastapi.testclient import TestClient
    with TestClient(server.create_app(trained_seed_model), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def digits(mnist_dir):
    data = mnist.load_mnist(mnist_dir, download_missing=False)
    return data["test_images"][:N_DIGITS], data["test_labels"][:N_DIGITS].astype(int)


def post(client, payload=None, **kw):
    if payload is not None:
        kw["json"] = payload
    response = client.post("/api/predict", **kw)
    return response, response.json()


def assert_error(response, body, status, code=None):
    assert response.status_code == status, body
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(body.get("error"), str) and body["error"]
    assert "Traceback" not in response.text
    if code:
        assert body["code"] == code


# -- answers ---------------------------------------------------------------------------------------
def test_predict_equals_sifir_predict_on_real_digits(client, digits, trained_seed_model, tmp_path, capsys):
    images, labels = digits
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(png(image))
    assert cli.main(["predict", str(trained_seed_model), *map(str, paths)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == len(paths)

    from sifir import io as sifir_io
    model, _ = sifir_io.load_model(trained_seed_model)
    correct = 0
    for path, line, label in zip(paths, printed, labels):
        response, answer = post(client, {"image": data_url(path.read_bytes())})
        assert response.status_code == 200, answer
        # the CLI's line: "<file>: 7 (99.1%), runner-up 3 (0.5%)"
        digit, percent = re.match(rf"{re.escape(str(path))}: (\d) \(([\d.]+)%\)", line).groups()
        assert answer["digit"] == int(digit)
        assert f"{answer['probabilities'][answer['digit']]:.1%}" == f"{percent}%"
        # and number for number against the library path the CLI uses
        x28 = preprocess_file(path)
        expected = nn.softmax(predict_logits(model, mnist.normalize(x28[None])).astype(np.float64))[0]
        np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(answer["input"], x28, atol=0.5e-4)
        correct += answer["digit"] == label
    assert correct >= 0.8 * len(labels)   # a trained network, not a constant answer


def test_answer_shape_and_seed_activations(client, digits):
    response, answer = post(client, {"image": data_url(png(digits[0][0]))})
    assert response.status_code == 200
    assert set(answer) == {"digit", "label", "probabilities", "input", "activations", "number", "digits", "size"}
    assert answer["label"] == str(answer["digit"])   # MNIST's classes are the digits
    # one digit: the list holds it once more, with its box; the number is that digit
    assert len(answer["digits"]) == 1 and answer["number"] == str(answer["digit"]) and answer["size"] == [28, 28]
    only = answer["digits"][0]
    assert {k: only[k] for k in ("digit", "label", "probabilities", "input")} == {
        k: answer[k] for k in ("digit", "label", "probabilities", "input")}
    left, top, width, height = only["box"]
    assert 0 <= left < left + width <= 28 and 0 <= top < top + height <= 28 and only["row"] == 0
    p = np.array(answer["probabilities"])
    assert p.shape == (10,) and np.all(p >= 0) and abs(p.sum() - 1) < 1e-9 and answer["digit"] == p.argmax()
    x = np.array(answer["input"])
    assert x.shape == (28, 28) and x.min() == 0 and x.max() == 1
    hidden = answer["activations"]
    assert [(a["name"], a["layer"], a["index"], a["shape"]) for a in hidden] == [
        ("hidden1", "ReLU", "2", [10]), ("hidden2", "ReLU", "4", [10])]
    for a in hidden:
        v = np.array(a["values"])
        assert v.shape == (10,) and v.min() >= 0 and v.max() > 0   # ReLU outputs, some neuron fires
    # the seed network's last ReLU is its output, so softmax(hidden2) is the answer (to rounding)
    np.testing.assert_allclose(nn.softmax(np.array(hidden[1]["values"])), p, atol=1e-3)


def test_jpeg_and_dark_on_light_pictures_read_like_the_cli(client, digits, trained_seed_model, tmp_path, capsys):
    image, label = digits[0][1], digits[1][1]
    big = np.kron(255 - image, np.ones((6, 6), np.uint8))   # black ink on white paper, 168×168
    out = io.BytesIO()
    Image.fromarray(big).convert("RGB").save(out, format="JPEG", quality=92)
    path = tmp_path / "photo.jpg"
    path.write_bytes(out.getvalue())
    response, answer = post(client, {"image": data_url(out.getvalue(), "image/jpeg")})
    assert response.status_code == 200
    assert cli.main(["predict", str(trained_seed_model), str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: {answer['digit']} (")
    assert answer["digit"] == label


def test_bare_base64_and_line_breaks_are_accepted(client, digits):
    raw = base64.encodebytes(png(digits[0][2])).decode()   # 76-character lines
    response, answer = post(client, {"image": raw})
    assert response.status_code == 200 and answer["digit"] == digits[1][2]


def test_model_endpoint_counts_the_seed_weights(client):
    response = client.get("/api/model")
    assert response.status_code == 200
    model = response.json()
    assert model["parameters"] == {"weights": 7940, "biases": 20, "total": 7960}
    assert model["architecture"]["type"] == "Sequential"
    layers = [layer["type"] for layer in model["architecture"]["layers"]]
    assert layers == ["Flatten", "Linear", "ReLU", "Linear", "ReLU"]
    assert model["hidden"] == [{"name": "hidden1", "layer": "ReLU", "index": "2", "shape": [10]},
                               {"name": "hidden2", "layer": "ReLU", "index": "4", "shape": [10]}]
    assert model["info"]["preset"] == "seed" and 0.8 < model["info"]["test_accuracy"] <= 1
    assert model["file"] == "seed.npz"   # the name only: the server does not show its folders


def test_docs_and_openapi_exist(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # the documentation page works offline: its script and style come from this server
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    spec = client.get("/openapi.json").json()
    assert "/api/predict" in spec["paths"] and "/api/model" in spec["paths"]
    assert "Prediction" in spec["components"]["schemas"]


def test_page_and_its_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/[^"]*)"', page.text):
        if asset.startswith("/static/"):
            assert client.get(asset).status_code == 200, asset
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page.text)   # nothing from elsewhere
    for name in ("app.js", "style.css"):
        assert not re.search(r"https?://|@import|url\(", client.get(f"/static/{name}").text), name


# -- refusals: exact statuses, JSON bodies, no tracebacks ----------------------------------------------
def test_malformed_json_is_400(client):
    response, body = post(client, content=b'{"image": "data:', headers={"Content-Type": "application/json"})
    assert_error(response, body, 400, "bad_json")


def test_json_without_the_content_type_is_415(client):
    response, body = post(client, content=b'{"image": "x"}', headers={"Content-Type": "text/plain"})
    assert_error(response, body, 415, "not_json")


@pytest.mark.parametrize("payload, words", [
    ({}, "missing field 'image'"),
    ([1, 2], "JSON object"),
    ("data:image/png;base64,AAAA", "JSON object"),
    ({"image": 3}, "must be a string"),
    ({"img": "data:image/png;base64,AAAA"}, "missing field 'image'"),
])
def test_wrong_shape_of_request_is_422(client, payload, words):
    response, body = post(client, payload)
    assert_error(response, body, 422, "bad_request")
    assert words in body["error"]


def test_empty_body_is_422(client):
    response, body = post(client, content=b"", headers={"Content-Type": "application/json"})
    assert_error(response, body, 422, "bad_request")


@pytest.mark.parametrize("image, words", [
    ("", "empty"),
    ("data:image/png;base64,", "empty"),
    ("data:image/png,iVBORw0KGgo", "';base64,'"),
    ("data:image/png;base64,@@@not base64@@@", "not valid base64"),
    ("data:image/png;base64,iVBORw0KGgo", "not valid base64"),        # bad padding
])
def test_bad_base64_is_422(client, image, words):
    response, body = post(client, {"image": image})
    assert_error(response, body, 422, "bad_image")
    assert words in body["error"]


@pytest.mark.parametrize("data", [
    b"hello, this is not a picture",
    b"\x89PNG\r\n\x1a\n" + b"\0" * 40,          # a PNG signature and nothing sound after it
])
def test_non_image_bytes_are_422(client, data):
    response, body = post(client, {"image": data_url(data)})
    assert_error(response, body, 422, "bad_image")
    assert "cannot read the picture" in body["error"]


def test_truncated_png_is_422(client, digits):
    data = png(np.kron(digits[0][0], np.ones((8, 8), np.uint8)))
    response, body = post(client, {"image": data_url(data[: len(data) // 2])})
    assert_error(response, body, 422, "bad_image")


@pytest.mark.parametrize("size", [(5000, 5000), (60000, 60000)])
def test_decompression_bomb_is_413_from_the_header(client, size):
    response, body = post(client, {"image": data_url(png_header_only(*size))})
    assert_error(response, body, 413, "too_many_pixels")
    assert "pixels, over the limit of 4,194,304" in body["error"]


def test_real_decompression_bomb_is_413(client):
    bomb = io.BytesIO()
    Image.new("L", (4000, 4000)).save(bomb, format="PNG", optimize=True)   # 16 MP of zeros in a few kB
    assert len(bomb.getvalue()) < 100_000
    response, body = post(client, {"image": data_url(bomb.getvalue())})
    assert_error(response, body, 413, "too_many_pixels")


@pytest.mark.parametrize("level", [0, 255, 128])
def test_blank_picture_is_422_no_digit(client, level):
    response, body = post(client, {"image": data_url(png(np.full((280, 280), level, np.uint8)))})
    assert_error(response, body, 422, "no_digit")
    assert "draw a digit" in body["error"]


def test_body_over_the_limit_is_413(client):
    huge = {"image": "data:image/png;base64," + "A" * (server.MAX_BODY_BYTES + 10)}
    response, body = post(client, huge)
    assert_error(response, body, 413, "too_large")


def test_streamed_body_without_length_is_counted(client):
    sent = []

    def chunks():   # chunked upload: no Content-Length to trust
        for _ in range(64):
            sent.append(1)
            yield b"A" * 65536

    response, body = post(client, content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, body, 413, "too_large")
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_lying_content_length_is_not_trusted(trained_seed_model):
    """Call the app with raw ASGI messages: a small declared length, a big body in pieces."""
    import asyncio

    app = server.create_app(trained_seed_model, max_body=1000)
    pieces = [{"type": "http.request", "body": b"A" * 600, "more_body": True} for _ in range(5)]
    pieces[-1]["more_body"] = False
    sent, received = [], iter(pieces)

    async def receive():
        return next(received)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert next(received, None) is not None   # it stopped reading after the second piece


def test_wrong_method_and_unknown_path_are_json(client):
    response = client.get("/api/predict")
    assert_error(response, response.json(), 405, "method_not_allowed")
    response = client.get("/api/nothing-here")
    assert_error(response, response.json(), 404, "not_found")


def test_unexpected_failure_is_500_json_without_traceback(trained_seed_model, monkeypatch, digits, caplog):
    from fastapi.testclient import TestClient

    def broken(*args, **options):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(predict_room, "find_items", broken)
    with TestClient(server.create_app(trained_seed_model), base_url=LOCAL, raise_server_exceptions=False) as c:
        response = c.post("/api/predict", json={"image": data_url(png(digits[0][0]))})
    assert_error(response, response.json(), 500, "internal")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert "secret internal detail" in caplog.text   # the log has it


def test_library_errors_are_422(trained_seed_model, monkeypatch, digits):
    from fastapi.testclient import TestClient

    from sifir.errors import SifirError

    def refuses(*args, **options):
        raise SifirError("this picture is refused for a reason the user can fix")

    monkeypatch.setattr(predict_room, "find_items", refuses)
    with TestClient(server.create_app(trained_seed_model), base_url=LOCAL) as c:
        response = c.post("/api/predict", json={"image": data_url(png(digits[0][0]))})
    assert_error(response, response.json(), 422, "bad_input")
    assert "reason the user can fix" in response.json()["error"]


# -- static files: the static folder and nothing else -----------------------------------------------------
TRAVERSALS = [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/%2e%2e%2fapp.py", "/static/..%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2factivations.py", "/static/..%5capp.py", "/static/....//app.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%252e%252e/app.py", "/static/%00../app.py", "/static/../../__init__.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_file_outside_the_static_folder(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404), response.status_code
    assert "create_app" not in response.text and "root:" not in response.text


@pytest.mark.parametrize("raw", [b"/static/../app.py", b"/static/../../io.py", b"/static/..\\app.py",
                                 b"/static//etc/passwd", b"/static/./../app.py"])
def test_raw_paths_are_not_normalised_into_the_package(trained_seed_model, raw):
    """httpx tidies '..' away before sending; here the app gets the path exactly as written."""
    import asyncio

    app = server.create_app(trained_seed_model)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    path = raw.decode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": raw, "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] in (400, 404)
    assert b"create_app" not in b"".join(m.get("body", b"") for m in sent[1:])


# -- the helper behind the activations --------------------------------------------------------------------
def test_layer_outputs_match_the_forward_pass_and_restore_the_mode():
    nn.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh(), nn.Dropout(0.5),
                          nn.Sequential(nn.Linear(16, 12), nn.ReLU()), nn.Linear(12, 10))
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    model.train()
    outputs = layer_outputs(model, x)
    assert model.training   # put back as it was
    assert [o.index for o in outputs] == ["0", "1", "2", "3", "4.0", "4.1", "5"]
    np.testing.assert_array_equal(outputs[-1].output, predict_logits(model, x))   # eval: dropout is off
    hidden, out = hidden_activations(model, x)
    assert [(type(h.layer).__name__, h.index, h.output.shape) for h in hidden] == [
        ("Tanh", "2", (3, 16)), ("ReLU", "4.1", (3, 12))]
    np.testing.assert_array_equal(out, outputs[-1].output)


# -- `sifir serve` without a model or without the web extra ---------------------------------------------------
def test_serve_without_a_model_serves_the_learn_view(tmp_path):
    """No model to draw with yet: the page still opens, and the Learn view trains one."""
    import urllib.error
    import urllib.request

    from conftest import load_loadtest
    with load_loadtest().start_server(env={"SIFIR_STATE_DIR": str(tmp_path / "empty-state")}) as srv:
        assert srv.token and len(srv.token) >= 20
        with urllib.request.urlopen(srv.url + "/") as page:
            assert page.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(srv.url + "/api/model")
        assert refused.value.code == 404 and b"Learn view" in refused.value.read()


def test_serve_without_fastapi_names_the_extra(trained_seed_model, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "uvicorn", None)   # import uvicorn now raises ImportError
    assert cli.main(["serve", str(trained_seed_model)]) == 1
    assert "pip install 'sifir[web]'" in capsys.readouterr().err


def test_serve_on_a_busy_port_is_one_clear_line(trained_seed_model, capsys):
    import socket
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["serve", str(trained_seed_model), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "--port" in err[0]


def test_serve_on_a_host_name_that_does_not_resolve_is_one_clear_line(trained_seed_model, capsys):
    assert cli.main(["serve", str(trained_seed_model), "--host", "no-such-host.invalid", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-host.invalid" in err[0] and "--host" in err[0] and "--port" not in err[0]


def test_serve_with_a_broken_model_file_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "not-a-model.npz"
    bad.write_bytes(b"not a zip file")
    assert cli.main(["serve", str(bad)]) == 1
    assert "not-a-model.npz" in capsys.readouterr().err


# -- one model, many threads ----------------------------------------------------------------------------
class ReusedBuffer(nn.Module):
    """Identity that, like an optimised layer might, works in a buffer it keeps between calls
    (and dawdles there): two threads in one forward pass at once would mix their data."""

    def forward(self, x):
        import time
        if getattr(self, "buffer", None) is None or self.buffer.shape != x.shape:
            self.buffer = np.empty_like(x)
        self.buffer[...] = x
        time.sleep(0.002)
        return self.buffer.copy()

    def backward(self, grad_out, need_input_grad=True):
        return grad_out


def test_concurrent_requests_on_one_model_do_not_mix(tmp_path, monkeypatch, digits):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from sifir import io as sifir_io

    monkeypatch.setitem(nn.LAYERS, "ReusedBuffer", ReusedBuffer)
    nn.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), ReusedBuffer(), nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 10))
    path = sifir_io.save_model(tmp_path / "buffered.npz", model)
    bodies = [{"image": data_url(png(image))} for image in digits[0][:12]]
    expected = []
    with TestClient(server.create_app(path), base_url=LOCAL) as c:
        for body in bodies:   # one at a time: the reference answers
            expected.append(c.post("/api/predict", json=body).json()["probabilities"])
        with ThreadPoolExecutor(8) as pool:   # the endpoint runs in FastAPI's thread pool
            answers = list(pool.map(lambda i: (i, c.post("/api/predict", json=bodies[i % 12])), range(96)))
    for i, response in answers:
        assert response.status_code == 200
        assert response.json()["probabilities"] == expected[i % 12]


def test_a_convolutional_network_reports_feature_maps(tmp_path, digits):
    from fastapi.testclient import TestClient

    from sifir import io as sifir_io

    nn.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 12 * 12, 10))
    path = sifir_io.save_model(tmp_path / "cnn.npz", model)
    with TestClient(server.create_app(path), base_url=LOCAL) as c:
        described = c.get("/api/model").json()
        response = c.post("/api/predict", json={"image": data_url(png(digits[0][0]))})
    hidden = [(h["name"], h["shape"]) for h in described["hidden"]]
    assert hidden == [("hidden1", [4, 28, 28]), ("hidden2", [6, 12, 12])]
    answer = response.json()
    assert response.status_code == 200
    maps = [np.array(a["values"]) for a in answer["activations"]]
    assert [m.shape for m in maps] == [(4, 28, 28), (6, 12, 12)]
    expected = layer_outputs(model, mnist.normalize(preprocess_file(png(digits[0][0]))[None]))
    np.testing.assert_allclose(maps[0], expected[1].output[0], atol=0.5e-4)
    np.testing.assert_allclose(answer["probabilities"], nn.softmax(expected[-1].output.astype(np.float64))[0],
                               rtol=1e-6, atol=1e-12)


def test_the_listening_socket_gives_connections_without_nagle_delays():
    """asyncio sets TCP_NODELAY on a connection only when the socket declares IPPROTO_TCP; without
    it each answer (headers, then body) can wait for the client's delayed ACK."""
    import asyncio
    import socket

    sock = cli.listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen = []

    async def main():
        async def handle(reader, writer):
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            while not seen:
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert seen and seen[0] != 0


def test_messages_in_each_language(client):
    en = client.get("/api/messages").json()
    tr = client.get("/api/messages", params={"lang": "tr"}).json()
    assert en["lang"] == "en" and tr["lang"] == "tr" and {"en", "tr"} <= set(en["languages"])
    assert en["messages"].keys() == tr["messages"].keys()
    assert en["messages"]["clear"] == "Clear" and tr["messages"]["clear"] == "Temizle"
    response = client.get("/api/messages", params={"lang": "xx"})
    assert_error(response, response.json(), 422, "bad_language")


# -- pictures of several digits --------------------------------------------------------------------------
def written(rows_of_digits, scale=3, gap=20) -> bytes:
    """MNIST digits written dark on white paper, a row of them per list, as a PNG."""
    side = 28 * scale
    width = max(len(r) for r in rows_of_digits) * (side + gap) + 2 * gap
    paper = np.full((len(rows_of_digits) * (side + gap) + 2 * gap, width), 255, np.uint8)
    for i, row in enumerate(rows_of_digits):
        for j, d in enumerate(row):
            y, x = gap + i * (side + gap), gap + j * (side + gap)
            paper[y:y + side, x:x + side] = 255 - np.kron(d, np.ones((scale, scale), np.uint8))
    return png(paper)


def test_every_digit_of_a_number_with_its_box(client, digits):
    images, labels = digits
    response, answer = post(client, {"image": data_url(written([images[:3]]))})
    assert response.status_code == 200
    found = answer["digits"]
    assert len(found) == 3 and answer["number"] == "".join(str(d["digit"]) for d in found)
    assert [d["box"][0] for d in found] == sorted(d["box"][0] for d in found)   # left to right
    assert answer["digit"] == found[0]["digit"] and answer["input"] == found[0]["input"]
    assert sum(d["digit"] == label for d, label in zip(found, labels[:3])) >= 2
    assert answer["size"] == [3 * 104 + 40, 104 + 40]


def test_more_digits_than_a_number_is_refused(client, digits):
    images, _ = digits
    response, answer = post(client, {"image": data_url(written([images[k:k + 6] for k in (0, 6, 12, 18)]))})
    assert_error(response, answer, 422, "too_many_digits")
    assert re.search(r"\b2\d digit-like marks, more than the 20 a number has", answer["error"])
