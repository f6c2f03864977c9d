"""The prediction room: read the digits in a picture with one trained model.

    POST /api/predict    {"image": "data:image/png;base64,…"} -> every digit found (its box in
                         the picture, probabilities and 28×28 input), the number they make, and,
                         for the first (or only) digit, the same fields at the top level plus every
                         hidden layer's activations
    GET  /api/model      the architecture, parameter counts and the model file's info

The model is the one ``sifir serve MODEL`` loaded, or the one the Learn view handed over since
(``app.state.draw.use(model, info, name)``); with neither, both answer 404 "no_model".

A picture takes the same road as in ``sifir predict``: base64 -> bytes -> ``load_photo`` ->
``find_digits`` (uneven light taken away, paper lines, specks and shadows left out, split into
digits) -> ``normalize`` -> the model, all digits in one batch.

What keeps it standing: pictures are refused over ``max_pixels`` from their header, before
decoding (413), so a small file that unpacks to gigabytes (a decompression bomb) costs nothing;
at most ``workers`` pictures are decoded at once (bounded memory), a picture yields at most
``segment.MAX_DIGITS`` digits (422 beyond), and the model runs under a lock: layers keep state in
``forward``, so two requests must not run the same model object at once. ``predict`` is a plain
``def``: FastAPI runs it in its thread pool, off the event loop.
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
from ..data.inputs import MNIST_FACTS, DataFacts, normalize
from ..errors import ImageError, TooManyDigits
from ..preprocess import Digit, load_photo
from ..reading import find_items, number_text
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


class DigitRead(BaseModel):
    digit: int = Field(description="the most probable class (for MNIST: the digit)")
    label: str = Field(description="its name, from the data set the model learned (\"7\", \"Trouser\")")
    probabilities: list[float] = Field(description="softmax of the output, one per class (for MNIST: digits 0–9)")
    input: list[list[float]] = Field(description="28×28 in [0, 1]: the digit as the network sees it "
                                     "(bright ink on black), before normalisation")


class DigitFound(DigitRead):
    box: list[int] = Field(description="[left, top, width, height] of the digit's ink, in the picture's pixels")
    row: int = Field(description="the text row it stands in, 0 for the top one")


class Prediction(DigitRead):
    """``digit``, ``probabilities`` and ``input`` are the first (or only) digit's, as ``digits[0]``."""
    activations: list[Activation] = Field(description="every hidden layer's activations for the first digit")
    number: str = Field(description="every digit read, left to right, rows apart by a space: \"2026\"")
    digits: list[DigitFound] = Field(description="every digit found, in reading order")
    size: list[int] = Field(description="[width, height] of the picture, the frame of the boxes")


class DrawModel:
    """The model the Draw view reads with, and the lock that lets one forward pass run at a time
    on it; the Learn view may replace it with a network it just trained."""

    def __init__(self):
        self.lock = threading.Lock()
        self.model, self.description, self.facts = None, None, MNIST_FACTS

    def use(self, model: nn.Module, info: dict, name: str) -> dict:
        """Read with ``model`` from now on; ``info`` (its file's) says its data set and classes."""
        facts = io.data_facts(name, model, info)     # class names and the input normalisation
        description = describe_model(name, model, info, facts)
        with self.lock:
            self.model, self.description, self.facts = model, description, facts
        return description

    def current(self) -> tuple[nn.Module, DataFacts]:
        """The model and its data facts, or 404 "no_model"."""
        with self.lock:
            model, facts = self.model, self.facts
        if model is None:
            raise ApiError(404, "no_model", "no model to read with yet: train one in the Learn view, "
                                            "or start the server with one: sifir serve MODEL.npz")
        return model, facts


