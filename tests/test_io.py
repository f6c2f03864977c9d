"""Model files: round trip, atomic writes, and clear errors for files that are not ours."""
import json
import zipfile

import numpy as np
import pytest

from sifir import io, models, nn
from sifir.errors import ModelFileError


def make_model():
    nn.manual_seed(0)
    return models.build("seed")


def test_round_trip_gives_identical_predictions(tmp_path):
    model = make_model()
    x = np.random.default_rng(0).standard_normal((7, 1, 28, 28)).astype(np.float32)
    path = io.save_model(tmp_path / "m.npz", model, {"preset": "seed"})
    loaded, info = io.load_model(path)
    assert info == {"preset": "seed"}
    assert np.array_equal(model.eval()(x), loaded(x))
    with np.load(path, allow_pickle=False) as z:
        assert {"1.weight", "1.bias", "3.weight", "3.bias"} <= set(z.files)
        meta = json.loads(str(z[io.META_KEY]))
    assert meta["parameters"] == {"weights": 7940, "biases": 20, "total": 7960}
    assert meta["architecture"]["layers"][1] == {"type": "Linear", "config": {
        "in_features": 784, "out_features": 10, "bias": True}}


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"the user's old file")
    model = make_model()

    class Boom(Exception):
        pass

    def failing_state():
        raise Boom

    model.state_dict = failing_state
    with pytest.raises(Boom):
        io.save_model(path, model)
    assert path.read_bytes() == b"the user's old file"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.parametrize("content,message", [
    (b"", "not a readable"),
    (b"hello, not a zip", "not a readable"),
])
def test_garbage_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        io.load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        io.load_model(tmp_path / "nope.npz")


def test_truncated_file(tmp_path):
    path = io.save_model(tmp_path / "m.npz", make_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        io.load_model(path)


def test_plain_npz_and_pickles_are_not_ours(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    with pytest.raises(ModelFileError, match="not a sifir file"):
        io.load_model(tmp_path / "plain.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelFileError):
        io.load_model(tmp_path / "obj.npz")


def rewrite(path, arrays, meta):
    io.write_npz_atomic(path, arrays, meta)


def test_wrong_shapes_nan_unknown_layers_and_newer_versions(tmp_path):
    path = io.save_model(tmp_path / "m.npz", make_model())
    arrays, meta = io.read_npz(path)

    bad = dict(arrays, **{"1.weight": np.zeros((5, 784), np.float32)})
    rewrite(path, bad, meta)
    with pytest.raises(ModelFileError, match="shape"):
        io.load_model(path)

    bad = dict(arrays, **{"3.bias": np.full(10, np.nan, np.float32)})
    rewrite(path, bad, meta)
    with pytest.raises(ModelFileError, match="NaN"):
        io.load_model(path)

    rewrite(path, dict(arrays, extra=np.ones(2)), meta)
    with pytest.raises(ModelFileError, match="do not belong"):
        io.load_model(path)

    rewrite(path, arrays=arrays, meta=dict(meta, version=io.FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match="newer"):
        io.load_model(path)

    evil = dict(meta, architecture={"type": "Sequential", "layers": [{"type": "os.system", "config": {}}]})
    rewrite(path, arrays=arrays, meta=evil)
    with pytest.raises(ModelFileError, match="unknown layer type"):
        io.load_model(path)


def test_damaged_zip_member(tmp_path):
    path = io.save_model(tmp_path / "m.npz", make_model())
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    data = bytearray(path.read_bytes())
    start = data.find(b"1.weight.npy") + 200
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        io.load_model(path)
    assert names
