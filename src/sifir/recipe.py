"""A training run's recipe: a preset plus the options that change it, checked, and turned into a
ready run (model, optimizer, schedule, augmentation, ``Trainer``).

This is the one place where the command line, the web page and the tests build a run, so the same
options mean the same thing everywhere and are refused with the same message:

    recipe = Recipe(model="seed", lr=0.5).resolved()   # the preset's recipe fills what is unset
    data = load_data(recipe)                            # normalised train / validation / test
    run = build_run(recipe, data, on_epoch=print)       # model, optimizer, schedule, Trainer
    run.trainer.fit(data.train_x, data.train_y, data.val_x, data.val_y, epochs=recipe.epochs)
    recipe.command()                                    # "sifir train --model seed --lr 0.5 …"

``resolved`` raises ``RecipeError`` (a ``SifirError`` that names the option) for a value out of
range; ``limits`` tightens the ranges for callers that must keep the machine usable (the page).
Besides the presets there is ``model="custom"``: an MLP of the learner's own, ``hidden`` widths
and an ``activation`` (``models.custom_mlp``), trained with the seed preset's recipe unless told
otherwise.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import shlex
from dataclasses import dataclass, fields
from typing import Callable, NamedTuple

import numpy as np

from . import models, nn, optim, parallel
from .augment import AUGMENTS, make_augment
from .data.datasets import DATASETS, DEFAULT as DEFAULT_DATASET, IMAGE_SHAPE
from .data.inputs import MNIST_FACTS, DataFacts
from .errors import SifirError
from .messages import language, t
from .nn.views import VIEW_SETS

# 1: the image alone; 5: and its one-pixel moves; 9: and the diagonals; 10, 18: 5, 9 and their
# mirrors; 27: 9, each also turned by ±6°; 29: 27 and the image 8 % smaller and larger
VIEWS = tuple(sorted(VIEW_SETS))
MAX_KERNELS = 8   # kernel sizes an ensemble's members take in turn


class RecipeError(SifirError):
    """An option of a run is out of range or unknown; ``field`` names it (as in ``Recipe``).

    The sentence is ``recipe.<key>`` of the message tables: ``str(error)`` speaks the default
    language, ``render(lang)`` another (the page asks in its reader's)."""

    def __init__(self, field: str, key: str, **values):
        self.field, self.key, self.values = field, key, values
        super().__init__(self.render())

    def render(self, lang: str | None = None) -> str:
        lang = language(lang)
        return t(f"recipe.{self.key}", lang, **{k: _shown(v, lang) for k, v in self.values.items()})


def _shown(value, lang: str) -> str:
    """A value inside a message: whole numbers grouped as the language groups them (65,536 in
    English, 65.536 in Turkish); anything else as the user would have typed it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}".replace(",", "." if lang == "tr" else ",")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Limits:
    """The ranges a recipe's numbers must lie in. The defaults only refuse nonsense; a server that
    trains for a web page passes tighter ones."""
    max_epochs: int = 10_000
    max_batch_size: int = 65_536
    max_lr: float = math.inf
    models: tuple[str, ...] | None = None   # the models offered (None: every preset and "custom")
    max_layers: int = 16                    # hidden layers of a custom MLP
    max_width: int = 8192                   # neurons in one of its hidden layers
    max_workers: int = 1024


# Options that are None take the preset's value; these are the ones a preset sets.
PRESET_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
                 "label_smoothing", "augment", "views", "average")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run; ``None`` means "the preset's value"."""
    model: str = "mlp"
    hidden: tuple[int, ...] | None = None   # a custom MLP's hidden widths (model="custom" only)
    activation: str | None = None           # and its nonlinearity: relu, sigmoid, tanh, leaky-relu
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    label_smoothing: float | None = None
    augment: str | None = None
    views: int | None = None       # the kept model reads each input in this many views (VIEWS, nn.Views)
    average: int | None = None     # K ≥ 2: the mean of the last K epochs' weights is kept when it
                                   # scores higher on validation (0 or 1: off; sifir.average)
    kernels: tuple[int, ...] | None = None   # the convolutions' kernel size (cnn, best; None: the
                                   # preset's 3); several: an ensemble's members take them in turn
    patience: int | None = None
    validation: int = 5000
    fold: int = 0                  # which block of `validation` training images is held out: 0 the
                                   # last, 1 the one before, … (an ensemble's members share it)
    seed: int = 0
    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    workers: int | None = None     # processes sharing the work; None: every core this process may use
                                   # (or fewer, where the preset says more would not help)

    @property
    def preset(self) -> models.Preset:
        """The preset, with the recipe it uses on this recipe's data set."""
        return models.get(self.model).for_dataset(self.dataset)

    def resolved(self, limits: Limits = Limits()) -> "Recipe":
        """This recipe with every unset option taken from the preset, each checked."""
        offered = limits.models or (*models.PRESETS, models.CUSTOM)
        if self.model not in offered:
            known = self.model in models.PRESETS or self.model == models.CUSTOM
            raise RecipeError("model", "model_not_offered" if known else "unknown_model",
                              name=self.model, choices=", ".join(offered))
        if self.dataset not in DATASETS:
            raise RecipeError("dataset", "unknown_dataset", name=self.dataset, known=", ".join(DATASETS))
        preset = self.preset
        filled = {k: getattr(preset, k) if getattr(self, k) is None else getattr(self, k) for k in PRESET_FIELDS}
        filled["augment"] = filled["augment"] or "none"
        if self.model == models.CUSTOM:
            filled["hidden"] = models.CUSTOM_HIDDEN if self.hidden is None else self.hidden
            filled["activation"] = self.activation or models.CUSTOM_ACTIVATION
        else:
            for name in ("hidden", "activation"):
                if getattr(self, name) is not None:
                    raise RecipeError(name, "custom_only", option=_label(name), custom=models.CUSTOM)
        filled["kernels"] = self._kernels(preset)
        recipe = dataclasses.replace(self, **filled)
        recipe._check(limits)
        if recipe.hidden is not None:
            recipe = dataclasses.replace(recipe, hidden=tuple(int(h) for h in recipe.hidden))
        return recipe

    def _kernels(self, preset: models.Preset) -> tuple[int, ...] | None:
        """``kernels`` checked, as a tuple (a page or a file sends a list): the preset's one size when
        unset; None for a network without a choice of kernel (and refused when set there)."""
        if preset.kernel is None:   # the MLPs, fast and custom
            if self.kernels is not None:
                with_kernels = ", ".join(name for name, p in models.PRESETS.items() if p.kernel is not None)
                raise RecipeError("kernels", "kernels_not_here", option=_label("kernels"), name=self.model,
                                  models=with_kernels)
            return None
        if self.kernels is None:
            return (preset.kernel,)
        if not isinstance(self.kernels, (list, tuple)) or not 1 <= len(self.kernels) <= MAX_KERNELS:
            raise RecipeError("kernels", "kernels_count", option=_label("kernels"), high=MAX_KERNELS,
                              value=_short(self.kernels))
        for k in self.kernels:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k not in models.KERNELS:
                raise RecipeError("kernels", "choice", option=_label("kernels"),
                                  choices=", ".join(map(str, models.KERNELS)), value=_short(k))
        return tuple(int(k) for k in self.kernels)

    @property
    def kernel(self) -> int | None:
        """The kernel size one network of this recipe is built with (the first of ``kernels``)."""
        return self.kernels[0] if self.kernels else None

    def build_model(self, classes: int = models.CLASSES) -> nn.Module:
        """The untrained network of this (resolved) recipe, with ``classes`` outputs."""
        if self.model == models.CUSTOM:
            return models.custom_mlp(self.hidden, self.activation, classes)
        if self.kernel is not None:
            return self.preset.build(classes, kernel=self.kernel)
        return self.preset.build(classes)

    def _check(self, limits: Limits) -> None:
        if self.model == models.CUSTOM:
            if not isinstance(self.hidden, (list, tuple)) or not 1 <= len(self.hidden) <= limits.max_layers:
                raise RecipeError("hidden", "hidden_count", high=limits.max_layers,
                                  value=_short(self.hidden))
            for width in self.hidden:
                _integer("hidden", width, 1, limits.max_width)
            _choice("activation", self.activation, models.ACTIVATIONS)
        _integer("epochs", self.epochs, 1, limits.max_epochs)
        _integer("batch_size", self.batch_size, 1, limits.max_batch_size)
        _number("lr", self.lr, 0, limits.max_lr, open_low=True)
        _choice("optimizer", self.optimizer, optim.OPTIMIZERS)
        _number("momentum", self.momentum, 0, 1, open_high=True)
        _number("weight_decay", self.weight_decay, 0, 1)
        _choice("schedule", self.schedule, optim.SCHEDULES)
        _number("label_smoothing", self.label_smoothing, 0, 1, open_high=True)
        _choice("augment", self.augment, AUGMENTS)
        if isinstance(self.views, bool) or not isinstance(self.views, (int, np.integer)) or self.views not in VIEWS:
            raise RecipeError("views", "views", option=_label("views"), choices=", ".join(map(str, VIEWS)),
                              value=_short(self.views))
        _integer("average", self.average, 0, self.epochs)
        if self.patience is not None:
            _integer("patience", self.patience, 1, 10_000)
        _integer("validation", self.validation, 1, 59_999)
        _integer("fold", self.fold, 0, 59_998)
        _integer("seed", self.seed, 0, 2**32 - 1)
        if self.workers is not None:
            _integer("workers", self.workers, 1, limits.max_workers)

    def options(self) -> dict:
        """The recipe as a plain dict (JSON-ready), in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def command(self) -> str:
        """The ``sifir train …`` command that trains this very run (same seed and number of
        workers: same weights)."""
        parts = ["sifir", "train", "--model", self.model]
        if self.model == models.CUSTOM:   # the architecture itself: always said
            parts += ["--hidden", *map(str, self.hidden), "--activation", self.activation]
        preset = self.preset
        if self.kernels is not None and tuple(self.kernels) != (preset.kernel,):
            parts += ["--kernels", *map(str, self.kernels)]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "data_dir", "hidden", "activation", "kernels") or value is None:
                continue
            default = getattr(preset, f.name, f.default) if f.name in PRESET_FIELDS else f.default
            if f.name == "augment":
                default = default or "none"
            if value == default:
                continue
            parts += [_label(f.name), _exact(value)]
        if self.data_dir:
            parts += ["--data-dir", self.data_dir]
        return " ".join(shlex.quote(p) for p in parts)


def _label(field: str) -> str:
    return "--" + field.replace("_", "-")


def _exact(value) -> str:
    """A number as the command line should carry it: short (0.001, 1e+09) when that reads back
    as the very same float, else every digit, so the command reproduces the run bit for bit."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _integer(field: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise RecipeError(field, "integer", option=_label(field), low=low, high=high, value=_short(value))


def _number(field: str, value, low: float, high: float, open_low=False, open_high=False) -> None:
    ok = (isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if open_low else value >= low) and (value < high if open_high else value <= high))
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise RecipeError(field, "number", option=_label(field), interval=f"{left}{low:g}, {high:g}{right}",
                          value=_short(value))


