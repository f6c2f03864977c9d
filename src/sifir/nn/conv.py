"""Convolution and pooling over images (N, C, H, W), with PyTorch's names, shapes and defaults.

A convolution is a matrix product in disguise: copy the numbers under every placement of the
kernel into one column of a patch matrix (im2col), and the whole layer is one product of the
kernels, laid out as rows, with that matrix. The backward pass is two more products and col2im,
which adds patch gradients back onto the pixels they came from.

``plain.py`` has these layers as the math reads: im2col, one product and col2im; max-pooling as
a reshape and an argmax. The classes here compute the same numbers faster, and the tests hold
them to the plain ones. What makes them faster is the memory layout (``functional.py``): the
batch innermost, (C, H, W, N), so that the patch matrix is copied a whole image row at a time,
the output of the product W·cols is already in that layout, and the pooling windows' neighbours
are N numbers apart; and a few slices of the work sized to stay in the cache.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from . import init
from .functional import ShapeError
from .module import Module, Parameter

# Inference builds the patch matrix a few output rows at a time, at most this many numbers
# (4 MB in float32) when a row allows it: evaluating thousands of images then needs no
# gigabytes, and each slice is multiplied while it is still in the cache (the cnn preset's
# second convolution, 1000 images: 164–225 against 205–266 ms with slices of 64 MB).
EVAL_CHUNK = 1 << 20
# Inference with stride 1 builds the patch matrix from shifted runs of the flat input
# (``functional.shifted_patches``) when an output row of all the images is at most this many
# numbers: copying Wo·N numbers at a time is mostly per-copy overhead then (one image of the cnn
# preset, 32 → 64 channels at 14×14: 144 against 101 µs; 64 images: 4.9 against 6.8 ms, as the
# wider product does 14 % more work).
SHIFTED_ROW = 32
# The input gradient is computed a few output rows at a time, about this many numbers of
# dL/dcols at once (2 MB), which col2im adds back while they are still in the cache.
COL2IM_CHUNK = 1 << 19
# Weight gradients with at most this many numbers (one-channel layers: 32×1×3×3, 6×1×5×5) are
# summed over slices of WEIGHT_SLICE output positions (see Conv2d._weight_gradient).
SMALL_WEIGHT_GRADIENT = 1024
WEIGHT_SLICE = 1024


def _positive(name: str, value, allow_zero: bool = False) -> tuple[int, int]:
    pair = F.pair(value, name)
    if min(pair) < (0 if allow_zero else 1):
        raise ShapeError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return pair


def _count(name: str, value) -> int:
    """A number of channels: one positive integer (a pair is a size, not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


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
        self.in_channels = _count("in_channels", in_channels)
        self.out_channels = _count("out_channels", out_channels)
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
        # (out, in, kh, kw) → (out, in·kh·kw): the row order of the patch matrix
        return self.weight.data.reshape(self.out_channels, -1)

    def forward(self, x):
        n, _, h, w = _check_images(self, x, self.in_channels)
        ho, wo = self.output_size(h, w)
        if ho < 1 or wo < 1:
            raise ShapeError(f"Conv2d: input {h}×{w} is smaller than the kernel "
                             f"{self.kernel_size[0]}×{self.kernel_size[1]} (padding {self.padding})")
        wmat = self._weight_matrix()
        self.x = x
        padded = F.padded_batch_last(x, self.padding)                      # (C, H + 2p, W + 2p, N)
        if self.training:   # keep the patch matrix for dL/dW
            self.cols = F.patches(padded, self.kernel_size, self.stride)    # (C·kh·kw, Ho·Wo·N)
            y = wmat @ self.cols                                            # the one GEMM: (out, Ho·Wo·N)
        elif self.stride == (1, 1) and wo * n <= SHIFTED_ROW:   # inference on a few images
            self.cols = None
            wide = wmat @ F.shifted_patches(padded, self.kernel_size)       # (out, ((Ho−1)·Wp + Wo)·N)
            y = F.from_shifted(wide, ho, wo, padded.shape[2], n)
        else:               # inference: nothing to keep, so bound memory: a few output rows at a time
            self.cols = None
            y = np.empty((self.out_channels, ho * wo * n), np.result_type(x.dtype, wmat.dtype))
            rows = max(1, EVAL_CHUNK // max(1, wmat.shape[1] * wo * n))
            for r in range(0, ho, rows):
                part = F.patches(padded, self.kernel_size, self.stride, rows=(r, min(ho, r + rows)))
                np.matmul(wmat, part, out=y[:, r * wo * n:min(ho, r + rows) * wo * n])
        if self.bias is not None:
            y += self.bias.data[:, None]
        return F.from_batch_last(y.reshape(self.out_channels, ho, wo, n))

    def backward(self, grad_out, need_input_grad=True):
        # y = W·cols + b  ⇒  dL/dW = g·colsᵀ,  dL/db = Σ g,  dL/dcols = Wᵀ·g,  dL/dx = col2im(dL/dcols)
        n, c, h, w = self.x.shape
        g = np.ascontiguousarray(F.batch_last(grad_out)).reshape(self.out_channels, -1)   # (out, Ho·Wo·N)
        cols = self.cols
        if cols is None:    # after an inference forward: build the patch matrix now
            cols = F.patches(F.padded_batch_last(self.x, self.padding), self.kernel_size, self.stride)
        self.cols = None    # the biggest array of the layer: free it as soon as it is used
        self.weight.accumulate(self._weight_gradient(g, cols))
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=1))
        if not need_input_grad:
            return None
        # dL/dcols = Wᵀ·g, a few output rows at a time: col2im adds each slice while it is in the cache
        (ph, pw), (ho, wo) = self.padding, self.output_size(h, w)
        wmat_t = self._weight_matrix().T
        grad = np.zeros((c, h + 2 * ph, w + 2 * pw, n), np.result_type(g.dtype, wmat_t.dtype))
        rows = max(1, COL2IM_CHUNK // max(1, wmat_t.shape[0] * wo * n))
        for r in range(0, ho, rows):
            r1 = min(ho, r + rows)
            F.add_patches(grad, wmat_t @ g[:, r * wo * n:r1 * wo * n], self.kernel_size, self.stride, rows=(r, r1))
        return F.from_batch_last(grad[:, ph:ph + h, pw:pw + w])

    def _weight_gradient(self, g, cols):
        """dL/dW = g·colsᵀ: (out, Ho·Wo·N)·(Ho·Wo·N, in·kh·kw), a long sum into a small result.

        OpenBLAS's speed at this depends on the shapes (CPU time on one core, batch of 64): the
        longer side of the result first, (cols·gᵀ)ᵀ, is up to twice as fast (the cnn preset's
        second convolution: 6.0 against 12.2 ms); and when the result is tiny (a one-channel
        layer, 9 or 25 columns), one stack of products of WEIGHT_SLICE columns each (one matmul
        call, each slice in the cache), summed, is 2–4 times faster than one product (cnn: 0.6
        against 1.5 ms; LeNet-5: 0.4 against 1.6 ms)."""
        k, out = cols.shape[0], self.out_channels
        if k * out <= SMALL_WEIGHT_GRADIENT:
            m, s = divmod(cols.shape[1], WEIGHT_SLICE)
            whole = m * WEIGHT_SLICE
            stack = np.matmul(g[:, :whole].reshape(out, m, WEIGHT_SLICE).transpose(1, 0, 2),
                              cols[:, :whole].reshape(k, m, WEIGHT_SLICE).transpose(1, 2, 0))   # (m, out, k)
            dw = stack.sum(axis=0)
            if s:
                dw += g[:, whole:] @ cols[:, whole:].T
        elif k >= out:
            dw = (cols @ g.T).T
        else:
            dw = g @ cols.T
        return np.ascontiguousarray(dw).reshape(self.weight.shape)

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
        """The input as a batch-last view (C, H, W, N); sets the output size."""
        n, c, h, w = _check_images(self, x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = F.conv_output_size(h, kh, sh), F.conv_output_size(w, kw, sw)
        if ho < 1 or wo < 1:
            raise ShapeError(f"{type(self).__name__}: input {h}×{w} is smaller than the window {kh}×{kw}")
        self.out_hw = (ho, wo)
        return F.batch_last(x)

    @property
    def tiles(self) -> bool:
        """Windows side by side without overlap or gaps (the usual 2×2, stride 2)."""
        return self.kernel_size == self.stride

    def _as_tiles(self, xb):
        # Crop to whole windows (PyTorch's floor mode), then split H and W: (C, Ho, kh, Wo, kw, N),
        # a view of a batch-last array (a copy of any other).
        (ho, wo), (kh, kw) = self.out_hw, self.kernel_size
        return xb[:, :ho * kh, :wo * kw].reshape(xb.shape[0], ho, kh, wo, kw, xb.shape[3])

    def _offsets(self):
        """(i, j, index of the inputs under offset (i, j)) in row-major order."""
        (kh, kw), (ho, wo) = self.kernel_size, self.out_hw
        for i in range(kh):
            for j in range(kw):
                yield i, j, F.window_slice(i, j, (0, ho), wo, self.stride)

    def _reduce(self, ufunc, xb):
        """Combine each window's inputs with ``ufunc`` (np.maximum or np.add): (C, Ho, Wo, N)."""
        if self.tiles:  # over kh, then over kw: kh + kw − 2 element-wise ops on tiles
            # Rows first: the rows of a window are whole image rows of W·N numbers, so that fold
            # runs over long contiguous stretches and halves the data before the fold over kw.
            t = self._as_tiles(xb)
            return _fold(ufunc, _fold(ufunc, t, axis=2), axis=3)
        out = None
        for _, _, index in self._offsets():  # general windows: one strided slice per offset
            out = xb[index].copy() if out is None else ufunc(out, xb[index], out=out)
        return out

    def config(self):
        return {"kernel_size": _plain(self.kernel_size), "stride": _plain(self.stride)}


def _fold(ufunc, a, axis):
    """ufunc over a short axis as chained element-wise ops (faster than a strided reduction)."""
    lead = (slice(None),) * axis     # a[lead + (i,)]: entry i of the axis (indexing beats moveaxis for one image)
    out = a[lead + (0,)].copy() if a.shape[axis] == 1 else ufunc(a[lead + (0,)], a[lead + (1,)])
    for i in range(2, a.shape[axis]):
        ufunc(out, a[lead + (i,)], out=out)
    return out


class MaxPool2d(_Pool2d):
    """y = max over each kh×kw window (stride defaults to the window). dy/dx = 1 for the
    window's largest input and 0 elsewhere; among equal maxima the first in row-major order
    wins, as in PyTorch, so a gradient is never counted twice.

    For the usual 2×2 tiles, forward records which input of each window won (three yes/no
    answers per window) instead of keeping the input: backward then writes each input's
    gradient in one pass, without comparing the input with the maxima again (measured on the
    cnn preset's first pooling, 64 images: 4.2 → 2.3 ms backward, 1.3 → 2.2 ms forward)."""

    def forward(self, x):
        xb = self._setup(x)
        self.x_shape = xb.shape
        if self._two_by_two and self.training:
            self.y, self.winners = _max_of_tiles(self._as_tiles(xb))
            self.x = None
        else:   # also inference: nothing to record (backward after it finds the winners then)
            self.x, self.y, self.winners = xb, self._reduce(np.maximum, xb), None
        return F.from_batch_last(self.y)

    @property
    def _two_by_two(self) -> bool:
        return self.tiles and self.kernel_size == (2, 2)

    def backward(self, grad_out, need_input_grad=True):
        g = F.batch_last(grad_out)
        (ho, wo), (kh, kw) = self.out_hw, self.kernel_size
        covered = self.tiles and self.x_shape[1:3] == (ho * kh, wo * kw)
        # Tiles that cover the input write every input's gradient below; only inputs outside
        # all windows (cropped rows or columns) need zeros, and zero-filling costs a full pass.
        grad = np.empty(self.x_shape, g.dtype) if covered else np.zeros(self.x_shape, g.dtype)
        if self._two_by_two:
            winners = self.winners or _max_of_tiles(self._as_tiles(self.x))[1]
            right_top, right_bottom, bottom = winners
            top, t = ~bottom, self._as_tiles(grad)             # t: (C, Ho, 2, Wo, 2, N)
            np.multiply(g, top & ~right_top, out=t[:, :, 0, :, 0])
            np.multiply(g, top & right_top, out=t[:, :, 0, :, 1])
            np.multiply(g, bottom & ~right_bottom, out=t[:, :, 1, :, 0])
            np.multiply(g, bottom & right_bottom, out=t[:, :, 1, :, 1])
            return F.from_batch_last(grad)
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
        return F.from_batch_last(grad)


def _max_of_tiles(t):
    """Maxima of 2×2 tiles t (C, Ho, 2, Wo, 2, N) and who won: (b > a, d > c, max(c, d) >
    max(a, b)) for each window [[a, b], [c, d]]; a strict > lets the first of equals win."""
    a, b, c, d = t[:, :, 0, :, 0], t[:, :, 0, :, 1], t[:, :, 1, :, 0], t[:, :, 1, :, 1]
    top, bottom = np.maximum(a, b), np.maximum(c, d)
    return np.maximum(top, bottom), (b > a, d > c, bottom > top)


class AvgPool2d(_Pool2d):
    """y = mean over each kh×kw window;  dy/dx = 1/(kh·kw) for every input of the window."""

    def forward(self, x):
        xb = self._setup(x)
        self.x_shape = xb.shape
        y = self._reduce(np.add, xb)
        y *= y.dtype.type(1 / (self.kernel_size[0] * self.kernel_size[1]))
        return F.from_batch_last(y)

    def backward(self, grad_out, need_input_grad=True):
        g = F.batch_last(grad_out) * grad_out.dtype.type(1 / (self.kernel_size[0] * self.kernel_size[1]))
        grad = np.zeros(self.x_shape, g.dtype)
        if self.tiles:  # broadcast each window's gradient over its kh×kw inputs in one op
            self._as_tiles(grad)[...] = g[:, :, None, :, None]
        else:
            for _, _, index in self._offsets():
                grad[index] += g
        return F.from_batch_last(grad)
