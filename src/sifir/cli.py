"""`sifir …`: the command line. Thin: parse, call the library, print.

Library errors (``SifirError``) become one line on stderr and exit code 1; no traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, io, messages, metrics, models, nn, optim, parallel
from .augment import AUGMENTS
from .data.datasets import DATASETS, DEFAULT as DEFAULT_DATASET
from .errors import SifirError, TrainingDiverged
from .messages import MESSAGES, t
from .recipe import VIEWS, Recipe, build_run, in_views, load_data, test_accuracies

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def state_dir() -> Path:
    """Where sifir remembers the last trained model ($SIFIR_STATE_DIR or XDG state dir)."""
    if os.environ.get("SIFIR_STATE_DIR"):
        return Path(os.environ["SIFIR_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "sifir"


def remember_model(path: Path) -> None:
    try:
        state_dir().mkdir(parents=True, exist_ok=True)
        (state_dir() / "last-model").write_text(str(Path(path).resolve()) + "\n")
    except OSError:
        pass  # remembering is a convenience; never fail a finished training over it


def last_model() -> Path | None:
    try:
        path = Path((state_dir() / "last-model").read_text().strip())
    except OSError:
        return None
    return path if path.is_file() else None


# -- train ------------------------------------------------------------------------------------
def summary(model: nn.Module) -> str:
    """A table of layers with output shapes and parameter counts, then the totals."""
    x = np.zeros((1, 1, 28, 28), np.float32)
    model.eval()
    rows = [f"{'#':>3}  {'layer':<12} {'parameters':<22} {'output':<14} {'weights':>10} {'biases':>8}"]
    layers = model if isinstance(model, nn.Sequential) else [model]
    for i, layer in enumerate(layers):
        x = layer(x)
        named = list(layer.named_parameters())
        w = sum(p.size for n, p in named if not n.endswith("bias"))
        b = sum(p.size for n, p in named if n.endswith("bias"))
        shapes = " ".join(f"{n.split('.')[-1][0].upper()} " + "×".join(map(str, p.shape)) for n, p in named)
        rows.append(f"{i:>3}  {type(layer).__name__:<12} {shapes:<22} {str(tuple(x.shape[1:])):<14} {w:>10,} {b:>8,}")
    model.train()
    c = io.count_parameters(model)
    rows.append(f"learnable weights: {c['weights']:,}  (+ {c['biases']:,} biases = {c['total']:,} parameters)")
    return "\n".join(rows)


def recipe_from_args(args) -> Recipe:
    """The command line's options as a checked recipe (unset ones take the preset's)."""
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe) if hasattr(args, f.name)}
    if options.get("hidden") is not None:
        options["hidden"] = tuple(options["hidden"])
    return Recipe(**options).resolved()


def cmd_train(args) -> int:
    recipe = recipe_from_args(args)
    out = Path(args.out or f"sifir-{recipe.model}.npz")
    if args.plots:
        from .report import require_matplotlib
        require_matplotlib()  # fail now, not after the training
    if args.ensemble is not None and args.ensemble != 1:
        from .ensembles import MAX_MEMBERS
        if not 2 <= args.ensemble <= MAX_MEMBERS:
            raise SifirError(t("ensemble.size", value=args.ensemble, high=MAX_MEMBERS))
        if args.resume or args.checkpoint_dir:   # each finished member is kept instead
            raise SifirError(t("ensemble.no_checkpoints"))
    elif recipe.kernels is not None and len(recipe.kernels) > 1:
        raise SifirError(t("ensemble.kernels_need_ensemble", kernels=" ".join(map(str, recipe.kernels))))

    data = load_data(recipe)
    if args.ensemble is not None and args.ensemble != 1:
        return _train_ensemble(args, recipe, data, out)
    code, path, _ = _train_one(args, recipe, data, out)
    if code == 0:
        _saved(args, path, data)
    return code


def _saved(args, path: Path, data) -> None:
    """A trained model file is the one `serve` and `report` take by default; its report if asked."""
    remember_model(path)
    if args.plots:
        from .report import report_model_file
        print(f"report written to {report_model_file(path, test=(data.test_x, data.test_y))}")


def _member_name(member: Recipe) -> str:
    """A member's seed, and its kernel size where that is not the preset's: "1, 5×5"."""
    from .ensembles import other_kernel
    kernel = other_kernel(member)
    return str(member.seed) if kernel is None else f"{member.seed}, {kernel}×{kernel}"


def _train_ensemble(args, recipe: Recipe, data, out: Path) -> int:
    """``sifir train --ensemble K``: K members one after another (each on every core), then one
    model file; members already trained by the same recipe are read back, not trained again."""
    from .ensembles import ensemble_info, finished_member, member_path, member_recipes, members_folder

    k = args.ensemble
    members = []
    for i, member in enumerate(member_recipes(recipe, k), 1):
        path = member_path(out, member)
        done = finished_member(path, member)
        if done is not None:
            model, info = in_views(done[0], member.views, data.facts), done[1]
            if info.get("views", 1) != member.views:   # its accuracy was read in other views: read it as kept now
                accuracy, one_view = test_accuracies(model, data)
                info = {**info, "views": member.views, "test_accuracy": accuracy, "one_view_test_accuracy": one_view}
            print(t("ensemble.reused", i=i, k=k, seed=_member_name(member), path=path,
                    accuracy=f"{info.get('test_accuracy') or 0:.2%}"), flush=True)
            members.append((path, model, info))
            continue
        print(t("ensemble.member", i=i, k=k, seed=_member_name(member)), flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        code, path, trained = _train_one(args, member, data, path)
        if code != 0:
            print(t("ensemble.kept", folder=members_folder(out), done=len(members), k=k), file=sys.stderr)
            return code
        members.append((path, *trained))
    model = nn.Ensemble(*(m for _, m, _ in members))
    test_acc, one_view = test_accuracies(model, data)   # and the same networks on the images alone
    path = io.save_model(out, model, ensemble_info(recipe, [(p, info) for p, _, info in members], test_acc,
                                                    data.facts, one_view))
    accuracies = ", ".join(f"{info['test_accuracy']:.2%}" for _, _, info in members)
    print(t("ensemble.done", k=k, path=path, members=accuracies))
    if one_view is not None:
        print(t("views.test", alone=f"{one_view:.2%}", views=recipe.views, both=f"{test_acc:.2%}"))
    print(f"test accuracy: {test_acc:.2%}")
    _saved(args, path, data)
    return 0


def _train_one(args, recipe: Recipe, data, out: Path) -> tuple[int, Path | None, tuple | None]:
    """Train one network of ``recipe`` on ``data`` and save it to ``out``: (exit code, file,
    (model, info) as saved)."""
    from tqdm import tqdm

    from .train import Interrupted, evaluate

    # tqdm's monitor thread (it only watches for bars that stall) would outlive the bar, and a
    # process with threads may not fork: an ensemble's next member would train on one worker
    tqdm.monitor_interval = 0

    facts = data.facts
    bar = None

    def on_batch(i, n, loss):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=n, desc=f"epoch {run.trainer.epoch + 1}/{recipe.epochs}", leave=False,
                       disable=True if args.quiet else None, unit="batch", file=sys.stderr)
        bar.update(1)
        if i % 20 == 0 or i == n:
            bar.set_postfix(loss=f"{loss:.4f}")

    def on_epoch(r):
        nonlocal bar
        if bar is not None:
            bar.close()
            bar = None
        print(f"epoch {r.epoch:>3}/{recipe.epochs}  loss {r.train_loss:.4f}  train {r.train_acc:.2%}  "
              f"val loss {r.val_loss:.4f}  val accuracy {r.val_acc:.2%}  ({r.seconds:.1f} s)", flush=True)

    run = build_run(recipe, len(data.train_x), on_batch=on_batch, on_epoch=on_epoch,
                    checkpoint_dir=args.checkpoint_dir or args.resume, facts=facts)
    model, trainer = run.model, run.trainer
    problem = parallel.fork_problem() if trainer.workers > 1 else None
    if problem is not None:   # say so, and train in this process
        print(f"sifir: note: {problem}", file=sys.stderr)
        trainer.workers = 1
    print(f"model '{recipe.model}': {recipe.preset.description}"
          + (f" ({' → '.join(map(str, (784, *recipe.hidden, len(facts.classes))))}, {recipe.activation})" if recipe.hidden else ""))
    print(summary(model))
    print(t("data.train_line", title=facts.title, count=len(facts.classes), classes=_class_list(facts.classes),
            mean=facts.mean, std=facts.std))
    print(f"training {recipe.epochs} epochs on {len(data.train_x):,} images (validation {len(data.val_x):,}), "
          f"{recipe.optimizer} lr={recipe.lr:g} batch={recipe.batch_size} schedule={recipe.schedule} "
          f"seed={recipe.seed}" + (f" augment={recipe.augment}" if recipe.augment != "none" else ""))
    shared = "workers_line_units" if trainer.splits_units else "workers_line"
    print(messages.t(f"parallel.{shared}", workers=trainer.workers))
    if args.resume:
        trainer.load_checkpoint(args.resume)
        print(f"resuming from {args.resume} after epoch {trainer.epoch}")
    started = time.perf_counter()
    try:
        trainer.fit(data.train_x, data.train_y, data.val_x, data.val_y, epochs=recipe.epochs)
    except TrainingDiverged as e:
        if bar is not None:
            bar.close()
        kept = ""
        if trainer.best_state is not None:
            model.load_state_dict(trainer.best_state)
            path = io.save_model(out.with_name(out.stem + ".last-good.npz"), model, run.info(None))
            kept = f"; the last good model (epoch {trainer.best_epoch}) is in {path}"
        elif args.checkpoint_dir:
            kept = f"; the last good checkpoint is in {args.checkpoint_dir}"
        raise TrainingDiverged(f"{e}{kept}") from None
    except parallel.WorkerError:   # one line, like any error; the last checkpoint is still there
        if bar is not None:
            bar.close()
        raise
    except Interrupted as e:
        if bar is not None:
            bar.close()
        print(f"sifir: {e}", file=sys.stderr)
        if args.checkpoint_dir or args.resume:
            # the whole recipe (its data set too): resuming with other options would train another run
            print(f"continue with: {recipe.command()} --resume {args.checkpoint_dir or args.resume}",
                  file=sys.stderr)
        return EXIT_INTERRUPTED, None, None
    kept = run.kept_model()
    test_acc, one_view = test_accuracies(kept, data)
    info = run.info(test_acc, one_view)
    plain = run.plain_model()
    if plain is not None:   # the average was kept: the run without averaging, for comparison
        info["plain_test_accuracy"] = evaluate(plain, data.test_x, data.test_y)[1]   # as kept, in its views only
    path = io.save_model(out, kept, info)
    seconds = sum(r.seconds for r in trainer.history)
    print(messages.t("parallel.train_time", seconds=messages.number(time.perf_counter() - started, decimals=1),
                     workers=trainer.workers))
    print(f"best validation accuracy {trainer.best_acc:.2%} at epoch {trainer.best_epoch}; "
          f"{seconds / max(1, len(trainer.history)):.1f} s per epoch")
    print(f"model saved to {path}")
    if one_view is not None:
        print(t("views.test", alone=f"{one_view:.2%}", views=recipe.views, both=f"{test_acc:.2%}"))
    if "average" in info:
        print(_average_line(info))
    print(f"test accuracy: {test_acc:.2%}")
    return 0, path, (kept, info)


def _average_line(info: dict) -> str:
    """What averaging the last K epochs' weights did, in the user's language."""
    first, last = info["average_epochs"]
    values = dict(first=first, last=last, score=f"{info['average_score']:.2%}", epoch=info["best_epoch"],
                  plain_test=f"{info['plain_test_accuracy']:.2%}")
    return t("average.kept" if info["kept"] == "average" else "average.not_kept", **values)


# -- evaluate / predict / explain / download --------------------------------------------------
def _class_list(classes, shown: int = 10) -> str:
    """The class names for a message: all of them up to ``shown``, else the first few, "…" and the last."""
    if len(classes) <= shown:
        return ", ".join(classes)
    return ", ".join(classes[:shown - 2]) + f", …, {classes[-1]}"


def cmd_evaluate(args) -> int:
    from .data.load import evaluation_data
    from .train import predict_logits

    model, info = io.load_model(args.model)
    facts = io.data_facts(args.model, model, info)
    x, y = evaluation_data(facts, args.dataset, args.data_dir)   # refuses another data set
    pred = predict_logits(model, x).argmax(axis=1)
    conf = metrics.confusion_matrix(y, pred, len(facts.classes))
    digits = facts.classes == tuple("0123456789")
    print(f"model {args.model} ({info.get('preset', 'custom')}) on the {len(y):,} test images of {facts.title}")
    print("per-digit accuracy:" if digits else t("data.per_class"))
    for i, acc in enumerate(metrics.per_class_accuracy(conf)):
        name = facts.classes[i] if digits else f"{i} {facts.classes[i]}"
        print(f"  {name}: {acc:.2%}  ({conf[i, i]}/{conf[i].sum()})")
    print("confusion matrix (rows: true digit, columns: predicted):" if digits else t("data.confusion_title"))
    print(metrics.format_confusion(conf))
    print(f"test accuracy: {metrics.accuracy(pred, y):.2%}")
    return 0


def cmd_predict(args) -> int:
    from .reading import describe, read_picture

    model, info = io.load_model(args.model)
    facts = io.data_facts(args.model, model, info)
    failures = 0
    for image in args.images:
        try:
            reading = read_picture(model, image, facts)
        except SifirError as e:  # one line per bad picture, naming it; the others still get read
            reason = str(e) if str(image) in str(e) else f"{image}: {e}"
            print(f"sifir: error: {reason}", file=sys.stderr)
            failures += 1
            continue
        print(describe(image, reading))
    return EXIT_ERROR if failures else 0


def cmd_explain(args) -> int:
    from .explain import render
    image, label = None, 0
    try:
        from .data import mnist
        data = mnist.load_mnist(args.data_dir, download_missing=False, log=lambda *a: None)
        image, label = mnist.normalize(data["test_images"][:1])[0, 0], int(data["test_labels"][0])
    except (SifirError, OSError):
        pass  # no data on disk: the walk-through uses a drawn stroke instead
    print(render(args.lang, image, label, lr=args.lr))
    return 0


def cmd_export(args) -> int:
    from .export import export_model_file, summary
    print(summary(export_model_file(args.model, args.out, probabilities=args.probabilities)))
    return 0


def cmd_report(args) -> int:
    from .report import report_model_file
    print(f"report written to {report_model_file(args.model, args.out, args.data_dir, dataset=args.dataset)}")
    return 0


def cmd_download(args) -> int:
    from .data.datasets import get
    from .data.download import download
    dataset = get(args.dataset)
    folder = download(dataset, args.data_dir)
    print(t("data.ready", title=dataset.title, folder=folder))
    return 0


# -- serve ------------------------------------------------------------------------------------
def listen_socket(host: str, port: int):
    """A TCP socket bound to host:port (port 0: any free one), for the web server to listen on.

    Bound here rather than in uvicorn, so a busy port is one clear line and --port 0 can be told.
    """
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns on TCP_NODELAY only for sockets that say they are TCP,
    # and without it every answer waits ~40 ms for a delayed ACK (Nagle's algorithm)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except socket.gaierror as e:   # a host name that does not resolve: not a port problem
        sock.close()
        raise SifirError(f"cannot listen on {host}: {e.strerror or e}; check --host") from None
    except OSError as e:
        sock.close()
        raise SifirError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                         "is another server there? choose another with --port") from None
    return sock


def cmd_serve(args) -> int:
    import secrets
    model = Path(args.model) if args.model else last_model()   # none yet: the Learn view trains one
    if not 0 <= args.port <= 65535:
        raise SifirError(f"--port must be between 0 and 65535, got {args.port}")
    try:  # the web part is an extra: the core CLI works without it
        import uvicorn

        from .web.app import LOOPBACK_NAMES, create_app
    except ImportError as e:
        raise SifirError(f"the drawing page needs FastAPI and uvicorn ({e.name or e} is missing): "
                         "pip install 'sifir[web]'") from None
    try:  # one picture per request: extra BLAS threads would only spin, taking CPU from other requests
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)   # (training runs in processes of its own, with every core)
    except ImportError:
        pass
    sock = listen_socket(args.host, args.port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)   # this launch's key to the training API
    everywhere = args.host in ("0.0.0.0", "::", "")
    hosts = [*LOOPBACK_NAMES, args.host] + ([socket_hostname()] if everywhere else [])
    try:
        app = create_app(model, token=token, hosts=hosts, port=port, any_ip=everywhere,
                         learn_options={"data_dir": args.data_dir})
    except BaseException:
        sock.close()
        raise
    shown = f"[{args.host}]" if ":" in args.host else args.host
    what = f"{model} " if model else ""
    print(f"sifir: serving {what}on http://{shown}:{port}/?token={token}  (Ctrl-C to stop)", flush=True)
    if model is None:
        print("sifir: no model yet: open the address and train one in the Learn view", flush=True)
    if args.host not in LOOPBACK_NAMES:
        print(f"sifir: note: listening on {args.host}, so other machines on the network can reach the page",
              file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5, limit_concurrency=64,
                            server_header=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly on Ctrl-C, then re-raises it
        pass
    print("sifir: server stopped", file=sys.stderr)
    return 0


def socket_hostname() -> str:
    import socket
    return socket.gethostname()


# -- parser -----------------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except when it is None: those options say in their own help
    what happens without them ("preset's default", "the last one trained"), and "(default:
    None)" after that would only confuse."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sifir", description="A neural network from zero in NumPy that reads "
                                "handwritten digits (MNIST).", formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"sifir {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _HelpFormatter
    data_help = ("folder with the data set's four files (default: the user cache, or $SIFIR_DATA_DIR for MNIST; "
                 "downloaded if missing)")
    datasets = ", ".join(DATASETS)
    dataset_help = (f"data set: {datasets} (idx: any folder of IDX files given with --data-dir, names from "
                    "its classes.txt)")
    judged_help = f"data set to judge the model on (default: the one it was trained on; {datasets})"

    t = sub.add_parser("train", help="train a network on MNIST (or --dataset) and save it", formatter_class=fmt,
                       description="Train a preset network on MNIST or another data set (--dataset), report "
                       "validation accuracy per epoch and "
                       "the final test accuracy, and save the model. Unset options take the preset's recipe.")
    t.add_argument("--model", default="mlp", choices=[*models.PRESETS, models.CUSTOM],
                   help="network preset, or custom: an MLP of your own (--hidden, --activation)")
    t.add_argument("--hidden", type=int, nargs="+", metavar="WIDTH",
                   help=f"custom model: the hidden layers' widths, e.g. --hidden 128 64 "
                        f"(default: {' '.join(map(str, models.CUSTOM_HIDDEN))})")
    t.add_argument("--activation", choices=list(models.ACTIVATIONS),
                   help=f"custom model: the nonlinearity after each hidden layer (default: {models.CUSTOM_ACTIVATION})")
    t.add_argument("--epochs", type=int, help="passes over the training set (preset's default)")
    t.add_argument("--batch-size", type=int, help="images per gradient step (preset's default)")
    t.add_argument("--lr", type=float, help="learning rate (preset's default)")
    t.add_argument("--optimizer", choices=list(optim.OPTIMIZERS), help="optimizer (preset's default)")
    t.add_argument("--momentum", type=float, help="SGD momentum (preset's default)")
    t.add_argument("--weight-decay", type=float, help="weight decay (preset's default)")
    t.add_argument("--schedule", choices=list(optim.SCHEDULES), help="learning-rate schedule (preset's default)")
    t.add_argument("--label-smoothing", type=float, help="label smoothing ε (preset's default)")
    t.add_argument("--augment", choices=list(AUGMENTS), help="data augmentation of training batches: "
                   "none, shift (±2 px), affine (+ rotation, scaling), elastic (+ elastic distortion), "
                   "flip (shift + left-right mirror), erase (flip + random erasing) (preset's default)")
    t.add_argument("--views", type=int, choices=VIEWS, help="the kept model reads each test image in this "
                   "many views (as it is, and moved one pixel: 4 ways, 8 with the diagonals; 10 and 18: 5 and 9 with "
                   "the mirror image of each, for pictures the network learned mirrored; 27: 9, each also turned by "
                   "±6°; 29: 27 and the image 8 %% smaller and larger) and averages their probabilities; 1: the image "
                   "alone (preset's default: 29 for best, 10 for cnn and best on Fashion-MNIST, else 1)")
    t.add_argument("--average", type=int, metavar="K", help="when training ends, measure the mean of the "
                   "last K epochs' weights on the validation images and keep it if it scores higher than the best "
                   "epoch's weights (stochastic weight averaging); 0: off (preset's default)")
    t.add_argument("--kernels", type=int, nargs="+", metavar="K", help="cnn and best: the convolutions' "
                   "kernel size, K×K (3, 5 or 7; default 3); with --ensemble, several sizes that the networks "
                   "take in turn (--kernels 3 5: 3×3, 5×5, 3×3, …), whose mistakes differ more than seeds' alone")
    t.add_argument("--patience", type=int, help="stop after this many epochs without a better validation accuracy")
    t.add_argument("--validation", type=int, default=5000, help="last N training images held out for validation")
    t.add_argument("--fold", type=int, default=0, help="hold out block FOLD of N images, counted from the end, "
                   "instead (0: the last N; 1: the N before them, …); an ensemble's members all hold out the same block")
    t.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling and dropout")
    t.add_argument("--dataset", default=DEFAULT_DATASET, metavar="NAME", help=dataset_help)
    t.add_argument("--workers", type=int, help="processes that share the work, one per core: each batch of a "
                   "network with convolutions, each layer's units of an MLP (default: every core this process "
                   "may use, one for a small MLP; 1: train in this process alone)")
    t.add_argument("--ensemble", type=int, metavar="K",
                   help="train K networks (seeds SEED … SEED+K−1, one after another, each on every core) and "
                        "save them as one model that averages their probabilities; finished members are kept "
                        "in OUT's .members folder, so running the same command again goes on where it stopped")
    t.add_argument("--data-dir", help=data_help)
    t.add_argument("--out", help="model file to write (default: sifir-MODEL.npz)")
    t.add_argument("--checkpoint-dir", help="write a checkpoint here after every epoch (and on Ctrl-C)")
    t.add_argument("--resume", metavar="DIR", help="continue from the checkpoint in DIR")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--plots", action="store_true", help="after training, write the report's pictures "
                   "(needs matplotlib) into MODEL-report/ next to the model file")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy, per-class accuracy and confusion matrix", formatter_class=fmt)
    e.add_argument("model", help="a model file written by sifir train")
    e.add_argument("--dataset", metavar="NAME", help=judged_help)
    e.add_argument("--data-dir", help=data_help)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="read digits from PNG/JPEG pictures", formatter_class=fmt,
                       description="Each picture (any size or colour: a drawing, a scan, a phone photo of paper) is "
                       "cleaned of its uneven light, split into digits (paper lines, specks, shadows left out), and "
                       "each digit made MNIST-like: grey, bright ink on black, scaled into 20×20, centred by mass in "
                       "28×28. One digit prints as '7 (98.1%), runner-up 1 (1.2%)'; a number as its digits left to "
                       "right with each one's confidence: '2026 (2 99%, 0 97%, 2 99%, 6 88%)'.")
    r.add_argument("model", help="a model file written by sifir train")
    r.add_argument("images", nargs="+", help="picture files")
    r.set_defaults(func=cmd_predict)

    x = sub.add_parser("explain", help="the tutorial's example and the seed network, step by step", formatter_class=fmt)
    x.add_argument("--lang", default="en", choices=list(MESSAGES), help="language of the walk-through")
    x.add_argument("--lr", type=float, default=0.01, help="learning rate of the example's gradient step")
    x.add_argument("--data-dir", help=data_help)
    x.set_defaults(func=cmd_explain)

    g = sub.add_parser("report", help="pictures of what a trained network learned, on one page", formatter_class=fmt,
                       description="Learning curves, confusion matrix, mistakes, first-layer weights, activation and "
                       "weight histograms as PNG files plus index.html (needs matplotlib).")
    g.add_argument("model", help="a model file written by sifir train")
    g.add_argument("--out", help="folder to write (default: MODEL-report/ next to the model file)")
    g.add_argument("--dataset", metavar="NAME", help=judged_help)
    g.add_argument("--data-dir", help=data_help)
    g.set_defaults(func=cmd_report)

    o = sub.add_parser("export", help="write a model as ONNX, to run in onnxruntime and elsewhere", formatter_class=fmt,
                       description="Write MODEL as an ONNX file (opset 17): input 'image', normalised images "
                       "(batch, 1, 28, 28); output 'logits'. The file's metadata holds the normalisation, the class "
                       "names and the training facts. Needs the onnx extra: pip install 'sifir[onnx]'.")
    o.add_argument("model", help="a model file written by sifir train")
    o.add_argument("out", nargs="?", help="ONNX file to write (default: MODEL with the suffix .onnx)")
    o.add_argument("--probabilities", action="store_true", help="add a second output, 'probabilities' (softmax)")
    o.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="the page: train a network and watch it learn, draw a digit and watch it read",
                       formatter_class=fmt, description="Serve a web page with two views. Learn: train a preset or "
                       "your own MLP on MNIST and watch it live (curves, first-layer weights, gradients, confusion "
                       "matrix, your own drawing's probabilities). Draw: draw digits (mouse, pen or finger) or "
                       "upload pictures, showing the prediction, the 28×28 input and every hidden layer. Plus a "
                       "JSON API documented at /docs. The address printed carries this launch's token, which the "
                       "training API needs. Needs the web extra: pip install 'sifir[web]'.")
    s.add_argument("model", nargs="?", help="a model file written by sifir train for the Draw view (default: the "
                   "last one trained; none: train one in the Learn view)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 opens it to the network)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    s.add_argument("--data-dir", help=data_help + "; the Learn view trains on it")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("download", help="fetch and verify a data set (MNIST unless --dataset says)",
                       formatter_class=fmt)
    d.add_argument("--dataset", default=DEFAULT_DATASET, metavar="NAME", help=dataset_help)
    d.add_argument("--data-dir", help=data_help)
    d.set_defaults(func=cmd_download)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SifirError as e:
        print(f"sifir: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("sifir: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
