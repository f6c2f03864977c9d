"""Faults the command line meets, run as a user runs it: every kind of picture for `predict`,
model files of another architecture or a newer format, and a disk that fills up mid-save.

The rule everywhere: one line per problem on stderr naming the file, exit code 1, no traceback,
and nothing the user already had is damaged.
"""
import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_clean_failure, sifir
from test_preprocess import png_claiming

from sifir import io, models, nn


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained seed network: `predict` only needs some answer, not a right one."""
    nn.manual_seed(0)
    return io.save_model(tmp_path_factory.mktemp("model") / "seed.npz", models.build("seed"))


def stroke(scale: int = 6) -> np.ndarray:
    """A dark '7' on white paper, uint8, 16·scale px square."""
    a = np.full((16, 16), 255, np.uint8)
    a[3, 4:12] = 0
    for i in range(4, 13):
        a[i, 12 - (i - 4) // 2] = 0
    return np.kron(a, np.ones((scale, scale), np.uint8))


def good_pictures(folder: Path) -> list[Path]:
    grey = Image.fromarray(stroke())
    ink = Image.fromarray(255 - stroke())
    pictures = {
        "palette.png": grey.convert("P", palette=Image.Palette.ADAPTIVE, colors=8),
        "grey-16bit.png": Image.fromarray(stroke().astype(np.uint16) * 257),
        "cmyk.jpg": grey.convert("CMYK"),
        "grey.gif": grey,
        "rgb.bmp": grey.convert("RGB"),
        "grey.tiff": grey,
        "one-bit.png": grey.convert("1"),
    }
    paths = []
    for name, im in pictures.items():
        im.save(folder / name)
        paths.append(folder / name)
    pal = grey.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)  # background index transparent
    pal.save(folder / "palette-transparent.png", transparency=int(np.asarray(pal)[0, 0]))
    strokes = Image.new("RGBA", grey.size, (255, 255, 255, 0))  # white strokes on nothing: alpha is the ink
    strokes.putalpha(ink)
    strokes.save(folder / "alpha-strokes.png")
    Image.merge("LA", [grey, Image.new("L", grey.size, 255)]).save(folder / "grey-alpha.png")
    wide = np.full((3, 4000), 255, np.uint8)
    wide[1, 500:3500] = 0  # a dash, 1000:1 aspect ratio
    Image.fromarray(wide).save(folder / "wide.png")
    Image.fromarray(np.ascontiguousarray(wide.T)).save(folder / "tall.png")
    return paths + [folder / n for n in ("palette-transparent.png", "alpha-strokes.png", "grey-alpha.png",
                                        "wide.png", "tall.png")]


def bad_pictures(folder: Path) -> dict[Path, str]:
    """path -> words its error line must hold."""
    Image.new("L", (60, 40), 255).save(folder / "blank.png")
    Image.new("RGB", (60, 40), (20, 20, 30)).save(folder / "all-ink.png")
    (folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000, with_pixels=False))
    (folder / "small-bomb.png").write_bytes(png_claiming(7_000, 7_000, with_pixels=True))  # 49 MP, ~60 KB
    (folder / "notes.txt").write_text("shopping list: eggs, milk\n")
    (folder / "empty.png").write_bytes(b"")
    whole = folder / "whole.png"
    Image.fromarray(stroke()).save(whole)
    (folder / "cut.png").write_bytes(whole.read_bytes()[:60])
    whole.unlink()
    (folder / "a-folder.png").mkdir()
    return {folder / "blank.png": "no digit found", folder / "all-ink.png": "no digit found",
            folder / "bomb.png": "megapixel", folder / "small-bomb.png": "megapixel",
            folder / "notes.txt": "not a picture", folder / "empty.png": "cannot read image",
            folder / "cut.png": "cannot read image", folder / "missing.png": "No such file",
            folder / "a-folder.png": "cannot read image"}


def test_predict_every_kind_of_picture_in_one_call(model_file, tmp_path):
    good = good_pictures(tmp_path)
    bad = bad_pictures(tmp_path)
    mixed = [p for pair in zip(good, bad) for p in pair] + good[len(bad):] + list(bad)[len(good):]
    result = sifir("predict", model_file, *mixed)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    answers = result.stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in answers] == [str(p) for p in good]  # each, in order
    assert all(line.split(": ")[1][0].isdigit() and "runner-up" in line for line in answers)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(bad), result.stderr  # one line per bad file, no warnings around them
    for line, (path, words) in zip(errors, bad.items()):
        assert line.startswith("sifir: error:") and str(path) in line and words in line, line


def seed_and_mlp_files(folder: Path):
    nn.manual_seed(0)
    seed_arrays, seed_meta = io.read_npz(io.save_model(folder / "seed.npz", models.build("seed")))
    mlp_arrays, mlp_meta = io.read_npz(io.save_model(folder / "mlp.npz", models.build("mlp")))
    return (seed_arrays, seed_meta), (mlp_arrays, mlp_meta)


def test_model_file_of_another_architecture(tmp_path):
    (seed_arrays, _), (_, mlp_meta) = seed_and_mlp_files(tmp_path)
    io.write_npz_atomic(tmp_path / "seed-as-mlp.npz", seed_arrays, mlp_meta)
    result = sifir("predict", tmp_path / "seed-as-mlp.npz", tmp_path / "any.png")
    assert_clean_failure(result, "seed-as-mlp.npz", "'1.weight' has shape (10, 784), the architecture needs (800, 784)")
    assert len(result.stderr.strip().splitlines()) == 1


def test_model_file_of_a_newer_format(tmp_path):
    (seed_arrays, seed_meta), _ = seed_and_mlp_files(tmp_path)
    io.write_npz_atomic(tmp_path / "future.npz", seed_arrays, dict(seed_meta, version=io.FORMAT_VERSION + 1))
    result = sifir("evaluate", tmp_path / "future.npz")
    assert_clean_failure(result, "future.npz", f"format version {io.FORMAT_VERSION + 1} is newer", "upgrade sifir")
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------- saving


def train(out: Path, mnist_dir, preexec_fn=None, **env):
    args = ["train", "--model", "seed", "--epochs", "1", "--out", out, "--data-dir", mnist_dir, "--quiet"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", SIFIR_STATE_DIR=str(out.parent.parent), **env)
    return subprocess.run([sys.executable, "-m", "sifir", *map(str, args)], check=False, capture_output=True,
                          text=True, env=env, preexec_fn=preexec_fn, timeout=600)


def test_train_replaces_an_existing_model_file_by_rename(tmp_path, mnist_dir):
    """The new file is written beside the old one and renamed over it: the old file is never
    opened for writing, so a reader (here a hard link) keeps the old bytes whole throughout."""
    folder = tmp_path / "models"
    folder.mkdir()
    out = folder / "m.npz"
    out.write_bytes(b"the user's earlier model")
    os.link(out, tmp_path / "reader")
    old_inode = out.stat().st_ino
    result = train(out, mnist_dir)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_ino != old_inode and (tmp_path / "reader").read_bytes() == b"the user's earlier model"
    io.load_model(out)
    assert [p.name for p in folder.iterdir()] == ["m.npz"]  # no temporary file left


@contextlib.contextmanager
def full_tmpfs(folder: Path):
    """A 64 KiB tmpfs at ``folder``, filled to the last byte; yields False where mounting is not
    allowed (not root, or a container without the capability)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=False,
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while f.write(b"\0" * 1024):  # unbuffered: the last write fails here, not at close
            pass
    assert os.statvfs(folder).f_bavail == 0


