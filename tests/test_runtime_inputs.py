"""Inputs and outputs: bad values, masks and labels get a clear error; suspicious conventions a warning; NaN never
becomes a prediction; edgeadapt.runtime.preprocess makes raw images what the model was trained on."""

import warnings

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import task
from edgeadapt.runtime.preprocess import prepare


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


@pytest.mark.parametrize("make, error, message", [
    (lambda x, y: (np.ma.masked_invalid(np.where(x > 0.5, np.nan, x)), y), rt.InputTypeError, "masked array"),
    (lambda x, y: (np.full_like(x, 3.0e38), y), rt.InputError, r"takes values in \[0.0, 1.0\]"),
    (lambda x, y: (x - 0.5, y), rt.InputError, "takes values in"),
    (lambda x, y: (x[:4], "abcd"), rt.InputTypeError, "not a single string"),
    (lambda x, y: (x[:4], [0.0, 0.0, np.nan, np.nan]), rt.InputError, "NaN labels"),
    (lambda x, y: (x[:4], np.array([0.0, 0.0, np.nan, np.nan])), rt.InputError, "NaN labels"),
    (lambda x, y: (x[:4], [[0], [0], [1], [1]]), rt.InputTypeError, "hashable"),
    (lambda x, y: (x[:4], 7), rt.InputTypeError, "sequence of labels"),
    (lambda x, y: (x[:4], np.zeros((2, 2))), rt.InputError, "one-dimensional"),
])
def test_bad_inputs_and_labels_get_a_specific_error(learner, make, error, message):
    x, y = task(4, 2)
    with pytest.raises(error, match=message):
        learner.adapt(*make(x, y))


def test_nan_labels_do_not_become_extra_classes(learner):
    x, _ = task(2, 2)
    with pytest.raises(rt.InputError):
        learner.adapt(x, [1.0, 1.0, float("nan"), float("nan")])  # NaN != NaN: two "classes" of one each


def test_non_finite_probabilities_are_refused(learner):
    x, y = task(2, 2)
    adapted = learner.adapt(x, y)
    huge = {name: value * np.float32(1e30) for name, value in adapted._params.items()}  # finite, overflowing
    with pytest.raises(rt.PredictionError, match="non-finite"):
        rt.AdaptedLearner(learner, adapted.classes, huge).predict(x)


def test_uint8_images_holding_only_0_and_1_warn(learner):
    x, y = task(2, 2)
    with pytest.warns(rt.InputWarning, match="only 0 and 1"):
        learner.adapt((x > 0.5).astype(np.uint8), y)


def test_inverted_looking_inputs_warn_and_ordinary_ones_do_not(learner):
    x, y = task(2, 2)
    ink = (x > 0.9).astype(np.float32)  # sparse strokes: ink = 1 on 0, as trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.adapt(ink, y)
    with pytest.warns(rt.InputWarning, match="looks inverted"):
        learner.adapt(1.0 - ink, y)


def _paper_drawings(n=4, size=105, seed=0):
    """Drawings as PNGs hold them: uint8, white paper (255) with dark strokes."""
    g = np.random.default_rng(seed)
    pages = np.full((n, size, size), 255, np.uint8)
    for page in pages:
        for _ in range(3):
            r, c = g.integers(10, size - 10, 2)
            page[r - 3: r + 3, c - 30 if c > 30 else 0: c] = 0
    return pages


def test_preprocess_makes_ink_high_inputs_of_the_model_size(learner):
    images = prepare(list(_paper_drawings()), learner.manifest, ink="dark")
    assert images.shape == (4, *learner.input_shape) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.mean() < 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.adapt(images, ["a", "a", "b", "b"])
    light = prepare(255 - _paper_drawings(), learner.manifest, ink="light")
    np.testing.assert_allclose(light, images, atol=1e-6)


def test_preprocess_matches_the_training_filter():
    image_module = pytest.importorskip("PIL.Image")
    manifest = {"input_shape": [1, 28, 28], "input": {"range": [0.0, 1.0], "polarity": "ink_high"}}
    pages = _paper_drawings(seed=3)
    trained = np.stack([1.0 - np.asarray(image_module.fromarray(p).resize((28, 28), image_module.LANCZOS),
                                         np.float32) / 255.0 for p in pages])  # as sdk's preprocess_omniglot
    np.testing.assert_allclose(prepare(pages, manifest, ink="dark")[:, 0], trained, atol=1.01 / 255)


@pytest.mark.parametrize("images, error, message", [
    ([np.full((5, 5), 2.0)], rt.InputError, r"in \[0, 1\]"),
    ([np.zeros((5, 5), np.int64)], rt.InputTypeError, "uint8, bool or float"),
    ([np.zeros((5,), np.uint8)], rt.InputError, "shape"),
    ([], rt.InputTypeError, "non-empty"),
    ([[0, 1]], rt.InputTypeError, "numpy array"),
])
def test_preprocess_refuses_what_it_cannot_convert(learner, images, error, message):
    with pytest.raises(error, match=message):
        prepare(images, learner.manifest)
