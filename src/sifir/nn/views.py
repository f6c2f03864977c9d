"""Views: one trained network reads a few shifted (and perhaps mirrored or turned) copies of each
image; their probabilities are averaged (test-time augmentation).

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
Views 27 and 29 read each of the 9 moves also turned by ±6° (and 29 the image also 8 % smaller
and larger): a turn or a scaling moves pixels by fractions, so such a view is the bilinear
resampling the augmentation uses (``sifir.augment.warp``), written as a table: each output
pixel q is Σ_j w_jq·x̂[k_jq] over its four neighbours k_jq in the image and the fill (``resampling``).
It is an ensemble of one network over several inputs: it costs V forward passes and learns
nothing; ``Views`` only ever wraps a network that has finished training.

Backward (for the gradient check): as in ``Ensemble``, dL/dp_v = (1/V)·g/p̄ and dL/dz_v =
p_v ⊙ (dL/dp_v − Σ_j dL/dp_vj · p_vj); the network's forward pass is run again for each view
(it keeps what one forward computed) and its input gradient is shifted back: the adjoint of a
shift moves each gradient to the pixel it came from and drops what fell off the edge; a mirror
is its own adjoint; a resampling's adjoint hands each output pixel's gradient back to its
neighbours with the same weights (the transposed table).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

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


class View(NamedTuple):
    """One view: the image mirrored left to right where ``mirrored`` says so, turned by ``turn``
    degrees (counter-clockwise on screen) and scaled by ``scale`` about its centre, then moved
    dy rows down and dx columns right."""
    dy: int
    dx: int
    mirrored: bool = False
    turn: float = 0.0
    scale: float = 1.0

    @property
    def resampled(self) -> bool:
        """Whether pixels move by fractions (a turn or a scaling), not by whole pixels."""
        return self.turn != 0 or self.scale != 1


# 27: each of the 9 moves as it is and turned by −6° and +6°; 29: and the image 8 % smaller and
# larger. On the validation images of `best`, seeds 0-4, these read more digits right than 9
# moves alone, and more than 9 moves with turns or scalings of the image alone (docs/benchmarks.md,
# "Turned views").
TURN = 6.0
SCALES = (0.92, 1.08)
VIEW_SETS = {v: tuple(View(*move) for move in moves) for v, moves in MOVES.items()}
VIEW_SETS[27] = tuple(View(dy, dx, False, turn) for dy, dx in SHIFTS[9] for turn in (0.0, -TURN, TURN))
VIEW_SETS[29] = VIEW_SETS[27] + tuple(View(0, 0, False, 0.0, scale) for scale in SCALES)


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


@lru_cache(maxsize=None)   # made once per view and image size, shared by every model (read-only)
def resampling(view: View, image: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A turned or scaled view as a table (index, weight), both (5, H·W): output pixel q is
    Σ_j weight[j, q]·x̂[index[j, q]], x̂ the flat image with the fill appended at index H·W.
    Rows 0-3 are q's four bilinear neighbours, row 4 the fill's share (where a neighbour lies
    outside the image). Made by ``sifir.augment.warp`` itself, so a view reads exactly what
    the augmentation would: warping the H·W one-pixel images gives each input pixel's weight
    in every output pixel, and warping a blank image with fill 1 gives the fill's."""
    from ..augment import affine_matrices, warp   # the geometry lives with the augmentation
    h, w = image
    size = h * w
    inverse = affine_matrices((view.dx, view.dy), view.turn, view.scale)
    pixels = warp(np.eye(size).reshape(size, 1, h, w), inverse, fill=0.0).reshape(size, size)   # [k, q]
    index = np.argsort(-pixels, axis=0, kind="stable")[:4]          # the (at most) 4 neighbours of each q
    weight = np.take_along_axis(pixels, index, axis=0)
    fill = warp(np.zeros((1, 1, h, w)), inverse, fill=1.0).reshape(1, size)
    table = np.vstack([index, np.full((1, size), size)]), np.vstack([weight, fill])
    for array in table:
        array.flags.writeable = False
    return table


