"""`sifir report`: every picture exists as a PNG of its size, and shows what the model computes."""
import os
import re
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from sifir import cli, io, metrics, models, nn, optim, report
from sifir.data import load_mnist, normalize, split_validation
from sifir.errors import SifirError
from sifir.train import Trainer, predict_logits

# (width, height) in pixels of each picture for the seed network (2 nonlinearities, 2 matrices).
SEED_SIZES = {"learning-curves": (1000, 400), "confusion": (700, 600), "misclassified": (900, 595),
              "first-layer": (1000, 447), "activations": (1000, 320), "weights": (1000, 320)}


def run_sifir(*args):
    return subprocess.run([sys.executable, "-m", "sifir", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, SIFIR_STATE_DIR=os.devnull + "-none"), timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    """The seed network after 2 epochs on real MNIST, saved as `sifir train` saves it."""
    data = load_mnist(mnist_dir)
    tx, ty, vx, vy = split_validation(data["train_images"], data["train_labels"])
    nn.manual_seed(0)
    model = models.build("seed")
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), batch_size=64, seed=0)
    trainer.fit(normalize(tx), ty.astype(np.int64), normalize(vx), vy.astype(np.int64), epochs=2)
    path = tmp_path_factory.mktemp("report") / "seed.npz"
    io.save_model(path, model, {"preset": "seed", "epochs": 2, "history": [asdict(r) for r in trainer.history]})
    model, info = io.load_model(path)
    return path, model, info, normalize(data["test_images"]), data["test_labels"].astype(np.int64)


@pytest.fixture(scope="module")
def written(trained, tmp_path_factory):
    path, model, info, x, y = trained
    folder = tmp_path_factory.mktemp("pictures")
    return folder, {p.name: p for p in report.write_report(model, info, x, y, folder)}


def seed_forward(model, x):
    """The seed network by hand: H1 = ReLU(W1·x + b1), H2 = ReLU(W2·H1 + b2)."""
    w1, b1, w2, b2 = (model[1].weight.data, model[1].bias.data, model[3].weight.data, model[3].bias.data)
    h1 = np.maximum(x.reshape(len(x), -1) @ w1.T + b1, 0)
    return h1, np.maximum(h1 @ w2.T + b2, 0)


def test_every_picture_is_a_png_of_its_size(written):
    folder, pics = written
    assert set(pics) == set(SEED_SIZES)
    for name, size in SEED_SIZES.items():
        assert pics[name].size == size
        with Image.open(folder / f"{name}.png") as im:
            assert im.format == "PNG" and im.size == size, name
            grey = np.asarray(im.convert("L"))
            assert grey.min() < 100 and grey.max() > 200, f"{name}.png looks blank"


def test_confusion_matrix_is_the_models(trained, written):
    _, model, _, x, y = trained
    conf = written[1]["confusion"].data
    expected = metrics.confusion_matrix(y, seed_forward(model, x)[1].argmax(axis=1))
    assert conf.sum() == 10_000
    np.testing.assert_array_equal(conf, expected)
    fig = written[1]["confusion"].figure
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), expected)
    counts = [int(t.get_text()) for t in fig.axes[0].texts]
    assert counts == expected.ravel().tolist()
    assert f"{np.trace(expected) / 1e4:.2%}" in fig.axes[0].get_title()


def images_drawn(figure):
    return [np.asarray(im.get_array()) for ax in figure.axes for im in ax.images]


def test_first_layer_pictures_are_the_rows_of_w1(trained, written):
    _, model, _, _, _ = trained
    pic = written[1]["first-layer"]
    w1 = model[1].weight.data
    assert pic.data.shape == (10, 28, 28)
    drawn = images_drawn(pic.figure)
    assert len(drawn) == 10
    assert [t.get_text() for t in pic.figure.axes[0].texts] == [f"unit {j}" for j in range(10)]
    for j in range(10):
        np.testing.assert_array_equal(pic.data[j], w1[j].reshape(28, 28))
        np.testing.assert_array_equal(drawn[j], w1[j].reshape(28, 28))


def test_first_layer_of_a_convolutional_network_is_its_kernels():
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 24 * 24, 10))
    name, kernels = report.first_layer_images(model)
    assert name == "0.weight" and kernels.shape == (6, 5, 5)
    np.testing.assert_array_equal(kernels, model[0].weight.data[:, 0])
    fig = report.draw_first_layer(name, kernels)
    np.testing.assert_array_equal(images_drawn(fig), kernels)
    assert [t.get_text() for t in fig.axes[0].texts] == [f"kernel {j}" for j in range(6)]


