"""Fuzz target for the picture path of `sifir predict` and the drawing page (atheris / libFuzzer).

The contract under test: for ANY bytes, `load_image` followed by `preprocess` either gives a
finite float32 (28, 28) array in [0, 1] or raises ImageError, and never anything else (no
OSError, ValueError, ZeroDivisionError or MemoryError from Pillow or NumPy, no hang).

    pip install atheris
    mkdir -p /tmp/image-corpus   # new inputs go to the first folder; keep the seeds clean
    python fuzz/fuzz_preprocess.py /tmp/image-corpus fuzz/corpus_images -max_total_time=60

See fuzz/README.md.
"""

import sys

import atheris
import numpy as np

# Instrument sifir and Pillow (atheris filters by top-level package). Pillow's header parsers
# (PngImagePlugin, TiffImagePlugin, …) are Python and give the fuzzer its coverage signal; its
# pixel decoders are C that atheris cannot see into. Image.init() imports every format plugin
# now, inside the block, where load_image would otherwise import them uninstrumented.
with atheris.instrument_imports(include=["sifir", "PIL"]):
    from PIL import Image, ImageOps  # noqa: F401 - imported to be instrumented

    Image.init()
    from sifir import preprocess as pp
    from sifir.errors import ImageError
    from sifir.preprocess import load_image, preprocess

# A fuzzer soon learns to write headers claiming big pictures. sifir refuses them from the
# header (MAX_PIXELS, 40 MP); a lower limit here takes the same branch and keeps each run quick
# (decoding tens of megapixels takes seconds). The full-size limit is tested in test_preprocess.
pp.MAX_PIXELS = 4_000_000


def TestOneInput(data: bytes) -> None:
    try:
        out = preprocess(load_image(data))
    except ImageError as e:
        assert str(e), "an ImageError must say what was wrong"
        return
    assert isinstance(out, np.ndarray) and out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0, "output outside [0, 1]"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
