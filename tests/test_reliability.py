"""Nothing lost: Ctrl-C, SIGKILL mid-write and resume, with real processes and real files."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sifir import io, models, nn, optim
from sifir.train import CHECKPOINT_NAME, Trainer
from test_cli import sifir


def start(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "sifir", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))


# `sifir train` itself, with one addition: after batch B of epoch E it prints a line and waits
# until Ctrl-C has been received. A test that sends Ctrl-C after that line lands inside the epoch whatever the
# machine's speed (a fast machine trains the seed network's epoch in 0.2 s: a fixed delay after
# an epoch's line could see the whole run finish first).
PAUSING_CLI = textwrap.dedent("""
    import sys, time
    from sifir import cli
    epoch, batch = int(sys.argv[1]), int(sys.argv[2])
    build_run = cli.build_run

    def pausing_build_run(recipe, n_train, *, on_batch=None, **kw):
        def hooked(i, n, loss):
            on_batch(i, n, loss)
            if run.trainer.epoch + 1 == epoch and i == batch:
                print(f"paused in epoch {epoch} after batch {batch}", flush=True)
                while not run.trainer._stop_requested:   # until Ctrl-C's handler has run
                    time.sleep(0.01)
        run = build_run(recipe, n_train, on_batch=hooked, **kw)
        return run

    cli.build_run = pausing_build_run
    sys.exit(cli.main(sys.argv[3:]))
""")


def start_pausing(epoch, batch, *args, env=None):
    return subprocess.Popen([sys.executable, "-c", PAUSING_CLI, str(epoch), str(batch), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))


def wait_for_line(proc, prefix, timeout=120):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting with {prefix!r} in {lines}")


def test_ctrl_c_checkpoints_and_resume_is_bit_identical(tmp_path, mnist_dir):
    common = ["--model", "seed", "--epochs", "3", "--data-dir", mnist_dir, "--quiet"]
    env = {"SIFIR_STATE_DIR": str(tmp_path)}
    ckpt = tmp_path / "ckpt"
    proc = start_pausing(2, 300, "train", *common, "--checkpoint-dir", ckpt, "--out", tmp_path / "resumed.npz",
                         env=env)
    wait_for_line(proc, "paused in epoch 2 after batch 300")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted in epoch 2 after batch 300/860" in err and "checkpoint written" in err and "--resume" in err
    assert "Traceback" not in err
    assert (ckpt / CHECKPOINT_NAME).is_file() and not (tmp_path / "resumed.npz").exists()

    resumed = sifir("train", *common, "--resume", ckpt, "--out", tmp_path / "resumed.npz", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    straight = sifir("train", *common, "--out", tmp_path / "straight.npz", env=env)
    assert straight.returncode == 0, straight.stderr
    a, _ = io.read_npz(tmp_path / "resumed.npz")
    b, _ = io.read_npz(tmp_path / "straight.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed.stdout.splitlines()[-1] == straight.stdout.splitlines()[-1]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from sifir import io
    path, n = sys.argv[1], 0
    while True:  # big files, so a kill often lands in the middle of a write
        n += 1
        io.write_npz_atomic(path, {"a": np.full(3_000_000, n, np.float32)}, {"format": "sifir-model", "version": 1})
        print(n, flush=True)
""")


def test_sigkill_at_any_moment_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "model.npz"
    rng = np.random.default_rng(0)
    for attempt in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one whole file exists
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.kill()
        proc.wait()
        arrays, meta = io.read_npz(path)  # loads, and is one whole version
        values = np.unique(arrays["a"])
        assert len(values) == 1 and values[0] >= 1 and arrays["a"].size == 3_000_000


def test_sigkill_during_training_then_resume(tmp_path, mnist_dir):
    ckpt = tmp_path / "ckpt"
    proc = start("train", "--model", "seed", "--epochs", "50", "--checkpoint-dir", ckpt, "--data-dir", mnist_dir,
                 "--quiet", "--out", tmp_path / "m.npz", env={"SIFIR_STATE_DIR": str(tmp_path)})
    wait_for_line(proc, "epoch   2/50")   # printed after epoch 2's checkpoint: the kill lands later
    proc.kill()
    proc.wait()
    nn.manual_seed(0)
    model = models.build("seed")
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1))
    trainer.load_checkpoint(ckpt)
    assert trainer.epoch >= 2 and len(trainer.history) == trainer.epoch
    resumed = sifir("train", "--model", "seed", "--epochs", str(trainer.epoch + 1), "--resume", ckpt,
                    "--data-dir", mnist_dir, "--quiet", "--out", tmp_path / "m.npz",
                    env={"SIFIR_STATE_DIR": str(tmp_path)})
    assert resumed.returncode == 0, resumed.stderr
    assert not list(ckpt.glob(".*.tmp"))


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, mnist_dir):
    ckpt = tmp_path / "ckpt"
    nn.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=ckpt).save_checkpoint()
    result = sifir("train", "--model", "seed", "--resume", ckpt, "--data-dir", mnist_dir, "--quiet",
                   "--out", tmp_path / "m.npz")
    assert result.returncode == 1 and "another architecture" in result.stderr and "Traceback" not in result.stderr


def test_resume_from_an_empty_folder_is_a_clear_error(tmp_path, mnist_dir):
    (tmp_path / "empty").mkdir()
    result = sifir("train", "--model", "seed", "--resume", tmp_path / "empty", "--data-dir", mnist_dir, "--quiet")
    assert result.returncode == 1 and "no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    ckpt = tmp_path / "ckpt"
    nn.manual_seed(0)
    model = models.build("seed")
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=ckpt).save_checkpoint()
    path = ckpt / CHECKPOINT_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x00" * 100)
    with pytest.raises(Exception) as info:
        Trainer(model, optim.SGD(model.parameters(), lr=0.1)).load_checkpoint(ckpt)
    assert type(info.value).__name__ == "ModelFileError"


@pytest.mark.parametrize("damage", ["missing", "list"])
def test_checkpoint_with_missing_entries_is_a_clear_error(tmp_path, damage):
    ckpt = tmp_path / "ckpt"
    nn.manual_seed(0)
    model = models.build("seed")
    path = Trainer(model, optim.SGD(model.parameters(), lr=0.1), checkpoint_dir=ckpt).save_checkpoint()
    arrays, meta = io.read_npz(path, "sifir-checkpoint")
    if damage == "missing":
        del meta["optimizer"]
    else:                      # valid JSON of the wrong kind: a list where an object belongs
        meta["optimizer"] = list(meta["optimizer"])
    io.write_npz_atomic(path, arrays, meta)
    with pytest.raises(Exception) as info:
        Trainer(model, optim.SGD(model.parameters(), lr=0.1)).load_checkpoint(ckpt)
    assert type(info.value).__name__ == "ModelFileError" and "damaged checkpoint" in str(info.value)


def test_loading_a_model_does_not_shift_the_random_numbers(tmp_path):
    nn.manual_seed(5)
    path = io.save_model(tmp_path / "m.npz", models.build("seed"))
    nn.manual_seed(1)
    expected = nn.init.get_rng().random(3)
    nn.manual_seed(1)
    io.load_model(path)
    assert np.array_equal(nn.init.get_rng().random(3), expected)
