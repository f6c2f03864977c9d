"""Fuzz target for sifir's model files (atheris / libFuzzer).

The contract under test: for ANY model file, `sifir.io.load_model` either returns a model in
eval mode or raises ModelFileError naming the file, and never anything else (no BadZipFile,
KeyError, TypeError from a strange architecture, MemoryError from a lying header, no
unpickling). A model it returns holds only finite weights, and its info is a dict.

An input is one of two things:
- bytes starting with the zip magic ``PK``: the whole file, damaged at the byte level;
- anything else: byte 0 picks the arrays of one seed model, the rest is the JSON description
  (``__sifir__``). They are packed into a well-formed .npz, so the zip CRCs are right and the
  fuzzer reaches the description and architecture checks (a byte-level mutation of the
  description almost always fails the member's CRC first).

    pip install atheris
    mkdir -p /tmp/model-corpus   # new inputs go to the first folder; keep the seeds clean
    python fuzz/fuzz_model.py /tmp/model-corpus fuzz/corpus_models -max_total_time=60

See fuzz/README.md.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

# Instrument sifir only (atheris filters by top-level package): NumPy's and zipfile's
# branches would drown sifir's own checks in coverage noise.
with atheris.instrument_imports(include=["sifir"]):
    from sifir import io, nn
    from sifir.errors import ModelFileError

# One file, rewritten for every input: a fresh temp file per run would cost more than the load.
_FOLDER = tempfile.mkdtemp(prefix="sifir-fuzz-model-")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
_PATH = os.path.join(_FOLDER, "model.npz")
# The arrays of the seed models (see make_corpus.py), in a fixed order for byte 0 to pick from.
SEEDS = [io.read_npz(p)[0] for p in sorted((Path(__file__).parent / "corpus_models").glob("*.npz.seed"))]


def _write(data: bytes) -> None:
    if data[:2] == b"PK":
        with open(_PATH, "wb") as f:
            f.write(data)
        return
    arrays = SEEDS[data[0] % len(SEEDS)] if data else {}
    description = data[1:].decode("utf-8", errors="replace")
    with open(_PATH, "wb") as f:
        np.savez(f, **arrays, **{io.META_KEY: np.array(description)})


def TestOneInput(data: bytes) -> None:
    _write(data)
    try:
        model, info = io.load_model(_PATH)
    except ModelFileError as e:
        assert str(e).startswith(_PATH), f"message does not name the file: {e}"
        return
    assert isinstance(model, nn.Module) and not model.training
    assert isinstance(info, dict), f"info is {type(info).__name__}, callers expect a dict"
    for name, a in model.state_dict().items():
        assert np.all(np.isfinite(a)), f"{name} holds NaN or inf after a successful load"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
