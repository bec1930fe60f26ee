"""Property-based tests (Hypothesis): generated inputs, labels, saved states and manifests, the failing families
of the reliability review among them, end in an EdgeAdaptError or a correct finite result. Bounded in examples
and time so that the file runs in seconds (after the session's artifact export)."""

import io
import json
import math
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest

BOUNDED = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

IMAGE_FAMILIES = ("unit", "ink", "huge", "nan", "inf", "negative", "masked", "uint8", "uint8_binary", "float64",
                  "int64", "list", "wrong_shape", "empty")
LABEL_FAMILIES = ("ints", "strings", "mixed", "nan", "unhashable", "none", "string", "short", "bools", "numpy")


def _images(family: str, n: int, seed: int):
    g = np.random.default_rng(seed)
    x = g.random((n, 1, 28, 28), dtype=np.float32)
    return {
        "unit": lambda: x,
        "ink": lambda: (x > 0.8).astype(np.float32),
        "huge": lambda: np.full_like(x, np.finfo(np.float32).max * g.uniform(0.5, 1.0)),
        "nan": lambda: np.where(g.random(x.shape) < 0.01, np.nan, x).astype(np.float32),
        "inf": lambda: np.where(g.random(x.shape) < 0.01, np.inf, x).astype(np.float32),
        "negative": lambda: x - 2.0,
        "masked": lambda: np.ma.masked_array(np.where(x > 0.5, np.nan, x), mask=x > 0.5),
        "uint8": lambda: (x * 255).astype(np.uint8),
        "uint8_binary": lambda: (x > 0.5).astype(np.uint8),
        "float64": lambda: x.astype(np.float64),
        "int64": lambda: (x * 255).astype(np.int64),
        "list": lambda: x.tolist(),
        "wrong_shape": lambda: x[:, :, :27],
        "empty": lambda: x[:0],
    }[family]()


def _labels(family: str, n: int, ways: int, seed: int):
    g = np.random.default_rng(seed)
    index = [int(i) for i in g.integers(0, ways, n)]
    return {
        "ints": lambda: index,
        "strings": lambda: [f"c{i}" for i in index],
        "mixed": lambda: [i if i % 2 else str(i) for i in index],
        "nan": lambda: [float("nan") if i == 0 else float(i) for i in index],
        "unhashable": lambda: [[i] for i in index],
        "none": lambda: [None if i == 0 else i for i in index],
        "string": lambda: "".join("ab"[i % 2] for i in index),
        "short": lambda: index[:-1],
        "bools": lambda: [bool(i % 2) for i in index],
        "numpy": lambda: np.array(index),
    }[family]()


@pytest.fixture(scope="module")
def learner(artifact):
    return rt.load(artifact[0])


def _check_result(adapted, learner, labels, queries):
    """A successful adaptation: the labels' classes, finite probabilities summing to 1, predictions among them."""
    assert 2 <= len(adapted.classes) <= learner.max_ways
    plain = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    assert set(adapted.classes) == set(plain)
    probabilities = adapted.predict_proba(queries)
    assert probabilities.shape == (len(queries), len(adapted.classes)) and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    assert all(p in adapted.classes for p in adapted.predict(queries))


