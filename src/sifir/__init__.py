"""sifir: a neural network from zero in NumPy that learns to read handwritten digits."""

__version__ = "0.1.0"

from . import nn, optim  # noqa: E402  (the core: NumPy only)
from . import data  # noqa: E402
