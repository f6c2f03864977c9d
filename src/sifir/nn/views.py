"""Views: one trained network reads a few shifted (and perhaps mirrored) copies of each image;
their probabilities are averaged (test-time augmentation).

    x_v = shift(m_v(x), dy_v, dx_v)  the image, mirrored left to right where m_v says so, moved by
                                     whole pixels, the uncovered border filled with the
                                     background's value (``fill``, in normalised units)
    p_v = softmax(net(x_v))          the network's probabilities for each view
    p̄   = (1/V) Σ_v p_v              the probabilities of the views together
    y   = log p̄                      what forward returns (as ``Ensemble``: softmax(y) = p̄)

A digit drawn one pixel to the left is the same digit. The network saw such shifts in training
(augmentation), and a doubtful image that one view reads wrongly is often read rightly by the
others. A shoe pointing the other way is still a shoe, but a mirrored 3 is no digit: the
mirrored views (10 and 18) are for networks trained on mirrored pictures, such as clothes.
It is an ensemble of one network over several inputs: it costs V forward passes and learns
nothing; ``Views`` only ever wraps a network that has finished training.

Backward (for the gradient check): as in ``Ensemble``, dL/dp_v = (1/V)·g/p̄ and dL/dz_v =
p_v ⊙ (dL/dp_v − Σ_j dL/dp_vj · p_vj); the network's forward pass is run again for each view
(it keeps what one forward computed) and its input gradient is shifted back: the adjoint of a
shift moves each gradient to the pixel it came from and drops what fell off the edge; a mirror
is its own adjoint.
"""
from __future__ import annotations

import numpy as np

from .ensemble import Ensemble
from .functional import softmax
from .module import Module

# The views a model may name, as (dy, dx, mirrored): the image itself first, then one-pixel
# moves; 10 and 18 are 5 and 9 with the mirror image of each beside it.
SHIFTS = {
    1: ((0, 0),),
    5: ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)),
}
SHIFTS[9] = SHIFTS[5] + ((1, 1), (1, -1), (-1, 1), (-1, -1))
MOVES = {v: tuple((dy, dx, False) for dy, dx in moves) for v, moves in SHIFTS.items()}
MOVES.update({2 * v: MOVES[v] + tuple((dy, dx, True) for dy, dx in SHIFTS[v]) for v in (5, 9)})


def shift(x: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """(…, H, W) images moved dy rows down and dx columns right; the uncovered border is ``fill``."""
    out = np.full_like(x, fill)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def unshift(grad: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The adjoint of ``shift``: each gradient back to the pixel it came from (the fill gets none)."""
    return shift(grad, -dy, -dx, 0.0)


def mirror(x: np.ndarray) -> np.ndarray:
    """(…, H, W) images mirrored left to right (their own adjoint)."""
    return x[..., ::-1]


def move(x: np.ndarray, dy: int, dx: int, mirrored: bool, fill: float) -> np.ndarray:
    """One view of (…, H, W) images: mirrored left to right where ``mirrored`` says so, then
    moved dy rows down and dx columns right, the uncovered border ``fill``."""
    return shift(mirror(x) if mirrored else x, dy, dx, fill)


def views_of(model: Module) -> int:
    """How many views a model reads each input in: a ``Views`` model's count, an ensemble's first
    member's (an ensemble trained by one recipe reads all its members alike), else 1."""
    if isinstance(model, Views):
        return model.views
    return views_of(model[0]) if isinstance(model, Ensemble) else 1


class Views(Module):
    """``net`` applied to shifted (or mirrored) copies of the input; the output is the log of
    their mean probabilities. ``views`` is 1, 5 or 9 (the image, its four one-pixel moves, the
    diagonals), or 10 or 18 (5 or 9, each also mirrored left to right); ``image`` the (height,
    width) the input is reshaped to for shifting, so a flat MLP input (N, 784) is shifted as
    the 28×28 picture it is."""

    def __init__(self, net: Module, views: int = 5, fill: float = 0.0, image=(28, 28)):
        if isinstance(views, bool) or not isinstance(views, int) or views not in MOVES:
            raise ValueError(f"views must be one of {sorted(MOVES)}, got {views!r}")
        if isinstance(net, Views):
            raise ValueError("a network already read in views cannot be wrapped again")
        image = tuple(image)
        if len(image) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 2 for n in image):
            raise ValueError(f"image must be (height, width) of whole numbers above 2, got {image!r}")
        self.net = net
        self.views, self.fill, self.image = views, float(fill), image

    def config(self) -> dict:
        return {"views": self.views, "fill": self.fill, "image": list(self.image)}

    @property
    def moves(self):
        """The views as (dy, dx, mirrored)."""
        return MOVES[self.views]

    def _view(self, x: np.ndarray, dy: int, dx: int, mirrored: bool) -> np.ndarray:
        if dy == dx == 0 and not mirrored:
            return x
        images = x.reshape(len(x), -1, *self.image)
        return np.ascontiguousarray(move(images, dy, dx, mirrored, self.fill)).reshape(x.shape)

    def forward(self, x):
        self._x = x
        self._probs = [softmax(self.net(self._view(x, *move))) for move in self.moves]
        self._mean = sum(self._probs) / len(self._probs)
        # p̄ > 0 in exact arithmetic; in float32 a far-off class can round to 0: clip before the log
        return np.log(np.maximum(self._mean, np.finfo(self._mean.dtype).tiny))

    def backward(self, grad_out, need_input_grad: bool = True):
        x = self._x
        grad_p = grad_out / (len(self._probs) * self._mean)
        grad_in = None
        for (dy, dx, mirrored), p in zip(self.moves, self._probs):
            grad_z = p * (grad_p - (grad_p * p).sum(axis=-1, keepdims=True))    # through softmax
            self.net(self._view(x, dy, dx, mirrored))   # the network keeps one forward: this view's
            g = self.net.backward(grad_z, need_input_grad=need_input_grad)
            if need_input_grad:
                g = unshift(g.reshape(len(g), -1, *self.image), dy, dx)
                g = np.ascontiguousarray(mirror(g) if mirrored else g).reshape(x.shape)
                grad_in = g if grad_in is None else grad_in + g
        return grad_in

    def __repr__(self):
        inner = repr(self.net).replace("\n", "\n  ")
        return f"Views(views={self.views}, fill={self.fill:g}, image={self.image},\n  {inner}\n)"
