"""Test-time views (nn.Views): one network reads shifted copies of each image and averages their
probabilities; the recipe option `views`, the model file, ONNX, the page and the ensemble."""
import json

import numpy as np
import onnxruntime  # noqa: F401  (export's self-check runs in it)
import pytest

from sifir import export, io, models, nn
from sifir.activations import hidden_activations
from sifir.errors import ModelFileError
from sifir.nn.gradcheck import gradcheck
from sifir.augment import affine_matrices, warp
from sifir.nn.views import MOVES, SHIFTS, VIEW_SETS, View, mirror, resample, resampling, shift, unresample, unshift
from sifir.recipe import Recipe, RecipeError, in_views


def small_cnn(seed=0, image=(5, 6)):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * image[0] * image[1], 4))


def test_shift_moves_the_picture_and_fills_the_border():
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    right = shift(x, 0, 1, -1.0)
    np.testing.assert_array_equal(right[0, 0], [[-1, 0, 1, 2], [-1, 4, 5, 6], [-1, 8, 9, 10]])
    up = shift(x, -1, 0, 7.0)
    np.testing.assert_array_equal(up[0, 0], [[4, 5, 6, 7], [8, 9, 10, 11], [7, 7, 7, 7]])
    # the adjoint: <shift(x), g> = <x, unshift(g)> for the moved part (the fill carries no x)
    g = np.random.default_rng(0).standard_normal(x.shape)
    for dy, dx in SHIFTS[9]:
        assert np.isclose(np.sum(shift(x, dy, dx, 0.0) * g), np.sum(x * unshift(g, dy, dx)))


def test_forward_is_the_log_of_the_mean_probability_over_the_views():
    net = small_cnn().eval()
    x = np.random.default_rng(1).standard_normal((3, 1, 5, 6)).astype(np.float32)
    views = nn.Views(net, 5, fill=-0.5, image=(5, 6))
    expected = np.mean([nn.softmax(net(shift(x, dy, dx, -0.5)).astype(np.float64)) for dy, dx in SHIFTS[5]], axis=0)
    np.testing.assert_allclose(np.exp(views(x)), expected, rtol=1e-5)
    np.testing.assert_allclose(nn.softmax(nn.Views(net, 1, image=(5, 6))(x)), nn.softmax(net(x)), rtol=1e-5, atol=1e-7)
    # a flat input (an MLP's) is shifted as the picture it is
    mlp = nn.Sequential(nn.Linear(30, 4)).eval()
    flat = x.reshape(3, 30)
    expected = np.mean([nn.softmax(mlp(shift(x, dy, dx, 0.0).reshape(3, 30))) for dy, dx in SHIFTS[9]], axis=0)
    np.testing.assert_allclose(np.exp(nn.Views(mlp, 9, image=(5, 6))(flat)), expected, rtol=1e-5)


def test_mirrored_views_add_the_mirror_image_of_each_move():
    assert MOVES[10] == tuple((dy, dx, m) for m in (False, True) for dy, dx in SHIFTS[5])
    assert MOVES[18] == tuple((dy, dx, m) for m in (False, True) for dy, dx in SHIFTS[9])
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    np.testing.assert_array_equal(mirror(x)[0, 0], [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]])
    net = small_cnn().eval()
    x = np.random.default_rng(6).standard_normal((3, 1, 5, 6)).astype(np.float32)
    flipped = np.ascontiguousarray(x[..., ::-1])
    # the mirror first, then the move: shift(mirror(x)); an asymmetric network tells them apart
    expected = np.mean([nn.softmax(net(shift(image, dy, dx, -0.5)).astype(np.float64))
                        for image in (x, flipped) for dy, dx in SHIFTS[5]], axis=0)
    np.testing.assert_allclose(np.exp(nn.Views(net, 10, fill=-0.5, image=(5, 6))(x)), expected, rtol=1e-5)
    assert not np.allclose(expected, np.exp(nn.Views(net, 5, fill=-0.5, image=(5, 6))(x)), rtol=1e-3)
    mlp = nn.Sequential(nn.Linear(30, 4)).eval()
    expected = np.mean([nn.softmax(mlp(shift(image, dy, dx, 0.0).reshape(3, 30)))
                        for image in (x, flipped) for dy, dx in SHIFTS[9]], axis=0)
    np.testing.assert_allclose(np.exp(nn.Views(mlp, 18, image=(5, 6))(x.reshape(3, 30))), expected, rtol=1e-5)


