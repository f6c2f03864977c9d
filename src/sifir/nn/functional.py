"""Stateless helpers: softmax, log-softmax, one-hot; im2col/col2im for convolutions."""
from __future__ import annotations

import numpy as np

from ..errors import SifirError


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    # log p_i = z_i - logsumexp(z); subtracting max(z) first keeps exp() from overflowing.
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


# -- convolution and pooling helpers ----------------------------------------------------------
# Images are NCHW by shape, as in PyTorch. In memory, the convolution layers work channels-last
# (N, H, W, C), as PyTorch's ``channels_last`` format and cuDNN do: then the kh·kw·C numbers
# under one kernel placement lie in a few contiguous runs, so building the patch matrix is a
# fast copy, and a convolution's output (N·Ho·Wo, C_out) is already channels-last. Layers hand
# each other NCHW-shaped *views* of channels-last arrays; NumPy's element-wise ops keep that
# layout, and any layout is accepted.

class ShapeError(SifirError, ValueError):
    """An input array does not fit the layer (number of dimensions, channels or size)."""


def pair(value, name: str = "kernel_size") -> tuple[int, int]:
    """3 → (3, 3); (3, 5) → (3, 5); anything else is refused."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    items = tuple(items) if isinstance(items, (tuple, list)) else ()
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise ShapeError(f"{name} must be an integer or a pair of integers, got {value!r}")
    return int(items[0]), int(items[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output positions along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N, H, W, C) view; contiguous when ``x`` is a channels-last array."""
    return x.transpose(0, 2, 3, 1)


def offset_slice(i: int, j: int, out_h: int, out_w: int, stride) -> tuple:
    """Index of an (N, H, W, C) array picking, for every output position, the input under
    kernel offset (i, j): rows i, i+s, …, i+s·(Ho−1) and the same for columns."""
    sh, sw = pair(stride, "stride")
    return (slice(None), slice(i, i + sh * (out_h - 1) + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))


def patch_windows(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Every kh×kw patch a kernel visits in ``x`` (N, C, H, W), as a strided *view* of the
    (zero-padded) channels-last input, shape (N, Ho, Wo, kh, kw, C): no copy but the padding."""
    n, c, h, w = x.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    xl = channels_last(x)
    if ph or pw:
        padded = np.zeros((n, h + 2 * ph, w + 2 * pw, c), x.dtype)
        padded[:, ph:ph + h, pw:pw + w] = xl
        xl = padded
    windows = np.lib.stride_tricks.sliding_window_view(xl, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return windows.transpose(0, 1, 2, 4, 5, 3)           # (N, Ho, Wo, C, kh, kw) → (…, kh, kw, C)


def im2col(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Patch matrix of ``x`` (N, C, H, W): one row per output position (n, ho, wo), one column
    per kernel entry (i, j, c), so a convolution is one matrix product cols · W_matᵀ.

    The windows are a strided view of the (zero-padded) input; the only copy is the final
    one into the contiguous (N·Ho·Wo, kh·kw·C) matrix.
    """
    windows = patch_windows(x, kernel_size, stride, padding)
    n, ho, wo, kh, kw, c = windows.shape
    cols = np.empty(windows.shape, x.dtype)
    np.copyto(cols, windows)
    return cols.reshape(n * ho * wo, kh * kw * c)


def col2im(patches: np.ndarray, input_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """The adjoint of ``im2col``: add every patch-matrix entry back onto the input pixel it
    was copied from. ``patches`` holds the patch matrix's column blocks one kernel offset at a
    time, shape (kh·kw, N·Ho·Wo, C): block i·kw + j is columns (i, j, ·) of the matrix.
    Returns an (N, C, H, W) view of a channels-last array.
    """
    n, c, h, w = input_shape
    ph, pw = pair(padding, "padding")
    grad = np.zeros((n, h + 2 * ph, w + 2 * pw, c), patches.dtype)
    col2im_add(grad, patches, kernel_size, stride)
    return grad[:, ph:ph + h, pw:pw + w].transpose(0, 3, 1, 2)


def col2im_add(padded: np.ndarray, patches: np.ndarray, kernel_size, stride=1) -> None:
    """``col2im`` into an existing zero-padded channels-last array (N, H + 2·ph, W + 2·pw, C),
    in place, so that a batch can be done a slice of images at a time.

    Instead of a scatter (np.add.at, slow), loop over the kh·kw kernel offsets: offset (i, j)
    touches a strided slice of the input, and adding a whole contiguous block onto that slice
    is one fast op.
    """
    n, hp, wp, c = padded.shape
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride, "stride")
    ho, wo = conv_output_size(hp, kh, sh), conv_output_size(wp, kw, sw)
    blocks = patches.reshape(kh, kw, n, ho, wo, c)
    for i in range(kh):
        for j in range(kw):
            padded[offset_slice(i, j, ho, wo, (sh, sw))] += blocks[i, j]
