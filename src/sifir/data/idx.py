"""Read and write IDX files, the format of the MNIST database, raw or gzip-compressed.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the array's
items in C order, big-endian::

    00 00 <type code> <ndim>   dim_0 ... dim_{ndim-1}   data

Files come from the network, so nothing in a header is trusted: the payload the header claims
is compared with the bytes actually present *before* anything of that size is allocated. A
1 KB file that claims 10^9 images is rejected after reading 1 KB, not after asking for 784 GB.
Every problem raises `IDXError` with the file's name and what was wrong.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import tempfile
import zlib
from typing import BinaryIO

import numpy as np

from sifir.errors import IDXError

__all__ = ["read_idx", "write_idx", "encode_idx", "parse_idx"]

# IDX type code -> big-endian NumPy dtype, as in LeCun's format description.
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# dtype.str without byte order ("u1", "i4", ...) -> code, for writing.
_CODES = {dt.str[1:]: code for code, dt in _DTYPES.items()}
_CODE_NAMES = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in _DTYPES.items())

MAX_NDIM = 4  # the format allows 255; real data (MNIST, EMNIST, Fashion-MNIST) uses 1 to 3
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 18  # bytes decompressed per step; beyond the real data we hold a few of these at most
_GZIP_LEVEL = 6  # level 9 is ~15x slower on MNIST for 2% smaller files


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw, or gzip detected by its magic bytes) into a native-endian array."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except OSError as e:
        raise IDXError(f"{name}: cannot open: {e.strerror or e}") from e
    with f:
        return _read_stream(f, name)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Like `read_idx` but for bytes already in memory (used by tests and the fuzzer)."""
    return _read_stream(io.BytesIO(data), name)


def _read_stream(f: BinaryIO, name: str) -> np.ndarray:
    """Dispatch on the first two bytes: gzip (1f 8b) or raw IDX (00 00)."""
    try:
        is_gzip = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        if not is_gzip:
            available = f.seek(0, io.SEEK_END)
            f.seek(0)
            return _parse(f, name, available=available)
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            return _parse(g, name, available=None)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        # Truncated or damaged compressed stream: the gzip layer, not the IDX layer, failed.
        raise IDXError(f"{name}: corrupt or truncated gzip data ({e})") from e
    except OSError as e:
        raise IDXError(f"{name}: cannot read: {e.strerror or e}") from e


def _parse(f: BinaryIO, name: str, available: int | None) -> np.ndarray:
    """Parse header then payload. `available` is the raw file size, or None for a gzip stream."""
    dtype, dims = _read_header(f, name, available)
    header_size = 4 + 4 * len(dims)
    expected = math.prod(dims) * dtype.itemsize  # Python int: no overflow on absurd dims
    claim = _describe(dims, dtype, expected)
    if available is not None:
        buf = _read_raw_payload(f, name, claim, expected, available - header_size)
    else:
        buf = _read_gzip_payload(f, name, claim, expected)
    return _to_array(buf, dtype, dims)


