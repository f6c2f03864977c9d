"""Model files gone wrong in every way we could think of, and in ways Hypothesis thinks of.

The contract of ``io.load_model``: for any file it returns a model in eval mode (finite weights,
a dict of info) or raises ModelFileError whose message starts with the file's path; never
anything else. The property tests damage valid files byte by byte (flip, overwrite, cut,
insert) and swap parts of the JSON description for arbitrary JSON; the named tests below them
are the inputs the fuzzer (fuzz/fuzz_model.py) and review found, kept as regressions.
"""
import json
import resource
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sifir import io, models, nn
from sifir.errors import ModelFileError


def tiny_models() -> dict:
    nn.manual_seed(0)
    return {
        "mlp": nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.1), nn.Linear(3, 2, bias=False)),
        "cnn": nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(8, 2), nn.Softmax()),
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("io_fuzz")


@pytest.fixture(scope="module")
def valid(scratch) -> dict:
    """name -> (file bytes, arrays, meta) of small valid model files."""
    out = {}
    for name, model in tiny_models().items():
        path = io.save_model(scratch / f"{name}.npz", model, {"preset": name})
        arrays, meta = io.read_npz(path)
        out[name] = (path.read_bytes(), arrays, meta)
    return out


def load_or_refuse(path: Path):
    """Exactly one of: a usable model, or a ModelFileError naming the file."""
    try:
        model, info = io.load_model(path)
    except ModelFileError as e:
        assert str(e).startswith(str(path)), f"message does not name the file: {e}"
        return None
    assert isinstance(model, nn.Module) and not model.training
    assert isinstance(info, dict)
    assert all(np.isfinite(a).all() for a in model.state_dict().values())
    return model


def pack(path: Path, arrays: dict, description: str) -> Path:
    """A well-formed .npz (right CRCs) holding ``arrays`` and ``description`` as the JSON text."""
    with open(path, "wb") as f:
        np.savez(f, **arrays, **{io.META_KEY: np.array(description)})
    return path


# ------------------------------------------------------------------------- byte-level damage


@st.composite
def damaged(draw, files):
    data = bytearray(files[draw(st.sampled_from(sorted(files)))][0])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "overwrite", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bytes_load_or_are_refused(valid, scratch, data):
    path = scratch / "damaged.npz"
    path.write_bytes(data.draw(damaged(valid)))
    load_or_refuse(path)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000))
def test_any_truncation_is_refused(valid, scratch, cut):
    whole = valid["cnn"][0]
    path = scratch / "cut.npz"
    path.write_bytes(whole[: cut % len(whole)])
    assert load_or_refuse(path) is None  # every member is needed, and the directory sits at the end


# ------------------------------------------------------------------------- description damage

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


def json_paths(node, path=()):
    """Every place in a JSON tree, as a tuple of keys/indices (the root is ())."""
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from json_paths(child, path + (key,))