def test_mistakes_really_are_mistakes(trained, written):
    _, model, _, x, y = trained
    pic = written[1]["misclassified"]
    m = pic.data
    pred = seed_forward(model, x)[1].argmax(axis=1)
    assert len(m["index"]) == min(32, int(np.sum(pred != y)))
    assert np.all(pred[m["index"]] != y[m["index"]])
    np.testing.assert_array_equal(m["predicted"], pred[m["index"]])
    np.testing.assert_array_equal(m["true"], y[m["index"]])
    np.testing.assert_array_equal(m["images"], x[m["index"], 0])
    np.testing.assert_array_equal(images_drawn(pic.figure), m["images"])
    assert np.all(np.diff(m["probability"]) <= 0)  # surest mistakes first
    titles = [t.get_text() for t in pic.figure.axes[0].texts]
    assert titles == [f"true {t} → {p}\n({q:.0%})" for t, p, q in zip(m["true"], m["predicted"], m["probability"])]


def test_learning_curves_are_the_saved_history(trained, written):
    _, _, info, _, _ = trained
    pic = written[1]["learning-curves"]
    history = info["history"]
    assert len(history) == 2
    loss_ax, acc_ax = pic.figure.axes
    for ax, key in ((loss_ax, "loss"), (acc_ax, "acc")):
        train_line, val_line = ax.get_lines()
        np.testing.assert_array_equal(train_line.get_xdata(), [1, 2])
        np.testing.assert_allclose(train_line.get_ydata(), [r[f"train_{key}"] for r in history])
        np.testing.assert_allclose(val_line.get_ydata(), [r[f"val_{key}"] for r in history])


def bar_heights(ax):
    return np.array([patch.get_height() for patch in ax.patches])


def test_activation_histograms_are_the_hidden_layers_outputs(trained, written):
    _, model, _, x, _ = trained
    pic = written[1]["activations"]
    h1, h2 = seed_forward(model, x[:1000])
    assert len(pic.data) == 2
    for (name, values), expected, ax in zip(pic.data, (h1, h2), pic.figure.axes):
        np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(bar_heights(ax), np.histogram(values, bins=50)[0])
        assert f"zero: {np.mean(values == 0):.0%}" in ax.get_title()


def test_weight_histograms_are_the_weight_matrices(trained, written):
    _, model, _, _, _ = trained
    pic = written[1]["weights"]
    assert [name for name, _ in pic.data] == ["1.weight", "3.weight"]
    for (_, w), layer, ax in zip(pic.data, (model[1], model[3]), pic.figure.axes):
        np.testing.assert_array_equal(w, layer.weight.data)
        np.testing.assert_array_equal(bar_heights(ax), np.histogram(w, bins=50)[0])


def test_index_html_shows_every_picture(written):
    folder, pics = written
    page = (folder / "index.html").read_text(encoding="utf-8")
    sources = set(re.findall(r'<img src="([^"]+)"', page))
    assert sources == {p.name for p in folder.glob("*.png")} == {f"{n}.png" for n in SEED_SIZES}
    accuracy = np.trace(pics["confusion"].data) / 1e4
    assert f"test accuracy {accuracy:.2%}" in page and "7,940 learnable weights" in page


