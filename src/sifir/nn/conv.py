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
# A one-channel convolution builds its patch matrix in slices of about this many numbers
# (512 KB in float32), each small enough to stay in the cache until it is multiplied.
CACHE_CHUNK = 1 << 17
# The input gradient is computed in slices of the batch of about this many patch-matrix
# numbers (2 MB): measured fastest for LeNet-5's and the cnn preset's layers.
COL2IM_CHUNK = 1 << 19
# Weight gradients with at most this many numbers are summed image by image (see
# Conv2d._weight_gradient): LeNet-5's 6×1×5×5 and 16×6×5×5, the cnn preset's 32×1×3×3.
SMALL_WEIGHT_GRADIENT = 4096


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
        y = np.empty((n * ho * wo, self.out_channels), np.result_type(x.dtype, wmat_t.dtype))
        if self.in_channels == 1:
            self.cols = self._single_channel_product(x, wmat_t, y)
        elif self.training:  # keep the patch matrix for dL/dW
            self.cols = self._im2col(x)
            np.matmul(self.cols, wmat_t, out=y)                 # the one GEMM: (N·Ho·Wo, out)
        else:                # inference: nothing to keep, so bound memory by slicing the batch
            self.cols = None
            step = max(1, EVAL_CHUNK // (ho * wo * wmat_t.shape[0]))
            for s in range(0, n, step):
                np.matmul(self._im2col(x[s:s + step]), wmat_t, out=y[s * ho * wo:(s + step) * ho * wo])
        if self.bias is not None:
            _add_per_channel(y, self.bias.data, wo)
        return y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)

    def _single_channel_product(self, x, wmat_t, y):
        """y = cols·W_matᵀ for a one-channel input (the first layer of an MNIST network).

        With one channel, a row of the patch matrix is copied from the image in runs of kw
        numbers, which makes the copy slow; its transpose colsᵀ, one row per kernel offset
        (i, j), is copied in runs of Wo. It is built a slice of the batch at a time, and each
        slice is multiplied while it is still in the cache. Returns cols (a transposed view of
        colsᵀ) in training, for dL/dW; in inference one slice-sized buffer is reused."""
        windows = F.patch_windows(x, self.kernel_size, self.stride, self.padding)[..., 0]
        n, ho, wo, kh, kw = windows.shape
        step = max(1, CACHE_CHUNK // (ho * wo * kh * kw))
        cols_t = np.empty((kh, kw, n if self.training else min(n, step), ho, wo), x.dtype)
        for s in range(0, n, step):
            e = min(n, s + step)
            part = cols_t[:, :, s:e] if self.training else cols_t[:, :, :e - s]
            np.copyto(part, windows[s:e].transpose(3, 4, 0, 1, 2))   # (kh, kw, images, Ho, Wo)
            np.matmul(part.reshape(kh * kw, -1).T, wmat_t, out=y[s * ho * wo:e * ho * wo])
        return cols_t.reshape(kh * kw, -1).T if self.training else None

    def backward(self, grad_out, need_input_grad=True):
        # y = cols·Wᵀ + b  ⇒  dL/dW = gᵀ·cols,  dL/db = Σ g,  dL/dcols = g·W,  dL/dx = col2im(dL/dcols)
        g = F.channels_last(grad_out).reshape(-1, self.out_channels)   # (N·Ho·Wo, out)
        cols = self.cols if self.cols is not None else self._im2col(self.x)
        self.cols = None  # the biggest array of the layer: free it as soon as it is used
        (kh, kw), c = self.kernel_size, self.in_channels
        self.weight.accumulate(self._weight_gradient(cols, g))
        if self.bias is not None:
            self.bias.accumulate(_sum_per_channel(g, grad_out.shape[3]))
        if not need_input_grad:
            return None
        # dL/dcols = g·W, computed block by block: one (N·Ho·Wo, out)·(out, in) product per
        # kernel offset (one matmul call), so that col2im adds contiguous blocks. A slice of
        # the batch at a time: the blocks of a slice are still in the cache when col2im adds them.
        blocks = self.weight.data.transpose(2, 3, 0, 1).reshape(kh * kw, self.out_channels, c)
        n, _, h, w = self.x.shape
        (ph, pw), positions = self.padding, len(g) // n
        grad = np.zeros((n, h + 2 * ph, w + 2 * pw, c), np.result_type(g.dtype, blocks.dtype))
        step = max(1, COL2IM_CHUNK // (positions * kh * kw * c))
        for s in range(0, n, step):
            rows = g[s * positions:(s + step) * positions]
            if c == 1:   # then the blocks are the rows of one product (kh·kw, out)·(out, rows)
                patches = (blocks[:, :, 0] @ rows.T)[:, :, None]
            else:
                patches = np.matmul(rows, blocks)
            F.col2im_add(grad[s:s + step], patches, self.kernel_size, self.stride)
        return grad[:, ph:ph + h, pw:pw + w].transpose(0, 3, 1, 2)

    def _weight_gradient(self, cols, g):
        """dL/dW = gᵀ·cols, reshaped to (out, in, kh, kw).

        The product sums over the long N·Ho·Wo axis into a small result. When the result is
        tiny (LeNet-5's layers, any one-channel layer), OpenBLAS is slow at it: the whole
        of both factors streams through its packing buffers for a few hundred numbers of
        output. One product per image instead (a stack of small products in one matmul
        call, each image's rows still in the cache), then the sum over images, is faster:
        1.2 against 2.2 ms for LeNet-5's first layer, 1.2 against 1.4 ms for its second.
        For the large results of wide layers one big product is faster. In it, the longer
        side of the small result goes first, (colsᵀ·g)ᵀ: multi-threaded OpenBLAS can be ten
        or more times slower otherwise (measured: 1.8 s instead of 16 ms for 9×32)."""
        (kh, kw), c, out = self.kernel_size, self.in_channels, self.out_channels
        k, n = kh * kw * c, len(self.x)
        if k * out <= SMALL_WEIGHT_GRADIENT:
            # (N, k, positions)·(N, positions, out) → (N, k, out), summed over the images
            if cols.flags.c_contiguous:
                per_image = cols.reshape(n, -1, k)
            else:  # the transposed view that a one-channel forward keeps
                per_image = cols.T.reshape(k, n, -1).transpose(1, 2, 0)
            dw = np.matmul(per_image.transpose(0, 2, 1), g.reshape(n, -1, out)).sum(axis=0)
            dw = dw.reshape(kh, kw, c, out).transpose(3, 2, 0, 1)
        elif cols.shape[1] >= out:
            dw = (cols.T @ g).reshape(kh, kw, c, out).transpose(3, 2, 0, 1)
        else:
            dw = (g.T @ cols).reshape(out, kh, kw, c).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(dw)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": _plain(self.kernel_size), "stride": _plain(self.stride),
                "padding": _plain(self.padding), "bias": self.bias is not None}


def _add_per_channel(y: np.ndarray, values: np.ndarray, wo: int) -> None:
    """y += values for y of shape (N·Ho·Wo, C), in place. Broadcasting over rows of C numbers
    runs one short inner loop per row, slow when C is small (6 channels: 5× slower); y seen as
    rows of Wo·C numbers with the values repeated Wo times is the same sum in longer runs."""
    rows = y.reshape(-1, wo * len(values))
    rows += np.tile(values, wo)


def _sum_per_channel(g: np.ndarray, wo: int) -> np.ndarray:
    """Σ over the rows of g (N·Ho·Wo, C): rows of Wo·C numbers first (long runs, as in
    ``_add_per_channel``), then the Wo partial sums."""
    c = g.shape[1]
    return g.reshape(-1, wo * c).sum(axis=0).reshape(wo, c).sum(axis=0)


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
        if self.tiles:  # over kh, then over kw: kh + kw − 2 element-wise ops on tiles
            # Rows first: the rows of a window are whole rows of W·C numbers, so that fold runs
            # over long contiguous stretches and halves the data before the short-stride fold
            # over kw (measured 1.5 → 1.1 ms for LeNet-5's first pooling, 6 channels).
            t = self._as_tiles(xl)
            return _fold(ufunc, _fold(ufunc, t, axis=2), axis=3)
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
        (ho, wo), (kh, kw) = self.out_hw, self.kernel_size
        covered = self.tiles and self.x.shape[1:3] == (ho * kh, wo * kw)
        # Tiles that cover the input write every input's gradient below; only inputs outside
        # all windows (cropped rows or columns) need zeros, and zero-filling costs a full pass.
        grad = np.empty(self.x.shape, g.dtype) if covered else np.zeros(self.x.shape, g.dtype)
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