def replaced(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_json_anywhere_in_the_description(valid, scratch, data):
    name = data.draw(st.sampled_from(sorted(valid)))
    _, arrays, meta = valid[name]
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(json_paths(meta))))
        meta = replaced(meta, where, data.draw(JSON))
    load_or_refuse(pack(scratch / "described.npz", arrays, json.dumps(meta)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_text_as_the_description(valid, scratch, data):
    _, arrays, meta = valid["mlp"]
    text = json.dumps(meta)
    at = data.draw(st.integers(0, len(text)))
    text = text[:at] + data.draw(st.text(max_size=20)) + text[at + data.draw(st.integers(0, 20)):]
    load_or_refuse(pack(scratch / "text.npz", arrays, text))


# ------------------------------------------------------------------------- found by fuzzing


def patch_central_directory(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Set one field of every zip central-directory entry (PK\\1\\2 + offset)."""
    out, at = bytearray(data), data.find(b"PK\x01\x02")
    while at != -1:
        struct.pack_into(fmt, out, at + offset, value)
        at = data.find(b"PK\x01\x02", at + 4)
    return bytes(out)


@pytest.mark.parametrize("field,offset,fmt,value,why", [
    ("version needed", 6, "<H", 112, "zip file version"),        # NotImplementedError, found by fuzz_model.py
    ("flags", 8, "<H", 0x1, "encrypted"),                        # RuntimeError: password required
    ("method", 10, "<H", 99, "compression"),                     # NotImplementedError: AES
    ("method", 10, "<H", 8, ""),                                 # deflate over stored bytes: zlib.error
])
def test_zip_features_we_do_not_use(valid, tmp_path, field, offset, fmt, value, why):
    path = tmp_path / "odd.npz"
    path.write_bytes(patch_central_directory(valid["mlp"][0], offset, fmt, value))
    with pytest.raises(ModelFileError, match=f"not a readable sifir file.*{why}"):
        io.load_model(path)


def test_member_header_claiming_a_huge_array(valid, tmp_path):
    """An .npy header may claim any shape; the data behind it is 12 bytes."""
    _, arrays, meta = valid["mlp"]
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, a in arrays.items():
            if name == "1.weight":
                continue
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, a)
        with z.open("1.weight.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (10**12, 10**6)})
            f.write(bytes(12))
        with z.open(f"{io.META_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps(meta)))
    with pytest.raises(ModelFileError, match="liar.npz: not a readable"):
        io.load_model(path)


def test_message_names_the_file_when_the_layer_description_is_odd(valid, tmp_path):
    _, arrays, meta = valid["mlp"]
    text = json.dumps(meta).replace('"type": "Linear"', '"ty\\u00fepe": "Linear"', 1)  # fuzz_model.py found it
    path = pack(tmp_path / "m.npz", arrays, text)
    with pytest.raises(ModelFileError, match=r"m\.npz: bad layer description"):
        io.load_model(path)


@pytest.mark.parametrize("text,message", [
    ("[" * 50_000, "damaged description"),
    ('{"format": "sifir-model", "version": 1, "architecture": '
     + '{"type": "Sequential", "layers": [' * 3000 + "]}" * 3000 + "}", "nested too deeply|damaged description"),
    ('{"format": "sifir-model", "version": 1, "architecture": {"type": "Sequential"}, "info": [1]}',
     "'info' is list"),
    ('{"format": "sifir-model", "version": "1"}', "format version 1 is not a whole number"),
    ('{"format": "sifir-model", "version": 2}', "format version 2 is newer than this sifir reads"),
    ('{"format": "sifir-model", "version": 1, "architecture": {"type": ["Linear"]}}', "bad layer description"),
    ('{"format": "sifir-model", "version": 1, "architecture": {"type": "Sequential", "layers": 7}}',
     "bad layer list"),
    ('{"format": "sifir-model", "version": 1, "architecture": {"type": "Linear", "config": [2, 3]}}',
     "bad arguments for Linear"),
], ids=["deep-json", "deep-sequential", "info-list", "version-text", "newer-version", "type-list",
        "layers-int", "config-list"])
def test_odd_descriptions(tmp_path, text, message):
    path = pack(tmp_path / "m.npz", {}, text)
    with pytest.raises(ModelFileError, match=message):
        io.load_model(path)


def linear_file(tmp_path, config: dict, arrays=None) -> Path:
    meta = {"format": io.FORMAT, "version": io.FORMAT_VERSION,
            "architecture": {"type": "Sequential", "layers": [{"type": "Linear", "config": config}]}}
    arrays = arrays if arrays is not None else {"0.weight": np.zeros((2, 2), np.float32),
                                                "0.bias": np.zeros(2, np.float32)}
    return pack(tmp_path / "m.npz", arrays, json.dumps(meta))


@pytest.mark.parametrize("config,message", [
    ({"in_features": 2, "out_features": 2, "rng": "os"}, "bad arguments for Linear"),
    ({"in_features": 2, "out_features": 2, "dtype": "int8"}, "bad arguments for Linear: dtype cannot be set"),
    ({"in_features": 0, "out_features": 2}, "bad arguments for Linear: ZeroDivisionError"),
    ({"in_features": -3, "out_features": 2}, "bad arguments for Linear"),
    ({"in_features": 2.5, "out_features": 2}, "bad arguments for Linear"),
    ({"in_features": "2", "out_features": 2}, "bad arguments for Linear"),
    ({"in_features": 2, "out_features": 2, "bias": "yes", "extra": 1}, "bad arguments for Linear"),
])
def test_layer_arguments_from_a_file_are_checked(tmp_path, config, message):
    with pytest.raises(ModelFileError, match=f"m.npz: {message}"):
        io.load_model(linear_file(tmp_path, config))


def test_a_few_bytes_of_json_cannot_claim_gigabytes(tmp_path):
    """Linear(100000, 100000) would be 40 GB (80 GB while drawn in float64): refused before any
    allocation, because the file holds 6 numbers. A chain of layers that each fit is refused
    once the model outgrows io.MIN_BUDGET (2^24 values), after two 4000×4000 layers."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ModelFileError, match="describes more values than the file holds"):
        io.load_model(linear_file(tmp_path, {"in_features": 100_000, "out_features": 100_000}))
    layer = {"type": "Linear", "config": {"in_features": 4000, "out_features": 4000}}
    meta = {"format": io.FORMAT, "version": io.FORMAT_VERSION,
            "architecture": {"type": "Sequential", "layers": [layer] * 500}}
    with pytest.raises(ModelFileError, match="needs more values than the file holds"):
        io.load_model(pack(tmp_path / "chain.npz", {"0.weight": np.zeros((2, 2), np.float32)}, json.dumps(meta)))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 600_000  # KiB: not 500 layers' 32 GB


def test_weights_too_large_for_float32(tmp_path):
    arrays = {"0.weight": np.full((2, 2), 1e300), "0.bias": np.zeros(2)}
    with pytest.raises(ModelFileError, match="'0.weight' holds values too large for float32"):
        io.load_model(linear_file(tmp_path, {"in_features": 2, "out_features": 2}, arrays))


def test_float64_weights_that_fit_are_loaded(tmp_path):
    arrays = {"0.weight": np.eye(2), "0.bias": np.array([0.5, -0.5])}
    model, _ = io.load_model(linear_file(tmp_path, {"in_features": 2, "out_features": 2}, arrays))
    assert model[0].weight.data.dtype == np.float32
    np.testing.assert_array_equal(model(np.ones((1, 2), np.float32)), [[1.5, 0.5]])


# ------------------------------------------------------------------------- other architectures


def test_arrays_of_one_preset_under_the_description_of_another(tmp_path):
    """The arrays of the seed network in a file whose JSON says mlp, and the other way round."""
    nn.manual_seed(0)
    seed_arrays, seed_meta = io.read_npz(io.save_model(tmp_path / "seed.npz", models.build("seed")))
    mlp_arrays, mlp_meta = io.read_npz(io.save_model(tmp_path / "mlp.npz", models.build("mlp")))

    small = pack(tmp_path / "seed-as-mlp.npz", seed_arrays, json.dumps(mlp_meta))
    with pytest.raises(ModelFileError, match=r"seed-as-mlp.npz: '1.weight' has shape \(10, 784\), "
                                             r"the architecture needs \(800, 784\)"):
        io.load_model(small)
    big = pack(tmp_path / "mlp-as-seed.npz", mlp_arrays, json.dumps(seed_meta))
    with pytest.raises(ModelFileError, match=r"mlp-as-seed.npz: '1.weight' has shape \(800, 784\), "
                                             r"the architecture needs \(10, 784\)"):
        io.load_model(big)


def test_unwritable_target_is_a_model_file_error(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ModelFileError, match="could not write .*a-file/m.npz"):
        io.save_model(tmp_path / "a-file" / "m.npz", tiny_models()["mlp"])
    (tmp_path / "a-folder.npz").mkdir()
    with pytest.raises(ModelFileError, match="could not write .*a-folder.npz: Is a directory"):
        io.save_model(tmp_path / "a-folder.npz", tiny_models()["mlp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder.npz"]  # no temp files left


def test_a_file_that_is_not_a_zip_gets_no_advice_to_unpickle(tmp_path):
    """np.load reads non-zip bytes as a pickle and suggests allow_pickle=True; we never get there."""
    (tmp_path / "hello.npz").write_bytes(b"hello")
    np.save(tmp_path / "array.npy", np.ones(3))
    for path in (tmp_path / "hello.npz", tmp_path / "array.npy"):
        with pytest.raises(ModelFileError, match="not a readable sifir file \\(not an .npz archive\\)") as info:
            io.load_model(path)
        assert "pickle" not in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_weights_with_nan_or_infinity(tmp_path, bad):
    arrays = {"0.weight": np.array([[0.5, bad], [1.0, 2.0]]), "0.bias": np.zeros(2)}
    with pytest.raises(ModelFileError, match="'0.weight' holds NaN or infinite values"):
        io.load_model(linear_file(tmp_path, {"in_features": 2, "out_features": 2}, arrays))
