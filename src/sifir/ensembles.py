"""K networks of one recipe, trained one after another and kept as one model (``nn.Ensemble``).

    member_recipes(recipe, k)        the K recipes: the same options (the same validation images
                                     too), seeds S, S+1, …, S+K−1, and the recipe's kernel sizes
                                     taken in turn (--kernels 3 5: 3×3, 5×5, 3×3, …)
    other_kernel(recipe)             a member's kernel size where it is not the preset's, else None
    member_path(out, recipe)         where a member is kept while the ensemble trains
    finished_member(path, recipe)    a member trained earlier by the very same recipe, or None
    ensemble_info(recipe, members, test_accuracy, facts)
                                     the model file's info: the ensemble's recipe and command, and
                                     each member's seed, epochs and test accuracy

Different seeds start from different weights and see the batches in another order, so the
members make partly different mistakes; averaging their probabilities (``nn.Ensemble``) cancels
some of them. Members whose convolutions differ in size (``--kernels 3 5``) differ more: they see
the digit through other windows (docs/benchmarks.md, "Other kernel sizes"). (Members that each
hold out another validation block, and so together learn from every training image, were
measured: the same test accuracy for ``best``, and the single runs of seeds S… could no longer
be the members; docs/benchmarks.md.) Each member trains as ``sifir train`` trains one network,
on every core; a member is saved as soon as it is done, so an interrupted ensemble resumes with
the next member when the same command runs again.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from . import io
from .data.inputs import DataFacts
from .errors import ModelFileError
from .recipe import Recipe

__all__ = ["MAX_MEMBERS", "member_recipes", "other_kernel", "member_path", "members_folder", "finished_member",
           "ensemble_info"]

MAX_MEMBERS = 64   # an ensemble is read by every prediction: far beyond this nothing is gained
# A member trained with another --data-dir or number of workers is still the same network; so is
# one kept in other views (they are read after training: the caller puts it in the recipe's).
_SAME_NETWORK = ("data_dir", "workers", "views")


def member_recipes(recipe: Recipe, k: int) -> list[Recipe]:
    """The recipes of the K members: ``recipe`` with seeds recipe.seed … recipe.seed + k − 1, member
    i built with kernel size ``recipe.kernels[i % len(kernels)]``. A member's recipe is the one a
    single ``sifir train`` of that seed and kernel size runs."""
    def kernels(i: int):
        return None if recipe.kernels is None else (recipe.kernels[i % len(recipe.kernels)],)
    return [dataclasses.replace(recipe, seed=recipe.seed + i, kernels=kernels(i)) for i in range(k)]


def members_folder(out) -> Path:
    """``sifir-best.npz`` -> the folder ``sifir-best.members`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".members")


def other_kernel(recipe: Recipe) -> int | None:
    """A member's kernel size where it is not its preset's (5 of ``--kernels 3 5``), else None."""
    return None if recipe.kernel == recipe.preset.kernel else recipe.kernel


def member_path(out, recipe: Recipe) -> Path:
    """``seed-S.npz`` in the members folder; ``seed-S-kK.npz`` for a kernel size not the preset's."""
    kernel = other_kernel(recipe)
    return members_folder(out) / f"seed-{recipe.seed}{'' if kernel is None else f'-k{kernel}'}.npz"


def _network_options(recipe_options: dict) -> dict:
    return {k: v for k, v in recipe_options.items() if k not in _SAME_NETWORK}


def finished_member(path, recipe: Recipe):
    """(model, info) of a member at ``path`` trained by this very recipe, or None: no file, a
    file that cannot be read (it is trained again), or one trained with other options."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        model, info = io.load_model(path)
    except ModelFileError:
        return None
    options = info.get("recipe")
    if not isinstance(options, dict):
        return None
    # a file from before folds held out the last block; one from before kernel sizes has the preset's
    kernel = recipe.preset.kernel
    options = {"fold": 0, "kernels": None if kernel is None else [kernel], **options}
    if _network_options(options) != _network_options(json.loads(json.dumps(recipe.options()))):
        return None
    return model, info


def ensemble_info(recipe: Recipe, members: list[tuple[Path, dict]], test_accuracy: float | None,
                  facts: DataFacts, one_view_accuracy: float | None = None) -> dict:
    """What the ensemble's model file keeps: ``members`` is [(member file, its info), …]; with
    views, ``one_view_accuracy`` is the members' together on the images alone."""
    k = len(members)
    views = {"one_view_test_accuracy": one_view_accuracy} if (recipe.views or 1) > 1 else {}
    return {**views, "preset": recipe.model, "seed": recipe.seed, "ensemble": k,
            "epochs": recipe.epochs, "optimizer": recipe.optimizer, "lr": recipe.lr,
            "batch_size": recipe.batch_size, "schedule": recipe.schedule, "augment": recipe.augment,
            "views": recipe.views, "test_accuracy": test_accuracy, "recipe": recipe.options(),
            "command": f"{recipe.command()} --ensemble {k}",
            "members": [{"seed": info.get("seed"), "kernels": (info.get("recipe") or {}).get("kernels"),
                         "file": str(path), "epochs": info.get("epochs"),
                         "best_epoch": info.get("best_epoch"), "test_accuracy": info.get("test_accuracy")}
                        for path, info in members],
            **facts.info()}
