"""Convolution and pooling over images (N, C, H, W), with PyTorch's names, shapes and defaults.

A convolution is a matrix product in disguise: copy every kh×kw×C patch the kernel visits into
one row of a patch matrix (im2col), and the whole layer is one GEMM against the kernels laid
out as rows. The backward pass is two more GEMMs and col2im, which adds patch gradients back
onto the pixels they came from. See ``functional.py`` for the channels-last memory layout.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from . import init
from .functional import ShapeError
from .module import Module, Parameter

# Inference builds the patch matrix a slice of the batch at a time, at most this many numbers
# (64 MB in float32), so evaluating thousands of images does not need gigabytes.
EVAL_CHUNK = 1 << 24


def _positive(name: str, value, allow_zero: bool = False) -> tuple[int, int]:
    pair = F.pair(value, name)
    if min(pair) < (0 if allow_zero else 1):
        raise ShapeError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return pair


def _plain(pair: tuple[int, int]):
    """(3, 3) → 3, (3, 5) → [3, 5]: the JSON form of a size, as the constructor accepts it."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _check_images(layer: Module, x: np.ndarray, channels: int | None = None) -> tuple[int, ...]:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ShapeError(f"{type(layer).__name__} expects images of shape (N, C, H, W), "
                         f"got shape {np.shape(x)}")
    if channels is not None and x.shape[1] != channels:
        raise ShapeError(f"{type(layer).__name__} expects {channels} input channel(s), got {x.shape[1]} "
                         f"(input shape {x.shape})")
    return x.shape


class Conv2d(Module):
    """y[n, o] = b[o] + Σ_c Σ_ij W[o, c, i, j] · x_pad[n, c, s·h + i, s·w + j]  (cross-correlation,
    as torch.nn.Conv2d). Weight (out, in, kh, kw), bias (out,), both U(±1/√(in·kh·kw))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, rng=None, dtype=np.float32):
        self.in_channels = _positive("in_channels", in_channels)[0]
        self.out_channels = _positive("out_channels", out_channels)[0]
        self.kernel_size = _positive("kernel_size", kernel_size)
        self.stride = _positive("stride", stride)
        self.padding = _positive("padding", padding, allow_zero=True)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(init.pytorch_default((self.out_channels, self.in_channels, kh, kw),
                                                     fan_in, rng, dtype))
        self.bias = Parameter(init.pytorch_default((self.out_channels,), fan_in, rng, dtype)) if bias else None
        self.x = self.cols = None

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return F.conv_output_size(h, kh, sh, ph), F.conv_output_size(w, kw, sw, pw)

    def _weight_matrix(self) -> np.ndarray:
        # (out, in, kh, kw) → (out, kh·kw·in): the column order of the patch matrix
        return self.weight.data.transpose(0, 2, 3, 1).reshape(self.out_channels, -1)

    def _im2col(self, x):
        return F.im2col(x, self.kernel_size, self.stride, self.padding)

    def forward(self, x):
        n, _, h, w = _check_images(self, x, self.in_channels)
        ho, wo = self.output_size(h, w)
        if ho < 1 or wo < 1:
            raise ShapeError(f"Conv2d: input {h}×{w} is smaller than the kernel "
                             f"{self.kernel_size[0]}×{self.kernel_size[1]} (padding {self.padding})")
        wmat_t = self._weight_matrix().T
        self.x = x
        if self.training:  # keep the patch matrix for dL/dW
            self.cols = self._im2col(x)
            y = self.cols @ wmat_t                               # the one GEMM: (N·Ho·Wo, out)
        else:              # inference: nothing to keep, so bound memory by slicing the batch
            self.cols = None
            y = np.empty((n * ho * wo, self.out_channels), np.result_type(x.dtype, wmat_t.dtype))
            step = max(1, EVAL_CHUNK // (ho * wo * wmat_t.shape[0]))
            for s in range(0, n, step):
                np.matmul(self._im2col(x[s:s + step]), wmat_t, out=y[s * ho * wo:(s + step) * ho * wo])
        if self.bias is not None:
            y += self.bias.data
        return y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        # y = cols·Wᵀ + b  ⇒  dL/dW = gᵀ·cols,  dL/db = Σ g,  dL/dcols = g·W,  dL/dx = col2im(dL/dcols)
        g = F.channels_last(grad_out).reshape(-1, self.out_channels)   # (N·Ho·Wo, out)
        cols = self.cols if self.cols is not None else self._im2col(self.x)
        self.cols = None  # the biggest array of the layer: free it as soon as it is used
        (kh, kw), c = self.kernel_size, self.in_channels
        self.weight.accumulate(self._weight_gradient(cols, g))
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=0))
        if not need_input_grad:
            return None
        # dL/dcols = g·W, computed block by block: one (N·Ho·Wo, out)·(out, in) product per
        # kernel offset (one matmul call), so that col2im adds contiguous blocks
        blocks = self.weight.data.transpose(2, 3, 0, 1).reshape(kh * kw, self.out_channels, c)
        return F.col2im(np.matmul(g, blocks), self.x.shape, self.kernel_size, self.stride, self.padding)

    def _weight_gradient(self, cols, g):
        """dL/dW = gᵀ·cols, reshaped to (out, in, kh, kw). The product sums over the long
        N·Ho·Wo axis; multi-threaded OpenBLAS can be ten or more times slower on such a product
        when the left factor has the smaller number of rows (measured: 1.8 s instead of 16 ms
        for a 9×32 result), so the longer side of the small result goes first: (colsᵀ·g)ᵀ."""
        (kh, kw), c, out = self.kernel_size, self.in_channels, self.out_channels
        if cols.shape[1] >= out:
            dw = (cols.T @ g).reshape(kh, kw, c, out).transpose(3, 2, 0, 1)
        else:
            dw = (g.T @ cols).reshape(out, kh, kw, c).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(dw)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": _plain(self.kernel_size), "stride": _plain(self.stride),
                "padding": _plain(self.padding), "bias": self.bias is not None}


class _Pool2d(Module):
    """Shared by max and average pooling: window geometry, floor-mode output size, and the
    two ways of visiting windows (reshape into tiles, or one strided slice per kernel offset)."""

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = _positive("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive("stride", stride)

    def _setup(self, x):
        n, c, h, w = _check_images(self, x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = F.conv_output_size(h, kh, sh), F.conv_output_size(w, kw, sw)
        if ho < 1 or wo < 1:
            raise ShapeError(f"{type(self).__name__}: input {h}×{w} is smaller than the window {kh}×{kw}")
        self.out_hw = (ho, wo)
        return F.channels_last(x)

    @property
    def tiles(self) -> bool:
        """Windows side by side without overlap or gaps (the usual 2×2, stride 2)."""
        return self.kernel_size == self.stride

    def _as_tiles(self, xl):
        # Crop to whole windows (PyTorch's floor mode), then split H and W: (N, Ho, kh, Wo, kw, C), a view.
        (ho, wo), (kh, kw) = self.out_hw, self.kernel_size
        return xl[:, :ho * kh, :wo * kw].reshape(len(xl), ho, kh, wo, kw, xl.shape[3])

    def _offsets(self):
        """(i, j, index of the inputs under offset (i, j)) in row-major order."""
        (kh, kw), (ho, wo) = self.kernel_size, self.out_hw
        for i in range(kh):
            for j in range(kw):
                yield i, j, F.offset_slice(i, j, ho, wo, self.stride)

    def _reduce(self, ufunc, xl):
        """Combine each window's inputs with ``ufunc`` (np.maximum or np.add): (N, Ho, Wo, C)."""
        if self.tiles:  # over kw, then over kh: kh + kw − 2 element-wise ops on tiles
            t = self._as_tiles(xl)
            return _fold(ufunc, _fold(ufunc, t, axis=4), axis=2)
        out = None
        for _, _, index in self._offsets():  # general windows: one strided slice per offset
            out = xl[index].copy() if out is None else ufunc(out, xl[index], out=out)
        return out

    def config(self):
        return {"kernel_size": _plain(self.kernel_size), "stride": _plain(self.stride)}


