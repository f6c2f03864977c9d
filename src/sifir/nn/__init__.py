"""sifir.nn: layers, losses and containers with explicit forward and backward passes.

Names, shapes and semantics follow torch.nn, so code and results can be compared side by side.
"""
from .functional import log_softmax, one_hot, softmax
from .init import manual_seed
from .layers import (Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh)
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .norm import BatchNorm1d, BatchNorm2d
from .losses import CrossEntropyLoss, MSELoss
from .module import Module, Parameter, Sequential
from .ensemble import Ensemble
from .views import Views, views_of

# Every layer type a saved model may name. Loading builds layers only from this table, so a
# model file can describe an architecture but never run code.
LAYERS = {cls.__name__: cls for cls in (
    Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Flatten, Identity, Dropout, Softmax,
    Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d,
)}


def register(cls):
    """Add a layer class to LAYERS (so it can be saved and loaded); usable as a decorator."""
    LAYERS[cls.__name__] = cls
    return cls


__all__ = [
    "Module", "Parameter", "Sequential", "Ensemble", "Views", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "Flatten", "Identity", "Dropout", "Softmax", "CrossEntropyLoss", "MSELoss", "LAYERS",
    "register", "views_of", "softmax", "log_softmax", "one_hot", "manual_seed",
    "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
]
