"""Inputs and outputs: bad values, masks and labels get a clear error; suspicious conventions a warning; NaN never
becomes a prediction; edgeadapt.runtime.preprocess makes what an app has (drawings, camera frames of any size in RGB,
BGR or RGBA, grayscale, raw audio at any rate) what the model was trained on."""

import warnings

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import task
from edgeadapt.runtime.audio import clip_features
from edgeadapt.runtime.format.inputs import AudioFeatures, InputSpec
from edgeadapt.runtime.preprocess import centre_box, luma, prepare, prepare_audio


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


@pytest.mark.parametrize("make, error, message", [
    (lambda x, y: (np.ma.masked_invalid(np.where(x > 0.5, np.nan, x)), y), rt.InputTypeError, "masked array"),
    (lambda x, y: (np.full_like(x, 3.0e38), y), rt.InputError, r"takes values in \[0.0, 1.0\]"),
    (lambda x, y: (x - 0.5, y), rt.InputError, "takes values in"),
    (lambda x, y: (x[:4], "abcd"), rt.InputTypeError, "not a single string"),
    (lambda x, y: (x[:4], [0.0, 0.0, np.nan, np.nan]), rt.InputError, "labels must be finite"),
    (lambda x, y: (x[:4], np.array([0.0, 0.0, np.nan, np.nan])), rt.InputError, "labels must be finite"),
    (lambda x, y: (x[:4], [[0], [0], [1], [1]]), rt.InputTypeError, "type list; labels are strings"),
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


# --- what an app has: camera frames, other channel orders, grayscale, raw audio -------------------------------------

PIL_TOLERANCE = 1.0 / 255 + 1e-6  # numpy's 8-bit Lanczos against Pillow's (float32 output: the 1e-6)


def _manifest(spec: InputSpec) -> dict:
    return {"input_shape": list(spec.shape), "input_dtype": "float32", "input": spec.manifest_entry()}


def camera_frame(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A smooth camera-like RGB frame, uint8: three sinusoids per channel plus a little sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [0.5 + 0.3 * np.sin(2 * np.pi * (fy * y + fx * x) + phase) for fy, fx, phase in rng.uniform(0, 6, (3, 3))]
    image = np.stack(planes, -1) + rng.normal(0.0, 0.03, (height, width, 3))
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _trained(frame, spec):
    """The training side's pipeline: Pillow decode to RGB or L, the centred crop box, LANCZOS, /255, range, mean/std."""
    image_module = pytest.importorskip("PIL.Image")
    channels, height, width = spec.shape
    image = image_module.fromarray(frame).convert("RGB" if channels == 3 else "L")
    if spec.fit == "crop":
        top, left, box_height, box_width = centre_box(image.height, image.width, height, width)
        image = image.crop((left, top, left + box_width, top + box_height))
    unit = np.asarray(image.resize((width, height), image_module.LANCZOS), np.float64).reshape(height, width, -1) / 255
    low, high = spec.value_range
    out = low + unit.transpose(2, 0, 1) * (high - low)
    return out if spec.mean is None else (out - np.reshape(spec.mean, (-1, 1, 1))) / np.reshape(spec.std, (-1, 1, 1))


@pytest.mark.parametrize("fit", ["stretch", "crop"])
@pytest.mark.parametrize("spec", [InputSpec((3, 84, 84), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
                                  InputSpec((3, 32, 48), value_range=(-1.0, 1.0)), InputSpec((1, 28, 28))],
                         ids=["rgb-square-normalised", "rgb-wide", "gray"])
def test_a_camera_frame_is_prepared_as_training_decodes_it(spec, fit):
    spec = InputSpec(spec.shape, value_range=spec.value_range, mean=spec.mean, std=spec.std, fit=fit)
    manifest = _manifest(spec)
    scale = (spec.value_range[1] - spec.value_range[0]) / min(spec.std or (1.0,))
    for frame in (camera_frame(), camera_frame(600, 400, 1), camera_frame(37, 91, 2)):
        expected = _trained(frame, spec)
        ours = prepare(frame, manifest)
        assert ours.shape == (1, *spec.shape) and ours.dtype == np.float32
        np.testing.assert_allclose(ours[0], expected, rtol=0, atol=PIL_TOLERANCE * scale)
        alpha = np.full(frame.shape[:2] + (1,), 200, np.uint8)
        for pixels, order in ((frame[..., ::-1], "bgr"), (np.concatenate([frame, alpha], -1), "rgb"),
                              (np.concatenate([frame[..., ::-1], alpha], -1), "bgr")):
            np.testing.assert_array_equal(prepare(pixels, manifest, channel_order=order), ours)


def test_rgb_to_gray_is_pillows_convert_l_exactly():
    image_module = pytest.importorskip("PIL.Image")
    frame = np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)  # every rounding case
    gray = np.asarray(image_module.fromarray(frame).convert("L"))
    np.testing.assert_array_equal(luma(frame), gray)
    same_size = _manifest(InputSpec((1, 61, 83)))  # no resize: the model sees Pillow's luma itself
    np.testing.assert_array_equal(prepare(frame, same_size)[0, 0], (gray / 255.0).astype(np.float32))
    np.testing.assert_array_equal(prepare(frame[..., ::-1], same_size, channel_order="bgr")[0, 0],
                                  (gray / 255.0).astype(np.float32))


def test_frames_of_any_size_and_form_are_one_batch():
    manifest = _manifest(InputSpec((3, 24, 32), fit="crop"))
    frames = [camera_frame(480, 640), camera_frame(300, 200, 1), camera_frame(64, 64, 2)]
    batch = prepare(frames, manifest)
    assert batch.shape == (3, 3, 24, 32)
    for frame, prepared in zip(frames, batch):
        np.testing.assert_array_equal(prepare(frame, manifest)[0], prepared)
    np.testing.assert_array_equal(prepare(np.stack([frames[0]] * 2), manifest), np.stack([batch[0]] * 2))
    gray = camera_frame()[:, :, 1]
    np.testing.assert_array_equal(prepare(gray, manifest), prepare(np.repeat(gray[:, :, None], 3, 2), manifest))
    np.testing.assert_array_equal(prepare(gray[:, :, None], manifest), prepare(gray, manifest))
    np.testing.assert_allclose(prepare(gray / 255.0, manifest), prepare(gray, manifest), atol=PIL_TOLERANCE)
    np.testing.assert_array_equal(prepare(gray > 127, manifest), prepare(np.where(gray > 127, 255, 0).astype(np.uint8),
                                                                           manifest))


@pytest.mark.parametrize("size, box", [((480, 640, 84, 84), (0, 80, 480, 480)), ((640, 480, 84, 84), (80, 0, 480, 480)),
                                        ((480, 640, 32, 48), (26, 0, 427, 640)), ((37, 91, 10, 12), (0, 23, 37, 44)),
                                        ((1, 1000, 100, 1), (0, 499, 1, 1)), ((5, 9, 2, 1), (0, 3, 5, 2))])  # 2.5 rounds to 2, as in Python
def test_the_crop_box_is_the_largest_centred_box_of_the_inputs_aspect(size, box):
    assert centre_box(*size) == box


def _audio_manifest(**settings):
    audio = AudioFeatures(**settings)
    return _manifest(InputSpec(audio.shape, modality="audio_features", audio=audio))


def test_raw_clips_at_any_rate_become_the_models_features():
    manifest = _audio_manifest(sample_rate=16000, n_mels=40, frames=40, duration=1.0, n_fft=512)
    audio = InputSpec.from_manifest(manifest).audio
    rng = np.random.default_rng(0)
    clips = [(0.3 * np.sin(np.arange(n) * f) + 0.01 * rng.normal(size=n)).astype(np.float32)
             for n, f in ((44100, 0.05), (30000, 0.2))]
    features = prepare(clips, manifest, sample_rate=44100)
    assert features.shape == (2, 1, 40, 40) and features.dtype == np.float32
    for clip, prepared in zip(clips, features):
        np.testing.assert_array_equal(prepared, clip_features(clip, 44100, audio))
    np.testing.assert_array_equal(prepare(clips[0], manifest, sample_rate=np.int64(44100)), features[:1])
    np.testing.assert_array_equal(prepare_audio(clips, manifest, 44100), features)
    int16 = (clips[1] * 32767).astype(np.int16)
    np.testing.assert_allclose(prepare(int16, manifest, sample_rate=16000)[0], clip_features(clips[1], 16000, audio),
                               atol=1e-3)


PHOTO = _manifest(InputSpec((3, 8, 8)))
AUDIO = _audio_manifest(sample_rate=8000, n_mels=8, frames=8, duration=0.25, n_fft=128)


@pytest.mark.parametrize("inputs, manifest, options, error, message", [
    (np.zeros((6, 6, 3), np.int64), PHOTO, {}, rt.InputTypeError, "uint8, bool or float, got int64"),
    (np.full((6, 6, 3), np.nan), PHOTO, {}, rt.InputError, "NaN"),
    (np.zeros((6, 6, 2), np.uint8), PHOTO, {}, rt.InputError, "has 2 channels"),
    ([np.zeros((6, 6, 5), np.uint8)], PHOTO, {}, rt.InputError, "has 5 channels"),
    (np.zeros((0, 6, 3), np.uint8), PHOTO, {}, rt.InputError, "empty"),
    (np.zeros((6, 6, 3), np.uint8), PHOTO, {"channel_order": "argb"}, rt.InputError, "channel_order must be"),
    (np.zeros(2000, np.float32), PHOTO, {}, rt.InputError, "audio clip"),
    (np.zeros((6, 6, 3), np.uint8), PHOTO, {"sample_rate": 8000}, rt.InputError, "sample_rate applies to audio"),
    (np.zeros(2000, np.float32), AUDIO, {}, rt.InputError, "sample_rate is missing"),
    (np.zeros(2000, np.float32), AUDIO, {"sample_rate": 8000.0}, rt.InputError, "positive integer"),
    (np.zeros((64, 64, 3), np.uint8), AUDIO, {"sample_rate": 8000}, rt.InputError, "not a picture"),
    ([np.zeros((64, 64), np.float32)], AUDIO, {"sample_rate": 8000}, rt.InputError, r"clips\[0\].*not a clip"),
    ([np.zeros(64, np.uint8)], AUDIO, {"sample_rate": 8000}, rt.InputTypeError, "int16 samples or floats"),
    ([np.array([0.0, np.nan])], AUDIO, {"sample_rate": 8000}, rt.InputError, r"clips\[0\]: .*NaN"),
    ([np.zeros(0, np.float32)], AUDIO, {"sample_rate": 8000}, rt.InputError, r"clips\[0\]: .*non-empty"),
    ([], AUDIO, {"sample_rate": 8000}, rt.InputTypeError, "non-empty"),
    (np.zeros(64, np.float32), AUDIO, {"sample_rate": 8000, "ink": "dark"}, rt.InputError, "apply to pictures"),
])
def test_what_an_app_cannot_pass_gets_one_clear_line(inputs, manifest, options, error, message):
    with pytest.raises(error, match=message) as caught:
        prepare(inputs, manifest, **options)
    assert "\n" not in str(caught.value)
