"""The layers as the math reads: a few lines of NumPy each, nothing for speed.

The layers in conv.py, norm.py and layers.py compute the same numbers faster, with a memory
layout and slices of the work chosen for the machine (read their module docstrings for how).
This module is the lesson and the reference: the tests hold the fast layers to these, and check
these against central differences. They have the same constructor, parameters and saved form
as the fast ones (they are subclasses that replace ``forward`` and ``backward``), so
``twin(model)`` turns any network into its plain twin with the same weights.

    Conv2d     im2col, one matrix product, col2im
    MaxPool2d  the windows side by side, an argmax over each
    AvgPool2d  the windows side by side, a mean over each
    BatchNorm  μ and σ² of the batch, x̂ = (x − μ)/σ, y = γ·x̂ + β, and the derivative of that
    Linear, Flatten  a product and a reshape
"""
from __future__ import annotations

import numpy as np

from . import conv, layers, norm
from .functional import ShapeError
from .module import Sequential


# -- im2col and col2im: a convolution as one matrix product -----------------------------------
def im2col(x, kernel_size, stride, padding):
    """(N, C, H, W) → the patch matrix (N·Ho·Wo, C·kh·kw): one row per placement of the kernel,
    holding the numbers under it in the order of the kernel's own (c, i, j)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.empty((n, ho, wo, c, kh, kw), x.dtype)
    for i in range(kh):          # kernel entry (i, j) sees the image shifted by (i, j)
        for j in range(kw):
            cols[..., i, j] = xp[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw].transpose(0, 2, 3, 1)
    return cols.reshape(n * ho * wo, c * kh * kw)


def col2im(dcols, x_shape, kernel_size, stride, padding):
    """The adjoint of im2col: add each entry of dcols back onto the pixel it was copied from."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x_shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    d = dcols.reshape(n, ho, wo, c, kh, kw)
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw] += d[..., i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, ph:ph + h, pw:pw + w]


class Conv2d(conv.Conv2d):
    """y = cols·Wᵀ + b, cols = im2col(x), W the kernels as rows (out, C·kh·kw)."""

    def forward(self, x):
        self.x_shape = x.shape
        self.cols = im2col(x, self.kernel_size, self.stride, self.padding)
        y = self.cols @ self.weight.data.reshape(self.out_channels, -1).T     # (N·Ho·Wo, out)
        if self.bias is not None:
            y = y + self.bias.data
        n, ho, wo = x.shape[0], *self.output_size(*x.shape[2:])
        return y.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)

    def backward(self, grad_out, need_input_grad=True):
        g = grad_out.transpose(0, 2, 3, 1).reshape(-1, self.out_channels)      # (N·Ho·Wo, out)
        self.weight.accumulate((g.T @ self.cols).reshape(self.weight.shape))   # dL/dW = gᵀ·cols
        if self.bias is not None:
            self.bias.accumulate(g.sum(axis=0))                                 # dL/db = Σ g
        if not need_input_grad:
            return None
        dcols = g @ self.weight.data.reshape(self.out_channels, -1)             # dL/dcols = g·W
        return col2im(dcols, self.x_shape, self.kernel_size, self.stride, self.padding)


# -- pooling: every window's numbers side by side ---------------------------------------------
def _windows(x, kernel_size, stride):
    """(N, C, H, W) → (N, C, Ho, Wo, kh·kw): each window's numbers in row-major order (a view)."""
    (kh, kw), (sh, sw) = kernel_size, stride
    w = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return w.reshape(*w.shape[:4], kh * kw)


def _add_windows(d, x_shape, kernel_size, stride):
    """The adjoint of _windows: add each window's numbers back onto the inputs they came from."""
    (kh, kw), (sh, sw) = kernel_size, stride
    n, c, ho, wo, _ = d.shape
    dx = np.zeros(x_shape, d.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw] += d[..., i * kw + j]
    return dx


class MaxPool2d(conv.MaxPool2d):
    """y = the largest number of each window; its gradient goes to that number alone (argmax
    picks the first of equal maxima, as PyTorch does)."""

    def forward(self, x):
        windows = _windows(x, self.kernel_size, self.stride)
        self.x_shape, self.argmax = x.shape, windows.argmax(axis=-1)
        return np.take_along_axis(windows, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, grad_out, need_input_grad=True):
        d = np.zeros((*grad_out.shape, self.kernel_size[0] * self.kernel_size[1]), grad_out.dtype)
        np.put_along_axis(d, self.argmax[..., None], grad_out[..., None], axis=-1)
        return _add_windows(d, self.x_shape, self.kernel_size, self.stride)


