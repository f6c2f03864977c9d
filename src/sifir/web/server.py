"""The drawing page's server: a FastAPI app around one trained model.

    GET  /               the page (static/index.html; its script and style sheet under /static)
    POST /api/predict    {"image": "data:image/png;base64,…"} -> digit, probabilities, the 28×28
                         input as the network sees it, and every hidden layer's activations
    GET  /api/model      the architecture, parameter counts and the model file's info
    GET  /docs           the API, documented (FastAPI's OpenAPI page, its Swagger UI served from
                         the installed package, so it works offline too; also /openapi.json)

A picture takes the same road as in ``sifir predict``: base64 -> bytes -> ``load_image`` ->
``preprocess`` -> ``normalize`` -> the model. Everything a client can send wrong is answered with
a 4xx and ``{"error": "…", "code": "…"}``; nothing it sends reaches a 500 or a traceback.

What keeps it standing:
- the request body is counted as it streams in and refused over ``max_body`` bytes (413), whatever
  Content-Length claims; pictures are refused over ``max_pixels`` from their header, before
  decoding (413), so a small file that unpacks to gigabytes (a decompression bomb) costs nothing;
- at most ``workers`` pictures are decoded at once (bounded memory), and the model runs under a
  lock: layers keep state in ``forward``, so two requests must not run the same model object at
  once. ``predict`` is a plain ``def``: FastAPI runs it in its thread pool, off the event loop;
- static files come only from the package's static folder, through Starlette's StaticFiles
  (which refuses paths that resolve outside it).
"""
from __future__ import annotations

import base64
import binascii
import io as _io
import json
import logging
import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, io, nn
from ..activations import hidden_activations
from ..data.mnist import normalize
from ..errors import ImageError, SifirError
from ..preprocess import load_image, preprocess

__all__ = ["create_app", "MAX_BODY_BYTES", "MAX_PIXELS"]

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 2 * 1024 * 1024   # a 280×280 canvas is ~10 kB; a phone photo the page shrinks first
MAX_PIXELS = 2048 * 2048           # a digit needs far fewer; decoding is ~20 bytes per pixel here
WORKERS = 4                        # pictures decoded at once: bounds memory under load
DECIMALS = 4                       # input and activations are for drawing: 4 decimals are plenty

log = logging.getLogger("sifir.web")

# The page's own files may load only from this server; /docs (FastAPI's page) is left alone.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; "
            "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


# -- JSON shapes (they also document the API on /docs) ------------------------------------------
class PredictRequest(BaseModel):
    image: str = Field(description="the picture as a data URL (data:image/png;base64,…) or bare base64; "
                                   "PNG, JPEG or any format Pillow reads",
                       examples=["data:image/png;base64,iVBORw0KGgo…"])


class Activation(BaseModel):
    name: str = Field(description="hidden1, hidden2, … in order")
    layer: str = Field(description="the nonlinearity, e.g. ReLU")
    index: str = Field(description="the layer's position in the model (\"3.1\" inside a nested Sequential)")
    shape: list[int] = Field(description="[neurons] for a dense layer, [channels, height, width] for feature maps")
    values: Any = Field(description="nested lists of that shape")


class Prediction(BaseModel):
    digit: int = Field(description="the most probable digit")
    probabilities: list[float] = Field(description="softmax of the output, one per digit 0–9")
    input: list[list[float]] = Field(description="28×28 in [0, 1]: the picture as the network sees it "
                                     "(bright ink on black), before normalisation")
    activations: list[Activation]


class ApiError(Exception):
    """A refusal the client caused: HTTP status, a short machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


# -- the app ------------------------------------------------------------------------------------
def create_app(model_path, *, max_body: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               workers: int = WORKERS) -> FastAPIOffline:
    """The app serving the page and the API for the model in ``model_path`` (loaded now, once).

    Raises ModelFileError when the file is not a readable sifir model.
    """
    path = Path(model_path)
    model, info = io.load_model(path)
    model_lock = threading.Lock()                  # one forward pass at a time on this model
    decode_slots = threading.BoundedSemaphore(workers)
    description = describe_model(path, model, info)

    # FastAPIOffline serves the /docs page's Swagger UI from the package, not from a CDN, so the
    # API documentation works on a machine without internet like everything else here.
    app = FastAPIOffline(title="sifir", version=__version__,
                  description="A neural network from zero in NumPy reads handwritten digits. "
                              "Draw on the page at /, or post a picture to /api/predict.")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=max_body)
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/model", summary="The model being served")
    def model_info() -> dict:
        """Architecture (as saved in the model file), parameter counts (weights and biases apart,
        as the tutorial counts W1 and W2), the hidden layers the predictions report, and the
        file's info (preset, training recipe, test accuracy…)."""
        return description

    @app.post("/api/predict", response_model=Prediction, summary="Read the digit in a picture",
              responses={400: {"description": "the body is not valid JSON"},
                         413: {"description": "body over the size limit, or a picture with too many pixels"},
                         415: {"description": "the body is not sent as application/json"},
                         422: {"description": "no usable picture: bad base64, not an image, or no digit "
                                              "in it (code \"no_digit\": a blank canvas)"}})
    def predict(body: PredictRequest) -> dict:
        """The picture is made MNIST-like exactly as `sifir predict` does it (grey, inverted if
        dark on light, cropped to the ink, scaled into 20×20, centred by mass in 28×28), then run
        through the network one layer at a time."""
        data = decode_image_field(body.image)
        with decode_slots:
            check_pixels(data, max_pixels)
            digit_image = read_digit(data)
        x = normalize(digit_image[None])
        with model_lock:   # read the outputs inside too: a layer may reuse its arrays next call
            hidden, output = hidden_activations(model, x)
            activations = activation_list(hidden)
            probs = nn.softmax(output.astype(np.float64))[0]   # as `sifir predict` computes them
        return {"digit": int(probs.argmax()), "probabilities": probs.tolist(),
                "input": _rounded(digit_image), "activations": activations}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# -- the steps of a prediction --------------------------------------------------------------------
