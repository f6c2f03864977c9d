"""The `cnn` and `best` presets: they build, run forward and backward, learn on real digits,
resume bit for bit with augmentation, and `sifir train --augment` reaches the trainer."""
import math

import numpy as np
import pytest

from sifir import io, models, nn
from sifir.augment import make_augment
from sifir.recipe import make_optimizer, make_schedule
from sifir.data import mnist
from sifir.train import Trainer, evaluate
from test_cli import sifir


@pytest.mark.parametrize("name", ["cnn", "best"])
def test_preset_forward_backward_and_recipe(name):
    preset = models.get(name)
    nn.manual_seed(0)
    model = preset.build()
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    logits = model(x)
    assert logits.shape == (4, 10) and logits.dtype == np.float32
    loss = nn.CrossEntropyLoss()
    loss(logits, np.arange(4))
    model.backward(loss.backward(), need_input_grad=False)
    assert all(p.grad is not None and p.grad.shape == p.shape and np.all(np.isfinite(p.grad))
               for p in model.parameters())
    assert any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert preset.augment in ("shift", "elastic") and make_augment(preset.augment) is not None


@pytest.fixture(scope="module")
def digits(mnist_dir):
    data = mnist.load_mnist(mnist_dir)
    x, y = mnist.normalize(data["train_images"][:3000]), data["train_labels"][:3000].astype(np.int64)
    test_x, test_y = mnist.normalize(data["test_images"][:1000]), data["test_labels"][:1000].astype(np.int64)
    return x, y, test_x, test_y


def trainer_for(name, epochs, n, **kwargs):
    preset = models.get(name)
    nn.manual_seed(0)
    model = preset.build()
    optimizer = make_optimizer(preset.optimizer, model.parameters(), preset.lr, preset.momentum, preset.weight_decay)
    schedule = make_schedule(preset.schedule, optimizer, epochs * math.ceil(n / preset.batch_size))
    return Trainer(model, optimizer, nn.CrossEntropyLoss(label_smoothing=preset.label_smoothing),
                   batch_size=preset.batch_size, seed=0, schedule=schedule, augment=make_augment(preset.augment),
                   **kwargs)


def test_cnn_recipe_learns_digits_from_3000_examples(digits):
    x, y, test_x, test_y = digits
    trainer = trainer_for("cnn", 3, len(x))
    trainer.fit(x, y, epochs=3)
    _, accuracy = evaluate(trainer.model, test_x, test_y)
    assert accuracy >= 0.93, accuracy


def test_resume_with_augmentation_is_bit_for_bit(digits, tmp_path):
    x, y = digits[0][:512], digits[1][:512]
    straight = trainer_for("best", 2, len(x))
    straight.fit(x, y, epochs=2)
    first = trainer_for("best", 2, len(x), checkpoint_dir=tmp_path)
    first.fit(x, y, epochs=1)
    resumed = trainer_for("best", 2, len(x), checkpoint_dir=tmp_path)
    resumed.load_checkpoint(tmp_path)
    resumed.fit(x, y, epochs=2)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)   # weights and BatchNorm running statistics


def test_train_command_takes_augment(tmp_path, mnist_dir):
    out = tmp_path / "seed.npz"
    result = sifir("train", "--model", "seed", "--epochs", "1", "--augment", "shift", "--out", out,
                   "--data-dir", mnist_dir, "--quiet", env={"SIFIR_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "augment=shift" in result.stdout
    _, info = io.load_model(out)
    assert info["augment"] == "shift"
    bad = sifir("train", "--model", "seed", "--augment", "blur", "--data-dir", mnist_dir)
    assert bad.returncode == 2 and "invalid choice: 'blur'" in bad.stderr