def resample(x: np.ndarray, table, fill: float) -> np.ndarray:
    """(…, H, W) images read through a ``resampling`` table; the image's dtype."""
    index, weight = table
    flat = x.reshape(-1, index.shape[1])
    framed = np.concatenate([flat, np.full((len(flat), 1), fill, flat.dtype)], axis=1)
    out = sum(framed[:, k] * wk.astype(flat.dtype) for k, wk in zip(index, weight))
    return out.reshape(x.shape)


def unresample(grad: np.ndarray, table) -> np.ndarray:
    """The adjoint of ``resample``: each output pixel's gradient back to its neighbours, with the
    same weights (the fill gets none)."""
    index, weight = table
    size = index.shape[1]
    matrix = np.zeros((size + 1, size), grad.dtype)            # [k, q]: the table written out
    np.add.at(matrix, (index, np.arange(size)), weight.astype(grad.dtype))
    return (grad.reshape(-1, size) @ matrix[:size].T).reshape(grad.shape)


def views_of(model: Module) -> int:
    """How many views a model reads each input in: a ``Views`` model's count, an ensemble's first
    member's (an ensemble trained by one recipe reads all its members alike), else 1."""
    if isinstance(model, Views):
        return model.views
    return views_of(model[0]) if isinstance(model, Ensemble) else 1


class Views(Module):
    """``net`` applied to shifted (or mirrored, or turned) copies of the input; the output is the
    log of their mean probabilities. ``views`` is 1, 5 or 9 (the image, its four one-pixel moves,
    the diagonals), 10 or 18 (5 or 9, each also mirrored left to right), 27 (9, each also turned
    by ±6°) or 29 (27, and the image 8 % smaller and larger); ``image`` the (height,
    width) the input is reshaped to for shifting, so a flat MLP input (N, 784) is shifted as
    the 28×28 picture it is."""

    def __init__(self, net: Module, views: int = 5, fill: float = 0.0, image=(28, 28)):
        if isinstance(views, bool) or not isinstance(views, int) or views not in VIEW_SETS:
            raise ValueError(f"views must be one of {sorted(VIEW_SETS)}, got {views!r}")
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
    def plan(self) -> tuple[View, ...]:
        """The views, in the order their probabilities are summed."""
        return VIEW_SETS[self.views]

    def shown(self, x: np.ndarray, view: View) -> np.ndarray:
        """The batch ``x`` as ``view`` shows it to the network."""
        if view == View(0, 0):
            return x
        images = x.reshape(len(x), -1, *self.image)
        if view.resampled:
            return resample(mirror(images) if view.mirrored else images, resampling(view, self.image), self.fill).reshape(x.shape)
        return np.ascontiguousarray(move(images, view.dy, view.dx, view.mirrored, self.fill)).reshape(x.shape)

    def forward(self, x):
        self._x = x
        self._probs = [softmax(self.net(self.shown(x, view))) for view in self.plan]
        self._mean = sum(self._probs) / len(self._probs)
        # p̄ > 0 in exact arithmetic; in float32 a far-off class can round to 0: clip before the log
        return np.log(np.maximum(self._mean, np.finfo(self._mean.dtype).tiny))

    def backward(self, grad_out, need_input_grad: bool = True):
        x = self._x
        grad_p = grad_out / (len(self._probs) * self._mean)
        grad_in = None
        for view, p in zip(self.plan, self._probs):
            grad_z = p * (grad_p - (grad_p * p).sum(axis=-1, keepdims=True))    # through softmax
            self.net(self.shown(x, view))   # the network keeps one forward: this view's
            g = self.net.backward(grad_z, need_input_grad=need_input_grad)
            if need_input_grad:
                g = g.reshape(len(g), -1, *self.image)
                g = unresample(g, resampling(view, self.image)) if view.resampled else unshift(g, view.dy, view.dx)
                g = np.ascontiguousarray(mirror(g) if view.mirrored else g).reshape(x.shape)
                grad_in = g if grad_in is None else grad_in + g
        return grad_in

    def __repr__(self):
        inner = repr(self.net).replace("\n", "\n  ")
        return f"Views(views={self.views}, fill={self.fill:g}, image={self.image},\n  {inner}\n)"