def _choice(field: str, value, known) -> None:
    if not isinstance(value, str) or value not in known:
        raise RecipeError(field, "choice", option=_label(field), choices=", ".join(known), value=_short(value))


# -- data -------------------------------------------------------------------------------------
class Data(NamedTuple):
    """Normalised images (N, 1, 28, 28) float32 and int64 labels: train, validation, test; and
    the data set's facts (its name, class names and normalisation)."""
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    facts: DataFacts = MNIST_FACTS


def load_data(recipe: Recipe, log: Callable = print) -> Data:
    """The data set the recipe trains on (``recipe.dataset``), split (``validation`` training
    images held out: the last ones, or block ``fold`` counted from the end) and normalised with its
    own pixel statistics."""
    from .data.inputs import folds, normalize, split_validation
    from .data.load import load
    data = load(recipe.dataset, recipe.data_dir, log=log)
    if recipe.validation >= len(data.train_images):
        raise RecipeError("validation", "validation_too_big", images=len(data.train_images),
                          title=data.facts.title, validation=recipe.validation)
    blocks = folds(len(data.train_images), recipe.validation)
    if recipe.fold >= blocks:
        raise RecipeError("fold", "fold_too_big", blocks=blocks, images=len(data.train_images),
                          title=data.facts.title, validation=recipe.validation, fold=recipe.fold)
    train_x, train_y, val_x, val_y = split_validation(data.train_images, data.train_labels, recipe.validation,
                                                      recipe.fold)
    mean, std = data.facts.mean, data.facts.std
    return Data(normalize(train_x, mean, std), train_y.astype(np.int64), normalize(val_x, mean, std),
                val_y.astype(np.int64), normalize(data.test_images, mean, std), data.test_labels.astype(np.int64),
                data.facts)