@BOUNDED
@given(family=st.sampled_from(IMAGE_FAMILIES), labels=st.sampled_from(LABEL_FAMILIES), n=st.integers(1, 14),
       ways=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_adapt_ends_in_an_edgeadapt_error_or_a_correct_finite_result(learner, family, labels, n, ways, seed):
    x, y = _images(family, n, seed), _labels(labels, n, ways, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rt.InputWarning)
        try:
            adapted = learner.adapt(x, y)
        except rt.EdgeAdaptError:
            return
        _check_result(adapted, learner, y, _images("unit", 3, seed + 1))
    assert family in ("unit", "ink", "uint8", "uint8_binary"), f"{family} images were accepted"
    assert labels not in ("nan", "unhashable", "none", "string", "short"), f"{labels} labels were accepted"


@BOUNDED
@given(family=st.sampled_from(IMAGE_FAMILIES), n=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_predict_ends_in_an_edgeadapt_error_or_finite_probabilities(learner, family, n, seed):
    adapted = learner.adapt(_images("unit", 4, 0), ["a", "a", "b", "b"])
    x = _images(family, n, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rt.InputWarning)
        try:
            probabilities = adapted.predict_proba(x)
        except rt.EdgeAdaptError:
            return
    assert probabilities.shape == (n, 2) and np.isfinite(probabilities).all()
    assert family in ("unit", "ink", "uint8", "uint8_binary"), f"{family} images were accepted"


@pytest.fixture(scope="module")
def saved(learner, tmp_path_factory):
    """(a saved state's bytes, the probabilities its learner gives on fixed queries, those queries)."""
    adapted = learner.adapt(_images("unit", 6, 1), ["a", "a", "b", "b", "c", "c"])
    path = adapted.save(tmp_path_factory.mktemp("state") / "state.npz")
    queries = _images("unit", 3, 2)
    return path.read_bytes(), adapted.predict_proba(queries), queries


@BOUNDED
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.floats(0, 1)), tail=st.binary(max_size=64))
def test_restore_of_a_damaged_state_is_an_artifact_error_or_exact(learner, saved, edits, cut, tail):
    data = bytearray(saved[0])
    for where, flip in edits:
        data[int(where * len(data))] ^= flip
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.npz"
        path.write_bytes(bytes(data) + tail)
        try:
            restored = learner.restore(path)
        except rt.ArtifactError:
            return
    np.testing.assert_array_equal(restored.predict_proba(saved[2]), saved[1])


@BOUNDED
@given(dtype=st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4"]), drop=st.integers(0, 2),
       classes=st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.floats(allow_nan=False),
                                  st.booleans()), max_size=6))
def test_restore_of_a_sealed_but_invalid_state_is_an_artifact_error_or_valid(learner, saved, dtype, drop, classes):
    from edgeadapt.runtime.format.files import sha256_bytes
    from edgeadapt.runtime.format.manifest import sealed

    with zipfile.ZipFile(io.BytesIO(saved[0])) as z:
        members = {name: z.read(name) for name in z.namelist()}
    meta = json.loads(members.pop("meta.json"))
    for name in list(members)[:drop]:  # cut the first arrays short
        array = np.lib.format.read_array(io.BytesIO(members[name]))
        members[name] = _npy(array.reshape(-1)[:-1])
    members = {name: _npy(np.lib.format.read_array(io.BytesIO(data)).astype(dtype)) for name, data in members.items()}
    meta.update(classes=classes, arrays={name: sha256_bytes(data) for name, data in members.items()})
    members["meta.json"] = json.dumps(sealed({k: v for k, v in meta.items() if k != "sha256"}, "sha256")).encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.npz"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
        try:
            restored = learner.restore(path)
        except rt.ArtifactError:
            return
    assert dtype in ("<f4", ">f4") and drop == 0 and dtype == "<f4"
    assert list(restored.classes) == classes and len(set(classes)) == len(classes) >= 2
    assert np.isfinite(restored.predict_proba(saved[2])).all()


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False,
                                                                                          allow_infinity=False)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
KEYS = ("format_version", "input_shape", "input_dtype", "input", "uint8_scale", "max_ways", "max_shots", "inner_steps",
        "inner_lr", "scope", "head_init", "model", "training", "data", "adapt_inputs", "adapted_parameters", "onnx",
        "files", "manifest_sha256", "executorch", "anything_else")


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=JSON, reseal=st.booleans())
def test_load_of_an_edited_manifest_is_an_artifact_error_or_a_working_learner(artifact, key, value, reseal):
    with tempfile.TemporaryDirectory() as folder:
        copy = copy_with_manifest(artifact[0], Path(folder) / "m", lambda m: m.update({key: value}), reseal)
        try:
            learner = rt.load(copy)
        except rt.EdgeAdaptError:
            return
        adapted = learner.adapt(_images("unit", 4, 0), ["a", "a", "b", "b"])
        assert np.isfinite(adapted.predict_proba(_images("unit", 2, 1))).all()
    # resealing recomputes manifest_sha256, so an edit of it alone leaves a valid artifact
    assert reseal and key in ("model", "training", "data", "anything_else", "head_init", "manifest_sha256"), (key, value)
    assert not (isinstance(value, float) and math.isnan(value))
