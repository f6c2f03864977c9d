"""`sifir export`: a trained network as an ONNX file, to run in onnxruntime, on a phone, in a
browser or in another framework.

Every sifir layer becomes one standard ONNX operator, or none:

    Linear → Gemm (transB = 1: W is (out, in), y = x·Wᵀ + b)     Conv2d → Conv (strides, pads)
    MaxPool2d → MaxPool, AvgPool2d → AveragePool (floor mode, as sifir and PyTorch)
    BatchNorm1d / BatchNorm2d → BatchNormalization with the running statistics (inference form)
    ReLU → Relu   LeakyReLU → LeakyRelu   Sigmoid   Tanh   Softmax (last axis)   Flatten (axis 1)
    Dropout, Identity → nothing: in inference they hand their input on unchanged

The graph's input "image" is what the sifir model takes, a batch of normalised images
(batch, 1, 28, 28) with a dynamic batch dimension; its output "logits" is what the model returns,
and "probabilities" (their softmax) when asked for. The file's metadata says how to make the
input from pixels, the class names and how the network was trained. Weights keep their sifir
names ("1.weight"). The ``onnx`` package (the ``onnx`` extra) is imported only here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, io, nn
from .errors import ExportError
from .messages import t

# onnx 1.23 writes IR version 14 by default, which onnxruntime 1.30 refuses (it reads up to 13).
# IR version 10 (onnx 1.16) with opset 17 is read by onnxruntime 1.18 and later (the extra asks
# for those) and has every operator used here in its present form (Softmax over one axis since
# opset 13, BatchNormalization's inference form since 15).
OPSET = 17
IR_VERSION = 10
INPUT, LOGITS, PROBABILITIES = "image", "logits", "probabilities"
BATCH = "batch"
INSTALL_HINT = "pip install 'sifir[onnx]'"
# What onnxruntime's logits may differ from sifir's on the self-check before the file is refused:
# float32 sums in another order differ by ~1e-6 of the logits' size, a wrong mapping by far more.
CHECK_TOLERANCE = 1e-4
CHECK_INPUTS = 64


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError(t("export.needs_onnx", hint=INSTALL_HINT)) from None
    return onnx


@dataclass
class _Graph:
    """The ONNX graph being built: nodes in order, weights as initialisers."""
    onnx: object
    nodes: list = field(default_factory=list)
    weights: list = field(default_factory=list)

    def weight(self, name: str, array: np.ndarray) -> str:
        self.weights.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def ints(self, name: str, values) -> str:
        """An int64 constant (shapes, pads, slice bounds), as an initialiser."""
        self.weights.append(self.onnx.numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], where: str, output: str | None = None, **attributes) -> str:
        output = output or f"{where}.{op.lower()}"   # tensors named after their layer: "3.relu"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=f"{where} {op}", **attributes))
        return output


# -- one function per layer type: (layer, graph, input tensor name, layer's dotted name) → output
def _linear(layer: nn.Linear, g: _Graph, x: str, where: str) -> str:
    inputs = [x, g.weight(f"{where}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.weight(f"{where}.bias", layer.bias.data))
    return g.node("Gemm", inputs, where, transB=1)  # y = x·Wᵀ + b


def _conv(layer: nn.Conv2d, g: _Graph, x: str, where: str) -> str:
    inputs = [x, g.weight(f"{where}.weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(g.weight(f"{where}.bias", layer.bias.data))
    (ph, pw) = layer.padding
    return g.node("Conv", inputs, where, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=[ph, pw, ph, pw])   # [top, left, bottom, right]: sifir pads both sides alike


def _pool(op: str):
    def emit(layer, g: _Graph, x: str, where: str) -> str:
        return g.node(op, [x], where, kernel_shape=list(layer.kernel_size), strides=list(layer.stride))
    return emit


def _batchnorm(layer, g: _Graph, x: str, where: str) -> str:
    # y = γ·(x − μ)/√(σ² + ε) + β with the running μ and σ²: what sifir computes in eval mode
    inputs = [x, g.weight(f"{where}.weight", layer.weight.data), g.weight(f"{where}.bias", layer.bias.data),
              g.weight(f"{where}.running_mean", layer.running_mean),
              g.weight(f"{where}.running_var", layer.running_var)]
    return g.node("BatchNormalization", inputs, where, epsilon=layer.eps)


def _plain(op: str, **attributes):
    def emit(layer, g: _Graph, x: str, where: str) -> str:
        return g.node(op, [x], where, **attributes)
    return emit


def _leaky_relu(layer: nn.LeakyReLU, g: _Graph, x: str, where: str) -> str:
    return g.node("LeakyRelu", [x], where, alpha=float(layer.negative_slope))


def _nothing(layer, g: _Graph, x: str, where: str) -> str:
    return x


def _ensemble(ensemble: nn.Ensemble, g: _Graph, x: str, where: str) -> str:
    # log(max(mean_k softmax(z_k), tiny)): what nn.Ensemble computes, the clip included
    probs = []
    for k, member in enumerate(ensemble):
        name = f"{where}.{k}" if where else str(k)
        probs.append(g.node("Softmax", [_emit(member, g, x, name)], name, axis=-1))
    here = where or "ensemble"
    mean = g.node("Mean", probs, here)
    tiny = g.weight(f"{here}.tiny", np.array(np.finfo(np.float32).tiny, np.float32))
    return g.node("Log", [g.node("Max", [mean, tiny], here)], here)


def _views(views: nn.Views, g: _Graph, x: str, where: str) -> str:
    # What nn.Views computes, in one batch: the V shifted (mirrored, turned) copies of the input stacked
    # along the batch axis (view-major), the network once on them, then the views' probabilities averaged.
    here = f"{where}.views" if where else "views"
    h, w = views.image
    images = g.node("Reshape", [x, g.ints(f"{here}.image_shape", [0, -1, h, w])], f"{here}.image")
    shape = g.node("Shape", [x], here)
    fill = g.weight(f"{here}.fill", np.array(views.fill, np.float32))
    pads = g.ints(f"{here}.pads", [0, 0, 1, 1, 0, 0, 1, 1])
    # one pixel of fill around the image: a view is then a window of the padded picture
    padded = {False: g.node("Pad", [images, pads, fill], here)}
    sources = {False: images}
    if any(view.mirrored for view in views.plan):
        # the columns read from the last to the first: a Slice with step −1 over the width
        sources[True] = g.node("Slice", [images, g.ints(f"{here}.mirror.starts", [w - 1]),
                                         g.ints(f"{here}.mirror.ends", [-w - 1]), g.ints(f"{here}.mirror.axes", [3]),
                                         g.ints(f"{here}.mirror.steps", [-1])], f"{here}.mirror")
        padded[True] = g.node("Pad", [sources[True], pads, fill], f"{here}.mirror")
    axes = g.ints(f"{here}.axes", [2, 3])
    framed = {}   # each picture flat, the fill appended: (N·C, H·W + 1), for the resampled views
    copies = []
    for v, view in enumerate(views.plan):
        name = f"{here}.view{v}"
        if view.resampled:
            if view.mirrored not in framed:
                flat = g.node("Reshape", [sources[view.mirrored], g.ints(f"{name}.flat", [-1, h * w])], f"{name}.flat")
                framed[view.mirrored] = g.node("Pad", [flat, g.ints(f"{name}.frame", [0, 0, 0, 1]), fill], f"{name}.frame")
            # view[q] = Σ_j weight[j, q]·framed[index[j, q]] (nn.views.resampling): one Gather of the
            # 5 × H·W entries, weighted, summed over j
            index, weight = nn.views.resampling(view, views.image)
            gathered = g.node("Gather", [framed[view.mirrored], g.ints(f"{name}.index", index)], name, axis=1)
            weighted = g.node("Mul", [gathered, g.weight(f"{name}.weight", weight)], name)
            window = g.node("ReduceSum", [weighted, g.ints(f"{name}.sum_axes", [1])], name, keepdims=0)
        else:
            # view[r, c] = image[r − dy, c − dx] = padded[r + 1 − dy, c + 1 − dx]
            window = g.node("Slice", [padded[view.mirrored], g.ints(f"{name}.starts", [1 - view.dy, 1 - view.dx]),
                                      g.ints(f"{name}.ends", [1 - view.dy + h, 1 - view.dx + w]), axes], name)
        copies.append(g.node("Reshape", [window, shape], name))
    batch = g.node("Concat", copies, here, axis=0)
    probs = g.node("Softmax", [_emit(views.net, g, batch, f"{where}.net" if where else "net")], here, axis=-1)
    # (V·N, K) → (V, N, K): the class count is read from the probabilities' own shape
    classes = g.node("Slice", [g.node("Shape", [probs], f"{here}.probs"), g.ints(f"{here}.one", [1]),
                               g.ints(f"{here}.two", [2])], f"{here}.classes")
    by_view = g.node("Concat", [g.ints(f"{here}.by_view", [len(views.plan), -1]), classes], f"{here}.by_view", axis=0)
    mean = g.node("ReduceMean", [g.node("Reshape", [probs, by_view], f"{here}.by_view")], here, axes=[0], keepdims=0)
    tiny = g.weight(f"{here}.tiny", np.array(np.finfo(np.float32).tiny, np.float32))
    return g.node("Log", [g.node("Max", [mean, tiny], here)], here)


# Exact types: a future subclass of a layer is not silently exported as its parent.
OPERATORS = {
    nn.Linear: _linear, nn.Conv2d: _conv,
    nn.MaxPool2d: _pool("MaxPool"), nn.AvgPool2d: _pool("AveragePool"),
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm,
    nn.ReLU: _plain("Relu"), nn.LeakyReLU: _leaky_relu, nn.Sigmoid: _plain("Sigmoid"), nn.Tanh: _plain("Tanh"),
    nn.Softmax: _plain("Softmax", axis=-1), nn.Flatten: _plain("Flatten", axis=1),
    nn.Dropout: _nothing, nn.Identity: _nothing,
}


def _emit(module: nn.Module, g: _Graph, x: str, where: str) -> str:
    if type(module) is nn.Sequential:
        for i, layer in enumerate(module):
            x = _emit(layer, g, x, f"{where}.{i}" if where else str(i))
        return x
    if type(module) is nn.Ensemble:
        return _ensemble(module, g, x, where)
    if type(module) is nn.Views:
        return _views(module, g, x, where)
    emit = OPERATORS.get(type(module))
    if emit is None:
        known = ", ".join(sorted(cls.__name__ for cls in OPERATORS))
        raise ExportError(t("export.unsupported", layer=where or type(module).__name__,
                            kind=type(module).__name__, known=known))
    return emit(module, g, x, where or "model")


# -- what the file says about itself ----------------------------------------------------------
def input_facts(info: dict) -> dict:
    """The input the network expects, from the model file's ``info["input"]`` (as ``sifir
    train`` writes it), else MNIST's: shape of one image, and x = (pixel/255 − mean)/std."""
    from .data import mnist
    given = info.get("input") if isinstance(info.get("input"), dict) else {}
    shape = given.get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                                      for n in shape)):
        shape = [1, 28, 28]
    number = lambda v, default: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) else default
    mean, std = number(given.get("mean"), mnist.MEAN), number(given.get("std"), mnist.STD)
    return {"name": INPUT, "shape": [BATCH, *shape], "dtype": "float32", "mean": mean, "std": std,
            "pixel_scale": 1 / 255,
            "formula": f"x = (pixel / 255 - {mean:g}) / {std:g}, pixels 0..255 with the ink bright on black"}


