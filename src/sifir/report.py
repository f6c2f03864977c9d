"""`sifir report`: pictures of what a trained network learned, and one page that shows them.

Every picture is made in two steps: a plain function computes its data from the model (NumPy
only, in ``sifir.figures``, shared with the Learn page: ``learning_curves``, ``confusion_data``,
``predictions``, ``misclassified``, ``first_layer_images``, ``activation_samples``,
``weight_matrices``), and a ``draw_*`` function turns that data into a matplotlib figure. Tests
compare the figures' data with what the model computes. The tutorial draws its pictures with the
same functions (``show`` puts them inline in a notebook).

matplotlib (the ``plots`` extra) is imported only when drawing, so the core needs NumPy alone.
Figures are drawn on matplotlib's ``Figure`` with the Agg canvas, never through pyplot: no
global state, no window, safe in a server.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import io, nn
from .data.inputs import DataFacts
from .errors import SifirError
from .figures import (activation_samples, confusion_data, first_layer_images,  # noqa: F401 - re-exported
                      first_learnable, learning_curves, misclassified, predictions, weight_matrices)
from .train import predict_logits

DPI = 100                # figure inches × DPI = PNG pixels
PANEL_HEIGHT = 3.2       # inches per row of histogram panels
PANELS_PER_ROW = 3
GRID_LIMIT = 64          # at most this many first-layer images in the grid
INSTALL_HINT = "pip install 'sifir[plots]'"


@dataclass
class Picture:
    """One PNG of the report: its file name, title, caption, the data it shows, and the figure."""
    name: str
    title: str
    caption: str
    data: object
    figure: object

    @property
    def file(self) -> str:
        return f"{self.name}.png"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        w, h = self.figure.get_size_inches()
        return round(w * DPI), round(h * DPI)


# -- drawing (matplotlib, imported lazily) ----------------------------------------------------
def _figure_factory():
    """matplotlib's Figure with an Agg canvas attached, or a SifirError saying what to install."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SifirError(f"drawing the report needs matplotlib: {INSTALL_HINT}") from None

    def new_figure(width: float, height: float):
        fig = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(fig)
        return fig
    return new_figure


def png(figure) -> bytes:
    """The figure as PNG bytes, at the report's resolution."""
    from io import BytesIO
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def show(figure, file: str) -> Path | None:
    """Show a figure inline when running in a Jupyter kernel (the tutorial as a notebook);
    anywhere else write it as the PNG ``file`` and return its path."""
    try:
        from IPython import get_ipython
        in_kernel = get_ipython() is not None and hasattr(get_ipython(), "kernel")
    except ImportError:
        in_kernel = False
    if in_kernel:
        from IPython.display import Image, display
        display(Image(data=png(figure), format="png"))
        return None
    path = Path(file)
    path.write_bytes(png(figure))
    return path


def require_matplotlib() -> None:
    """Fail early (before a long training) when the report could not be drawn."""
    _figure_factory()


