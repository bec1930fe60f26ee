"""The web demo (examples/web, onnxruntime-web's wasm) in headless Chromium, driven through its buttons, against
edgeadapt.runtime on the same drawings, and on photos for an image model (its file input, the canvas's RGBA pixels
through prepareInput). Writes a screenshot after adaptation to test-reports/web-demo.png."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest
from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.runtime.preprocess import prepare
from js_targets import PRETRAINED, ROOT, TOLERANCE, fixed_task, require
from test_runtime_inputs import camera_frame

pytestmark = pytest.mark.browser
WEB = ROOT / "examples" / "web"
REPORTS = ROOT / "test-reports"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a test pattern as the camera
WAIT_MS = 120_000


def _serve_module():
    spec = importlib.util.spec_from_file_location("edgeadapt_web_serve", WEB / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (a persistent context: the profile in a temporary folder)."""
    chromium = os.environ.get("EDGEADAPT_CHROMIUM") or shutil.which("chromium")
    require(chromium is not None, "chromium is not installed")
    require(importlib.util.find_spec("playwright") is not None, "playwright is not installed (pip install playwright)")
    require((WEB / "vendor" / "ort").is_dir(), f"run `npm ci && npm run build` in {WEB}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1150, "height": 860})
        yield context
        context.close()


@contextlib.contextmanager
def _demo(browser, artifact: Path):
    """A page of the demo serving ``artifact``, loaded; no page errors allowed."""
    server = _serve_module().make_server(artifact, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors: list[str] = []
    try:
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("window.demo && (demo.state.learner || demo.error)", timeout=WAIT_MS)
        assert page.evaluate("demo.error") is None
        yield page
        assert not errors, errors
        page.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(browser):
    with _demo(browser, PRETRAINED) as page:
        yield page


def _classify(page) -> tuple[list[float], list[float]]:
    page.evaluate("demo.lastResult = null")
    page.click("#classify")
    page.wait_for_function("demo.lastResult", timeout=WAIT_MS)
    return page.evaluate("demo.lastResult.probabilities"), page.evaluate("demo.lastInput")


@pytest.fixture(scope="module")
def adapted(page):
    """The page adapted through its buttons to 2 drawings of each of 3 sample characters, and the runtime's twin."""
    ways = 3
    support_x, query_x, support, query = fixed_task(ways)
    while page.locator(".card").count() < ways:
        page.click("#add-class")
    for c, d in support:
        page.click(f"#samples canvas[data-character='{c}'][data-drawing='{d}']")
        page.locator(".card").nth(c).locator(".add-example").click()
    page.click("#adapt")
    page.wait_for_function("demo.lastAdaptation", timeout=WAIT_MS)
    expected = rt.load(PRETRAINED, threads=1).adapt(support_x, [f"Class {c + 1}" for c, _ in support])
    return expected, support_x, query_x, query


def test_page_adapts_and_classifies_like_the_python_runtime(page, adapted):
    expected, support_x, query_x, query = adapted
    assert page.evaluate("demo.lastAdaptation.classes") == list(expected.classes)
    stored = page.evaluate("demo.state.classes.flatMap(c => c.examples.map(e => Array.from(e)))")
    np.testing.assert_array_equal(np.array(stored, np.float32).reshape(support_x.shape), support_x)
    probabilities, inputs = [], []
    for c, d in query:
        page.click(f"#samples canvas[data-character='{c}'][data-drawing='{d}']")
        row, fed = _classify(page)
        probabilities.append(row)
        inputs.append(fed)
    np.testing.assert_array_equal(np.array(inputs, np.float32).reshape(query_x.shape), query_x)
    np.testing.assert_allclose(probabilities, expected.predict_proba(query_x), atol=TOLERANCE, rtol=0)
    assert "Adapted to 3 classes, 6 examples in" in page.text_content("#timing")
    REPORTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPORTS / "web-demo.png"), full_page=True)
    print(f"screenshot of the adapted demo: {REPORTS / 'web-demo.png'}")


def test_a_drawing_made_with_the_mouse_is_preprocessed_and_classified_like_the_runtime(page, adapted):
    from edgeadapt.sdk.datasets.omniglot import preprocess_omniglot

    expected = adapted[0]
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    strokes = [[(0.3, 0.2), (0.35, 0.8)], [(0.3, 0.25), (0.7, 0.3), (0.55, 0.5), (0.75, 0.75), (0.35, 0.8)]]
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
        page.mouse.up()
    gray = np.array(page.evaluate("Array.from(demo.padGray())"), np.uint8).reshape(105, 105)
    assert (gray < 128).sum() > 100, "the strokes left no ink on the pad"
    row, fed = _classify(page)
    x = preprocess_omniglot(gray)[None, None]
    np.testing.assert_array_equal(np.array(fed, np.float32).reshape(x.shape), x)
    np.testing.assert_allclose([row], expected.predict_proba(x), atol=TOLERANCE, rtol=0)