def class_names(info: dict, count: int) -> list[str]:
    """``info["classes"]`` when it names one class per output, else the output's index (the digit)."""
    names = info.get("classes")
    if isinstance(names, list) and len(names) == count and all(isinstance(n, (str, int)) for n in names):
        return [str(n) for n in names]
    return [str(i) for i in range(count)]


def training_facts(info: dict) -> dict:
    """What the model file says about its training, less the per-epoch history (kept short)."""
    facts = {k: v for k, v in info.items() if k not in ("history", "input", "classes")}
    if isinstance(info.get("history"), list):
        facts["epochs_recorded"] = len(info["history"])
    return facts


# -- the whole model --------------------------------------------------------------------------
def to_onnx(model: nn.Module, info: dict | None = None, probabilities: bool = False):
    """The model as an ``onnx.ModelProto`` (checked with ``onnx.checker``, full check)."""
    onnx = _onnx()
    info = info or {}
    facts = input_facts(info)
    outputs = _output_count(model, facts["shape"][1:])
    g = _Graph(onnx)
    logits = _emit(model, g, INPUT, "")
    if logits == INPUT:  # a model of layers that all pass their input on
        logits = g.node("Identity", [INPUT], "model")
    assert g.nodes[-1].output[0] == logits  # the graph is a chain: its last node gives the output
    g.nodes[-1].output[0] = LOGITS
    out_names = [LOGITS]
    if probabilities:
        out_names.append(g.node("Softmax", [LOGITS], "output", output=PROBABILITIES, axis=-1))
    helper, TensorProto = onnx.helper, onnx.TensorProto
    graph = helper.make_graph(
        g.nodes, f"sifir-{info.get('preset', 'model')}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, facts["shape"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, outputs]) for name in out_names],
        initializer=g.weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="sifir", producer_version=__version__,
                              doc_string=_describe(model, info))
    meta = {"input": facts, "classes": class_names(info, outputs), "outputs": out_names,
            "training": training_facts(info), "architecture": io.describe(model),
            "parameters": io.count_parameters(model)}
    helper.set_model_props(proto, {k: json.dumps(v, default=str) for k, v in meta.items()})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(t("export.invalid", reason=str(e).splitlines()[0])) from None
    return proto


