"""IDX reading and writing: round trips, every rejection path, bounded memory, real MNIST."""

import gzip
import os
import struct
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sifir.data.idx import encode_idx, parse_idx, read_idx, write_idx
from sifir.errors import DataError, IDXError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def header(code: int, *dims: int, ndim: int | None = None) -> bytes:
    """An IDX header; `ndim` overrides the dimension count byte (to build broken ones)."""
    return bytes([0, 0, code, len(dims) if ndim is None else ndim]) + b"".join(struct.pack(">I", d) for d in dims)


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def sample(dtype: str, shape=(3, 4, 5)) -> np.ndarray:
    """Values that exercise sign, byte order and the type's extremes."""
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    arr = np.linspace(-1000, 1000, int(np.prod(shape))).reshape(shape)
    arr = np.clip(arr, info.min, info.max).astype(dtype)
    arr.flat[0], arr.flat[-1] = info.min, info.max
    return arr


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, dtype, gz):
    arr = sample(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable
    back[0, 0, 0] = 1  # really writable, not just flagged
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if gz else b"\x00\x00")


@pytest.mark.parametrize("shape", [(7,), (2, 3), (2, 3, 4), (1, 2, 3, 4)])
def test_round_trip_shapes(tmp_path, shape):
    arr = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    write_idx(tmp_path / "a", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)


def test_big_endian_on_disk():
    data = encode_idx(np.array([1, 258], dtype="<i2"))
    assert data == header(0x0B, 2) + b"\x00\x01\x01\x02"
    assert parse_idx(data).tolist() == [1, 258]


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    raw = encode_idx(arr)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "looks-raw", raw, gz=True)), arr)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "looks.gz", raw)), arr)


def test_write_is_atomic_and_reproducible(tmp_path):
    arr = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(tmp_path / "a.gz", arr)  # overwrite in place
    assert (tmp_path / "a.gz").read_bytes() == first  # mtime 0: same bytes every time
    assert os.listdir(tmp_path) == ["a.gz"]  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.gz").stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's 0600


@pytest.mark.parametrize(
    "arr, what",
    [
        (np.zeros(3, dtype=np.int64), "int64"),
        (np.zeros(3, dtype=bool), "bool"),
        (np.zeros((1, 1, 1, 1, 1), dtype=np.uint8), "5-dimensional"),
        (np.uint8(3), "0-dimensional"),
        (np.zeros((2, 0), dtype=np.uint8), "every dimension"),
    ],
)
def test_write_rejects(tmp_path, arr, what):
    with pytest.raises(IDXError, match=what):
        write_idx(tmp_path / "bad.idx", arr)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- rejections


PAYLOAD = bytes(range(12))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "too short for an IDX header"),
        (b"\x00\x00\x08", "too short for an IDX header"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"x", "not an IDX file: it starts with 01 00"),
        (b"PK\x03\x04" + bytes(20), "not an IDX file"),
        (header(0x0A, 3) + b"abc", "unknown IDX data type code 0x0A"),
        (header(0xFF, 3) + b"abc", "unknown IDX data type code 0xFF"),
        (header(0x08, ndim=0), "header says 0 dimensions"),
        (header(0x08, 1, 1, 1, 1, 1) + b"x", "header says 5 dimensions"),
        (header(0x08, 3, 4)[:-2], "truncated header: 2 dimensions need 8 bytes"),
        (header(0x08, 3, 0), "dimension 1 is 0"),
        (header(0x08, 0) + PAYLOAD, "dimension 0 is 0"),
        (header(0x08, 3, 4) + PAYLOAD[:5], "truncated: header says 3×4 = 12 bytes of data, file has 5"),
        (header(0x0C, 3) + PAYLOAD[:8], "header says 3 int32 \\(4 bytes each\\) = 12 bytes"),
        (header(0x08, 0xFFFFFFFF, 0xFFFFFFFF) + PAYLOAD, "truncated: header says 4294967295×4294967295"),
        (header(0x08, 3, 4) + PAYLOAD + b"\x00\x00", "2 unexpected bytes after the data"),
    ],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_rejects(tmp_path, data, message, gz):
    if gz and "unexpected bytes" in message:
        message = "unexpected bytes after the data"  # a gzip stream is not read to its end
    if gz and "file has" in message:
        message = message.replace("file has", "decompressed file has")
    path = write(tmp_path / "broken-idx1-ubyte", data, gz)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)  # the message names the file


def test_missing_file_is_idx_error(tmp_path):
    with pytest.raises(IDXError, match="nope.idx: cannot open"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(DataError):  # IDXError is a DataError, which the CLI reports in one line
        read_idx(tmp_path)


def _gz() -> bytes:
    return gzip.compress(encode_idx(np.arange(5000, dtype=np.int32) * 7919), mtime=0)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="cut-in-half"),
        pytest.param(lambda b: b[:-4], id="no-size-trailer"),
        pytest.param(lambda b: b[:12], id="header-only"),
        pytest.param(lambda b: b[:-8] + bytes([b[-8] ^ 0xFF]) + b[-7:], id="bad-crc"),
        pytest.param(lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:], id="flipped-deflate-byte"),
        pytest.param(lambda b: b + b"garbage!", id="garbage-after-member"),
        pytest.param(lambda b: b[:2] + b"\x07" + b[3:], id="unknown-method"),
    ],
)
def test_corrupt_gzip(tmp_path, mangle):
    path = write(tmp_path / "c.gz", mangle(_gz()))
    with pytest.raises(IDXError, match=r"c\.gz: (corrupt or truncated gzip data|truncated|unexpected)"):
        read_idx(path)