def test_turned_views_are_the_nine_moves_turned_and_the_digit_scaled():
    assert VIEW_SETS[9] == tuple(View(dy, dx) for dy, dx in SHIFTS[9])
    assert VIEW_SETS[27] == tuple(View(dy, dx, False, turn) for dy, dx in SHIFTS[9] for turn in (0.0, -6.0, 6.0))
    assert VIEW_SETS[29] == VIEW_SETS[27] + (View(0, 0, False, 0.0, 0.92), View(0, 0, False, 0.0, 1.08))
    assert VIEW_SETS[29][0] == View(0, 0) and not VIEW_SETS[29][0].resampled
    assert sum(view.resampled for view in VIEW_SETS[29]) == 20


@pytest.mark.parametrize("image", [(28, 28), (5, 6)])
def test_a_turned_view_reads_what_the_augmentation_warps(image):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 1, *image)).astype(np.float32)
    for view in VIEW_SETS[29]:
        if not view.resampled:
            continue
        table = resampling(view, image)
        expected = warp(x, affine_matrices((view.dx, view.dy), view.turn, view.scale), fill=-0.42)
        np.testing.assert_allclose(resample(x, table, -0.42), expected, atol=1e-5)
        # bilinear weights: non-negative, one in all (the fill's share included)
        assert table[1].min() >= 0 and np.allclose(table[1].sum(axis=0), 1.0)
        # the adjoint: <resample(x), g> = <x, unresample(g)> when the fill is 0
        g = rng.standard_normal(x.shape)
        assert np.isclose(np.sum(resample(x.astype(np.float64), table, 0.0) * g),
                          np.sum(x * unresample(g, table)))
    # a turn by 6° moves the picture's corners by fractions of a pixel, not whole ones
    turned = resample(x, resampling(View(0, 0, False, 6.0), image), 0.0)
    assert not any(np.allclose(turned, shift(x, dy, dx, 0.0)) for dy, dx in SHIFTS[9])


def test_turned_views_average_the_networks_probabilities():
    net = small_cnn().eval()
    x = np.random.default_rng(8).standard_normal((3, 1, 5, 6)).astype(np.float32)

    def read(view):   # each view made as the augmentation would make it
        if not view.resampled:
            return shift(x, view.dy, view.dx, -0.5)
        return warp(x, affine_matrices((view.dx, view.dy), view.turn, view.scale), fill=-0.5)
    for views in (27, 29):
        expected = np.mean([nn.softmax(net(read(view)).astype(np.float64)) for view in VIEW_SETS[views]], axis=0)
        np.testing.assert_allclose(np.exp(nn.Views(net, views, fill=-0.5, image=(5, 6))(x)), expected, rtol=1e-5)


@pytest.mark.parametrize("views", [5, 9, 10, 18, 27, 29])
def test_gradients_match_central_differences(views):
    # ε = 1e-5: an input pixel near the border is seen by few views and its gradient can be ~1e-6,
    # where ε = 1e-6 leaves only four digits above the round-off of L (about 1e-16 / ε)
    model = nn.Views(small_cnn(), views, fill=-0.4, image=(5, 6))
    errors = gradcheck(model, np.random.default_rng(2).standard_normal((3, 1, 5, 6)), eps=1e-5)
    assert max(errors.values()) < 1e-5, errors
    assert {"input", "net.0.weight", "net.3.bias"} <= set(errors)
    flat = nn.Views(nn.Sequential(nn.Linear(30, 5), nn.Tanh(), nn.Linear(5, 4)), views, fill=0.3, image=(5, 6))
    errors = gradcheck(flat, np.random.default_rng(3).standard_normal((2, 30)), eps=1e-5)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("kwargs, message", [
    (dict(views=3), "views must be one of"), (dict(views=5.0), "views must be one of"),
    (dict(views=True), "views must be one of"), (dict(image=(28,)), "image must be"),
    (dict(image=(0, 28)), "image must be"),
])
def test_bad_views_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Views(small_cnn(), **kwargs)
    with pytest.raises(ValueError, match="cannot be wrapped again"):
        nn.Views(nn.Views(small_cnn()))


def test_file_round_trip_and_damaged_files(tmp_path):
    nn.manual_seed(0)
    model = nn.Views(models.build("seed"), 5, fill=-0.4242)
    path = io.save_model(tmp_path / "views.npz", model, {"preset": "seed", "views": 5})
    loaded, _ = io.load_model(path)
    assert isinstance(loaded, nn.Views) and loaded.config() == {"views": 5, "fill": -0.4242, "image": [28, 28]}
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model.eval()(x))
    assert io.count_parameters(loaded)["weights"] == 7940

    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(arrays.pop(io.META_KEY)))

    def damaged(change, name):
        m = json.loads(json.dumps(meta))
        change(m["architecture"])
        out = tmp_path / name
        np.savez(out, **arrays, **{io.META_KEY: np.array(json.dumps(m))})
        return out
    cases = [(lambda a: a["config"].update(views=4), "views must be one of"),
             (lambda a: a["config"].update(fill="x"), "fill must be a finite number"),
             (lambda a: a["config"].update(code="rm -rf"), "bad arguments for Views"),
             (lambda a: a.update(net={"type": "Views", "config": {}, "net": a["net"]}), "cannot be wrapped again"),
             (lambda a: a.update(net={"type": "Nonsense"}), "unknown layer type 'Nonsense'")]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(ModelFileError, match=message):
            io.load_model(damaged(change, f"bad{i}.npz"))
    # the arrays of the network inside must all be there
    del arrays["net.1.weight"]
    with pytest.raises(ModelFileError, match=r"missing array 'net\.1\.weight'"):
        io.load_model(damaged(lambda a: None, "missing.npz"))


