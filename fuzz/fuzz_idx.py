"""Fuzz target for sifir's IDX reader (atheris / libFuzzer).

The contract under test: for ANY bytes, `parse_idx` returns an array or raises IDXError, and
never anything else (no IndexError, MemoryError, ValueError from NumPy, hang...). When it does
return an array, writing that array back must give the exact IDX bytes that were read.

    pip install atheris
    mkdir -p /tmp/idx-corpus   # new inputs go to the first folder; keep the seeds clean
    python fuzz/fuzz_idx.py /tmp/idx-corpus fuzz/corpus_idx -atheris_runs=200000

See fuzz/README.md.
"""

import gzip
import sys

import atheris
import numpy as np

# Instrument sifir only (atheris filters by top-level package): coverage inside NumPy is noise.
with atheris.instrument_imports(include=["sifir"]):
    from sifir.data.idx import encode_idx, parse_idx
    from sifir.errors import IDXError


def _decompressed(data: bytes) -> bytes:
    """The IDX bytes the reader saw: gzip is detected by its magic, as in read_idx."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def TestOneInput(data: bytes) -> None:
    try:
        arr = parse_idx(data, "fuzz")
    except IDXError as e:
        assert str(e).startswith("fuzz: "), f"message does not name the file: {e}"
        return
    assert isinstance(arr, np.ndarray) and arr.dtype.isnative and arr.flags.writeable
    # Accepted input is exactly header + payload: re-encoding reproduces it byte for byte.
    assert encode_idx(arr) == _decompressed(data), "round trip changed the bytes"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