def add_routes(app, model_path, *, max_pixels: int = MAX_PIXELS, workers: int = WORKERS) -> None:
    """Load the model in ``model_path`` (None: none yet) and add /api/model and /api/predict."""
    draw = app.state.draw = DrawModel()
    if model_path is not None:
        path = Path(model_path)
        draw.use(*io.load_model(path), path.name)
    decode_slots = threading.BoundedSemaphore(workers)

    @app.get("/api/model", summary="The model being served")
    def model_info() -> dict:
        """Architecture (as saved in the model file), parameter counts (weights and biases apart,
        as the tutorial counts W1 and W2), the hidden layers the predictions report, and the
        file's info (preset, training recipe, test accuracy…)."""
        draw.current()
        return draw.description

    @app.post("/api/predict", response_model=Prediction, summary="Read the digits in a picture",
              responses={400: {"description": "the body is not valid JSON"},
                         413: {"description": "body over the size limit, or a picture with too many pixels"},
                         415: {"description": "the body is not sent as application/json"},
                         422: {"description": "no usable picture: bad base64, not an image, no digit in it "
                                              "(code \"no_digit\": a blank canvas, a photo of empty paper), or "
                                              "more digit-like marks than a number has (code \"too_many_digits\")"}})
    def predict(body: PredictRequest) -> dict:
        """The picture is read exactly as `sifir predict` reads it: its uneven light taken away,
        split into digits (paper lines, specks, shadows and the page's edge left out), each made
        MNIST-like (bright ink on black, scaled into 20×20, centred by mass in 28×28); all digits
        go through the network in one batch, one layer at a time."""
        data = decode_image_field(body.image)
        with decode_slots:
            check_pixels(data, max_pixels)
            model, facts = draw.current()
            digits, size = read_digits(data, facts)
        x = np.stack([d.image for d in digits])
        with draw.lock:   # read the outputs inside too: a layer may reuse its arrays next call
            hidden, output = hidden_activations(model, normalize(x, facts.mean, facts.std))
            activations = activation_list(hidden)
            probs = nn.softmax(output.astype(np.float64))   # as `sifir predict` computes them
        found = [{"digit": int(p.argmax()), "label": facts.classes[int(p.argmax())], "probabilities": p.tolist(),
                  "input": _rounded(d.image), "box": list(d.box), "row": d.row} for d, p in zip(digits, probs)]
        number = number_text([d["digit"] for d in found], [d["row"] for d in found], facts.classes)
        first = found[0]
        return {"digit": first["digit"], "label": first["label"], "probabilities": first["probabilities"],
                "input": first["input"], "activations": activations, "number": number, "digits": found,
                "size": list(size)}


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


def read_digits(data: bytes, facts: DataFacts = MNIST_FACTS) -> tuple[list[Digit], tuple[int, int]]:
    """Bytes -> the digits found (MNIST-like 28×28 inputs and boxes), as ``sifir predict`` finds
    them (for a data set that is not digits: the picture's ink as one item), and the picture's
    (width, height)."""
    try:
        grey, size = load_photo(data)
    except ImageError as e:
        message = str(e).replace("cannot read image '<bytes>'", "cannot read the picture")
        raise ApiError(422, "bad_image", message) from None
    try:
        return find_items(grey, facts, scale=size[0] / grey.shape[1]), size
    except TooManyDigits as e:
        raise ApiError(422, "too_many_digits", str(e)) from None
    except ImageError as e:
        raise ApiError(422, "no_digit", f"{e}: draw a digit") from None


def activation_list(hidden) -> list[dict]:
    """The nonlinearities' outputs for the first input, as JSON-ready dicts."""
    return [{"name": f"hidden{i}", "layer": type(h.layer).__name__, "index": h.index,
             "shape": list(h.output.shape[1:]), "values": _rounded(h.output[0])}
            for i, h in enumerate(hidden, 1)]


def describe_model(name: str, model: nn.Module, info: dict, facts: DataFacts) -> dict:
    """What GET /api/model answers; the hidden layers' shapes come from one blank forward pass.
    ``dataset`` and ``classes`` say what the outputs mean (MNIST's digits for older files)."""
    hidden, output = hidden_activations(model, np.zeros((1, 1, 28, 28), np.float32))
    return {"file": name, "dataset": {"name": facts.dataset, "title": facts.title},
            "classes": list(facts.classes), "architecture": io.describe(model), "parameters": io.count_parameters(model),
            "hidden": [{"name": a["name"], "layer": a["layer"], "index": a["index"], "shape": a["shape"]}
                       for a in activation_list(hidden)],
            "outputs": int(output.shape[-1]), "info": _json_safe(info),
            # an ensemble's members each have their own layers: "hidden" are the first member's
            "ensemble": len(model) if isinstance(model, nn.Ensemble) else None,
            # test-time views: the answer averages the probabilities of this many shifted copies
            "views": nn.views_of(model)}


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