# -- the run ----------------------------------------------------------------------------------
@dataclass
class Run:
    """What ``build_run`` makes: the parts of one training run, ready for ``trainer.fit``."""
    recipe: Recipe
    model: nn.Module
    optimizer: optim.Optimizer
    schedule: object
    loss_fn: nn.CrossEntropyLoss
    trainer: object   # train.Trainer (imported lazily: train imports io, io imports nn)
    facts: DataFacts = MNIST_FACTS

    def kept_model(self) -> nn.Module:
        """The model a finished run keeps: the trained network, read in the recipe's views."""
        return in_views(self.model, self.recipe.views, self.facts)

    def plain_model(self) -> nn.Module | None:
        """With averaging, when the average was kept: the best epoch's own weights (the run
        without averaging), read in the recipe's views; else None (the kept model is that)."""
        t = self.trainer
        if t.best_source != "average" or t.best_state is None:
            return None
        net = copy.deepcopy(self.model)
        net.load_state_dict(t.best_state)
        return in_views(net, self.recipe.views, self.facts)

    def info(self, test_accuracy: float | None, one_view_accuracy: float | None = None) -> dict:
        """The facts a model file keeps about how it was trained, and on what (the data set,
        its class names, the input normalisation). With views, ``one_view_accuracy`` is the
        network's test accuracy on the images alone."""
        r, t = self.recipe, self.trainer
        views = {"views": r.views, "one_view_test_accuracy": one_view_accuracy} if (r.views or 1) > 1 else {}
        return {**views, **self._average_info(test_accuracy), "preset": r.model, "seed": r.seed,
                "workers": t.workers, "epochs": t.epoch, "best_epoch": t.best_epoch,
                "optimizer": r.optimizer, "lr": r.lr, "batch_size": r.batch_size, "schedule": r.schedule,
                "augment": r.augment, "test_accuracy": test_accuracy, "recipe": r.options(),
                "command": r.command(), "history": [vars(h) for h in t.history], **self.facts.info()}

    def _average_info(self, test_accuracy: float | None) -> dict:
        """With averaging: the window and its validation score, and what was kept. The best
        epoch's own test accuracy (the run without averaging) is ``test_accuracy`` when those
        weights were kept; else the caller sets ``plain_test_accuracy`` (``plain_model``)."""
        t = self.trainer
        if t.average is None or t.average_score is None:
            return {}
        info = {"average": t.average.k, "average_epochs": list(t.average.epochs),
                "average_score": t.average_score, "kept": t.best_source}
        if t.best_source == "epoch":
            info["plain_test_accuracy"] = test_accuracy
        return info


