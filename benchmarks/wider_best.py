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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sifir import cli, models, nn  # noqa: E402


def wider_best(width: int, classes: int = models.CLASSES) -> nn.Sequential:
    """models.best with ``width`` channels in the third convolution."""
    return nn.Sequential(
        *models._pooled_stage(1, 32),    # 32×14×14
        *models._pooled_stage(32, 64),   # 64×7×7
        nn.Conv2d(64, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),   # width×7×7
        nn.Flatten(),
        nn.Linear(width * 7 * 7, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, classes),
    )


def preset(width: int) -> models.Preset:
    """The `best` preset's recipe (and its data set recipes) around the wider network."""
    return replace(models.PRESETS["best"], build=lambda classes=models.CLASSES: wider_best(width, classes))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or not argv[0].isdigit() or int(argv[0]) < 1:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    models.PRESETS["best"] = preset(int(argv[0]))   # forked workers inherit it
    return cli.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