def _output_count(model: nn.Module, shape: list[int]) -> int:
    """Run the model once on zeros of the input's shape: it must give (N, classes)."""
    was_training = model.training
    model.eval()
    try:
        y = model(np.zeros((2, *shape), np.float32))
    except Exception as e:  # noqa: BLE001 - any layer may refuse a shape, each in its own way
        raise ExportError(t("export.bad_input", shape=tuple(shape), reason=f"{type(e).__name__}: {e}")) from None
    finally:
        model.train(was_training)
    if not isinstance(y, np.ndarray) or y.ndim != 2:
        raise ExportError(t("export.bad_output", shape=tuple(np.shape(y))))
    return y.shape[1]


def _describe(model: nn.Module, info: dict) -> str:
    counts = io.count_parameters(model)
    text = f"sifir {info.get('preset', 'model')}: {counts['weights']:,} weights + {counts['biases']:,} biases"
    accuracy = info.get("test_accuracy")
    if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        text += f", test accuracy {accuracy:.2%}"
    return text


def onnxruntime_difference(proto, model: nn.Module, x: np.ndarray) -> tuple[float, float] | None:
    """(largest |onnxruntime's logits − sifir's|, largest |sifir's logit|) on inputs ``x``;
    None where onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from .train import predict_logits
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = predict_logits(model, x).astype(np.float64)
    theirs = session.run([LOGITS], {INPUT: x})[0]
    return float(np.max(np.abs(theirs - ours))), float(np.max(np.abs(ours)))


def metadata(proto) -> dict:
    """The file's metadata as written by ``to_onnx`` (each value JSON)."""
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


