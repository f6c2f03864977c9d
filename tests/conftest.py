"""Shared test fixtures."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_REPO = Path(__file__).resolve().parents[1]


def locate_mnist() -> Path:
    """The folder holding real MNIST: $SIFIR_DATA_DIR (CI: ../shared/mnist), else
    <repo>/../shared/mnist, else the user cache that `sifir download` fills.

    Fails, rather than skips, when the files are missing: tests that silently skip on a
    machine without data would report green while checking nothing.
    """
    env = os.environ.get("SIFIR_DATA_DIR")
    folder = Path(env).expanduser() if env else _REPO.parent / "shared" / "mnist"
    if not env and not folder.is_dir():
        from sifir.data.mnist import default_data_dir
        folder = default_data_dir()
    if not folder.is_absolute() and not folder.is_dir():
        folder = _REPO / folder  # a relative $SIFIR_DATA_DIR is meant from the repository root
    missing = [n for n in _MNIST_NAMES if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()]
    if missing:
        pytest.fail(f"MNIST not found in {folder} (missing {', '.join(missing)}); "
                    "set SIFIR_DATA_DIR to a folder holding the four files", pytrace=False)
    return folder.resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return locate_mnist()


@pytest.fixture(scope="session")
def trained_seed_model(tmp_path_factory, mnist_dir) -> Path:
    """The seed network (784 → 10 → 10) trained for 3 epochs on all 60,000 training images
    (a few seconds, ~93% test accuracy), saved as a model file like `sifir train` writes."""
    import numpy as np

    from sifir import io, models, nn, optim
    from sifir.data import mnist
    from sifir.train import Trainer, evaluate

    data = mnist.load_mnist(mnist_dir, download_missing=False)
    x, y = mnist.normalize(data["train_images"]), data["train_labels"].astype(np.int64)
    nn.manual_seed(0)
    model = models.build("seed")
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), batch_size=64, seed=0).fit(x, y, epochs=3)
    _, test_acc = evaluate(model, mnist.normalize(data["test_images"]), data["test_labels"].astype(np.int64))
    path = tmp_path_factory.mktemp("model") / "seed.npz"
    return io.save_model(path, model, {"preset": "seed", "epochs": 3, "optimizer": "sgd", "lr": 0.1,
                                       "batch_size": 64, "seed": 0, "test_accuracy": test_acc})


def load_loadtest():
    """benchmarks/loadtest.py is a script, not a package: import it from its path (its
    start_server runs `sifir serve` on a free port)."""
    if "sifir_loadtest" not in sys.modules:
        spec = importlib.util.spec_from_file_location("sifir_loadtest", _REPO / "benchmarks" / "loadtest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module   # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["sifir_loadtest"]


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")   # Debian's dataset-fashion-mnist


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Debian's Fashion-MNIST (`.ci/run` installs dataset-fashion-mnist). Fails, rather than
    skips, when it is missing: a skipped integration test checks nothing."""
    missing = [n for n in _MNIST_NAMES if not (FASHION_DIR / f"{n}.gz").is_file()]
    if missing:
        pytest.fail(f"Fashion-MNIST not found in {FASHION_DIR} (missing {', '.join(missing)}); "
                    "apt-get install dataset-fashion-mnist", pytrace=False)
    return FASHION_DIR