def in_views(net: nn.Module, views: int | None, facts: DataFacts = MNIST_FACTS) -> nn.Module:
    """``net`` read in ``views`` views (``nn.Views``; the network alone for 1 or None), an
    ensemble's members each. Views are read after training, so a network kept in other views is
    unwrapped first: the same trained network in any number of views. The uncovered border of a
    moved image is the background, a blank pixel (0) once normalised with the data set's mean and std."""
    if isinstance(net, nn.Ensemble):
        return nn.Ensemble(*(in_views(member, views, facts) for member in net))
    net = net.net if isinstance(net, nn.Views) else net
    if (views or 1) == 1:
        return net
    return nn.Views(net, views, fill=(0.0 - facts.mean) / facts.std, image=IMAGE_SHAPE)


def test_accuracies(kept: nn.Module, data: "Data") -> tuple[float, float | None]:
    """(test accuracy of the model as kept, of its networks on the images alone), the second
    None when the model reads the images alone anyway."""
    from .train import evaluate
    accuracy = evaluate(kept, data.test_x, data.test_y)[1]
    if nn.views_of(kept) == 1:
        return accuracy, None
    return accuracy, evaluate(in_views(kept, 1), data.test_x, data.test_y)[1]


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                   nesterov: bool = False, betas: tuple[float, float] | None = None):
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         nesterov=nesterov and momentum > 0)
    return optim.OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **({"betas": betas} if betas else {}))