def _fold(ufunc, a, axis):
    """ufunc over a short axis as chained element-wise ops (faster than a strided reduction)."""
    parts = np.moveaxis(a, axis, 0)
    out = parts[0].copy() if len(parts) == 1 else ufunc(parts[0], parts[1])
    for part in parts[2:]:
        ufunc(out, part, out=out)
    return out


class MaxPool2d(_Pool2d):
    """y = max over each kh×kw window (stride defaults to the window). dy/dx = 1 for the
    window's largest input and 0 elsewhere; among equal maxima the first in row-major order
    wins, as in PyTorch, so a gradient is never counted twice."""

    def forward(self, x):
        xl = self._setup(x)
        self.x, self.y = xl, self._reduce(np.maximum, xl)
        return self.y.transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        g = F.channels_last(grad_out)
        grad = np.zeros(self.x.shape, g.dtype)
        offsets = list(self._offsets())
        open_ = None                           # windows whose winner is still to be found
        for k, (_, _, index) in enumerate(offsets):
            if open_ is None:                  # first offset: it wins where it holds the max
                wins = self.x[index] == self.y
                open_ = ~wins
            elif k < len(offsets) - 1:
                wins = self.x[index] == self.y
                wins &= open_
                open_ ^= wins                  # wins ⊆ open_, so xor closes exactly those
            else:                              # last offset: the windows still open are its
                wins = open_
            if self.tiles:  # each input belongs to one window: write, don't add
                np.multiply(g, wins, out=grad[index])
            else:
                grad[index] += g * wins
        return grad.transpose(0, 3, 1, 2)


class AvgPool2d(_Pool2d):
    """y = mean over each kh×kw window;  dy/dx = 1/(kh·kw) for every input of the window."""

    def forward(self, x):
        xl = self._setup(x)
        self.x_shape = xl.shape
        y = self._reduce(np.add, xl)
        y *= y.dtype.type(1 / (self.kernel_size[0] * self.kernel_size[1]))
        return y.transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        g = F.channels_last(grad_out) * grad_out.dtype.type(1 / (self.kernel_size[0] * self.kernel_size[1]))
        grad = np.zeros(self.x_shape, g.dtype)
        if self.tiles:  # broadcast each window's gradient over its kh×kw inputs in one op
            self._as_tiles(grad)[...] = g[:, :, None, :, None]
        else:
            for _, _, index in self._offsets():
                grad[index] += g
        return grad.transpose(0, 3, 1, 2)
