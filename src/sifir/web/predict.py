"""The prediction room: read the digit in a picture with one trained model.

    POST /api/predict    {"image": "data:image/png;base64,…"} -> digit, probabilities, the 28×28
                         input as the network sees it, and every hidden layer's activations
    GET  /api/model      the architecture, parameter counts and the model file's info

A picture takes the same road as in ``sifir predict``: base64 -> bytes -> ``load_image`` ->
``preprocess`` -> ``normalize`` -> the model.

What keeps it standing: pictures are refused over ``max_pixels`` from their header, before
decoding (413), so a small file that unpacks to gigabytes (a decompression bomb) costs nothing;
at most ``workers`` pictures are decoded at once (bounded memory), and the model runs under a
lock: layers keep state in ``forward``, so two requests must not run the same model object at
once. ``predict`` is a plain ``def``: FastAPI runs it in its thread pool, off the event loop.
"""
from __future__ import annotations

import base64
import binascii
import io as _io
import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .. import io, nn
from ..activations import hidden_activations
from ..data.inputs import normalize
from ..errors import ImageError
from ..preprocess import load_image, preprocess
from .app import ApiError

MAX_PIXELS = 2048 * 2048           # a digit needs far fewer; decoding is ~20 bytes per pixel here
WORKERS = 4                        # pictures decoded at once: bounds memory under load
DECIMALS = 4                       # input and activations are for drawing: 4 decimals are plenty


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
    digit: int = Field(description="the most probable class (for MNIST: the digit)")
    label: str = Field(description="its name, from the data set the model learned (\"7\", \"Trouser\")")
    probabilities: list[float] = Field(description="softmax of the output, one per class (for MNIST: digits 0–9)")
    input: list[list[float]] = Field(description="28×28 in [0, 1]: the picture as the network sees it "
                                     "(bright ink on black), before normalisation")
    activations: list[Activation]


def add_routes(app, model_path, *, max_pixels: int = MAX_PIXELS, workers: int = WORKERS) -> None:
    """Load the model in ``model_path`` and add /api/model and /api/predict for it to ``app``."""
    path = Path(model_path)
    model, info = io.load_model(path)
    facts = io.data_facts(path, model, info)       # class names and the input normalisation
    model_lock = threading.Lock()                  # one forward pass at a time on this model
    decode_slots = threading.BoundedSemaphore(workers)
    description = describe_model(path, model, info)

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
        x = normalize(digit_image[None], facts.mean, facts.std)
        with model_lock:   # read the outputs inside too: a layer may reuse its arrays next call
            hidden, output = hidden_activations(model, x)
            activations = activation_list(hidden)
            probs = nn.softmax(output.astype(np.float64))[0]   # as `sifir predict` computes them
        best = int(probs.argmax())
        return {"digit": best, "label": facts.classes[best], "probabilities": probs.tolist(),
                "input": _rounded(digit_image), "activations": activations}


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
    """What GET /api/model answers; the hidden layers' shapes come from one blank forward pass.
    ``dataset`` and ``classes`` say what the outputs mean (MNIST's digits for older files)."""
    hidden, output = hidden_activations(model, np.zeros((1, 1, 28, 28), np.float32))
    facts = io.data_facts(path, model, info)
    return {"file": path.name, "dataset": {"name": facts.dataset, "title": facts.title},
            "classes": list(facts.classes), "architecture": io.describe(model), "parameters": io.count_parameters(model),
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