def test_the_page_sees_the_network_and_the_averaged_answer():
    nn.manual_seed(0)
    model = nn.Views(models.build("seed"), 5, fill=-0.42)
    x = np.random.default_rng(4).standard_normal((1, 1, 28, 28)).astype(np.float32)
    hidden, output = hidden_activations(model, x)
    assert [h.index for h in hidden] == ["net.2", "net.4"]
    np.testing.assert_array_equal(hidden[0].output, hidden_activations(model.net, x)[0][0].output)
    np.testing.assert_array_equal(output, model.eval()(x))
    assert nn.views_of(model) == 5 and nn.views_of(model.net) == 1
    assert nn.views_of(nn.Ensemble(model, model)) == 5


def test_onnx_gives_what_sifir_gives():
    x = np.random.default_rng(5).standard_normal((7, 1, 28, 28)).astype(np.float32)
    for name, views in (("fast", 9), ("seed", 5), ("cnn", 18)):
        nn.manual_seed(0)
        model = nn.Views(models.build(name), views, fill=-0.42).eval()
        difference, scale = export.onnxruntime_difference(export.to_onnx(model, {}), model, x)
        assert difference < 1e-5 * max(1.0, scale)
    # turned views: a Gather of each output pixel's neighbours, weighted and summed
    nn.manual_seed(0)
    turned = nn.Views(models.build("fast"), 29, fill=-0.42).eval()
    difference, scale = export.onnxruntime_difference(export.to_onnx(turned, {}), turned, x)
    assert difference < 1e-5 * max(1.0, scale)
    for views in (5, 10, 27):
        mlp = nn.Views(models.custom_mlp([20]), views, fill=-0.42).eval()
        proto = export.to_onnx(mlp, {"input": {"shape": [784]}})
        difference, scale = export.onnxruntime_difference(proto, mlp, x.reshape(7, 784))
        assert difference < 1e-5 * max(1.0, scale)
    pair = nn.Ensemble(nn.Views(models.build("seed"), 5, fill=-0.4), nn.Views(models.build("cnn"), 5, fill=-0.4)).eval()
    difference, scale = export.onnxruntime_difference(export.to_onnx(pair, {}), pair, x)
    assert difference < 1e-5 * max(1.0, scale)


def test_the_recipe_says_how_many_views():
    assert Recipe(model="best").resolved().views == 29
    assert Recipe(model="cnn").resolved().views == 1 and Recipe(model="custom").resolved().views == 1
    # clothes are read mirrored too (the network learned them mirrored); digits never
    assert Recipe(model="cnn", dataset="fashion-mnist").resolved().views == 10
    assert Recipe(model="cnn", dataset="fashion-mnist", views=5).resolved().views == 5
    assert Recipe(model="cnn", views=9).resolved().command() == "sifir train --model cnn --views 9"
    assert Recipe(model="best", views=1).resolved().command() == "sifir train --model best --views 1"
    for bad in (3, 5.0, "5", True):
        with pytest.raises(RecipeError, match=r"--views must be one of 1, 5, 9, 10, 18") as e:
            Recipe(model="seed", views=bad).resolved()
        assert e.value.field == "views" and "görünüm" in e.value.render("tr")


def test_in_views_wraps_the_trained_network_once():
    from sifir.data.inputs import MNIST_FACTS
    net = models.build("seed")
    kept = in_views(net, 5, MNIST_FACTS)
    assert isinstance(kept, nn.Views) and kept.net is net
    assert np.isclose(kept.fill, (0 - MNIST_FACTS.mean) / MNIST_FACTS.std)   # a blank pixel, normalised
    assert in_views(kept, 9, MNIST_FACTS).net is net and in_views(kept, 1, MNIST_FACTS) is net
    assert in_views(net, None, MNIST_FACTS) is net


# -- sifir train --views --------------------------------------------------------------------------
def train(*args, state):
    from test_cli import sifir
    return sifir("train", *map(str, args), env={"SIFIR_STATE_DIR": str(state), "OPENBLAS_NUM_THREADS": "1"})


