"""Save and load models and checkpoints: ``.npz`` arrays plus a JSON description.

A file holds the arrays under dotted names (``0.weight``) and one extra entry, ``__sifir__``,
a JSON string with the format, its version and the architecture. Loading never unpickles
(``allow_pickle=False``) and builds layers only from ``nn.LAYERS``, so a file is data, never
code. Every write goes to a temporary file in the same folder, is flushed to disk and then
renamed over the target, so a crash leaves either the old file or the new one, never half.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

from . import nn
from .errors import ModelFileError
from .nn import init as nn_init

FORMAT = "sifir-model"
FORMAT_VERSION = 1
META_KEY = "__sifir__"


# -- architecture <-> JSON --------------------------------------------------------------------
def describe(module: nn.Module) -> dict:
    """The architecture as plain JSON data: type names and constructor arguments."""
    if isinstance(module, nn.Sequential):
        return {"type": "Sequential", "layers": [describe(layer) for layer in module]}
    if isinstance(module, nn.Ensemble):
        return {"type": "Ensemble", "members": [describe(member) for member in module]}
    if isinstance(module, nn.Views):
        return {"type": "Views", "config": module.config(), "net": describe(module.net)}
    return {"type": type(module).__name__, "config": module.config()}


# Up to this many values (64 MB in float32) a description is built even when the file holds
# fewer: room for parameter-free layers (pooling windows, strides), and for a precise message
# ("'1.weight' has shape …") rather than a count when the arrays belong to another model.
MIN_BUDGET = 1 << 24


def build(spec: dict, budget: int | None = None) -> nn.Module:
    """Rebuild a module from ``describe``'s output; unknown types and arguments are refused.

    ``budget`` is how many values the file's arrays hold. A valid description never needs more,
    so a layer whose sizes multiply past it is refused before it allocates, and so is a model
    that has outgrown it: a few bytes of JSON must not cost gigabytes. Up to MIN_BUDGET the
    model is built anyway, so that ``check_state`` can name the array whose shape is wrong.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ModelFileError(f"bad layer description: {_short(spec)}")
    kind = spec["type"]
    if kind == "Sequential":
        return _build_sequential(spec.get("layers", []), budget)
    if kind == "Ensemble":
        return _build_ensemble(spec.get("members", []), budget)
    if kind == "Views":
        return _build_views(spec, budget)
    cls = nn.LAYERS.get(kind)
    if cls is None:
        raise ModelFileError(f"unknown layer type '{_short(kind)}' (this sifir knows {', '.join(sorted(nn.LAYERS))})")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ModelFileError(f"bad arguments for {kind}: {_short(config)}")
    if budget is not None and math.prod(_sizes(config)) > max(budget, MIN_BUDGET):
        raise ModelFileError(f"{kind} {_short(config)} describes more values than the file holds ({budget:,})")
    try:
        layer = cls(**config)
    except Exception as e:  # noqa: BLE001 - a constructor fed odd JSON fails in many ways
        raise ModelFileError(f"bad arguments for {kind}: {type(e).__name__}: {_short(str(e))}") from None
    unknown = sorted(set(config) - set(layer.config()))  # e.g. "rng" or "dtype": not ours to set
    if unknown:
        raise ModelFileError(f"bad arguments for {kind}: {', '.join(unknown)} cannot be set from a file")
    return layer


def _build_sequential(layers, budget: int | None) -> nn.Sequential:
    if not isinstance(layers, list):
        raise ModelFileError(f"bad layer list: {_short(layers)}")
    model = nn.Sequential()
    for spec in layers:
        model.append(build(spec, budget))
        if budget is not None and sum(a.size for a in model.state_dict().values()) > max(budget, MIN_BUDGET):
            raise ModelFileError(f"the architecture needs more values than the file holds ({budget:,}): "
                                 "its arrays belong to another model, or the file is damaged")
    return model


