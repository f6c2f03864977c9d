"""`--dataset` from the command line to the model file, the report and the page: the classes a
model learned are the names it answers with, and it is never judged on another data set."""
import numpy as np
import pytest
from PIL import Image

from sifir import io
from sifir.data.datasets import FASHION_MNIST
from sifir.data.idx import write_idx
from test_cli import assert_clean_failure, sifir
from test_web_browser import browser  # noqa: F401  (the fixture: Debian's Chromium through Playwright)

# Starlette asks for a successor of httpx in its TestClient; httpx is what it runs on here.
pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")

NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    """A small IDX data set of three easy classes (a bar, a square, a cross) with a classes.txt."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("shapes")

    def draw(kind, n):
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        if kind == 0:
            images[:, 4:24, 12:16] = 255
        elif kind == 1:
            images[:, 8:20, 8:20] = 255
        else:
            images[:, 13:15, 4:24] = 255
            images[:, 4:24, 13:15] = 255
        return images

    for split, n in (("train", 300), ("test", 60)):
        labels = np.arange(n) % 3
        images = np.concatenate([draw(k, int(np.sum(labels == k))) for k in range(3)])
        labels = np.sort(labels).astype(np.uint8)
        prefix = "train" if split == "train" else "t10k"
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    (folder / "classes.txt").write_text("bar\nsquare\ncross\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def shapes_model(shapes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "shapes.npz"
    result = sifir("train", "--dataset", "idx", "--data-dir", shapes_dir, "--model", "seed", "--epochs", "3",
                   "--validation", "50", "--out", out, "--quiet", env={"SIFIR_STATE_DIR": str(out.parent)})
    assert result.returncode == 0, result.stderr
    return out, result


def test_an_idx_folder_trains_with_its_own_classes(shapes_model, shapes_dir):
    out, result = shapes_model
    assert "data: the IDX files in shapes" in result.stdout and "3 classes (bar, square, cross)" in result.stdout
    assert "W 3×10" in result.stdout   # the seed network's output layer follows the data: 3 classes
    model, info = io.load_model(out)
    assert info["dataset"]["classes"] == ["bar", "square", "cross"] and info["dataset"]["name"] == "idx"
    assert "--dataset idx" in info["command"] and f"--data-dir {shapes_dir}" in info["command"]
    facts = io.data_facts(out, model, info)
    assert info["input"] == {"shape": [1, 28, 28], "mean": facts.mean, "std": facts.std}
    assert facts.mean != 0.1307   # computed from these images, not MNIST's
    evaluated = sifir("evaluate", out, "--data-dir", shapes_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "per-class accuracy" in evaluated.stdout and "  1 square: " in evaluated.stdout
    assert evaluated.stdout.strip().splitlines()[-1] == result.stdout.strip().splitlines()[-1]


def test_a_model_is_not_judged_on_another_data_set(shapes_model, mnist_dir):
    out, _ = shapes_model
    result = sifir("evaluate", out, "--dataset", "mnist", "--data-dir", mnist_dir)
    assert_clean_failure(result, "trained on the IDX files in shapes", "its accuracy on MNIST would mean nothing")
    assert "accuracy:" not in result.stdout
    assert_clean_failure(sifir("report", out, "--dataset", "mnist", "--data-dir", mnist_dir),
                         "would mean nothing")


def test_unknown_data_set_lists_the_known_ones(tmp_path):
    for command in (["train"], ["download"]):
        result = sifir(*command, "--dataset", "cifar10", "--data-dir", tmp_path)
        assert_clean_failure(result, "unknown data set 'cifar10'", "mnist, fashion-mnist, kmnist, emnist-digits, "
                                     "emnist-letters, emnist-balanced, idx")


def test_turkish_messages_too(tmp_path):
    result = sifir("train", "--dataset", "idx", env={"SIFIR_LANG": "tr"})
    assert_clean_failure(result, "sizin gösterdiğiniz bir klasördeki IDX dosyalarını okur")


@pytest.fixture(scope="module")
def fashion_model(fashion_dir, tmp_path_factory):
    """The seed network after one epoch on Fashion-MNIST (a few seconds)."""
    folder = tmp_path_factory.mktemp("fashion")
    out = folder / "fashion-seed.npz"
    result = sifir("train", "--dataset", "fashion-mnist", "--data-dir", fashion_dir, "--model", "seed",
                   "--epochs", "1", "--out", out, "--quiet", env={"SIFIR_STATE_DIR": str(folder)})
    assert result.returncode == 0, result.stderr
    return out


def test_predict_names_the_class(fashion_model, fashion_dir, tmp_path):
    from sifir.data.load import load
    data = load("fashion-mnist", fashion_dir, download_missing=False)
    paths = []
    for i in range(4):
        path = tmp_path / f"item{i}.png"
        Image.fromarray(data.test_images[i]).resize((84, 84)).save(path)
        paths.append(path)
    result = sifir("predict", fashion_model, *paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        first, runner_up = line.split(": ", 1)[1].split(", runner-up ")
        assert first.rsplit(" (", 1)[0] in FASHION_MNIST.classes and runner_up.rsplit(" (", 1)[0] in FASHION_MNIST.classes


def test_the_page_and_the_report_name_the_classes(fashion_model, fashion_dir, tmp_path):
    from fastapi.testclient import TestClient

    from sifir.web import app as server
    from test_web_api import LOCAL, data_url, png
    with TestClient(server.create_app(fashion_model), base_url=LOCAL) as client:
        model = client.get("/api/model").json()
        assert model["classes"] == list(FASHION_MNIST.classes)
        assert model["dataset"] == {"name": "fashion-mnist", "title": "Fashion-MNIST"}
        square = np.zeros((28, 28), np.uint8)
        square[6:22, 6:22] = 255
        answer = client.post("/api/predict", json={"image": data_url(png(square))}).json()
        assert answer["label"] == FASHION_MNIST.classes[answer["digit"]] and len(answer["probabilities"]) == 10
    result = sifir("report", fashion_model, "--data-dir", fashion_dir, "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "trained on Fashion-MNIST" in page


def test_old_model_files_read_as_mnist(trained_seed_model):
    from fastapi.testclient import TestClient

    from sifir.web import app as server
    from test_web_api import LOCAL
    _, info = io.load_model(trained_seed_model)
    assert "dataset" not in info   # written as files were before data sets were recorded
    with TestClient(server.create_app(trained_seed_model), base_url=LOCAL) as client:
        model = client.get("/api/model").json()
    assert model["classes"] == list("0123456789") and model["dataset"]["name"] == "mnist"


def test_the_page_names_the_classes_in_a_browser(browser, fashion_model, fashion_dir, tmp_path):
    from sifir.data.load import load
    from test_web_browser import api_predict, loadtest, open_page
    data = load("fashion-mnist", fashion_dir, download_missing=False)
    picture = tmp_path / "item.png"
    Image.fromarray(np.kron(data.test_images[2], np.ones((4, 4), np.uint8))).save(picture)   # 112×112
    with loadtest.start_server(fashion_model) as server:
        page, watch = open_page(browser, server)
        labels = page.eval_on_selector_all("#bars .bar .label", "els => els.map(e => e.textContent)")
        assert labels == list(FASHION_MNIST.classes)
        expected = api_predict(server.url, data_url_of(picture))
        page.set_input_files("#file", str(picture))
        page.wait_for_function("name => document.getElementById('digit').textContent === name",
                               arg=expected["label"])
        assert expected["label"] in page.text_content("#status")
        assert "Fashion-MNIST" in page.text_content("#model")
        page.context.close()
    assert watch.errors == [] and watch.failed == [] and watch.outside == []


def data_url_of(path) -> str:
    import base64
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("lang, words", [
    ("en", ["--validation must be below the 300 training images of the IDX files in shapes", "got 300"]),
    ("tr", ["--validation", "300 eğitim görüntüsünden az olmalı; verilen: 300"]),
])
def test_a_validation_the_data_cannot_give_is_refused_in_words(lang, words, shapes_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = sifir("train", "--dataset", "idx", "--data-dir", shapes_dir, "--model", "seed", "--epochs", "1",
                   "--validation", "300", "--out", out, env={"SIFIR_STATE_DIR": str(tmp_path), "SIFIR_LANG": lang})
    assert_clean_failure(result, *words)
    assert not out.exists()


@pytest.mark.parametrize("options, lang, words", [
    (["--validation", "50", "--fold", "6"], "en", ["--fold must be below 6", "hold 6 blocks of --validation 50; got 6"]),
    (["--validation", "50", "--fold", "6"], "tr", ["--fold 6 sayısından küçük olmalı", "verilen: 6"]),
])
def test_a_fold_the_data_cannot_give_is_refused_in_words(options, lang, words, shapes_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = sifir("train", "--dataset", "idx", "--data-dir", shapes_dir, "--model", "seed", "--epochs", "1",
                   *options, "--out", out, env={"SIFIR_STATE_DIR": str(tmp_path), "SIFIR_LANG": lang})
    assert_clean_failure(result, *words)
    assert not out.exists()


def test_a_fold_trains_on_the_rest_and_says_so_in_its_command(shapes_dir, tmp_path):
    out = tmp_path / "m.npz"
    result = sifir("train", "--dataset", "idx", "--data-dir", shapes_dir, "--model", "seed", "--epochs", "1",
                   "--validation", "50", "--fold", "5", "--out", out, "--quiet", env={"SIFIR_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "training 1 epochs on 250 images (validation 50)" in result.stdout
    info = io.load_model(out)[1]
    assert "--validation 50 --fold 5" in info["command"] and info["recipe"]["fold"] == 5
