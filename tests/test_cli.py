"""The command line, run as a user runs it: a real process, real files, real MNIST."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def sifir(*args, env=None, cwd=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "sifir", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def assert_clean_failure(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("sifir: error:"), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory, mnist_dir):
    folder = tmp_path_factory.mktemp("cli")
    out = folder / "seed.npz"
    result = sifir("train", "--model", "seed", "--epochs", "2", "--out", out, "--data-dir", mnist_dir, "--quiet",
                   env={"SIFIR_STATE_DIR": str(folder / "state")})
    assert result.returncode == 0, result.stderr
    return out, result, folder


def test_help_shows_defaults():
    result = sifir("train", "--help")
    assert result.returncode == 0
    for option in ("--model", "--epochs", "--batch-size", "--lr", "--optimizer", "--seed", "--data-dir", "--out"):
        assert option in result.stdout
    assert "default: mlp" in result.stdout and "default: 0" in result.stdout
    for command in ("train", "evaluate", "predict", "explain", "download"):
        assert command in sifir("--help").stdout


def test_help_never_says_default_none():
    # options whose default is None say in words what happens without them
    for command in ("train", "evaluate", "predict", "explain", "download", "serve", "report"):
        text = sifir(command, "--help").stdout
        assert "None" not in text, command
    serve = " ".join(sifir("serve", "--help").stdout.split())   # help wraps lines
    assert "the last one trained" in serve and "default: 8000" in serve


def test_train_prints_summary_epochs_and_test_accuracy(seed_model):
    out, result, folder = seed_model
    text = result.stdout
    assert "learnable weights: 7,940  (+ 20 biases = 7,960 parameters)" in text
    assert "W 10×784" in text and "W 10×10" in text
    assert text.count("val accuracy") == 2
    last = text.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith("%")
    assert float(last.split()[-1].rstrip("%")) > 85
    assert out.is_file() and f"model saved to {out}" in text
    assert (folder / "state" / "last-model").read_text().strip() == str(out.resolve())


def test_evaluate_prints_per_digit_and_confusion(seed_model, mnist_dir):
    out, train_result, _ = seed_model
    result = sifir("evaluate", out, "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr
    assert "per-digit accuracy" in result.stdout and "confusion matrix" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == train_result.stdout.strip().splitlines()[-1]
    rows = [line.split() for line in result.stdout.splitlines() if line[:9].strip().isdigit() and len(line.split()) == 11]
    assert len(rows) == 10 and sum(sum(map(int, r[1:])) for r in rows) == 10000


def mnist_test_digits(mnist_dir, count):
    images = np.frombuffer(gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    labels = np.frombuffer(gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return images.reshape(-1, 28, 28)[:count], labels[:count]


def test_predict_reads_user_pictures(seed_model, mnist_dir, tmp_path):
    out, _, _ = seed_model
    images, labels = mnist_test_digits(mnist_dir, 20)
    paths = []
    for i, image in enumerate(images):
        # as a user would have it: dark ink on white paper, bigger, in colour, as PNG or JPEG
        big = Image.fromarray(255 - image).resize((140, 140), Image.BILINEAR).convert("RGB")
        path = tmp_path / f"digit{i}.{'png' if i % 2 else 'jpg'}"
        big.save(path)
        paths.append(path)
    result = sifir("predict", out, *paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 20 and all("runner-up" in line for line in lines)
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert np.mean(np.array(predicted) == labels) >= 0.8


def test_predict_bad_and_blank_pictures(seed_model, tmp_path):
    out, _, _ = seed_model
    (tmp_path / "notes.txt").write_text("not a picture")
    Image.new("L", (50, 50), 255).save(tmp_path / "blank.png")
    result = sifir("predict", out, tmp_path / "notes.txt", tmp_path / "blank.png")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "notes.txt" in result.stderr and "blank" in result.stderr


def test_damaged_model_file(tmp_path, seed_model):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(seed_model[0].read_bytes()[:500])
    assert_clean_failure(sifir("evaluate", bad), "bad.npz")
    (tmp_path / "other.npz").write_bytes(b"PK\x03\x04 nonsense")
    assert_clean_failure(sifir("predict", tmp_path / "other.npz", tmp_path / "x.png"), "other.npz")


def test_nan_loss_stops_and_keeps_the_users_file(tmp_path, mnist_dir):
    out = tmp_path / "precious.npz"
    out.write_bytes(b"the user's earlier model")
    result = sifir("train", "--model", "seed", "--epochs", "2", "--lr", "1e30", "--out", out,
                   "--data-dir", mnist_dir, "--quiet")
    assert_clean_failure(result, "learning rate", "--lr")
    assert out.read_bytes() == b"the user's earlier model"


@pytest.mark.parametrize("model, lr", [("seed", "1e9"), ("mlp", "10")])
def test_a_finite_explosion_stops_too_and_keeps_the_users_file(tmp_path, mnist_dir, model, lr):
    """Before, these trained on to a 9.8 % and an 11 % model, saved with exit 0."""
    out = tmp_path / "precious.npz"
    out.write_bytes(b"the user's earlier model")
    result = sifir("train", "--model", model, "--lr", lr, "--out", out, "--data-dir", mnist_dir, "--quiet",
                   env={"SIFIR_STATE_DIR": str(tmp_path), "SIFIR_LANG": "en"})
    assert_clean_failure(result, "training diverged at epoch 1", "far above", f"learning rate {float(lr):g}",
                         "try a smaller one")
    assert "RuntimeWarning" not in result.stderr
    assert out.read_bytes() == b"the user's earlier model" and not list(tmp_path.glob("*.last-good.npz"))


def test_corrupt_data_file_is_named(tmp_path, mnist_dir):
    for f in mnist_dir.iterdir():
        if f.name.endswith(".gz"):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc"))
    result = sifir("train", "--model", "seed", "--epochs", "1", "--data-dir", tmp_path, "--out", tmp_path / "m.npz")
    assert_clean_failure(result, "train-labels-idx1-ubyte")
    assert not (tmp_path / "m.npz").exists()


def test_explain_replays_the_tutorial(mnist_dir):
    result = sifir("explain", "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr
    for text in ("h = x + w1 = 10 + (-2) = 8", "y = h · w2 = 8 · 3 = 24", "dy/dw1 = dy/dh · dh/dw1 = 3 · 1 = 3",
                 "dy/dw2 = h = 8", "7,940", "W1: 10×784"):
        assert text in result.stdout


def test_bad_arguments():
    result = sifir("train", "--model", "nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert_clean_failure(sifir("train", "--model", "seed", "--lr", "-1"), "--lr")