def test_gzip_multi_member_is_read_whole():
    data = encode_idx(np.arange(300, dtype=np.int16))
    two_members = gzip.compress(data[:100], mtime=0) + gzip.compress(data[100:], mtime=0)
    np.testing.assert_array_equal(parse_idx(two_members), np.arange(300))


# --------------------------------------------------------------------------- lying headers


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_huge_claim_in_tiny_file_rejected_fast_without_allocating(tmp_path, gz):
    # 10^9 images of 28×28 = 784 GB claimed; the file holds 1 KB.
    path = write(tmp_path / "liar", header(0x08, 10**9, 28, 28) + os.urandom(1000), gz)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(IDXError, match="truncated: header says 1000000000×28×28 = 784000000000 bytes"):
            read_idx(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 2 << 20, f"peak {peak} bytes"  # NumPy's allocations are traced too


def test_gzip_allocation_bounded_by_real_data(tmp_path):
    # 4 MB of real data claiming 784 GB: memory must follow the data, not the claim.
    present = 4 << 20
    path = write(tmp_path / "liar.gz", header(0x08, 10**9, 28, 28) + bytes(present), gz=True)
    tracemalloc.start()
    try:
        with pytest.raises(IDXError, match=f"decompressed file has {present}"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < present * 1.25 + (2 << 20), f"peak {peak} bytes for {present} bytes of data"


# --------------------------------------------------------------------------- property tests


def _read_or_idx_error(data: bytes):
    """The contract: an ndarray or an IDXError, never any other exception."""
    try:
        arr = parse_idx(data, "fuzz")
    except IDXError as e:
        assert str(e).startswith("fuzz: ")
        return None
    assert isinstance(arr, np.ndarray) and arr.dtype.isnative
    # Whatever is accepted is exactly header + payload: writing it back gives the same bytes.
    assert encode_idx(arr) == (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return arr


@given(st.binary(max_size=200))
def test_arbitrary_bytes(data):
    _read_or_idx_error(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_gzipped(data):
    _read_or_idx_error(gzip.compress(data, mtime=0))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_gzip_magic(data):
    _read_or_idx_error(b"\x1f\x8b" + data)


@st.composite
def mutated_idx(draw):
    """A valid IDX file (maybe gzipped), then a few bytes overwritten, cut or appended."""
    code = draw(st.sampled_from(sorted(CODES.values())))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    dtype = {v: k for k, v in CODES.items()}[code]
    size = int(np.prod(dims)) * np.dtype(dtype).itemsize
    data = bytearray(header(code, *dims) + draw(st.binary(min_size=size, max_size=size)))
    if draw(st.booleans()):
        data = bytearray(gzip.compress(bytes(data), mtime=0))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return bytes(data) + draw(st.binary(max_size=8))


@settings(max_examples=300)
@given(mutated_idx())
def test_mutated_valid_files(data):
    _read_or_idx_error(data)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_idx())
def test_mutated_valid_files_on_disk(tmp_path, data):
    path = tmp_path / "m"
    path.write_bytes(data)
    try:
        read_idx(path)
    except IDXError as e:
        assert str(path) in str(e)


@given(
    st.sampled_from(DTYPES),
    st.lists(st.integers(1, 5), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_encode_parse_round_trip(dtype, shape, rnd):
    raw = bytes(rnd.getrandbits(8) for _ in range(int(np.prod(shape)) * np.dtype(dtype).itemsize))
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    back = parse_idx(encode_idx(arr))
    assert back.tobytes() == arr.tobytes()  # bitwise, so NaN payloads count too


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def real(mnist_dir):
    def path(name):
        return next(p for p in (mnist_dir / name, mnist_dir / f"{name}.gz") if p.is_file())

    return path


def test_real_labels(real):
    train = read_idx(real("train-labels-idx1-ubyte"))
    test = read_idx(real("t10k-labels-idx1-ubyte"))
    assert train.shape == (60000,) and test.shape == (10000,) and train.dtype == np.uint8
    assert np.bincount(train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_real_images(real):
    train = read_idx(real("train-images-idx3-ubyte"))
    assert train.shape == (60000, 28, 28) and train.dtype == np.uint8
    assert train.mean() == pytest.approx(33.318, abs=1e-3)
    assert train.std() == pytest.approx(78.567, abs=1e-3)
    assert read_idx(real("t10k-images-idx3-ubyte")).shape == (10000, 28, 28)


def test_real_file_round_trips_byte_for_byte(real, tmp_path):
    path = real("t10k-labels-idx1-ubyte")
    original = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    assert encode_idx(read_idx(path)) == original