class AvgPool2d(conv.AvgPool2d):
    """y = the mean of each window; each of its kh·kw numbers gets 1/(kh·kw) of the gradient."""

    def forward(self, x):
        self.x_shape = x.shape
        return _windows(x, self.kernel_size, self.stride).mean(axis=-1)

    def backward(self, grad_out, need_input_grad=True):
        k = self.kernel_size[0] * self.kernel_size[1]
        d = np.repeat(grad_out[..., None] / k, k, axis=-1)
        return _add_windows(d, self.x_shape, self.kernel_size, self.stride)


# -- batch normalisation from its formulas ----------------------------------------------------
class _PlainBatchNorm:
    """Training: μ, σ² of the batch (over ``axes``), x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β.
    Evaluation: the running averages instead of μ and σ². Backward, with g = dL/dy:
    dL/dγ = Σ g·x̂,  dL/dβ = Σ g,  dL/dx = (γ/σ)·(g − mean(g) − x̂·mean(g·x̂)) in training
    (μ and σ depend on x too), dL/dx = (γ/σ)·g in evaluation."""

    axes: tuple

    def _shape(self):   # a per-feature vector as the input's shape broadcasts it
        return (1, self.num_features) + (1,) * (len(self.axes) - 1)

    def forward(self, x):
        if self.across is not None:   # set by sifir.parallel: the batch is split over processes
            raise ShapeError("the plain BatchNorm normalises with the statistics of the images it is "
                             "given only; train plain layers on one worker (--workers 1)")
        if self.training:
            self.batch_stats, mu, var = True, x.mean(axis=self.axes), x.var(axis=self.axes)
            m = x.size // self.num_features
            self._update_running(mu, var * (m / (m - 1)))                  # unbiased, as PyTorch
        else:
            self.batch_stats, mu, var = False, self.running_mean, self.running_var
        self.std = np.sqrt(var + self.eps).reshape(self._shape())
        self.x_hat = (x - mu.reshape(self._shape())) / self.std
        return self.weight.data.reshape(self._shape()) * self.x_hat + self.bias.data.reshape(self._shape())

    def backward(self, grad_out, need_input_grad=True):
        g = grad_out
        self.weight.accumulate((g * self.x_hat).sum(axis=self.axes))
        self.bias.accumulate(g.sum(axis=self.axes))
        if not need_input_grad:
            return None
        gamma_over_std = self.weight.data.reshape(self._shape()) / self.std
        if not self.batch_stats:
            return gamma_over_std * g
        mean = lambda a: a.mean(axis=self.axes, keepdims=True)  # noqa: E731
        return gamma_over_std * (g - mean(g) - self.x_hat * mean(g * self.x_hat))


class BatchNorm1d(_PlainBatchNorm, norm.BatchNorm1d):
    axes = (0,)


class BatchNorm2d(_PlainBatchNorm, norm.BatchNorm2d):
    axes = (0, 2, 3)


# -- the simple ones ----------------------------------------------------------------------------
class Linear(layers.Linear):
    """y = x·Wᵀ + b;  dL/dW = gᵀ·x,  dL/db = Σ g,  dL/dx = g·W."""

    def forward(self, x):
        self.x = x
        return x @ self.weight.data.T + (self.bias.data if self.bias is not None else 0)

    def backward(self, grad_out, need_input_grad=True):
        self.weight.accumulate(grad_out.T @ self.x)
        if self.bias is not None:
            self.bias.accumulate(grad_out.sum(axis=0))
        return grad_out @ self.weight.data if need_input_grad else None


class Flatten(layers.Flatten):
    """(N, C, H, W) → (N, C·H·W) and back."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, need_input_grad=True):
        return grad_out.reshape(self.shape)


PLAIN = {cls.__name__: cls for cls in (Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Linear, Flatten)}


def twin(model):
    """The same network with the plain layers wherever there is one, and a copy of its weights
    and running statistics; layers without a plain version are copied as they are."""
    import copy
    if isinstance(model, Sequential):
        return Sequential(*(twin(layer) for layer in model))
    plain = PLAIN.get(type(model).__name__)
    if plain is None or type(model) is plain:
        return copy.deepcopy(model)
    other = copy.deepcopy(model)
    other.__class__ = plain   # same constructor arguments, parameters and buffers: only the math differs
    return other
