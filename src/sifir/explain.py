"""`sifir explain`: the tutorial's walk-through, computed live.

Part 1 replays the toy example y = (x + w1)·w2 with the scalar autograd (``Value``).
Part 2 walks the seed network's shapes and one forward and backward pass on one image.
All text comes from ``messages`` (one table per language), the numbers from the code.
"""
from __future__ import annotations

import numpy as np

from . import io, models, nn
from .messages import get_messages, number
from .scalar import Value


def toy_example(lr: float = 0.01) -> dict:
    """The tutorial's example: x = 10, w1 = −2, w2 = 3 → h = 8, y = 24, dy/dw1 = 3, dy/dw2 = 8,
    then one gradient step w ← w − lr·dy/dw and the new y."""
    x, w1, w2 = Value(10.0, "x"), Value(-2.0, "w1"), Value(3.0, "w2")
    h = x + w1
    y = h * w2
    y.backward()
    new_w1, new_w2 = w1.data - lr * w1.grad, w2.data - lr * w2.grad
    return {"x": x.data, "w1": w1.data, "w2": w2.data, "h": h.data, "y": y.data,
            "dy_dh": h.grad, "dh_dw1": 1.0, "dy_dw1": w1.grad, "dy_dw2": w2.grad, "lr": lr,
            "new_w1": new_w1, "new_w2": new_w2, "new_y": (x.data + new_w1) * new_w2}


def seed_walkthrough(image: np.ndarray, label: int, seed: int = 0) -> dict:
    """One forward and backward pass of the (untrained) seed network on one image."""
    nn.manual_seed(seed)
    model = models.build("seed")
    x = image.reshape(1, 1, 28, 28).astype(np.float32)
    flat = model[0](x)
    h1 = model[2](model[1](flat))
    h2 = model[4](model[3](h1))
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(h2, np.array([label]))
    model.zero_grad()
    model.backward(loss_fn.backward())
    return {"x": flat, "h1": h1, "h2": h2, "probs": nn.softmax(h2), "loss": loss, "label": label,
            "W1": model[1].weight, "W2": model[3].weight, "counts": io.count_parameters(model)}


def render(lang: str = "en", image: np.ndarray | None = None, label: int = 0, lr: float = 0.01,
           train_images: int = 55_000) -> str:
    """The walk-through as text. ``image`` is a normalised 28×28 input (the CLI passes the
    first MNIST test image); without one, a drawn stroke of a 1 stands in."""
    m = {k.removeprefix("explain."): v for k, v in get_messages(lang).items() if k.startswith("explain.")}
    num = lambda n: number(n, lang)   # counts are prose: 7,940 in English, 7.940 in Turkish
    t = toy_example(lr)
    out = [m["toy_title"], m["toy_forward"].format(**t), m["toy_chain"].format(**t),
           m["toy_step"].format(**t), ""]
    if image is None:  # no data at hand: a synthetic stroke still shows every shape
        image = np.zeros((28, 28), np.float32)
        image[6:22, 13:15] = 2.8
        image = (image - 0.4242 * (image == 0)).astype(np.float32)
        label, seen = 1, m["drawn_image"].format(label=1)
    else:
        seen = m["first_test_image"].format(label=label)
    w = seed_walkthrough(image, label)
    fmt = lambda a: np.array2string(np.asarray(a).ravel(), precision=2, suppress_small=True, max_line_width=100)
    shape = lambda a: "×".join(map(str, a.shape))
    counts = {k: num(v) for k, v in w["counts"].items()}
    out += [m["net_title"],
            m["net_shapes"].format(w1=shape(w["W1"]), w2=shape(w["W2"]), pixels=w["W1"].shape[1], **counts),
            m["net_forward"].format(image=seen, label=label, h1=fmt(w["h1"]), h2=fmt(w["h2"]),
                                    probs=fmt(w["probs"]), loss=w["loss"]),
            m["net_backward"].format(g1=shape(w["W1"].grad), g2=shape(w["W2"].grad),
                                     n1=float(np.abs(w["W1"].grad).sum()), n2=float(np.abs(w["W2"].grad).sum())),
            m["net_update"].format(images=num(train_images))]
    return "\n".join(out)
