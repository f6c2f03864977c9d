"""Look inside a network: what every layer computed for one input.

The drawing page and the report pictures show the hidden layers at work: for the seed network
the 10 + 10 neurons of hidden1 and hidden2, for a convolutional network its feature maps. Both
come from running the model one layer at a time and keeping each layer's output:

    layer_outputs(model, x)       -> [LayerOutput(index, layer, output), …] for every leaf layer
    hidden_activations(model, x)  -> (outputs of the nonlinearities, the model's output)

A "hidden activation" is the output of a nonlinearity (ReLU, Sigmoid, …): the numbers a layer
of neurons passes on. The seed network's last ReLU is also its output (the logits), and it is
listed too, as hidden2, because the tutorial draws it as a layer of neurons.

Layers keep state in ``forward`` (what ``backward`` needs), so one model object must not run
two of these at once: callers sharing a model between threads hold a lock around the call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nn

__all__ = ["ACTIVATION_TYPES", "LayerOutput", "layer_outputs", "hidden_activations", "is_activation"]

# Layer types whose output counts as a layer of neurons' activations. A layer class not named
# here can declare itself one with a class attribute ``nonlinearity = True``.
ACTIVATION_TYPES = frozenset({"ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ELU", "GELU", "SiLU", "Softplus"})


@dataclass(frozen=True)
class LayerOutput:
    index: str          # position in the model: "2", or "3.1" inside a nested Sequential
    layer: nn.Module
    output: np.ndarray  # the layer's result for the whole batch


def is_activation(layer: nn.Module) -> bool:
    return type(layer).__name__ in ACTIVATION_TYPES or getattr(type(layer), "nonlinearity", False) is True


def layer_outputs(model: nn.Module, x: np.ndarray) -> list[LayerOutput]:
    """Run ``model`` on ``x`` in eval mode, one leaf layer at a time; every leaf's output in order.

    The last entry's output is exactly ``model(x)`` in eval mode (the same operations in the same
    order), so predictions made from it match ``predict_logits``. The model's mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        outputs: list[LayerOutput] = []
        _run(model, x, "", outputs)
        return outputs
    finally:
        model.train(was_training)


def _run(module: nn.Module, x: np.ndarray, index: str, outputs: list[LayerOutput]) -> np.ndarray:
    if isinstance(module, nn.Sequential):
        for i, layer in enumerate(module):
            x = _run(layer, x, f"{index}.{i}" if index else str(i), outputs)
        return x
    y = module(x)
    outputs.append(LayerOutput(index or "0", module, y))
    return y


def hidden_activations(model: nn.Module, x: np.ndarray) -> tuple[list[LayerOutput], np.ndarray]:
    """(outputs of the nonlinearities in order, the model's output) for input ``x``.

    An ensemble's members each have their own hidden layers; the first member's are shown (their
    indices start with "0."), and the output is the ensemble's. A network read in views
    (``nn.Views``) shows its layers for the input as it is (indices "net.…"), and the output
    averages the views."""
    if isinstance(model, (nn.Ensemble, nn.Views)):
        inner, prefix = (model[0], "0") if isinstance(model, nn.Ensemble) else (model.net, "net")
        hidden, _ = hidden_activations(inner, x)
        was_training = model.training
        try:
            output = model.eval()(x)
        finally:
            model.train(was_training)
        return [LayerOutput(f"{prefix}.{o.index}", o.layer, o.output) for o in hidden], output
    outputs = layer_outputs(model, x)
    return [o for o in outputs if is_activation(o.layer)], outputs[-1].output
