"""ONNX export: every preset and every layer type gives, in onnxruntime, the logits sifir gives,
on 1,000 real MNIST test images; the file says what it needs; bad models and bad files are
refused clearly, and an existing file is never half-overwritten."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from test_cli import assert_clean_failure, sifir
from test_cli_faults import file_size_limit
from test_docs import readme_section_blocks

from sifir import cli, export, io, models, nn, optim
from sifir.data import load_mnist, normalize
from sifir.errors import ExportError
from sifir.nn.module import Module
from sifir.train import Trainer, predict_logits

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5   # max |onnxruntime's logit − sifir's|


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    data = load_mnist(mnist_dir, download_missing=False)
    return {"train_x": normalize(data["train_images"][:512]), "train_y": data["train_labels"][:512].astype(np.int64),
            "test_x": normalize(data["test_images"][:1000]), "test_y": data["test_labels"][:1000].astype(np.int64),
            "test_images": data["test_images"][:10], "test_labels": data["test_labels"][:10]}


def few_steps(model: nn.Module, mnist, steps: int = 4) -> nn.Module:
    """A few AdamW steps: weights off their initial values, BatchNorm statistics of real data."""
    batch = 64
    Trainer(model, optim.AdamW(model.parameters(), lr=1e-3), batch_size=batch, seed=0).fit(
        mnist["train_x"][:steps * batch], mnist["train_y"][:steps * batch], epochs=1)
    for layer in model.modules():
        if hasattr(layer, "running_mean"):  # the exported statistics must not be the trivial 0 and 1
            assert np.abs(layer.running_mean).max() > 1e-3 and np.abs(layer.running_var - 1).max() > 1e-3
    return model.eval()


def run_onnx(path: Path, x: np.ndarray, output: str = "logits") -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output], {"image": x})[0]


def assert_same_answers(model: nn.Module, path: Path, x: np.ndarray) -> None:
    ours, theirs = predict_logits(model, x), run_onnx(path, x)
    assert theirs.shape == ours.shape and theirs.dtype == np.float32
    assert np.max(np.abs(theirs - ours)) <= TOLERANCE, np.max(np.abs(theirs - ours))
    assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))


def ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("preset", list(models.PRESETS))
def test_every_preset_gives_the_same_logits_in_onnxruntime(preset, mnist, tmp_path):
    nn.manual_seed(0)
    model = few_steps(models.build(preset), mnist)
    path = export.export_model(model, tmp_path / f"{preset}.onnx", {"preset": preset}).path
    assert_same_answers(model, path, mnist["test_x"])
    assert "Dropout" not in ops(path) and "Identity" not in ops(path)


# Small networks that between them hold every layer type and the Conv2d and pooling variants
# the presets lack: strides, paddings, rectangular kernels, windows that overlap or leave a
# remainder, no bias, a nested Sequential.
VARIANTS = {
    "conv-stride-2-padding-1": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)),
    "conv-rectangular-kernel-stride-padding": lambda: nn.Sequential(
        nn.Conv2d(1, 3, (3, 5), stride=(2, 1), padding=(0, 2)), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 13 * 28, 10)),
    "conv-no-bias-stride-3-batchnorm-leaky": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 5, stride=3, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10)),
    "maxpool-3-stride-2": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(3, stride=2), nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)),
    "maxpool-2-odd-input": lambda: nn.Sequential(   # 25×25 → 12×12: the last row and column fall away
        nn.Conv2d(1, 4, 4), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)),
    "maxpool-rectangular": lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.MaxPool2d((2, 3), stride=(1, 2)), nn.Flatten(), nn.Linear(2 * 25 * 12, 10)),
    "avgpool-2": lambda: nn.Sequential(
        nn.AvgPool2d(2), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)),
    "avgpool-3-stride-1": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.AvgPool2d(3, stride=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 26 * 26, 10)),
    "avgpool-3-stride-2-odd": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 2), nn.AvgPool2d(3, stride=2), nn.Flatten(), nn.Linear(3 * 13 * 13, 10)),
    "linear-no-bias-batchnorm1d-dropout": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(784, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(32, 10)),
    "nested-identity-softmax": lambda: nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Linear(784, 16), nn.Identity(), nn.Sigmoid()), nn.Linear(16, 10), nn.Softmax()),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_layer_variant_gives_the_same_logits_in_onnxruntime(name, mnist, tmp_path):
    nn.manual_seed(1)
    model = few_steps(VARIANTS[name](), mnist, steps=3)
    path = export.export_model(model, tmp_path / f"{name}.onnx").path
    assert_same_answers(model, path, mnist["test_x"])


def test_an_ensemble_gives_the_same_logits_in_onnxruntime(mnist, tmp_path):
    members = []
    for seed in range(3):
        nn.manual_seed(seed)
        members.append(few_steps(models.build("seed"), mnist))
    nn.manual_seed(3)
    members.append(few_steps(models.build("cnn"), mnist))          # members need not be alike
    ensemble = nn.Ensemble(*members).eval()
    path = export.export_model(ensemble, tmp_path / "ensemble.onnx", {"ensemble": 4}).path
    assert_same_answers(ensemble, path, mnist["test_x"])
    assert ops(path).count("Mean") == 1 and ops(path)[-1] == "Log"


def test_the_tests_cover_every_layer_type():
    """A layer type added to sifir must be exported (or refused) here before it ships."""
    nn.manual_seed(0)
    built = [models.build(p) for p in models.PRESETS] + [make() for make in VARIANTS.values()]
    covered = {type(m).__name__ for model in built for m in model.modules()}
    assert set(nn.LAYERS) <= covered, set(nn.LAYERS) - covered


def test_strides_and_paddings_reach_the_file(tmp_path):
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, (3, 5), stride=(2, 1), padding=(0, 2)), nn.MaxPool2d((2, 3), stride=(1, 2)),
                          nn.Flatten(), nn.Linear(2 * 12 * 13, 10))
    graph = export.to_onnx(model).graph
    attrs = {n.op_type: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in graph.node}
    assert attrs["Conv"] == {"kernel_shape": [3, 5], "strides": [2, 1], "pads": [0, 2, 0, 2]}
    assert attrs["MaxPool"] == {"kernel_shape": [2, 3], "strides": [1, 2]}
    assert [i.name for i in graph.initializer] == ["0.weight", "0.bias", "3.weight", "3.bias"]  # sifir's names


def test_file_pins_its_versions_and_says_what_it_needs(tmp_path, mnist):
    nn.manual_seed(0)
    model = few_steps(models.build("seed"), mnist, steps=2)
    info = {"preset": "seed", "epochs": 3, "optimizer": "sgd", "lr": 0.1, "test_accuracy": 0.9312,
            "history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}],
            "input": {"shape": [1, 28, 28], "mean": 0.1307, "std": 0.3081}}
    done = export.export_model(model, tmp_path / "seed.onnx", info, probabilities=True)
    proto = onnx.load(str(done.path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.ir_version == 10 and [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    (image,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert image.name == "image" and dims == ["batch", 1, 28, 28]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    meta = export.metadata(proto)
    assert meta["input"]["mean"] == 0.1307 and meta["input"]["std"] == 0.3081 and meta["input"]["shape"] == dims
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["training"]["preset"] == "seed" and meta["training"]["test_accuracy"] == 0.9312
    assert meta["training"]["epochs_recorded"] == 3 and "history" not in meta["training"]
    assert meta["parameters"] == {"weights": 7940, "biases": 20, "total": 7960}
    assert "seed" in proto.doc_string and "93.12%" in proto.doc_string
    assert done.difference is not None and done.difference <= TOLERANCE
    for n in (1, 7, 1000):  # the batch dimension is free
        x = mnist["test_x"][:n]
        logits, probs = run_onnx(done.path, x), run_onnx(done.path, x, "probabilities")
        assert logits.shape == (n, 10)
        np.testing.assert_allclose(probs, nn.softmax(predict_logits(model, x).astype(np.float64)), atol=1e-6)


def test_class_names_and_input_from_the_model_file():
    info = {"classes": ["T-shirt", "Trouser"], "input": {"shape": [1, 32, 32], "mean": 0.5, "std": 0.25}}
    assert export.class_names(info, 2) == ["T-shirt", "Trouser"]
    assert export.class_names(info, 10) == [str(i) for i in range(10)]   # names for another network: indices
    facts = export.input_facts(info)
    assert facts["shape"] == ["batch", 1, 32, 32] and (facts["mean"], facts["std"]) == (0.5, 0.25)
    odd = export.input_facts({"input": {"shape": "big", "mean": "x", "std": float("nan")}})
    assert odd["shape"] == ["batch", 1, 28, 28] and (odd["mean"], odd["std"]) == (0.1307, 0.3081)


class Cube(Module):
    """A layer with no ONNX mapping: y = x³."""

    def forward(self, x):
        return x ** 3


def test_a_layer_without_a_mapping_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the user's earlier file")
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(784, 10), Cube()))
    with pytest.raises(ExportError, match=r"cannot export layer 1\.1 \(Cube\).*Conv2d.*no file written"):
        export.export_model(model, out)
    monkeypatch.setenv("SIFIR_LANG", "tr")
    with pytest.raises(ExportError, match=r"1\.1 katmanı \(Cube\) dışa aktarılamıyor"):
        export.export_model(model, out)
    assert out.read_bytes() == b"the user's earlier file" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_a_subclass_is_not_exported_as_its_parent():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return super().forward(x) + 1

    with pytest.raises(ExportError, match=r"layer 2 \(Shifted\)"):
        export.to_onnx(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Shifted()))


def test_a_network_that_does_not_fit_its_input_is_refused():
    with pytest.raises(ExportError, match=r"does not run on inputs of shape \(1, 28, 28\)"):
        export.to_onnx(nn.Sequential(nn.Flatten(), nn.Linear(100, 10)))


def test_a_wrong_graph_is_never_written(tmp_path, monkeypatch):
    """The self-check runs the graph in onnxruntime before writing: a mapping that computes the
    wrong thing (here ReLU exported as Sigmoid) is refused, the old file stays."""
    monkeypatch.setitem(export.OPERATORS, nn.ReLU, export._plain("Sigmoid"))
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    nn.manual_seed(0)
    with pytest.raises(ExportError, match="differ from the model's"):
        export.export_model(models.build("seed"), out)
    assert out.read_bytes() == b"old"


# -- the command line -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_file(tmp_path_factory, mnist):
    nn.manual_seed(0)
    model = few_steps(models.build("seed"), mnist, steps=2)
    return io.save_model(tmp_path_factory.mktemp("export") / "seed.npz", model, {"preset": "seed"})


def test_export_command_writes_beside_the_model_and_says_what_it_wrote(seed_file, mnist, tmp_path):
    result = sifir("export", seed_file)
    assert result.returncode == 0, result.stderr
    out = seed_file.with_suffix(".onnx")
    assert result.stdout.startswith(f"{out}: ONNX, opset 17, IR version 10")
    assert "x = (pixel/255 − 0.1307)/0.3081" in result.stdout and "checked: onnxruntime" in result.stdout
    model, _ = io.load_model(seed_file)
    assert_same_answers(model, out, mnist["test_x"])
    tr = sifir("export", seed_file, tmp_path / "named.onnx", "--probabilities", env={"SIFIR_LANG": "tr"})
    assert tr.returncode == 0 and "IR sürümü 10" in tr.stdout and "'logits', 'probabilities'" in tr.stdout
    assert "sınandı" in tr.stdout and (tmp_path / "named.onnx").is_file()


def damaged_files(folder: Path, good: Path) -> list[Path]:
    (folder / "truncated.npz").write_bytes(good.read_bytes()[:500])
    (folder / "notes.npz").write_text("shopping list: eggs, milk\n")
    np.savez(folder / "plain.npz", weights=np.ones(3))
    arrays, meta = io.read_npz(good)
    io.write_npz_atomic(folder / "future.npz", arrays, dict(meta, version=io.FORMAT_VERSION + 1))
    io.write_npz_atomic(folder / "evil.npz", arrays, dict(meta, architecture={"type": "os.system"}))
    io.write_npz_atomic(folder / "nan.npz", dict(arrays, **{"3.bias": np.full(10, np.nan, np.float32)}), meta)
    return [folder / n for n in ("truncated.npz", "notes.npz", "plain.npz", "future.npz", "evil.npz", "nan.npz",
                                 "missing.npz")]


def test_damaged_and_foreign_files_get_the_same_errors_as_evaluate(seed_file, tmp_path, capsys):
    for bad in damaged_files(tmp_path, seed_file):
        assert cli.main(["export", str(bad)]) == 1
        exported = capsys.readouterr()
        assert cli.main(["evaluate", str(bad)]) == 1
        evaluated = capsys.readouterr()
        assert exported.err == evaluated.err and exported.err.startswith(f"sifir: error: {bad}"), exported.err
        assert len(exported.err.splitlines()) == 1 and not exported.out
    assert not list(tmp_path.glob("*.onnx"))
    assert_clean_failure(sifir("export", tmp_path / "truncated.npz"), "truncated.npz", "not a readable sifir file")


def test_an_existing_file_is_replaced_whole_or_not_at_all(seed_file, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "m.onnx"
    out.write_bytes(b"the user's earlier file")
    os.link(out, tmp_path / "reader")
    # The seed graph is ~33 KB: past a 16 KB file-size limit the write fails midway.
    result = subprocess.run([sys.executable, "-m", "sifir", "export", str(seed_file), str(out)], capture_output=True,
                            text=True, preexec_fn=file_size_limit(16 * 1024), timeout=600)
    assert_clean_failure(result, f"could not write {out}", "File too large")
    assert out.read_bytes() == b"the user's earlier file" and [p.name for p in folder.iterdir()] == ["m.onnx"]
    result = sifir("export", seed_file, out)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reader").read_bytes() == b"the user's earlier file"   # renamed over, never rewritten
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_without_the_onnx_package_the_command_says_what_to_install(seed_file, tmp_path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "onnx.py").write_text("raise ImportError('no onnx here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    result = sifir("export", seed_file, tmp_path / "m.onnx", env=env)
    assert_clean_failure(result, "needs the onnx package", "pip install 'sifir[onnx]'")
    assert not (tmp_path / "m.onnx").exists()


# -- the README's example ---------------------------------------------------------------------
def test_the_readme_lines_give_the_answers_of_sifir_predict(mnist, tmp_path, monkeypatch, capsys):
    """The README's ONNX example, exactly as printed there, on a cnn file and pictures of test
    digits, answers what `sifir predict` answers."""
    from PIL import Image

    (example,) = readme_section_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "onnx")
    monkeypatch.chdir(tmp_path)
    nn.manual_seed(0)
    io.save_model("sifir-cnn.npz", few_steps(models.build("cnn"), mnist, steps=8), {"preset": "cnn"})
    assert cli.main(["export", "sifir-cnn.npz"]) == 0
    capsys.readouterr()
    answers = []
    for image, label in zip(mnist["test_images"], mnist["test_labels"]):
        Image.fromarray(255 - image).save("digit.png")     # dark ink on white paper, as people write
        exec(compile(example.code, "README.md", "exec"), {"__name__": "__readme__"})
        onnx_answer = capsys.readouterr().out
        assert cli.main(["predict", "sifir-cnn.npz", "digit.png"]) == 0
        predicted = capsys.readouterr().out
        assert onnx_answer.strip() == f"[{predicted.split(': ')[1][0]}]", (onnx_answer, predicted, label)
        answers.append(onnx_answer)
    assert len(set(answers)) >= 3  # a network that says one digit to everything would prove little