def make_schedule(name: str, optimizer, total_steps: int, warmup_steps: int = 0):
    if name == "constant":
        return None
    if name == "step":  # ÷10 at 50% and 75% of training is approximated by ×0.1 every third
        return optim.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    if name == "cosine":
        return optim.CosineLR(optimizer, total=total_steps, warmup=warmup_steps)
    if name == "onecycle":
        return optim.OneCycleLR(optimizer, total=total_steps)
    raise RecipeError("schedule", "choice", option="--schedule", choices=", ".join(optim.SCHEDULES), value=name)


def build_run(recipe: Recipe, n_train: int, *, on_batch: Callable | None = None,
              on_epoch: Callable | None = None, checkpoint_dir=None, facts: DataFacts = MNIST_FACTS) -> Run:
    """Model, optimizer, schedule, loss and ``Trainer`` for a resolved recipe and ``n_train``
    training images of the data set described by ``facts`` (``Data.facts``: the number of
    classes sizes the last layer, the normalisation the augmentation's background). Seeds the
    initialisation with ``recipe.seed`` first, so the same recipe builds the same weights (and,
    with the same number of workers, trains the same weights)."""
    from .train import Trainer
    nn.manual_seed(recipe.seed)
    model = recipe.build_model(len(facts.classes))
    optimizer = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.momentum,
                               recipe.weight_decay, betas=recipe.preset.betas)
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    schedule = make_schedule(recipe.schedule, optimizer, recipe.epochs * steps_per_epoch,
                             int(recipe.preset.warmup_epochs * steps_per_epoch))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    trainer = Trainer(model, optimizer, loss_fn, batch_size=recipe.batch_size, seed=recipe.seed,
                      schedule=schedule, augment=make_augment(recipe.augment, (0.0 - facts.mean) / facts.std),
                      on_batch=on_batch, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir, patience=recipe.patience,
                      workers=recipe.workers or default_workers(recipe.preset, model), average=recipe.average)
    return Run(recipe, model, optimizer, schedule, loss_fn, trainer, facts)


def default_workers(preset: models.Preset, model: nn.Module | None = None) -> int:
    """Every core this process may use for a network with convolutions, one worker (its BLAS on
    every core) for one of matrix products alone (``parallel.default_workers``), and never more
    than the preset's cap."""
    cores = parallel.usable_cores() if model is None else parallel.default_workers(model)
    return min(cores, preset.max_workers) if preset.max_workers else cores
