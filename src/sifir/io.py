"""Save and load models and checkpoints: ``.npz`` arrays plus a JSON description.

A file holds the arrays under dotted names (``0.weight``) and one extra entry, ``__sifir__``,
a JSON string with the format, its version and the architecture. Loading never unpickles
(``allow_pickle=False``) and builds layers only from ``nn.LAYERS``, so a file is data, never
code. Every write goes to a temporary file in the same folder, is flushed to disk and then
renamed over the target, so a crash leaves either the old file or the new one, never half.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import nn
from .errors import ModelFileError

FORMAT = "sifir-model"
FORMAT_VERSION = 1
META_KEY = "__sifir__"


# -- architecture <-> JSON --------------------------------------------------------------------
def describe(module: nn.Module) -> dict:
    """The architecture as plain JSON data: type names and constructor arguments."""
    if isinstance(module, nn.Sequential):
        return {"type": "Sequential", "layers": [describe(layer) for layer in module]}
    return {"type": type(module).__name__, "config": module.config()}


def build(spec: dict) -> nn.Module:
    """Rebuild a module from ``describe``'s output; unknown types are refused."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ModelFileError(f"bad layer description: {spec!r}")
    kind = spec["type"]
    if kind == "Sequential":
        return nn.Sequential(*(build(layer) for layer in spec.get("layers", [])))
    cls = nn.LAYERS.get(kind)
    if cls is None:
        raise ModelFileError(f"unknown layer type '{kind}' (this sifir knows {', '.join(sorted(nn.LAYERS))})")
    try:
        return cls(**spec.get("config", {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"bad arguments for {kind}: {e}") from None


def count_parameters(model: nn.Module) -> dict:
    """Weights (matrices and kernels) and biases counted apart, as the tutorial counts W1, W2."""
    weights = sum(p.size for name, p in model.named_parameters() if not name.endswith("bias"))
    biases = sum(p.size for name, p in model.named_parameters() if name.endswith("bias"))
    return {"weights": weights, "biases": biases, "total": weights + biases}


# -- atomic npz -------------------------------------------------------------------------------
def write_npz_atomic(path, arrays: dict, meta: dict) -> Path:
    """Write arrays + JSON meta to ``path`` via temp file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    payload = dict(arrays)
    payload[META_KEY] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ModelFileError(f"{path}: not a readable sifir file ({type(e).__name__}: {e})") from None
    if META_KEY not in arrays:
        raise ModelFileError(f"{path}: not a sifir file (no '{META_KEY}' entry)")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (json.JSONDecodeError, TypeError) as e:
        raise ModelFileError(f"{path}: damaged description ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ModelFileError(f"{path}: not a {expected_format} file")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
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
        if not np.all(np.isfinite(a)):
            raise ModelFileError(f"{path}: '{key}' holds NaN or infinite values")
        state[name] = a
    extra = sorted(k for k in arrays if k.startswith(prefix) and k[len(prefix):] not in expected)
    if prefix == "" and extra:
        raise ModelFileError(f"{path}: arrays {extra} do not belong to the architecture")
    return state


# -- models -----------------------------------------------------------------------------------
def save_model(path, model: nn.Module, info: dict | None = None) -> Path:
    """Save weights and architecture (plus free-form ``info``: preset, accuracy, history…)."""
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "architecture": describe(model),
            "parameters": count_parameters(model), "info": info or {}}
    arrays = {name: np.ascontiguousarray(a) for name, a in model.state_dict().items()}
    return write_npz_atomic(path, arrays, meta)


def load_model(path) -> tuple[nn.Module, dict]:
    """Load a model saved by ``save_model``; returns (model in eval mode, info)."""
    arrays, meta = read_npz(path)
    model = build(meta.get("architecture", {}))
    model.load_state_dict(check_state(path, model, arrays))
    return model.eval(), meta.get("info", {})