def draw_learning_curves(curves: dict[str, np.ndarray]):
    fig = _figure_factory()(10, 4)
    from matplotlib.ticker import MaxNLocator
    loss_ax, acc_ax = fig.subplots(1, 2)
    epoch = curves["epoch"]
    for ax, key, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "acc", "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.plot(epoch, curves[f"train_{key}"], "o-", label="training")
        ax.plot(epoch, curves[f"val_{key}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_title("loss per epoch")
    acc_ax.set_title("accuracy per epoch")
    fig.tight_layout()
    return fig


def _digits(classes) -> bool:
    return classes is None or tuple(classes) == tuple("0123456789")


def draw_confusion(confusion: np.ndarray, classes=None):
    from matplotlib.colors import PowerNorm
    n = len(confusion)
    side = max(7, 0.35 * n)   # 47 classes (EMNIST Balanced) need room for their counts
    fig = _figure_factory()(side, side - 1)
    ax = fig.subplots()
    # A power norm lifts the small off-diagonal counts (the mistakes) out of the dark.
    im = ax.imshow(confusion, cmap="Blues", norm=PowerNorm(0.3, vmin=0, vmax=max(1, confusion.max())))
    for i in range(n):
        for j in range(n):
            dark = confusion[i, j] > 0.4 * confusion.max()
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8 if n <= 20 else 5,
                    color="white" if dark else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    if not _digits(classes):   # names instead of numbers: "Trouser", "お (o)"
        ax.set_xticklabels(classes, rotation=45, ha="right")
        ax.set_yticklabels(classes)
    noun = "digit" if _digits(classes) else "class"
    ax.set_xlabel(f"predicted {noun}")
    ax.set_ylabel(f"true {noun}")
    accuracy = np.trace(confusion) / max(1, confusion.sum())
    ax.set_title(f"confusion matrix on {confusion.sum():,} test images (accuracy {accuracy:.2%})")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _image_grid(images, columns: int, labels=None, symmetric: bool = False, width: float = 10,
                label_size: int = 8):
    """A figure of many small images drawn in ONE axes, each at its own place (``extent``): far
    cheaper than one axes per image. Labels go above the images; the figure is as tall as the
    grid needs (plus a band for the title)."""
    h, w = images.shape[1:3]
    gap = 0.15 * w
    cell_w = w + gap
    per_inch = cell_w * columns / (0.98 * width)  # data units (pixels of the images) per inch
    lines = max((str(t).count("\n") + 1 for t in labels), default=0) if labels is not None else 0
    label_room = (lines * label_size * 1.4 / 72 + 0.08) * per_inch  # text height + a margin
    cell_h = h + label_room
    rows = max(1, math.ceil(len(images) / columns))
    grid_height = rows * cell_h / per_inch
    height = round(grid_height + 0.55, 2)  # + a band for the title
    fig = _figure_factory()(width, height)
    ax = fig.add_axes((0.01, 0.1 / height, 0.98, grid_height / height))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        x0, y0 = c * cell_w, r * cell_h + label_room
        if symmetric:  # red positive, blue negative; white is zero for every image
            bound = max(float(np.abs(image).max()), 1e-12)
            ax.imshow(image, cmap="RdBu_r", vmin=-bound, vmax=bound, extent=(x0, x0 + w, y0 + h, y0))
        else:
            ax.imshow(image, cmap="gray_r", extent=(x0, x0 + w, y0 + h, y0))
        if labels is not None:
            ax.text(x0 + w / 2, y0 - 0.05 * h, labels[i], ha="center", va="bottom", fontsize=label_size)
    ax.set_xlim(-gap / 2, columns * cell_w - gap / 2)
    ax.set_ylim(rows * cell_h, 0)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


def draw_predictions(read: dict[str, np.ndarray], columns: int = 8, title: str = "test digits and what the network read",
                     classes=None):
    """Each image with its true label, what the network read and how sure it was (``predictions``);
    ``classes`` names the outputs of a data set that is not digits."""
    if _digits(classes):
        labels = [f"true {t} → {p}\n({q:.0%})" for t, p, q in zip(read["true"], read["predicted"], read["probability"])]
    else:   # names are longer than digits: one line each
        labels = [f"{classes[t]} →\n{classes[p]} ({q:.0%})" for t, p, q in
                  zip(read["true"], read["predicted"], read["probability"])]
    fig = _image_grid(read["images"], columns, labels, width=9)
    fig.suptitle(title)
    return fig


def draw_misclassified(mistakes: dict[str, np.ndarray], columns: int = 8, classes=None):
    things = "digits" if _digits(classes) else "images"
    return draw_predictions(mistakes, columns, f"test {things} the network got wrong, surest mistakes first", classes)


def _grid_columns(n: int) -> int:
    """Columns for n pictures: at most 5 in a row up to 10 pictures, then about √(4n),
    a divisor of n when one is near (full rows)."""
    if n <= 10:
        return n if n <= 5 else math.ceil(n / 2)
    start = math.ceil(math.sqrt(4 * n))
    return next((c for c in range(start, start + start // 2) if n % c == 0), start)


def draw_first_layer(name: str, images: np.ndarray):
    shown = images[:GRID_LIMIT]
    n = len(shown)
    what = "unit" if images.shape[1:] == (28, 28) else "kernel"  # a row of W, or a convolution kernel
    labels = [f"{what} {j}" for j in range(n)] if n <= 16 else None
    fig = _image_grid(shown, _grid_columns(n), labels, symmetric=True, label_size=9)
    more = f" (first {n} of {len(images)})" if len(images) > n else ""
    size = "×".join(map(str, images.shape[1:]))
    # Not "red excites": inputs are normalised, so blank paper is negative and a red (positive)
    # weight there lowers the output; only on ink does it raise it.
    fig.suptitle(f"first layer ({name}), one {size} image per {what}{more}: red positive, blue negative weights")
    return fig


def _hist_grid(series: list[tuple[str, np.ndarray]], title: str, describe, log: bool):
    columns = max(1, min(len(series), PANELS_PER_ROW))
    rows = max(1, math.ceil(len(series) / columns))
    fig = _figure_factory()(10, PANEL_HEIGHT * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(series):]:
        ax.axis("off")
    for ax, (name, values) in zip(axes, series):
        ax.hist(values.ravel(), bins=50, color="tab:blue")
        if log:  # ReLU piles many exact zeros in one bin; a log scale keeps the rest visible
            ax.set_yscale("log")
        ax.set_title(f"{name}\n{describe(values)}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_activation_histograms(samples: list[tuple[str, np.ndarray]]):
    return _hist_grid(samples, f"outputs of each hidden nonlinearity on {len(samples[0][1]):,} test images",
                      lambda a: f"{int(np.prod(a.shape[1:])):,} units, zero: {np.mean(a == 0):.0%}, "
                                f"mean {a.mean():.2f}", log=True)


def draw_weight_histograms(weights: list[tuple[str, np.ndarray]]):
    return _hist_grid(weights, "weights of each layer",
                      lambda w: f"{'×'.join(map(str, w.shape))}: mean {w.mean():.3f}, std {w.std():.3f}",
                      log=False)


# -- the whole report -------------------------------------------------------------------------
def pictures(model: nn.Module, info: dict, x: np.ndarray, y: np.ndarray, mistakes: int = 32) -> list[Picture]:
    """Compute and draw every picture of the report for ``model`` on test inputs ``x``
    (normalised, (N, 1, 28, 28)) with labels ``y``."""
    logits = predict_logits(model, x)
    classes = DataFacts.from_info(info, logits.shape[1]).classes
    noun, nouns = ("digit", "digits") if _digits(classes) else ("class", "classes")
    out = []
    curves = learning_curves(info)
    if curves is not None:
        out.append(Picture("learning-curves", "Learning curves",
                           "Loss and accuracy after each epoch, on the training images and on the held-out "
                           "validation images. Validation worse than training and getting worse: overfitting.",
                           curves, draw_learning_curves(curves)))
    confusion = confusion_data(model, x, y, logits)
    out.append(Picture("confusion", "Confusion matrix",
                       f"Row: the true {noun}; column: what the network read. The diagonal is right; "
                       f"everything else is a mistake, and shows which {nouns} look alike to the network.",
                       confusion, draw_confusion(confusion, classes)))
    wrong = misclassified(model, x, y, mistakes, logits)
    out.append(Picture("misclassified", "Mistakes",
                       f"Test {'digits' if _digits(classes) else 'images'} the network read wrong, the ones it was "
                       "surest of first, with the "
                       "probability it gave its wrong answer. Some are hard even for people.",
                       wrong, draw_misclassified(wrong, classes=classes)))
    name, images = first_layer_images(model)
    out.append(Picture("first-layer", "First layer",
                       "Each image is the first layer's weights for one unit (a row of the first weight "
                       "matrix, one weight per pixel) or one convolution kernel: the pattern it looks for.",
                       images, draw_first_layer(name, images)))
    samples = activation_samples(model, x)
    if samples:
        out.append(Picture("activations", "Activations",
                           f"What each hidden nonlinearity outputs on {min(len(x), 1000):,} test images. "
                           "A ReLU unit that is always zero has stopped learning.",
                           samples, draw_activation_histograms(samples)))
    weights = weight_matrices(model)
    out.append(Picture("weights", "Weights", "The values in each weight matrix (biases left out).",
                       weights, draw_weight_histograms(weights)))
    return out


def write_report(model: nn.Module, info: dict, x: np.ndarray, y: np.ndarray, out_dir, title: str = "") -> list[Picture]:
    """Write every picture as PNG plus ``index.html`` showing them into ``out_dir``."""
    out_dir = _make_folder(out_dir)
    pics = pictures(model, info, x, y)
    try:
        for pic in pics:
            pic.figure.savefig(out_dir / pic.file, dpi=DPI)
        (out_dir / "index.html").write_text(index_html(pics, model, info, title), encoding="utf-8")
    except OSError as e:
        raise SifirError(f"cannot write the report into {out_dir}: {e.strerror or e}") from None
    return pics


def _make_folder(folder) -> Path:
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SifirError(f"cannot create the report folder {folder}: {e.strerror or e}") from None
    return folder


def index_html(pics: list[Picture], model: nn.Module, info: dict, title: str = "") -> str:
    """One self-contained page that shows every picture with its caption."""
    counts = io.count_parameters(model)
    facts = [f"{counts['weights']:,} learnable weights + {counts['biases']:,} biases"]
    if info.get("preset"):
        facts.insert(0, f"preset <code>{html.escape(str(info['preset']))}</code>")
    if info.get("epochs"):
        facts.append(f"{info['epochs']} epochs")
    if isinstance(info.get("dataset"), dict) and info["dataset"].get("name") != "mnist":
        facts.append(f"trained on {html.escape(str(info['dataset'].get('title')))}")
    confusion = next((p.data for p in pics if p.name == "confusion"), None)
    if confusion is not None:
        facts.append(f"test accuracy {np.trace(confusion) / confusion.sum():.2%}")
    head = html.escape(title or "What the network learned")
    body = [f"<h1>{head}</h1>", f"<p>{' · '.join(facts)}</p>"]
    if not any(p.name == "learning-curves" for p in pics):
        body.append("<p>This model file holds no training history, so there are no learning curves.</p>")
    for p in pics:
        body.append(f'<section id="{p.name}"><h2>{html.escape(p.title)}</h2>'
                    f"<p>{html.escape(p.caption)}</p>"
                    f'<img src="{p.file}" alt="{html.escape(p.title)}" width="{p.size[0]}" height="{p.size[1]}">'
                    "</section>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222}"
             "img{max-width:100%;height:auto;border:1px solid #ddd}section{margin:2em 0}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{head}</title><style>{style}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def default_report_dir(model_path) -> Path:
    """``<folder>/<model stem>-report`` next to the model file."""
    path = Path(model_path)
    return path.with_name(f"{path.stem}-report")


def report_model_file(model_path, out_dir=None, data_dir=None, test: tuple | None = None,
                      dataset: str | None = None) -> Path:
    """Load a model file and write its report; returns the path of ``index.html``.

    ``test`` = (x, y) normalised test images and labels; when not given, the test set of the
    data set the model was trained on (``dataset`` may only name that one).
    """
    require_matplotlib()
    model, info = io.load_model(model_path)
    facts = io.data_facts(model_path, model, info)
    out = _make_folder(out_dir or default_report_dir(model_path))  # before the data: fail fast
    if test is None:
        from .data.load import evaluation_data
        test = evaluation_data(facts, dataset, data_dir)
    write_report(model, info, *test, out, title=f"What {Path(model_path).name} learned")
    return out / "index.html"