def decode_image_field(field: str) -> bytes:
    """A data URL (``data:<type>;base64,<payload>``) or bare base64 -> the picture's bytes."""
    payload = field.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ApiError(422, "bad_image", "'image' must be a base64 data URL such as "
                                             "data:image/png;base64,iVBORw0… (got a data URL without ';base64,')")
    payload = "".join(payload.split())  # line breaks are common in pasted base64
    if not payload:
        raise ApiError(422, "bad_image", "'image' is empty: send a picture as data:image/png;base64,…")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "bad_image", "'image' is not valid base64 (expected data:image/png;base64,… "
                                         "with characters A–Z a–z 0–9 + / =)") from None


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse a picture with more than ``max_pixels`` pixels, reading only its header."""
    from PIL import Image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(_io.BytesIO(data)) as im:   # reads the header only
                width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        width, height = math.inf, 1    # Pillow's own limit is far above ours
    except Exception:   # noqa: BLE001 - not a picture: load_image says why, in its words
        return
    if width * height > max_pixels:
        size = "an enormous number of" if math.isinf(width) else f"{width}×{height}"
        raise ApiError(413, "too_many_pixels",
                       f"the picture has {size} pixels, over the limit of {max_pixels:,}: "
                       "scale it down (a digit needs only a few hundred pixels a side)")


def read_digit(data: bytes) -> np.ndarray:
    """Bytes -> the MNIST-like 28×28 float32 in [0, 1], as ``sifir predict`` makes it."""
    try:
        grey = load_image(data)
    except ImageError as e:
        message = str(e).replace("cannot read image '<bytes>'", "cannot read the picture")
        raise ApiError(422, "bad_image", message) from None
    try:
        return preprocess(grey)
    except ImageError as e:
        raise ApiError(422, "no_digit", f"{e}: draw a digit") from None


def activation_list(hidden) -> list[dict]:
    """The nonlinearities' outputs for the first (only) input, as JSON-ready dicts."""
    return [{"name": f"hidden{i}", "layer": type(h.layer).__name__, "index": h.index,
             "shape": list(h.output.shape[1:]), "values": _rounded(h.output[0])}
            for i, h in enumerate(hidden, 1)]


def describe_model(path: Path, model: nn.Module, info: dict) -> dict:
    """What GET /api/model answers; the hidden layers' shapes come from one blank forward pass."""
    hidden, output = hidden_activations(model, np.zeros((1, 1, 28, 28), np.float32))
    return {"file": path.name, "architecture": io.describe(model), "parameters": io.count_parameters(model),
            "hidden": [{"name": a["name"], "layer": a["layer"], "index": a["index"], "shape": a["shape"]}
                       for a in activation_list(hidden)],
            "outputs": int(output.shape[-1]), "info": _json_safe(info)}


def _rounded(a: np.ndarray) -> list:
    # float64 before rounding, so the JSON holds 0.1235 rather than 0.12349999696016312
    return np.round(np.asarray(a, np.float64), DECIMALS).tolist()


def _json_safe(value):
    """Model info as strict JSON: NaN and infinities (a diverged epoch's loss) become null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- errors -------------------------------------------------------------------------------------
def _add_error_handlers(app: FastAPIOffline) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_explain_validation(request, exc.errors()))

    @app.exception_handler(SifirError)
    async def sifir_error(request: Request, exc: SifirError) -> JSONResponse:
        return error_response(422, "bad_input", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: the client gets one line, the log the details (Starlette
        # re-raises the exception after this answer, so the server also logs its traceback).
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "internal", "internal error (the server's log has the details)")


EXAMPLE_BODY = '{"image": "data:image/png;base64,…"}'


def _explain_validation(request: Request, errors) -> tuple[int, str, str]:
    """FastAPI's validation errors, turned into one sentence a person can act on."""
    first = errors[0] if errors else {}
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "json_invalid":
        return 400, "bad_json", f"the body is not valid JSON; send {EXAMPLE_BODY}"
    if content_type != "application/json":
        return 415, "not_json", f"send the picture as JSON, {EXAMPLE_BODY}, with Content-Type: application/json"
    if loc == ("body",) and kind == "missing":
        return 422, "bad_request", f"the body is empty; send {EXAMPLE_BODY}"
    if loc == ("body",):
        return 422, "bad_request", f"the body must be a JSON object, {EXAMPLE_BODY}"
    field = ".".join(str(part) for part in loc[1:]) or "body"
    if kind == "missing":
        return 422, "bad_request", f"missing field '{field}'; send {EXAMPLE_BODY}"
    if kind == "string_type":
        return 422, "bad_request", f"'{field}' must be a string, a data URL such as data:image/png;base64,…"
    return 422, "bad_request", f"'{field}': {first.get('msg', 'invalid value')}"


# -- middleware (plain ASGI: they see the raw stream) ------------------------------------------------
class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before the app reads any of it.

    The body is counted as it arrives, so a missing or lying Content-Length (or a chunked
    upload) gets no further than an honest one; a declared length over the limit is refused
    at once. Bodies under the limit are handed on whole.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return   # the client left before sending it all: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()   # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        payload = json.dumps({"error": f"the request body is over the {self.limit:,}-byte limit; "
                              "send a smaller picture", "code": "too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})   # the rest of the body goes unread
        await send({"type": "http.response.body", "body": payload})


class SecurityHeaders:
    """nosniff and no-referrer everywhere; a strict Content-Security-Policy on the page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        page = path == "/" or path.startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if page:
                    headers += [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