def test_photos_from_the_file_input_are_prepared_and_classified_like_the_runtime(browser, tmp_path_factory):
    """An image model (the pretrained graphs described as 1-channel photos, centre-cropped) gets the photo input;
    photos chosen through it are the runtime's prepare of the same pixels (within 1/255: JavaScript is Pillow-exact,
    numpy within 1/255 of Pillow), and adapting to them and classifying one give the runtime's probabilities."""
    folder = tmp_path_factory.mktemp("photo-model")
    spec = InputSpec((1, 28, 28), fit="crop")
    artifact = copy_with_manifest(PRETRAINED, folder / "artifact", lambda m: m.update(input=spec.manifest_entry()),
                                  reseal=True)
    image_module = pytest.importorskip("PIL.Image")
    frames = [camera_frame(240, 320, seed) for seed in range(3)]
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"photo-{i}.png")
        image_module.fromarray(frame).save(paths[-1])
    with _demo(browser, artifact) as page:
        assert page.is_visible("#photo-input") and not page.is_visible("#pad")
        inputs = []
        for i, path in enumerate(paths):
            page.evaluate("demo.state.hasPhoto = false")
            page.set_input_files("#photo-file", str(path))
            page.wait_for_function("demo.state.hasPhoto", timeout=WAIT_MS)
            if i < 2:
                page.locator(".card").nth(i).locator(".add-example").click()
                inputs.append(page.evaluate("demo.lastInput"))
        page.click("#adapt")
        page.wait_for_function("demo.lastAdaptation", timeout=WAIT_MS)
        row, fed = _classify(page)
        page.click("#camera-start")
        page.wait_for_function("!document.querySelector('#camera-shoot').disabled", timeout=WAIT_MS)
        page.click("#camera-shoot")
        shape = page.evaluate("[demo.state.hasPhoto, document.querySelector('#photo').height, "
                              "document.querySelector('#photo').width]")
        camera = np.array(page.evaluate("demo.photoPixels()"), np.uint8).reshape(*shape[1:], 4)
        camera_input = page.evaluate("Array.from(demo.photoInput())")
    manifest = rt.load(artifact, threads=1).manifest
    np.testing.assert_allclose(np.array(camera_input, np.float32).reshape(1, *spec.shape), prepare(camera, manifest),
                               rtol=0, atol=1.01 / 255)  # the camera's frame, RGBA, as the runtime prepares it
    expected = prepare(frames, manifest)
    np.testing.assert_allclose(np.array(inputs + [fed], np.float32).reshape(expected.shape), expected, rtol=0,
                               atol=1.01 / 255)
    support = np.array(inputs, np.float32).reshape(expected[:2].shape)
    adapted = rt.load(artifact, threads=1).adapt(support, ["Class 1", "Class 2"])
    np.testing.assert_allclose([row], adapted.predict_proba(np.array(fed, np.float32).reshape(expected[2:].shape)),
                               atol=TOLERANCE, rtol=0)


CALTECH_MODEL = ROOT / "models" / "caltech101-mobilenet"
CALTECH_PHOTOS = Path(os.environ.get("EDGEADAPT_DATA", ROOT.parent / "shared" / "data")) / "caltech101" / "images"


@pytest.mark.skipif(not ((CALTECH_MODEL / "manifest.json").is_file() and CALTECH_PHOTOS.is_dir()),
                    reason="the Caltech-101 model or photos not found")
def test_the_shipped_photo_model_learns_two_objects_from_photo_files_like_the_runtime(browser):
    """models/caltech101-mobilenet (a 224x224 ImageNet MobileNet V1) in the page: two photos each of two object
    classes through the file input, adapt, then a third photo of each: the runtime's probabilities, and right."""
    paths = {name: sorted((CALTECH_PHOTOS / name).glob("*.jpg"))[:3] for name in ("pizza", "sunflower")}
    with _demo(browser, CALTECH_MODEL) as page:
        inputs = []
        for card, name in enumerate(paths):
            for path in paths[name][:2]:
                page.evaluate("demo.state.hasPhoto = false")
                page.set_input_files("#photo-file", str(path))
                page.wait_for_function("demo.state.hasPhoto", timeout=WAIT_MS)
                page.locator(".card").nth(card).locator(".add-example").click()
                inputs.append(page.evaluate("demo.lastInput"))
        page.click("#adapt")
        page.wait_for_function("demo.lastAdaptation", timeout=WAIT_MS)
        rows, fed = [], []
        for name in paths:
            page.evaluate("demo.state.hasPhoto = false")
            page.set_input_files("#photo-file", str(paths[name][2]))
            page.wait_for_function("demo.state.hasPhoto", timeout=WAIT_MS)
            row, x = _classify(page)
            rows.append(row), fed.append(x)
    learner = rt.load(CALTECH_MODEL, threads=1)
    shape = (-1, *learner.input_shape)
    adapted = learner.adapt(np.array(inputs, np.float32).reshape(shape), ["Class 1"] * 2 + ["Class 2"] * 2)
    expected = adapted.predict_proba(np.array(fed, np.float32).reshape(shape))
    np.testing.assert_allclose(rows, expected, atol=TOLERANCE, rtol=0)
    assert np.argmax(rows, axis=1).tolist() == [0, 1]
