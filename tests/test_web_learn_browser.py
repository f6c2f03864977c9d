"""The Learn view in a real browser (Debian's Chromium through Playwright) against `sifir serve`
started without a model, as a newcomer starts it: train the seed network on the real MNIST and
watch it, pause, step and resume it, use its weights in the Draw view, save it and evaluate the
file; a diverging run in Turkish; two runs compared; the settings' round trip through the URL;
a phone-sized screen; and the README's screenshot (written only when SIFIR_UPDATE_DOCS=1).

Every wait is for something the page shows (a status, a count of points), never for a time.
"""
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from conftest import load_loadtest
from test_cli import sifir
from test_web_browser import browser, digits  # noqa: F401 - the same fixtures: Chromium, MNIST's test digits
from test_web_browser import PageWatch, api_predict, canvas_png, draw_with_mouse, strokes, wait_for_answer

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "images" / "learn.png"
TRAIN_MS = 240_000   # a whole run may take this long on a busy machine; nothing here measures time
loadtest = load_loadtest()


@pytest.fixture(scope="module")
def served(tmp_path_factory, mnist_dir):
    state = tmp_path_factory.mktemp("state")   # no model remembered: the Learn view opens first
    with loadtest.start_server(env={"SIFIR_STATE_DIR": str(state)}) as server:
        yield server


class LearnWatch(PageWatch):
    """As for the drawing page; a 404 from /api/model is the page asking whether there is a model yet."""

    def __init__(self, page, url):
        super().__init__(page, url)
        page.on("response", lambda r: self.failed.remove(f"{r.status} {urlsplit(r.url).path}")
                if r.status == 404 and urlsplit(r.url).path == "/api/model"
                and f"{r.status} {urlsplit(r.url).path}" in self.failed else None)


def open_learn(browser, served, query="", **context_options):
    context = browser.new_context(**{"viewport": {"width": 1100, "height": 1000}, "accept_downloads": True,
                                     **context_options})
    page = context.new_page()
    page.set_default_timeout(30_000)
    watch = LearnWatch(page, served.url)
    page.goto(f"{served.url}/?token={served.token}&view=learn" + (f"&{query}" if query else ""))
    page.wait_for_function("() => !document.getElementById('learn-view').hidden && "
                           "document.getElementById('learn-status').textContent !== ''")
    return page, watch


@pytest.fixture
def clean(served):
    """No runs left from an earlier test."""
    import httpx
    with httpx.Client(base_url=served.url, headers={"X-Sifir-Token": served.token}, trust_env=False) as c:
        for run in c.get("/api/learn").json()["runs"]:
            c.delete(f"/api/learn/runs/{run['id']}")
    yield served


def status(page) -> str:
    return page.text_content("#learn-status")


def wait_status(page, pattern, timeout=TRAIN_MS):
    page.wait_for_function("p => new RegExp(p).test(document.getElementById('learn-status').textContent)",
                           arg=pattern, timeout=timeout)
    return status(page)


def points(page, chart="loss-chart") -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def template_pixels(page) -> list[int]:
    return page.evaluate("""() => [...document.querySelectorAll('#learn-templates canvas')].flatMap(c =>
        Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))""")


def pin_probabilities(page) -> list[float]:
    return page.evaluate("() => [...document.querySelectorAll('#pin-bars .pbar')].map(b => Number(b.dataset.p))")


def draw_on_pin_pad(page, image):
    page.locator("#pin-pad").scroll_into_view_if_needed()   # the mouse reaches only what is on screen
    box = page.locator("#pin-pad").bounding_box()
    for path in strokes(image):
        xy = [(box["x"] + (c + 0.5) / 28 * box["width"], box["y"] + (r + 0.5) / 28 * box["height"]) for r, c in path]
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=2)
        page.mouse.up()


# -- the tests ---------------------------------------------------------------------------------------------------
def test_without_a_model_the_page_opens_on_the_learn_view(browser, tmp_path, mnist_dir):
    with loadtest.start_server(env={"SIFIR_STATE_DIR": str(tmp_path)}) as server:
        context = browser.new_context(viewport={"width": 1100, "height": 1000})
        page = context.new_page()
        try:
            page.goto(f"{server.url}/?token={server.token}")
            page.wait_for_function("() => document.getElementById('tab-learn').getAttribute('aria-selected') === 'true'")
            assert page.is_hidden("#draw-view") and "token=" not in page.evaluate("() => location.href")
            page.wait_for_function("() => document.getElementById('model').textContent.includes('Learn view')")
            page.click("#tab-draw")
            assert "view=" not in page.evaluate("() => location.href") and page.is_visible("#draw-view")
        finally:
            context.close()