def _build_ensemble(members, budget: int | None) -> nn.Ensemble:
    if not isinstance(members, list) or not members:
        raise ModelFileError(f"bad ensemble: 'members' must be a non-empty list, got {_short(members)}")
    built = []
    for spec in members:
        built.append(build(spec, budget))
        if budget is not None and sum(sum(a.size for a in m.state_dict().values()) for m in built) > max(
                budget, MIN_BUDGET):
            raise ModelFileError(f"the ensemble needs more values than the file holds ({budget:,}): "
                                 "its arrays belong to another model, or the file is damaged")
    return nn.Ensemble(*built)


def _build_views(spec: dict, budget: int | None) -> nn.Views:
    config = spec.get("config", {})
    if not isinstance(config, dict) or set(config) - {"views", "fill", "image"}:
        raise ModelFileError(f"bad arguments for Views: {_short(config)}")
    fill = config.get("fill", 0.0)
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not math.isfinite(fill):
        raise ModelFileError(f"bad arguments for Views: fill must be a finite number, got {_short(fill)}")
    net = spec.get("net")
    if isinstance(net, dict) and net.get("type") == "Views":
        raise ModelFileError("bad arguments for Views: a network already read in views cannot be wrapped again")
    built = build(net, budget)
    try:
        return nn.Views(built, **config)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"bad arguments for Views: {_short(str(e))}") from None


def _sizes(value) -> list[int]:
    """The positive whole numbers in a layer's config (inside lists too): sizes, windows, strides."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _sizes(v)]
    if isinstance(value, list):
        return [n for v in value for n in _sizes(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) and value > 0 else []


def _short(value, limit: int = 80) -> str:
    """A value from a file for a message: repr, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def count_parameters(model: nn.Module) -> dict:
    """Weights (matrices and kernels) and biases counted apart, as the tutorial counts W1, W2."""
    weights = sum(p.size for name, p in model.named_parameters() if not name.endswith("bias"))
    biases = sum(p.size for name, p in model.named_parameters() if name.endswith("bias"))
    return {"weights": weights, "biases": biases, "total": weights + biases}


# -- atomic writes ----------------------------------------------------------------------------
def write_npz_atomic(path, arrays: dict, meta: dict) -> Path:
    """Write arrays + JSON meta to ``path`` via temp file, fsync and rename (``write_atomic``)."""
    payload = dict(arrays)
    payload[META_KEY] = np.array(json.dumps(meta))
    return write_atomic(path, lambda f: np.savez(f, **payload))


