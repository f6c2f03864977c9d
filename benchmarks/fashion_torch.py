#!/usr/bin/env python
"""The anchor for sifir's Fashion-MNIST results: PyTorch training the very same network, with the
same recipe, on the same images.

    python benchmarks/fashion_torch.py --model cnn            # the `cnn` preset's recipe on Fashion-MNIST
    python benchmarks/fashion_torch.py --model cnn --epochs 2 --images 5000   # a quick check that it runs

What is the same as ``sifir train --dataset fashion-mnist --model cnn``: the layers and their
initial weights (the sifir model is built with the same seed, then copied into PyTorch by
``bench.to_torch``), the 55,000 training and 5,000 validation images and their normalisation,
the preset's Fashion-MNIST recipe (optimizer, learning rate, weight decay, batch size, epochs,
label smoothing, one-cycle schedule), the augmentation (sifir's own augmenter applied to each
NumPy batch, so both frameworks see batches drawn the same way), and the rule that the model
kept is the epoch with the best validation accuracy, judged once on the test set (on the images
alone, and in the recipe's test-time views where it reads more than one: the same moved and
mirrored copies as ``nn.Views``, probabilities averaged). What differs
is the framework: its layers, its optimizer, its one-cycle schedule
(``torch.optim.lr_scheduler.OneCycleLR`` with sifir's defaults: 25 % warm-up, cosine, no
momentum cycling) and its random shuffling and dropout.

Accuracy is the point here, not speed: the seconds per epoch it prints are for reading the log,
not for comparing (that is bench.py's job, interleaved on a quiet machine).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np

from bench import to_torch   # benchmarks/ is on the path; bench.py checks that PyTorch is installed

import torch
import torch.nn.functional as F

from sifir import models, nn
from sifir.augment import make_augment
from sifir.nn.views import MOVES, move
from sifir.recipe import Recipe, load_data


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn", choices=list(models.PRESETS), help="the preset whose network and recipe to use")
    p.add_argument("--dataset", default="fashion-mnist", help="data set (default: fashion-mnist)")
    p.add_argument("--data-dir", help="folder with the data set's files (default: the user cache)")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's on this data set)")
    p.add_argument("--images", type=int, help="train on the first N training images only (a quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads (default: 1, as sifir's runs)")
    p.add_argument("--json", help="write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = Recipe(model=args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                    seed=args.seed).resolved()
    data = load_data(recipe, log=lambda *a: print(*a, file=sys.stderr))
    train_x, train_y = data.train_x[:args.images], data.train_y[:args.images]

    nn.manual_seed(recipe.seed)   # the same initial weights as `sifir train` draws
    net = to_torch(recipe.preset.build(len(data.facts.classes)))
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[recipe.optimizer](
        net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * -(-len(train_x) // recipe.batch_size)
    if recipe.schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.25,
                                                       anneal_strategy="cos", cycle_momentum=False,
                                                       div_factor=25.0, final_div_factor=1e4)
    elif recipe.schedule == "constant":
        schedule = None
    else:
        sys.exit(f"fashion_torch.py mirrors the one-cycle and constant schedules, not {recipe.schedule}")
    augment = make_augment(recipe.augment, (0.0 - data.facts.mean) / data.facts.std)
    rng = np.random.default_rng(recipe.seed)
    torch.manual_seed(recipe.seed)
    val_x, val_y = torch.from_numpy(data.val_x), torch.from_numpy(data.val_y)

    print(f"PyTorch {torch.__version__}, {args.threads} thread(s): `{recipe.model}` on {data.facts.title}, "
          f"{recipe.epochs} epochs, {recipe.optimizer} lr={recipe.lr:g} batch={recipe.batch_size} "
          f"schedule={recipe.schedule} augment={recipe.augment} label_smoothing={recipe.label_smoothing:g}", flush=True)
    best = (-1.0, 0, None)
    history = []
    for epoch in range(1, recipe.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = rng.permutation(len(train_x))
        loss_sum = 0.0
        for i in range(0, len(order), recipe.batch_size):
            batch = order[i:i + recipe.batch_size]
            xb = torch.from_numpy(np.ascontiguousarray(augment(train_x[batch], rng)))
            yb = torch.from_numpy(train_y[batch])
            loss = F.cross_entropy(net(xb), yb, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            loss_sum += loss.item() * len(batch)
        val_acc = accuracy(net, val_x, val_y)
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "train_loss": loss_sum / len(order), "val_acc": val_acc, "seconds": seconds})
        print(f"epoch {epoch:>3}/{recipe.epochs}  loss {loss_sum / len(order):.4f}  val accuracy {val_acc:.2%}  "
              f"({seconds:.1f} s)", flush=True)
        if val_acc > best[0]:
            best = (val_acc, epoch, copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[2])
    test_acc = accuracy(net, torch.from_numpy(data.test_x), torch.from_numpy(data.test_y))
    print(f"best validation accuracy {best[0]:.2%} at epoch {best[1]}")
    print(f"test accuracy: {test_acc:.2%}")
    views = recipe.views or 1
    in_views = None
    if views > 1:
        in_views = accuracy_in_views(net, data.test_x, data.test_y, MOVES[views], (0.0 - data.facts.mean) / data.facts.std)
        print(f"test accuracy in {views} views: {in_views:.2%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"framework": f"torch {torch.__version__}", "recipe": recipe.options(), "history": history,
                       "best_val_acc": best[0], "best_epoch": best[1], "test_acc": test_acc,
                       "views": views, "test_acc_in_views": in_views}, f, indent=1)
    return 0


def accuracy(net, x, y, batch_size: int = 1000) -> float:
    net.eval()
    with torch.no_grad():
        right = sum(int((net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                    for i in range(0, len(x), batch_size))
    return right / len(x)


def accuracy_in_views(net, x, y, moves, fill: float, batch_size: int = 1000) -> float:
    """Accuracy of the probabilities averaged over the views (dy, dx, mirrored) of each image, as
    ``nn.Views`` reads them: the image mirrored where a view says so, then moved by whole pixels."""
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            images = x[i:i + batch_size]
            mean = 0
            for dy, dx, mirrored in moves:
                view = np.ascontiguousarray(move(images, dy, dx, mirrored, fill))
                mean = mean + torch.softmax(net(torch.from_numpy(view)), dim=1)
            right += int((mean.argmax(1) == torch.from_numpy(y[i:i + batch_size])).sum())
    return right / len(x)


if __name__ == "__main__":
    sys.exit(main())