def test_report_command_end_to_end(trained, mnist_dir, tmp_path):
    path = trained[0]
    result = run_sifir("report", path, "--out", tmp_path / "r", "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "r" / "index.html") in result.stdout
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    pngs = {p.name for p in (tmp_path / "r").glob("*.png")}
    assert pngs == {f"{n}.png" for n in SEED_SIZES}
    assert set(re.findall(r'<img src="([^"]+)"', page)) == pngs


def test_train_with_plots_writes_the_report_next_to_the_model(mnist_dir, tmp_path):
    result = run_sifir("train", "--model", "seed", "--epochs", "1", "--out", tmp_path / "net.npz",
                       "--data-dir", mnist_dir, "--quiet", "--plots")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "net-report"
    assert f"report written to {folder / 'index.html'}" in result.stdout
    assert {p.name for p in folder.glob("*.png")} == {f"{n}.png" for n in SEED_SIZES}
    _, info = io.load_model(tmp_path / "net.npz")
    np.testing.assert_allclose(report.learning_curves(info)["val_acc"], [info["history"][0]["val_acc"]])


def test_without_matplotlib_the_message_says_what_to_install(monkeypatch, capsys, trained, tmp_path):
    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` fail as if not installed
    assert cli.main(["report", str(trained[0]), "--out", str(tmp_path / "r")]) == 1
    assert "pip install 'sifir[plots]'" in capsys.readouterr().err
    # train --plots says so before training, not after
    out = tmp_path / "never.npz"
    assert cli.main(["train", "--model", "seed", "--plots", "--out", str(out), "--data-dir", str(tmp_path)]) == 1
    assert "pip install 'sifir[plots]'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "r").exists()


def test_bad_input_gets_a_clear_error(trained, tmp_path, capsys, mnist_dir):
    path, model, info, x, y = trained
    assert cli.main(["report", str(tmp_path / "missing.npz")]) == 1
    assert "missing.npz" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli.main(["report", str(path), "--out", str(blocker / "sub"), "--data-dir", str(mnist_dir)]) == 1
    assert "cannot create the report folder" in capsys.readouterr().err
    with pytest.raises(SifirError, match="cannot create the report folder"):
        report.write_report(model, info, x[:50], y[:50], blocker / "sub")
    with pytest.raises(SifirError, match="784 pixels"):
        report.first_layer_images(nn.Sequential(nn.Linear(10, 4)))
    with pytest.raises(SifirError, match="no weight matrix"):
        report.first_layer_images(nn.Sequential(nn.ReLU()))


def test_no_history_means_no_learning_curves(trained, tmp_path):
    _, model, _, x, y = trained
    pics = report.write_report(model, {}, x[:200], y[:200], tmp_path)
    assert "learning-curves" not in {p.name for p in pics}
    assert "no training history" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_activation_samples_in_eval_mode_and_mode_restored():
    nn.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Dropout(0.5),
                          nn.Sequential(nn.Linear(16, 8), nn.Tanh()), nn.Linear(8, 10))
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    model.train()
    first, second = report.activation_samples(model, x), report.activation_samples(model, x)
    assert model.training and model[3].training
    assert [name for name, _ in first] == ["2 ReLU", "4.1 Tanh"]
    h1 = np.maximum(x.reshape(5, -1) @ model[1].weight.data.T + model[1].bias.data, 0)
    h2 = np.tanh(h1 @ model[4][0].weight.data.T + model[4][0].bias.data)
    for (_, a), (_, b), expected in zip(first, second, (h1, h2)):
        np.testing.assert_array_equal(a, b)  # no dropout noise: eval mode
        np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_logits(model, x),
                               h2 @ model[5].weight.data.T + model[5].bias.data, rtol=1e-5, atol=1e-6)


def test_predictions_are_the_models_answers(trained):
    _, model, _, x, y = trained
    read = report.predictions(model, x, y, range(5, 21))
    probs = nn.softmax(predict_logits(model, x[5:21]).astype(np.float64))
    assert list(read["index"]) == list(range(5, 21)) and list(read["true"]) == list(y[5:21])
    assert np.array_equal(read["predicted"], probs.argmax(axis=1))
    np.testing.assert_allclose(read["probability"], probs.max(axis=1), atol=1e-5)  # float32 logits of another batch
    assert np.array_equal(read["images"][0], x[5, 0])
    assert len(images_drawn(report.draw_predictions(read))) == 16


def test_show_writes_a_png_outside_a_notebook(trained, tmp_path):
    """In a Jupyter kernel it displays the figure instead (tests/test_notebooks.py)."""
    _, model, _, x, y = trained
    path = report.show(report.draw_confusion(report.confusion_data(model, x, y)), tmp_path / "c.png")
    assert path == tmp_path / "c.png" and Image.open(path).size == SEED_SIZES["confusion"]


def test_other_data_sets_are_drawn_with_their_class_names():
    names = ("T-shirt/top", "Trouser", "Pullover")
    confusion = np.array([[5, 1, 0], [0, 7, 0], [2, 0, 4]])
    fig = report.draw_confusion(confusion, names)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(names) == [t.get_text() for t in ax.get_yticklabels()]
    assert ax.get_xlabel() == "predicted class"
    mistakes = {"images": np.zeros((1, 28, 28)), "true": np.array([2]), "predicted": np.array([0]),
                "probability": np.array([0.7])}
    labels = [t.get_text() for t in report.draw_misclassified(mistakes, classes=names).axes[0].texts]
    assert labels == ["Pullover →\nT-shirt/top (70%)"]