def write_atomic(path, write) -> Path:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, fsync it and rename it
    over ``path``: readers see the old file or the new one, never half of either.

    An OSError (disk full, no permission, a file where the folder should be) becomes a
    ModelFileError naming the file; the temporary file is gone and ``path`` is as it was."""
    path = Path(path)
    try:
        _write_atomic(path, write)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and Path(e.filename) in path.parents else ""  # mkdir
        raise ModelFileError(f"could not write {path}: {e.strerror or e}{where}") from e
    return path


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); harmless where directories can't be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_npz(path, expected_format: str = FORMAT) -> tuple[dict, dict]:
    """Read arrays and meta, refusing anything that is not a sifir file of a known version."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if head not in (b"PK\x03\x04", b"PK\x05\x06"):  # an .npz is a zip archive (PK\5\6: an empty one)
        # Checked here so that np.load never gets to suggest unpickling an unknown file.
        raise ModelFileError(f"{path}: not a readable sifir file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception as e:  # noqa: BLE001 - zipfile and NumPy report damage as many types:
        # BadZipFile, NotImplementedError (zip version/method), RuntimeError (encrypted member),
        # zlib.error, MemoryError (a header claiming a huge array), ValueError, EOFError…
        raise ModelFileError(f"{path}: not a readable sifir file ({type(e).__name__}: {e})") from None
    if META_KEY not in arrays:
        raise ModelFileError(f"{path}: not a sifir file (no '{META_KEY}' entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (ValueError, TypeError, RecursionError) as e:  # RecursionError: "[[[[…" nested too deep
        raise ModelFileError(f"{path}: damaged description ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ModelFileError(f"{path}: not a {expected_format} file")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: damaged description (format version {_short(version)} is not a whole number)")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {version} is newer than this sifir reads "
                             f"({FORMAT_VERSION}); upgrade sifir")
    return arrays, meta


def check_state(path, model: nn.Module, arrays: dict, prefix: str = "") -> dict:
    """The arrays named ``prefix + name`` must match the model's names, shapes and dtypes
    and hold only finite numbers."""
    expected = model.state_dict()
    state = {}
    for name, target in expected.items():
        key = prefix + name
        if key not in arrays:
            raise ModelFileError(f"{path}: missing array '{key}' for this architecture")
        a = arrays[key]
        if a.shape != target.shape:
            raise ModelFileError(f"{path}: '{key}' has shape {a.shape}, the architecture needs {target.shape}")
        if a.dtype.kind != "f":
            raise ModelFileError(f"{path}: '{key}' has dtype {a.dtype}, expected floating point")
        with np.errstate(over="ignore"):
            cast = a.astype(target.dtype, copy=False)  # float64 1e300 is finite, but inf in float32
        if not np.all(np.isfinite(cast)):  # one pass; the original tells which of the two it was
            problem = "NaN or infinite values" if not np.all(np.isfinite(a)) else f"values too large for {target.dtype}"
            raise ModelFileError(f"{path}: '{key}' holds {problem}")
        state[name] = cast
    extra = sorted(k for k in arrays if k.startswith(prefix) and k[len(prefix):] not in expected)
    if prefix == "" and extra:
        raise ModelFileError(f"{path}: arrays {extra} do not belong to the architecture")
    return state


# -- models -----------------------------------------------------------------------------------
def save_model(path, model: nn.Module, info: dict | None = None) -> Path:
    """Save weights and architecture (plus free-form ``info``: preset, accuracy, history…)."""
    return write_npz_atomic(path, *_model_contents(model, info))


def model_bytes(model: nn.Module, info: dict | None = None) -> bytes:
    """The very file ``save_model`` writes, as bytes (a download: the server writes nothing)."""
    arrays, meta = _model_contents(model, info)
    out = BytesIO()
    np.savez(out, **arrays, **{META_KEY: np.array(json.dumps(meta))})
    return out.getvalue()


def _model_contents(model: nn.Module, info: dict | None) -> tuple[dict, dict]:
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "architecture": describe(model),
            "parameters": count_parameters(model), "info": info or {}}
    arrays = {name: np.ascontiguousarray(a) for name, a in model.state_dict().items()}
    return arrays, meta


def model_from(architecture: dict, state: dict, where: str = "the model") -> nn.Module:
    """A model rebuilt from ``describe``'s output and a state dict (checked as a file's would be),
    in eval mode; the global random numbers are left as they were."""
    rng_state = nn_init.get_rng().bit_generator.state
    try:
        model = build(architecture, budget=sum(a.size for a in state.values()))
    finally:
        nn_init.get_rng().bit_generator.state = rng_state
    model.load_state_dict(check_state(where, model, state))
    return model.eval()


def load_model(path) -> tuple[nn.Module, dict]:
    """Load a model saved by ``save_model``; returns (model in eval mode, info)."""
    arrays, meta = read_npz(path)
    info = meta.get("info", {})
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: damaged description ('info' is {type(info).__name__}, not an object)")
    # Building a layer draws initial weights from the global seeded generator; loading must not
    # shift the random numbers of whatever runs next (shuffling, dropout), so keep its state.
    rng_state = nn_init.get_rng().bit_generator.state
    try:
        model = build(meta.get("architecture", {}), budget=sum(a.size for a in arrays.values()))
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: the architecture is nested too deeply") from None
    finally:
        nn_init.get_rng().bit_generator.state = rng_state
    model.load_state_dict(check_state(path, model, arrays))
    return model.eval(), info


def data_facts(path, model: nn.Module, info: dict):
    """What a loaded model knows of its data (``sifir.data.inputs.DataFacts``): the data set, the
    name of each output, the input normalisation. Files written before these were recorded
    were trained on MNIST and read as such."""
    from .data.inputs import DataFacts
    outputs = int(model(np.zeros((1, 1, 28, 28), np.float32)).shape[-1])   # model is in eval mode
    try:
        return DataFacts.from_info(info, outputs)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