@dataclass
class Exported:
    path: Path
    input: dict                # input_facts
    outputs: list[str]
    classes: list[str]
    difference: float | None   # the self-check's largest logit difference; None if not run


def export_model(model: nn.Module, path, info: dict | None = None, probabilities: bool = False,
                 check_inputs: int = CHECK_INPUTS, seed: int = 0) -> Exported:
    """Write ``model`` as ONNX to ``path``, atomically: an existing file is replaced whole or
    not at all. First onnxruntime (where installed) runs the graph on ``check_inputs`` random
    inputs; unless it gives the model's logits, nothing is written."""
    proto = to_onnx(model, info, probabilities)
    meta = metadata(proto)
    difference = None
    if check_inputs:
        shape = meta["input"]["shape"][1:]
        x = np.random.default_rng(seed).standard_normal((check_inputs, *shape)).astype(np.float32)
        found = onnxruntime_difference(proto, model, x)
        if found is not None:
            difference, largest = found
            if not difference <= CHECK_TOLERANCE * (1 + largest):   # also refuses NaN
                raise ExportError(t("export.mismatch", difference=difference, path=path))
    data = proto.SerializeToString()
    written = io.write_atomic(path, lambda f: f.write(data))
    return Exported(written, meta["input"], meta["outputs"], meta["classes"], difference)


def summary(done: Exported, lang: str | None = None) -> str:
    """What ``sifir export`` prints: the file, its input and how to make it, its outputs, the check."""
    facts, shape = done.input, "(" + ", ".join(map(str, done.input["shape"])) + ")"
    lines = [t("export.written", lang, path=done.path, opset=OPSET, ir=IR_VERSION),
             t("export.input", lang, name=facts["name"], shape=shape, mean=f"{facts['mean']:g}",
               std=f"{facts['std']:g}"),
             t("export.outputs", lang, names=", ".join(f"'{n}'" for n in done.outputs), count=len(done.classes),
               classes=" ".join(done.classes))]
    if done.difference is None:
        lines.append(t("export.unchecked", lang, hint=INSTALL_HINT))
    else:
        lines.append(t("export.checked", lang, count=CHECK_INPUTS, difference=done.difference))
    return "\n".join(lines)


def default_output(model_path) -> Path:
    """``sifir-cnn.npz`` → ``sifir-cnn.onnx``, beside it."""
    return Path(model_path).with_suffix(".onnx")


def export_model_file(model_path, out=None, probabilities: bool = False) -> Exported:
    """Load a model file (refused as ``sifir evaluate`` refuses it) and export it."""
    _onnx()   # before reading a large file: say first what is missing
    model, info = io.load_model(model_path)
    return export_model(model, out or default_output(model_path), info, probabilities)
