"""Stateless helpers: softmax, log-softmax, one-hot; patch matrices and memory layout for convolutions."""
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


# NumPy's maximum runs its vector loop against an array but a scalar loop against a scalar: max(x, 0)
# is 2.5–4 times faster (1000×800 numbers: 147 against 574 µs) as rows of x against one row of
# zeros. 16,000 numbers: 64,000 bytes, no multiple of 4 KB (rows of x that start at the zeros'
# offset within a page, row after row, stall the loads).
RELU_ROW = 16000
_ZEROS: dict = {}


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), element-wise, in the memory layout of ``x`` (a new array)."""
    out = np.empty_like(x)
    flat, flat_out = x.ravel(order="K"), out.ravel(order="K")   # memory order: views when x is dense
    if x.size < 2 * RELU_ROW or out.strides != x.strides or not np.shares_memory(flat, x):
        return np.maximum(x, 0, out=out)
    zeros = _ZEROS.get(x.dtype)
    if zeros is None:
        zeros = _ZEROS[x.dtype] = np.zeros(RELU_ROW, x.dtype)
    whole = x.size // RELU_ROW * RELU_ROW
    np.maximum(flat[:whole].reshape(-1, RELU_ROW), zeros, out=flat_out[:whole].reshape(-1, RELU_ROW))
    np.maximum(flat[whole:], zeros[:x.size - whole], out=flat_out[whole:])
    return out


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float32) -> np.ndarray:
    out = np.zeros((len(labels), num_classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


# -- convolution and pooling helpers ----------------------------------------------------------
# Images are NCHW by shape, as in PyTorch. In memory, the convolution layers keep the batch
# innermost: (C, H, W, N), "batch-last". Then every step runs over long contiguous stretches:
# one image row of all N images side by side is W·N numbers, the two neighbours of a pooling
# window are N numbers apart, a channel is one run of H·W·N numbers, a convolution's patch
# matrix is copied a whole image row at a time and its product with the kernels is the output in
# the same layout. Layers hand each other NCHW-shaped *views* of batch-last arrays; NumPy's
# element-wise ops keep that layout, and any layout is accepted (at the cost of one copy).
# nn/plain.py has the same layers without any of this, as the math reads.

class ShapeError(SifirError, ValueError):
    """An input array does not fit the layer (number of dimensions, channels or size)."""


def pair(value, name: str = "kernel_size") -> tuple[int, int]:
    """3 → (3, 3); (3, 5) → (3, 5); anything else is refused."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value   # already a pair (a layer's own sizes, every call): nothing to check
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    items = tuple(items) if isinstance(items, (tuple, list)) else ()
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise ShapeError(f"{name} must be an integer or a pair of integers, got {value!r}")
    return int(items[0]), int(items[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output positions along one axis: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def batch_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (C, H, W, N) view; contiguous when ``x`` is a batch-last array."""
    return x.transpose(1, 2, 3, 0)


def from_batch_last(a: np.ndarray) -> np.ndarray:
    """(C, H, W, N) → the (N, C, H, W) view that layers hand on."""
    return a.transpose(3, 0, 1, 2)


def padded_batch_last(x: np.ndarray, padding=0) -> np.ndarray:
    """``x`` (N, C, H, W) as a contiguous batch-last array with ``padding`` zeros around each
    image: (C, H + 2·ph, W + 2·pw, N). No copy when ``x`` is batch-last and needs no padding."""
    ph, pw = pair(padding, "padding")
    xb = batch_last(x)
    if not ph and not pw:
        return np.ascontiguousarray(xb)
    c, h, w, n = xb.shape
    out = np.zeros((c, h + 2 * ph, w + 2 * pw, n), x.dtype)
    out[:, ph:ph + h, pw:pw + w] = xb
    return out


def window_slice(i: int, j: int, rows: tuple[int, int], out_w: int, stride) -> tuple:
    """Index of a batch-last (C, H, W, N) array picking, for the output rows r0 ≤ r < r1 and
    every output column, the input under kernel offset (i, j): rows s·r + i, columns s·q + j."""
    (r0, r1), (sh, sw) = rows, pair(stride, "stride")
    return (slice(None), slice(r0 * sh + i, (r1 - 1) * sh + i + 1, sh), slice(j, j + sw * (out_w - 1) + 1, sw))


def patches(padded: np.ndarray, kernel_size, stride=1, rows: tuple[int, int] | None = None) -> np.ndarray:
    """The patch matrix of a padded batch-last input (C, Hp, Wp, N): one row per kernel entry
    (c, i, j), the order of the kernel's numbers in Conv2d.weight, one column per output position
    (r, q, n), so that a convolution is the one product W·cols, shape (C_out, Ho·Wo·N).
    ``rows`` = (r0, r1) builds only the columns of output rows r0 ≤ r < r1.

    The windows are a strided view of the input; the one copy runs over whole output rows of
    all N images side by side (Wo·N numbers in a row for stride 1). One copy from the view is
    faster than one per kernel offset: 1.0 against 1.7 ms for 128 images of 24×12×12, and
    26 against 48 µs for one image of 1×30×30 (CPU time)."""
    c, hp, wp, n = padded.shape
    (kh, kw), (sh, sw) = pair(kernel_size), pair(stride, "stride")
    ho, wo = conv_output_size(hp, kh, sh), conv_output_size(wp, kw, sw)
    r0, r1 = rows or (0, ho)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    cols = np.empty((c, kh, kw, r1 - r0, wo, n), padded.dtype)
    np.copyto(cols, windows[:, r0:r1].transpose(0, 4, 5, 1, 2, 3))   # (C, Ho, Wo, N, kh, kw) → (C, kh, kw, …)
    return cols.reshape(c * kh * kw, (r1 - r0) * wo * n)


def shifted_patches(padded: np.ndarray, kernel_size) -> np.ndarray:
    """The patch matrix for stride 1 over a wider grid, built from long runs: ``(C·kh·kw, L·N)``
    with L = (Ho − 1)·Wp + Wo. Each output row is continued across the whole padded width Wp, so
    the numbers under kernel offset (i, j) are one contiguous stretch of the flat input, starting
    (i·Wp + j)·N numbers in: a row of this matrix is one copy, where ``patches`` copies one
    output row of Wo·N numbers at a time (slow when Wo·N is a handful: one image).

    Column (r·Wp + q)·N + n is output position (r, q) of image n for q < Wo; the columns with
    q ≥ Wo mix the end of one row with the start of the next, and are computed and dropped
    (``from_shifted``)."""
    c, hp, wp, n = padded.shape
    kh, kw = pair(kernel_size)
    ho, wo = conv_output_size(hp, kh), conv_output_size(wp, kw)
    length = ((ho - 1) * wp + wo) * n
    padded, item = np.ascontiguousarray(padded), padded.itemsize
    # offset (c, i, j), then run l: numbers c·Hp·Wp·N + i·Wp·N + j·N + l of the flat input (the
    # strides computed, not read: NumPy may report any stride for an axis of length 1)
    strides = (hp * wp * n * item, wp * n * item, n * item, item)
    runs = np.ndarray((c, kh, kw, length), padded.dtype, padded, strides=strides)
    return np.ascontiguousarray(runs).reshape(c * kh * kw, length)


def from_shifted(wide: np.ndarray, out_h: int, out_w: int, padded_w: int, n: int) -> np.ndarray:
    """The output positions (rows, Ho·Wo·N) out of a product with ``shifted_patches`` (rows,
    ((Ho − 1)·Wp + Wo)·N): output row r is Wo·N numbers starting at r·Wp·N."""
    wide = np.ascontiguousarray(wide)
    rows, length, item = wide.shape[0], wide.shape[1], wide.itemsize
    picked = np.ndarray((rows, out_h, out_w * n), wide.dtype, wide, strides=(length * item, padded_w * n * item, item))
    return np.ascontiguousarray(picked).reshape(rows, out_h * out_w * n)


def add_patches(grad: np.ndarray, part: np.ndarray, kernel_size, stride=1, rows: tuple[int, int] | None = None) -> None:
    """The adjoint of ``patches``, in place: add every entry of ``part`` (rows of the patch
    matrix for output rows r0 ≤ r < r1) onto the input position it was copied from, in ``grad``
    (C, Hp, Wp, N). One add of a whole block per kernel offset instead of a scatter."""
    c, hp, wp, n = grad.shape
    (kh, kw), (sh, sw) = pair(kernel_size), pair(stride, "stride")
    ho, wo = conv_output_size(hp, kh, sh), conv_output_size(wp, kw, sw)
    r0, r1 = rows or (0, ho)
    blocks = part.reshape(c, kh, kw, r1 - r0, wo, n)
    for i in range(kh):
        for j in range(kw):
            grad[window_slice(i, j, (r0, r1), wo, (sh, sw))] += blocks[:, i, j]
