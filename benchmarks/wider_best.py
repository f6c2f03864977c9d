#!/usr/bin/env python
"""`sifir train` with the `best` preset's third stage widened: its 3×3 convolution at 7×7 makes
WIDTH channels instead of 128 (and the classifier reads WIDTH·7·7 numbers). Everything else is
the preset's recipe, so the run is the very command a user types, on a wider network: one of the
levers measured for `best` (docs/benchmarks.md, "A wider third stage").

    python benchmarks/wider_best.py 256 train --model best --seed 0 --out best-wide256-s0.npz

The model file records its layers, so `sifir evaluate` and `benchmarks/views.py` read it as
they read any other.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sifir import cli, models  # noqa: E402


def preset(width: int) -> models.Preset:
    """The `best` preset's recipe (and its data set recipes) around the wider network."""
    return replace(models.PRESETS["best"], build=partial(models.best, width=width))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not argv[0].isdigit() or int(argv[0]) < 1:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    models.PRESETS["best"] = preset(int(argv[0]))   # forked workers inherit it
    return cli.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
