"""edgeadapt.runtime: fidelity and bad-input handling. Runs without torch too: CI exports an artifact with the
training venv and runs this file in a torch-free venv with EDGEADAPT_TEST_ARTIFACT pointing at it."""

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import edgeadapt.runtime as rt
from artifacts import copy_with_manifest, npy, task as _task, write_zip, zip_members

TOLERANCE = 1e-5


def test_manifest_describes_the_artifact(artifact):
    learner = rt.load(artifact[0], threads=1)
    assert learner.input_shape == (1, 28, 28) and learner.max_ways == 4 and learner.max_shots == 3
    for key in ("format_version", "input_shape", "input_dtype", "max_ways", "max_shots", "inner_steps", "inner_lr",
                "scope", "model", "training", "files"):
        assert key in learner.manifest
    assert set(learner.manifest["files"]) == {"adapt.onnx", "predict.onnx", "adapt.ort", "predict.ort",
                                              "required_operators.config", "selfcheck.npz"}
    operators = (artifact[0] / "required_operators.config").read_text()
    assert "ai.onnx;" in operators and "Conv" in operators


def test_ort_format_graphs_compute_the_same(artifact):
    import onnxruntime as ort

    x, _ = _task(3, 2, seed=4)
    padded = {"support_features": np.zeros((12, 1, 28, 28), np.float32), "support_y": np.zeros(12, np.int64),
              "example_mask": np.zeros(12, np.float32), "class_mask": np.array([1, 1, 1, 0], np.float32)}
    padded["support_features"][:6], padded["example_mask"][:6] = x, 1.0
    padded["support_y"][:6] = [0, 0, 1, 1, 2, 2]
    results = [ort.InferenceSession(str(artifact[0] / name)).run(None, padded) for name in ("adapt.onnx", "adapt.ort")]
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_self_test_reproduces_pytorch_from_export_time(artifact):
    assert rt.load(artifact[0]).self_test(atol=TOLERANCE) <= TOLERANCE


@pytest.mark.parametrize("ways, shots", [(2, 1), (3, 2), (4, 3)])
def test_adaptation_matches_pytorch(artifact, ways, shots):
    path, model = artifact
    if model is None:
        pytest.skip("needs the torch model the artifact came from")
    from helpers import reference_probabilities

    x, y = _task(ways, shots, seed=ways * 10 + shots)
    adapted = rt.load(path).adapt(x, y)
    assert adapted.classes == tuple(sorted(set(y)))
    queries = np.random.default_rng(99).random((6, 1, 28, 28), dtype=np.float32)
    expected = reference_probabilities(model, x, np.array([adapted.classes.index(c) for c in y]), ways, queries)
    np.testing.assert_allclose(adapted.predict_proba(queries), expected, atol=TOLERANCE, rtol=0)
    assert adapted.predict(queries) == [adapted.classes[i] for i in expected.argmax(1)]


def test_uint8_inputs_are_scaled_by_the_manifest(artifact):
    learner = rt.load(artifact[0])
    x8 = (np.random.default_rng(1).random((4, 1, 28, 28)) * 255).astype(np.uint8)
    y = [0, 0, 1, 1]
    # The runtime multiplies by the manifest's scale in float32: the same product, so the same inputs and outputs.
    scaled = x8.astype(np.float32) * np.float32(learner.manifest["uint8_scale"])
    as_float = learner.adapt(scaled, y).predict_proba(scaled)
    np.testing.assert_array_equal(learner.adapt(x8, y).predict_proba(x8), as_float)


@pytest.mark.parametrize("make, error, message", [
    (lambda x, y: (x[:, :, :27], y), rt.InputError, "shape"),
    (lambda x, y: (x.astype(np.float64), y), rt.InputTypeError, "float32"),
    (lambda x, y: (x.tolist(), y), rt.InputTypeError, "numpy array"),
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), y),
     rt.InputError, "NaN"),
    (lambda x, y: (x, ["a"] * len(y)), rt.InputError, "at least 2 classes"),
    (lambda x, y: (np.concatenate([x, x[:2]]), y + ["e", "f"]), rt.InputError, "max_ways"),
    (lambda x, y: (np.concatenate([x, x[:2]]), y + ["class-0", "class-0"]), rt.InputError, "max_shots"),
    (lambda x, y: (x, y[:-1]), rt.InputError, "labels"),
    (lambda x, y: (x[:0], []), rt.InputError, "empty"),
])
def test_bad_input_gets_a_specific_error(artifact, make, error, message):
    x, y = _task(4, 2)
    with pytest.raises(error, match=message) as caught:
        rt.load(artifact[0]).adapt(*make(x, y))
    assert isinstance(caught.value, rt.EdgeAdaptError)


def test_input_errors_are_value_and_type_errors():
    assert issubclass(rt.InputError, ValueError) and issubclass(rt.InputTypeError, TypeError)