def _read_header(f: BinaryIO, name: str, available: int | None) -> tuple[np.dtype, tuple]:
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(magic)} bytes; needs at least 4)")
    if magic[0] != 0 or magic[1] != 0:
        raise IDXError(
            f"{name}: not an IDX file: it starts with {magic[:2].hex(' ')}, "
            "an IDX file starts with 00 00 (and a gzip file with 1f 8b)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _DTYPES:
        raise IDXError(f"{name}: unknown IDX data type code 0x{code:02X} (known: {_CODE_NAMES})")
    if not 1 <= ndim <= MAX_NDIM:
        raise IDXError(f"{name}: header says {ndim} dimensions; sifir reads 1 to {MAX_NDIM}")
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXError(
            f"{name}: truncated header: {ndim} dimensions need {4 * ndim} bytes "
            f"after the magic number, file has {len(raw_dims)}"
        )
    dims = tuple(int.from_bytes(raw_dims[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    for axis, size in enumerate(dims):
        if size == 0:
            raise IDXError(f"{name}: dimension {axis} is 0 (header says {_shape(dims)}); an IDX file here holds data")
    return _DTYPES[code], dims


def _read_raw_payload(f: BinaryIO, name: str, claim: str, expected: int, present: int) -> bytearray:
    """The file size is known: compare it with the claim before allocating anything."""
    if present < expected:
        raise IDXError(f"{name}: truncated: header says {claim} bytes of data, file has {present}")
    if present > expected:
        raise IDXError(
            f"{name}: {present - expected} unexpected bytes after the data "
            f"(header says {claim} bytes, file has {present})"
        )
    buf = bytearray(expected)
    view, got = memoryview(buf), 0
    while got < expected:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    if got != expected:  # the file shrank under us
        raise IDXError(f"{name}: truncated: header says {claim} bytes of data, read only {got}")
    return buf


def _read_gzip_payload(f: BinaryIO, name: str, claim: str, expected: int) -> bytearray:
    """The decompressed size is unknown until the end: grow a buffer chunk by chunk.

    We never ask for more than the claim, and the buffer only ever holds bytes that really
    came out of the stream, so a lying header costs at most the real data plus one chunk.
    """
    buf = bytearray()
    while len(buf) < expected:
        chunk = f.read(min(_CHUNK, expected - len(buf)))
        if not chunk:
            raise IDXError(
                f"{name}: truncated: header says {claim} bytes of data, "
                f"decompressed file has {len(buf)}"
            )
        buf += chunk
    # Reading one more byte also reaches the gzip trailer, so its CRC and length get checked.
    if f.read(1):
        raise IDXError(f"{name}: unexpected bytes after the data (header says {claim} bytes)")
    return buf


def _to_array(buf: bytearray, dtype: np.dtype, dims: tuple) -> np.ndarray:
    """View the buffer as the array (no copy), then swap to native byte order in place."""
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)  # bytearray -> writable array
    if not dtype.isnative:
        arr = arr.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return arr


def encode_idx(array, name: str = "<array>") -> bytes:
    """The IDX bytes (header + big-endian data) of `array`, uncompressed."""
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.str[1:])
    if code is None:
        raise IDXError(f"{name}: cannot write dtype {arr.dtype} to IDX (writable: {_CODE_NAMES})")
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise IDXError(f"{name}: cannot write a {arr.ndim}-dimensional array (IDX here: 1 to {MAX_NDIM})")
    if not all(0 < d < 2**32 for d in arr.shape):
        raise IDXError(f"{name}: cannot write shape {arr.shape}: every dimension must be 1 to 2^32-1")
    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(_DTYPES[code], copy=False).tobytes(order="C")


def write_idx(path: str | os.PathLike, array) -> None:
    """Write `array` as IDX; gzip-compressed when the name ends in .gz. Atomic: the file
    appears complete or not at all (written to a temporary file, then renamed)."""
    name = os.fspath(path)
    data = encode_idx(array, name)
    folder = os.path.dirname(os.path.abspath(name))
    tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{os.path.basename(name)}.", suffix=".part", delete=False)
    try:
        with tmp:
            if name.endswith(".gz"):
                # filename="" keeps the temporary name out of the gzip header; mtime=0 makes
                # the output reproducible byte for byte.
                with gzip.GzipFile(filename="", fileobj=tmp, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as g:
                    g.write(data)
            else:
                tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, _file_mode())  # temporary files are created 0600
        os.replace(tmp.name, name)
    except BaseException:
        _unlink_quietly(tmp.name)
        raise


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Read n bytes, or fewer only at end of file (a read may return short)."""
    parts, got = [], 0
    while got < n:
        part = f.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _shape(dims: tuple) -> str:
    return "×".join(str(d) for d in dims)


def _describe(dims: tuple, dtype: np.dtype, total: int) -> str:
    """'60000×28×28 = 47040000' or, for multi-byte items, '10×3 int32 (4 bytes each) = 120'."""
    if dtype.itemsize == 1:
        return f"{_shape(dims)} = {total}"
    return f"{_shape(dims)} {dtype.name} ({dtype.itemsize} bytes each) = {total}"


def _file_mode() -> int:
    """0666 less the umask: what open() would have given the file."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