def file_size_limit(limit: int):
    """For preexec_fn: writes past ``limit`` bytes fail with EFBIG (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def assert_save_failed_cleanly(result, out: Path, reason: str):
    assert_clean_failure(result, f"could not write {out}", reason)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert out.read_bytes() == b"the user's earlier model"
    assert not [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_train_on_a_full_disk(tmp_path, mnist_dir):
    """A real ENOSPC from a full tmpfs where the machine allows mounting (root in CI); elsewhere the
    same failure through the file-size limit, so the test always runs."""
    with full_tmpfs(tmp_path / "disk") as mounted:
        out = tmp_path / "disk" / "m.npz"
        out.write_bytes(b"the user's earlier model")
        if mounted:
            fill(out.parent)
            result, reason = train(out, mnist_dir), "No space left on device"
        else:
            result, reason = train(out, mnist_dir, file_size_limit(16 * 1024)), "File too large"
        assert "epoch   1/1" in result.stdout  # the training itself ran; saving failed
        assert_save_failed_cleanly(result, out, reason)


def test_train_past_the_file_size_limit(tmp_path, mnist_dir):
    folder = tmp_path / "models"
    folder.mkdir()
    out = folder / "m.npz"
    out.write_bytes(b"the user's earlier model")
    result = train(out, mnist_dir, file_size_limit(16 * 1024))  # the seed model file is ~32 KB
    assert_save_failed_cleanly(result, out, "File too large")


def test_full_disk_message_is_a_sifir_error(tmp_path, monkeypatch):
    """In the library: ENOSPC from any step of the write is a ModelFileError, the old file stays."""
    from sifir.errors import ModelFileError

    out = tmp_path / "m.npz"
    out.write_bytes(b"old")

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ModelFileError, match=r"could not write .*m\.npz: No space left on device"):
        io.save_model(out, models.build("seed"))
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["m.npz"]