def test_watch_the_seed_network_learn_then_draw_save_and_evaluate(browser, clean, digits, tmp_path, mnist_dir):
    served = clean
    images, labels = digits
    page, watch = open_learn(browser, served, "model=seed&epochs=1")
    try:
        assert page.get_attribute("#tab-learn", "aria-selected") == "true"
        draw_on_pin_pad(page, images[0])                                      # the learner's own 7
        page.click("#learn-step")                                             # one batch, then pause
        wait_status(page, r"paused after update 1 ")
        page.wait_for_function("() => document.querySelectorAll('#learn-templates canvas').length === 10")
        page.wait_for_function("() => Number(document.querySelector('#pin-bars .pbar').dataset.p) > 0")
        first_pixels, first_pin = template_pixels(page), pin_probabilities(page)
        assert max(first_pin) < 0.5                                           # untrained: no idea yet

        page.select_option("select[name=pace]", "20")                          # slow enough to watch
        page.click("#learn-resume")
        before = points(page)
        page.wait_for_function("n => Number(document.getElementById('loss-chart').dataset.points) >= n + 6",
                               arg=before, timeout=TRAIN_MS)                   # the curves gain points
        page.click("#learn-pause")
        paused = wait_status(page, r"^paused after update \d+")
        step = int(re.search(r"update (\d+)", paused).group(1))
        count = points(page)
        page.click("#learn-step")                                             # nothing ran while paused:
        wait_status(page, rf"^paused after update {step + 1} ")              # the step is the next update
        assert points(page) > count

        page.select_option("select[name=pace]", "")                           # full speed to the end
        page.click("#learn-resume")
        done = wait_status(page, r"^done")
        val = float(re.search(r"done: ([\d.]+)% of the validation", done).group(1))
        assert val >= 85.0, done
        assert template_pixels(page) != first_pixels                          # W1's templates changed
        page.wait_for_function("() => Number(document.querySelectorAll('#pin-bars .pbar')[7].dataset.p) > 0.9")
        assert page.text_content("#learn-command") == "sifir train --model seed --epochs 1"
        assert page.locator("#learn-confusion td").count() == 110             # 10×10 and per-digit accuracy
        assert page.locator("#learn-mistakes canvas").count() > 0
        assert watch.errors == [] and watch.outside == [] and watch.failed == [], (watch.errors, watch.failed)

        page.click("#learn-use")                                              # the fresh weights, in Draw
        page.wait_for_function("() => !document.getElementById('draw-view').hidden")
        page.wait_for_function("() => document.getElementById('model').textContent.includes('7,940')")
        k = 4
        draw_with_mouse(page, images[k])
        answer = api_predict(served.url, canvas_png(page))
        wait_for_answer(page, answer)
        assert answer["digit"] == labels[k]

        page.click("#tab-learn")
        with page.expect_download() as download:
            page.click("#learn-save")
        saved = tmp_path / "from-the-page.npz"
        download.value.save_as(saved)
    finally:
        page.context.close()
    result = sifir("evaluate", saved, "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr
    assert float(re.search(r"test accuracy: ([\d.]+)%", result.stdout).group(1)) >= 85.0


def test_a_learning_rate_of_1e9_diverges_with_a_message_in_turkish(browser, clean):
    page, watch = open_learn(browser, clean, "lang=tr&model=seed&epochs=1&lr=1e9")
    try:
        assert page.text_content("#learn-start") == "Başlat"
        page.click("#learn-start")
        page.wait_for_selector("#learn-verdict:not([hidden])", timeout=TRAIN_MS)
        verdict = page.text_content("#learn-verdict")
        assert "ıraksadı" in verdict and "öğrenme oranı fazla büyük" in verdict and "Sıfırla" in verdict
        assert "ıraksadı" in status(page)
        assert page.is_disabled("#learn-use") and page.get_attribute("#learn-save", "aria-disabled") == "true"
        page.click("#learn-reset")
        page.wait_for_selector("#learn-verdict", state="hidden")
        wait_status(page, "Başlat'a basın")
        assert watch.errors == [] and watch.failed == [], (watch.errors, watch.failed)
    finally:
        page.context.close()


def test_compare_two_learning_rates_on_one_chart(browser, clean):
    page, watch = open_learn(browser, clean, "model=seed&epochs=1&compare=1&b_field=lr&b_value=1")
    try:
        assert page.is_checked("input[name=compare]") and page.input_value("input[name=b_value]") == "1"
        page.click("#learn-start")
        wait_status(page, r"A: done.* · B: done")
        assert page.get_attribute("#loss-chart", "data-series") == "6"      # A and B: training, estimate, validation
        assert page.get_attribute("#acc-chart", "data-series") == "6"
        assert page.get_attribute("#learn-focus-A", "aria-selected") == "true"   # A's pictures first …
        page.click("#learn-focus-B")                                               # … then B's, on request
        page.wait_for_function("() => document.getElementById('learn-focus-B').getAttribute('aria-selected') === 'true'")
        assert page.text_content("#learn-command") == "sifir train --model seed --epochs 1 --lr 1"
        assert watch.errors == [] and watch.failed == [], (watch.errors, watch.failed)
    finally:
        page.context.close()


def test_the_settings_round_trip_through_the_url(browser, clean):
    page, watch = open_learn(browser, clean)
    try:
        page.select_option("select[name=model]", "custom")
        page.fill("input[name=hidden]", "64, 32")
        page.select_option("select[name=activation]", "tanh")
        page.select_option("select[name=optimizer]", "momentum")
        page.fill("input[name=lr]", "0.003")
        page.fill("input[name=batch_size]", "128")
        page.fill("input[name=epochs]", "3")
        page.select_option("select[name=schedule]", "constant")
        page.select_option("select[name=augment]", "shift")
        page.fill("input[name=seed]", "7")
        page.check("input[name=compare]")
        page.select_option("select[name=b_field]", "activation")
        page.fill("input[name=b_value]", "sigmoid")
        url = page.evaluate("() => location.href")   # page.url may lag behind history.replaceState
        assert "token=" not in url and "model=custom" in url and "lr=0.003" in url and "hidden=64%2C32" in url
        values = page.evaluate("() => Object.fromEntries([...document.getElementById('learn-form').elements]"
                               ".map(e => [e.name, e.type === 'checkbox' ? e.checked : e.value]))")
    finally:
        page.context.close()
    query = urlsplit(url).query
    again, watch = open_learn(browser, clean, query)
    try:
        assert again.evaluate("() => Object.fromEntries([...document.getElementById('learn-form').elements]"
                              ".map(e => [e.name, e.type === 'checkbox' ? e.checked : e.value]))") == values
        assert watch.errors == [], watch.errors
    finally:
        again.context.close()


def test_the_learn_view_on_a_phone(browser, clean):
    page, watch = open_learn(browser, clean, "model=seed&epochs=1", viewport={"width": 390, "height": 844},
                             is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        layout = page.evaluate("""() => ({scroll: document.documentElement.scrollWidth, width: window.innerWidth,
            chart: document.getElementById('loss-chart').getBoundingClientRect().width,
            start: document.getElementById('learn-start').getBoundingClientRect().height})""")
        assert layout["scroll"] <= layout["width"] and layout["chart"] > 250 and layout["start"] >= 40
        page.tap("#learn-step")
        wait_status(page, r"paused after update 1 ")
        page.tap("#learn-stop")
        wait_status(page, r"^stopped")
        assert watch.errors == [] and watch.failed == [], (watch.errors, watch.failed)
    finally:
        page.context.close()


def test_screenshot_of_the_learn_view_for_the_readme(browser, clean, digits, tmp_path):
    images, _ = digits
    page, watch = open_learn(browser, clean, "model=seed&epochs=3&pace=200")
    try:
        draw_on_pin_pad(page, images[0])
        page.click("#learn-start")
        page.wait_for_function("() => document.querySelectorAll('#learn-confusion td').length === 110",
                               timeout=TRAIN_MS)                              # the first epoch is in
        page.click("#learn-pause")
        wait_status(page, "^paused")
        target = SCREENSHOT if os.environ.get("SIFIR_UPDATE_DOCS") == "1" else tmp_path / "learn.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shot = Image.open(__import__("io").BytesIO(page.screenshot(full_page=True)))
        shot.convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            target, optimize=True)
        assert target.stat().st_size < 300_000 and np.asarray(Image.open(target)).shape[1] == 1100
    finally:
        page.context.close()