def test_divergence_is_reported(artifact, monkeypatch):
    learner = rt.load(artifact[0])
    diverged = [np.full((4, 1, 3, 3), np.nan, np.float32)] * len(learner._parameters)
    monkeypatch.setattr(learner._engine, "adapt", lambda *inputs: diverged)
    with pytest.raises(rt.AdaptationError, match="not finite"):
        learner.adapt(*_task(2, 2))


@pytest.mark.parametrize("damage, message", [("tamper", "sha256"), ("version", "format_version"),
                                             ("delete", "missing"), ("manifest", "not valid JSON")])
def test_corrupt_artifacts_are_refused(artifact, tmp_path, damage, message):
    copy = tmp_path / "model"
    shutil.copytree(artifact[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    if damage == "tamper":
        data = bytearray((copy / "predict.onnx").read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / "predict.onnx").write_bytes(bytes(data))
    elif damage == "version":
        manifest["format_version"] = 99
        (copy / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "delete":
        (copy / "adapt.onnx").unlink()
    else:
        (copy / "manifest.json").write_text("{")
    with pytest.raises(rt.ArtifactError, match=message):
        rt.load(copy)


def test_saved_state_round_trips_and_is_verified(artifact, tmp_path):
    learner = rt.load(artifact[0])
    x, y = _task(3, 2, seed=5)
    adapted = learner.adapt(x, y)
    path = adapted.save(tmp_path / "me.npz")
    restored = learner.restore(path)
    assert restored.classes == adapted.classes
    np.testing.assert_array_equal(restored.predict_proba(x), adapted.predict_proba(x))
    members = zip_members(path)  # an edited weight, saved with the original metadata
    bias = np.lib.format.read_array(io.BytesIO(members["head.bias.npy"]))
    bias[0] += 1.0
    write_zip(tmp_path / "edited.npz", {**members, "head.bias.npy": npy(bias)})
    with pytest.raises(rt.ArtifactError, match="checksum"):
        learner.restore(tmp_path / "edited.npz")
    (tmp_path / "truncated.npz").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(rt.ArtifactError, match="not a readable"):
        learner.restore(tmp_path / "truncated.npz")
    with pytest.raises(rt.ArtifactError, match="no saved state"):
        learner.restore(tmp_path / "missing.npz")


def test_learner_is_safe_to_share_between_threads(artifact):
    learner = rt.load(artifact[0])
    tasks = [_task(3, 2, seed=s) for s in range(4)]
    expected = [learner.adapt(x, y).predict_proba(x) for x, y in tasks]
    results = [None] * 4

    def work(i):
        results[i] = learner.adapt(*tasks[i]).predict_proba(tasks[i][0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_runtime_does_not_import_torch():
    code = "import sys, edgeadapt.runtime; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


PRETRAINED = Path(__file__).resolve().parent.parent / "models" / "omniglot-conv4"
DATA = Path(os.environ.get("EDGEADAPT_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))


def test_pretrained_model_reproduces_pytorch_and_serves_every_task_size():
    learner = rt.load(PRETRAINED, threads=1)
    assert learner.max_ways == 20 and learner.max_shots == 10 and learner.input_shape == (1, 28, 28)
    assert learner.manifest["head_init"] == "prototypes" and learner.manifest["scope"] == "head"
    assert learner.self_test() <= 1e-4  # the full 20-way 10-shot task PyTorch adapted at export time
    for ways, shots in [(2, 1), (5, 1), (20, 5), (3, 10)]:
        x, y = _task(ways, shots, seed=ways)
        probabilities = learner.adapt(x, y).predict_proba(x)
        assert probabilities.shape == (ways * shots, ways)
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)


@pytest.mark.skipif(not (DATA / "omniglot" / "images_background.zip").exists(), reason="Omniglot not found")
def test_example_personalises_the_pretrained_model():
    pytest.importorskip("PIL")  # the example decodes PNGs with Pillow (in the train extra)
    script = Path(__file__).resolve().parent.parent / "examples" / "personalise_omniglot.py"
    result = subprocess.run([sys.executable, str(script), "--ways", "5", "--shots", "5"], capture_output=True,
                            text=True, check=True, env={**os.environ, "EDGEADAPT_DATA": str(DATA)})
    correct = int(result.stdout.strip().splitlines()[-1].split("/")[0])
    assert correct >= 10, result.stdout  # of 15 queries; chance is 3
    assert "by onnxruntime, torch not loaded" in result.stdout


def test_an_onnxruntime_older_than_the_manifest_asks_for_is_refused(artifact, tmp_path):
    assert rt.load(artifact[0]).manifest["onnx"]["min_onnxruntime"] == "1.18"
    copy = copy_with_manifest(artifact[0], tmp_path / "artifact",
                              lambda m: m["onnx"].update(min_onnxruntime="99.0"), reseal=True)
    with pytest.raises(rt.ArtifactError, match=r"needs onnxruntime >= 99.0; this is onnxruntime \d"):
        rt.load(copy)