def test_train_keeps_the_network_in_views_and_says_both_accuracies(tmp_path, mnist_dir):
    out = tmp_path / "seed5.npz"
    result = train("--model", "seed", "--epochs", "1", "--views", "5", "--data-dir", mnist_dir, "--out", out,
                   "--quiet", state=tmp_path)
    assert result.returncode == 0, result.stderr
    model, info = io.load_model(out)
    assert isinstance(model, nn.Views) and model.views == 5
    assert info["views"] == 5 and info["recipe"]["views"] == 5 and "--views 5" in info["command"]
    from sifir.recipe import load_data
    from sifir.train import evaluate
    data = load_data(Recipe(model="seed", data_dir=str(mnist_dir)).resolved(), log=lambda *a: None)
    assert info["test_accuracy"] == evaluate(model, data.test_x, data.test_y)[1] > 0.85
    assert info["one_view_test_accuracy"] == evaluate(model.net, data.test_x, data.test_y)[1] > 0.85
    lines = result.stdout.splitlines()
    assert f"test accuracy on the images alone: {info['one_view_test_accuracy']:.2%}; read in 5 views" in lines[-2]
    assert lines[-1] == f"test accuracy: {info['test_accuracy']:.2%}"

    # an ensemble in views takes this network (trained by the same recipe) as its first member
    members = tmp_path / "pair.members"
    members.mkdir()
    io.save_model(members / "seed-0.npz", model.net, {**info, "recipe": {**info["recipe"], "views": 1}})
    pair = train("--model", "seed", "--epochs", "1", "--views", "5", "--ensemble", "2", "--data-dir", mnist_dir,
                 "--out", tmp_path / "pair.npz", "--quiet", state=tmp_path)
    assert pair.returncode == 0, pair.stderr
    assert "ensemble: network 1 of 2 (seed 0) already trained by this recipe" in pair.stdout
    ensemble, ensemble_info = io.load_model(tmp_path / "pair.npz")
    assert all(isinstance(m, nn.Views) and m.views == 5 for m in ensemble) and ensemble_info["views"] == 5
    assert ensemble_info["test_accuracy"] == evaluate(ensemble, data.test_x, data.test_y)[1]
    alone = nn.Ensemble(*(m.net for m in ensemble))
    assert ensemble_info["one_view_test_accuracy"] == evaluate(alone, data.test_x, data.test_y)[1]
    assert f"test accuracy on the images alone: {ensemble_info['one_view_test_accuracy']:.2%}" in pair.stdout


def test_every_front_end_reads_a_model_in_views(tmp_path, mnist_dir):
    from fastapi.testclient import TestClient
    from PIL import Image

    from sifir.data import mnist
    from sifir.messages import page_messages
    from sifir.web import app as server
    from test_cli import sifir
    from test_web_api import LOCAL, data_url, png

    out = tmp_path / "seed5.npz"
    assert train("--model", "seed", "--epochs", "1", "--views", "5", "--data-dir", mnist_dir, "--out", out,
                 "--quiet", state=tmp_path).returncode == 0
    env = {"SIFIR_STATE_DIR": str(tmp_path)}
    evaluated = sifir("evaluate", str(out), "--data-dir", str(mnist_dir), env=env)
    assert evaluated.returncode == 0 and evaluated.stdout.splitlines()[-1] == \
        f"test accuracy: {io.load_model(out)[1]['test_accuracy']:.2%}"
    digit = mnist.load_mnist(mnist_dir, download_missing=False)["test_images"][0]   # a seven
    Image.fromarray(255 - digit).save(tmp_path / "seven.png")
    predicted = sifir("predict", str(out), str(tmp_path / "seven.png"), env=env)
    assert predicted.returncode == 0 and "7" in predicted.stdout, predicted.stderr
    exported = sifir("export", str(out), str(tmp_path / "seed5.onnx"), env=env)
    assert exported.returncode == 0 and (tmp_path / "seed5.onnx").is_file(), exported.stderr
    reported = sifir("report", str(out), "--out", str(tmp_path / "report"), "--data-dir", str(mnist_dir), env=env)
    assert reported.returncode == 0 and (tmp_path / "report" / "index.html").is_file(), reported.stderr
    with TestClient(server.create_app(out), base_url=LOCAL) as client:
        model = client.get("/api/model").json()
        assert model["views"] == 5 and model["ensemble"] is None
        assert [h["index"] for h in model["hidden"]] == ["net.2", "net.4"]
        answer = client.post("/api/predict", json={"image": data_url(png(digit))}).json()
    assert len(answer["probabilities"]) == 10 and abs(sum(answer["probabilities"]) - 1) < 1e-6
    assert "{count}" in page_messages("en")["views"] and "{count}" in page_messages("tr")["views"]
