"""The numbers behind every picture of a network, NumPy only: what `sifir report` draws with
matplotlib and what the Learn page draws in the browser while a network trains, computed by the
same functions so the two never disagree.

    learning_curves(info)             per-epoch columns of a model file's history
    confusion_data(model, x, y)       C[i, j] = images of digit i read as j
    misclassified(model, x, y, k)     the k mistakes the model is surest of
    first_layer_images(model)         the first layer's weights as pictures (W1's rows as 28×28)
    activation_samples(model, x)      every hidden nonlinearity's outputs
    weight_matrices(model)            every weight matrix and kernel
    dead_units(samples)               the share of hidden units that never fire
    weight_changes(model, before)     per layer: ‖∂L/∂W‖ and the update-to-weight ratio ‖ΔW‖/‖W‖
    changed_answers(before, after, y) the images that just became right, and just became wrong
"""
from __future__ import annotations

import numpy as np

from . import metrics, nn
from .activations import hidden_activations
from .errors import SifirError
from .train import predict_logits


# -- the data of each picture (NumPy only) ----------------------------------------------------
def learning_curves(info: dict) -> dict[str, np.ndarray] | None:
    """Per-epoch columns from the model file's ``info["history"]`` (as ``sifir train`` saves
    it); missing values (no validation set) become NaN. None when there is no history."""
    history = info.get("history") or []
    if not history:
        return None
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
    return {k: np.array([np.nan if r.get(k) is None else r[k] for r in history], np.float64) for k in keys}


def confusion_data(model: nn.Module, x: np.ndarray, y: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
    """C[i, j] = how many images of class i the model reads as j (one row per output)."""
    logits = predict_logits(model, x) if logits is None else logits
    return metrics.confusion_matrix(y, logits.argmax(axis=1), logits.shape[1])


def predictions(model: nn.Module, x: np.ndarray, y: np.ndarray, index=None,
                logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What the model reads in the images ``x[index]`` (all when None): the indices, the images
    (28×28), true and predicted labels, and the probability given to the predicted one."""
    logits = predict_logits(model, x) if logits is None else logits
    probs = nn.softmax(logits.astype(np.float64))
    index = np.arange(len(x)) if index is None else np.asarray(index, dtype=np.int64)
    pred = probs[index].argmax(axis=1)
    return {"index": index, "images": np.asarray(x)[index].reshape(len(index), 28, 28),
            "true": np.asarray(y)[index], "predicted": pred, "probability": probs[index, pred]}


def misclassified(model: nn.Module, x: np.ndarray, y: np.ndarray, k: int = 32,
                  logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ``k`` mistakes the model is surest of (``predictions`` of those images, surest first)."""
    logits = predict_logits(model, x) if logits is None else logits
    probs = nn.softmax(logits.astype(np.float64))
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    confidence = probs[wrong, pred[wrong]]
    return predictions(model, x, y, wrong[np.argsort(-confidence, kind="stable")[:k]], logits)


def first_learnable(model: nn.Module) -> tuple[str, nn.Parameter]:
    """The first weight matrix or kernel of the network (by name) and its parameter."""
    for name, p in model.named_parameters():
        if not name.endswith("bias") and p.data.ndim >= 2:
            return name, p
    raise SifirError("this model has no weight matrix or convolution kernel to draw")


def first_layer_images(model: nn.Module) -> tuple[str, np.ndarray]:
    """The first layer's weights as pictures: (parameter name, images (n, h, w)).

    A Linear(784, k) layer gives k images of 28×28: row j of W holds the weight of every pixel
    for hidden unit j, a "template" the unit compares the digit with (W·x is their dot product).
    A first convolution (out, in, kh, kw) gives its out·in kernels of kh×kw.
    """
    name, p = first_learnable(model)
    w = p.data
    if w.ndim == 2:
        if w.shape[1] != 28 * 28:
            raise SifirError(f"the first layer's weight {name} is {w.shape[0]}×{w.shape[1]}; "
                             "only a layer on the 784 pixels can be drawn as 28×28 images")
        return name, w.reshape(-1, 28, 28)
    return name, w.reshape(-1, *w.shape[-2:])


def activation_samples(model: nn.Module, x: np.ndarray, n: int = 1000) -> list[tuple[str, np.ndarray]]:
    """Every hidden nonlinearity's outputs on the first ``n`` images of ``x`` (eval mode):
    [("2 ReLU", array (n, …)), …], named by the layer's position and type."""
    hidden, _ = hidden_activations(model, np.asarray(x)[:n])
    return [(f"{o.index} {type(o.layer).__name__}", o.output) for o in hidden]


def weight_matrices(model: nn.Module) -> list[tuple[str, np.ndarray]]:
    """Every weight matrix and kernel (biases left out), by parameter name."""
    return [(name, p.data) for name, p in model.named_parameters()
            if not name.endswith("bias") and p.data.ndim >= 2]


def dead_units(samples: list[tuple[str, np.ndarray]]) -> list[dict]:
    """For each hidden nonlinearity (``activation_samples``' output): how many of its units
    never fired (output ≤ 0 on every sample image) and their share. A unit of a dense layer is a
    neuron; of a convolution, a channel (it never fires anywhere in any image). A dead ReLU passes
    no gradient back, so it never learns again: what a too-large learning rate leaves behind."""
    out = []
    for name, a in samples:
        fired = a > 0
        per_unit = fired.any(axis=(0, *range(2, a.ndim))) if a.ndim > 2 else fired.any(axis=0)
        dead = int(np.count_nonzero(~per_unit))
        out.append({"name": name, "units": int(per_unit.size), "dead": dead, "share": dead / max(1, per_unit.size)})
    return out


def weight_changes(model: nn.Module, before: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Per weight matrix or kernel (biases left out): ‖∂L/∂W‖ of the last backward pass (its
    ``.grad``), ‖W‖, and ‖ΔW‖/‖W‖ against ``before`` (the weights one update earlier; None when
    not given). An update ratio near 1e-3 is the healthy textbook figure; far above it the steps
    overshoot, far below nothing moves (vanishing gradients)."""
    before = before or {}
    out = []
    with np.errstate(over="ignore", invalid="ignore"):   # a diverging run may hold huge numbers
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.data.ndim < 2:
                continue
            w = float(np.linalg.norm(p.data))
            grad = float(np.linalg.norm(p.grad)) if p.grad is not None else None
            ratio = None
            if name in before:
                ratio = float(np.linalg.norm(p.data - before[name])) / w if w else None
            out.append({"name": name, "shape": list(p.data.shape), "weight_norm": w, "grad_norm": grad,
                        "update_ratio": ratio})
    return out


def changed_answers(before: np.ndarray | None, after: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the images whose answer just became right and just became wrong, between two
    sets of predictions of the same images (``before`` None: nothing changed yet)."""
    if before is None:
        empty = np.zeros(0, np.int64)
        return {"right": empty, "wrong": empty}
    was, now = before == y, after == y
    return {"right": np.flatnonzero(~was & now), "wrong": np.flatnonzero(was & ~now)}
