"""The Node.js runner (examples/node, onnxruntime-node's native kernels) against edgeadapt.runtime on the same
artifact and inputs. EDGEADAPT_NODE overrides the node command: examples/node/check_arm.sh runs this file with an
arm64 Node.js under qemu-aarch64 (and EDGEADAPT_NODE_ARCH=arm64)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess

import numpy as np
import pytest

import edgeadapt.runtime as rt
from js_targets import PRETRAINED, ROOT, TOLERANCE, fixed_task, raw_drawings, require
from test_runtime_inputs import camera_frame

pytestmark = pytest.mark.native
NODE_DIR = ROOT / "examples" / "node"
RUN_TIMEOUT_S = 300  # an adaptation takes about 10 s under qemu-aarch64 on this machine, 0.1 s natively


@pytest.fixture(scope="module")
def node() -> list[str]:
    command = shlex.split(os.environ.get("EDGEADAPT_NODE", "node"))
    require(shutil.which(command[0]) is not None, f"{command[0]} is not installed")
    require((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(), f"run `npm ci` in {NODE_DIR}")
    return command


def _run(node: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*node, *args], cwd=NODE_DIR, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _expected_arch() -> str:
    return os.environ.get("EDGEADAPT_NODE_ARCH") or {"x86_64": "x64", "aarch64": "arm64"}[platform.machine()]


@pytest.mark.parametrize("formats", ["npy-images-json-labels", "json-images-npy-labels"])
def test_runner_matches_the_python_runtime(node, tmp_path, formats):
    support_x, query_x, support, _ = fixed_task(ways=3)
    if formats == "npy-images-json-labels":
        labels: list = [f"character-{c}" for c, _ in support]
        np.save(tmp_path / "support_x.npy", support_x)
        np.save(tmp_path / "query_x.npy", query_x)
        (tmp_path / "support_y.json").write_text(json.dumps(labels))
        files = ["support_x.npy", "support_y.json", "query_x.npy"]
    else:  # numbers sort numerically, as Python's sorted() does (JavaScript's default sort would put 10 before 9)
        labels = [[10, 9, 100][c] for c, _ in support]
        (tmp_path / "support_x.json").write_text(json.dumps(support_x.tolist()))
        (tmp_path / "query_x.json").write_text(json.dumps(query_x.tolist()))
        np.save(tmp_path / "support_y.npy", np.array(labels, np.int64))
        files = ["support_x.json", "support_y.npy", "query_x.json"]
    out = tmp_path / "result.json"
    done = _run(node, "run.mjs", str(PRETRAINED), "--support-x", str(tmp_path / files[0]),
                "--support-y", str(tmp_path / files[1]), "--query-x", str(tmp_path / files[2]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    expected = rt.load(PRETRAINED, threads=1).adapt(support_x, labels)
    assert result["arch"] == _expected_arch()
    assert result["classes"] == list(expected.classes)
    np.testing.assert_allclose(result["probabilities"], expected.predict_proba(query_x), atol=TOLERANCE, rtol=0)


def test_repeated_calls_give_the_same_probabilities_and_median_times(node, tmp_path):
    support_x, query_x, support, _ = fixed_task(ways=2)
    np.save(tmp_path / "x.npy", support_x)
    np.save(tmp_path / "q.npy", query_x)
    (tmp_path / "y.json").write_text(json.dumps([c for c, _ in support]))
    files = ["--support-x", str(tmp_path / "x.npy"), "--support-y", str(tmp_path / "y.json"), "--query-x",
             str(tmp_path / "q.npy")]
    once, repeated = (_run(node, "run.mjs", str(PRETRAINED), *files, *extra) for extra in ([], ["--repeats", "5"]))
    assert once.returncode == 0 and repeated.returncode == 0, once.stderr + repeated.stderr
    first, median = json.loads(once.stdout), json.loads(repeated.stdout)
    assert median["probabilities"] == first["probabilities"]
    assert median["adapt_ms"] > 0 and median["predict_ms"] > 0
    refused = _run(node, "run.mjs", str(PRETRAINED), *files, "--repeats", "1.5")
    assert refused.returncode == 2 and "--repeats must be a whole number" in refused.stderr


def test_preprocessing_is_the_sdks_exactly(node, tmp_path):
    from edgeadapt.sdk.datasets.omniglot import preprocess_omniglot

    noise = np.random.default_rng(0).integers(0, 256, (2, 61, 90), dtype=np.uint8)
    images = [d for character in raw_drawings() for d in character] + list(noise)
    cases = [{"gray": image.ravel().tolist(), "width": image.shape[1], "height": image.shape[0]} for image in images]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = ("import fs from 'node:fs'; import { preprocessDrawing } from '../web/preprocess.mjs';"
              f"const cases = JSON.parse(fs.readFileSync({json.dumps(str(tmp_path / 'cases.json'))}));"
              "console.log(JSON.stringify(cases.map(c => Array.from("
              "preprocessDrawing(Uint8Array.from(c.gray), c.width, c.height)))));")
    done = _run(node, "--input-type=module", "-e", script)
    assert done.returncode == 0, done.stderr
    expected = np.stack([preprocess_omniglot(image) for image in images])
    np.testing.assert_array_equal(np.array(json.loads(done.stdout), np.float32).reshape(expected.shape), expected)


def test_bad_input_and_a_tampered_artifact_get_clear_errors(node, tmp_path):
    support_x, query_x, _, _ = fixed_task(ways=2)
    np.save(tmp_path / "x.npy", support_x)
    (tmp_path / "y.json").write_text(json.dumps(["a", "b", "a"]))  # 4 examples, 3 labels
    done = _run(node, "run.mjs", str(PRETRAINED), "--support-x", str(tmp_path / "x.npy"),
                "--support-y", str(tmp_path / "y.json"), "--query-x", str(tmp_path / "x.npy"))
    assert done.returncode == 2 and "4 examples but there are 3 labels" in done.stderr
    tampered = tmp_path / "artifact"
    tampered.mkdir()
    for name in ("manifest.json", "embed.onnx", "adapt.onnx", "predict.onnx"):
        shutil.copy(PRETRAINED / name, tampered / name)
    graph = bytearray((tampered / "predict.onnx").read_bytes())
    graph[-1] ^= 1
    (tampered / "predict.onnx").write_bytes(bytes(graph))
    (tmp_path / "y.json").write_text(json.dumps(["a", "a", "b", "b"]))
    done = _run(node, "run.mjs", str(tampered), "--support-x", str(tmp_path / "x.npy"),
                "--support-y", str(tmp_path / "y.json"), "--query-x", str(tmp_path / "x.npy"))
    assert done.returncode == 2 and "predict.onnx does not match its sha256" in done.stderr
    (tampered / "embed.onnx").unlink()
    done = _run(node, "run.mjs", str(tampered), "--support-x", str(tmp_path / "x.npy"),
                "--support-y", str(tmp_path / "y.json"), "--query-x", str(tmp_path / "x.npy"))
    assert done.returncode == 2 and "embed.onnx, which the manifest lists, cannot be read" in done.stderr


PREPARE_SCRIPT = """
import { readFileSync } from "node:fs";
import { prepareAudio, prepareInput } from "../web/preprocess.mjs";
const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const Pixels = job.clamped ? Uint8ClampedArray : Uint8Array;  // a canvas's ImageData.data is a Uint8ClampedArray
const out = job.audio
  ? prepareAudio(job.int16 ? Int16Array.from(job.samples) : Float32Array.from(job.samples), job.rate, job.manifest)
  : prepareInput(Pixels.from(job.pixels), job.width, job.height, job.channels, job.manifest, job.options ?? job.ink);
console.log(JSON.stringify(Array.from(out)));
"""
JS_PICTURE_TOLERANCE = 1.01 / 255  # JavaScript is Pillow-exact, numpy within 1/255 of Pillow: before normalisation
JS_AUDIO_TOLERANCE = 1e-5  # float64 FFTs against numpy's float32 ones (measured: about 1e-7)


def _prepare_in_node(node, tmp_path, job: dict) -> np.ndarray:
    (tmp_path / "job.json").write_text(json.dumps(job))
    script = NODE_DIR / f".prepare-check-{os.getpid()}.mjs"
    script.write_text(PREPARE_SCRIPT)
    try:
        done = _run(node, script.name, str(tmp_path / "job.json"))
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    return np.array(json.loads(done.stdout), np.float32)


def _picture_case(kind: str):
    """(input description, 8-bit picture, JavaScript options, Python prepare's keyword arguments) of one case."""
    from edgeadapt.runtime.format.inputs import InputSpec

    rng = np.random.default_rng(0)
    opaque = np.full((240, 320, 1), 255, np.uint8)
    normalised = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    return {
        "photo": (InputSpec((3, 10, 12), mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), resize="lanczos"),
                  rng.integers(0, 256, (37, 29, 3), dtype=np.uint8), "dark", {}),
        "drawing": (InputSpec((1, 28, 28), modality="strokes", polarity="ink_high", resize="lanczos"),
                    np.where(rng.random((105, 105, 1)) < 0.1, 0, 255).astype(np.uint8), "dark", {}),
        "camera-rgb-crop": (InputSpec((3, 84, 84), fit="crop", **normalised), camera_frame(480, 640), {}, {}),
        "camera-bgr-crop": (InputSpec((3, 32, 48), fit="crop"), camera_frame(480, 640, 1)[..., ::-1],
                            {"channelOrder": "bgr"}, {"channel_order": "bgr"}),
        "canvas-rgba": (InputSpec((3, 24, 24), fit="crop", **normalised),
                        np.concatenate([camera_frame(240, 320, 2), opaque], -1), {}, {}),
        "gray-model-rgba": (InputSpec((1, 28, 28), fit="crop"), np.concatenate([camera_frame(240, 320, 3), opaque], -1),
                            {}, {}),
        "gray-model-bgr": (InputSpec((1, 20, 20)), camera_frame(61, 83, 4), {"channelOrder": "bgr"},
                           {"channel_order": "bgr"}),
    }[kind]


@pytest.mark.parametrize("kind", ["photo", "drawing", "camera-rgb-crop", "camera-bgr-crop", "canvas-rgba",
                                  "gray-model-rgba", "gray-model-bgr"])
def test_javascript_prepares_inputs_by_the_input_description_as_the_runtime_does(node, tmp_path, kind):
    """examples/web/preprocess.mjs's prepareInput against edgeadapt.runtime.preprocess.prepare: an RGB photo with
    per-channel normalisation (never inverted), a dark-ink drawing for an ink-high model (the positional ink of the
    first API), camera frames (RGB, BGR) centre-cropped, a canvas's RGBA ImageData, and RGB to luma for 1-channel
    models."""
    from edgeadapt.runtime.preprocess import prepare

    spec, picture, options, python_options = _picture_case(kind)
    manifest = {"input_shape": list(spec.shape), "input_dtype": "float32", "input": spec.manifest_entry()}
    job = {"pixels": picture.ravel().tolist(), "width": picture.shape[1], "height": picture.shape[0],
           "channels": picture.shape[2], "manifest": manifest, "clamped": picture.shape[2] == 4,
           **({"ink": options} if isinstance(options, str) else {"options": options})}
    ours = _prepare_in_node(node, tmp_path, job).reshape(spec.shape)
    expected = prepare([picture[:, :, 0] if kind == "drawing" else picture], manifest, **python_options)[0]
    scale = 1.0 / min(spec.std) if spec.std else 1.0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=JS_PICTURE_TOLERANCE * scale)


@pytest.mark.parametrize("rate, length, int16", [(44100, 44100, False), (22050, 12345, True), (16000, 20000, False),
                                                 (8000, 7999, True)])
def test_javascript_prepares_raw_audio_as_the_runtime_does(node, tmp_path, rate, length, int16):
    """prepareAudio (resampling by the runtime's FFT method, then the log-mel image) against prepare's."""
    from edgeadapt.runtime.format.inputs import AudioFeatures, InputSpec
    from edgeadapt.runtime.preprocess import prepare

    audio = AudioFeatures(sample_rate=16000, n_mels=40, frames=40, duration=1.0, n_fft=512)
    spec = InputSpec(audio.shape, modality="audio_features", audio=audio)
    manifest = {"input_shape": list(spec.shape), "input_dtype": "float32", "input": spec.manifest_entry()}
    t = np.arange(length) / rate
    noise = np.random.default_rng(rate).normal(0.0, 0.05, length)
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) + noise).astype(np.float32)
    if int16:
        clip = (clip * 32767).astype(np.int16)
    job = {"audio": True, "samples": clip.tolist(), "rate": rate, "int16": int16, "manifest": manifest}
    ours = _prepare_in_node(node, tmp_path, job).reshape(spec.shape)
    np.testing.assert_allclose(ours, prepare(clip, manifest, sample_rate=rate)[0], rtol=0, atol=JS_AUDIO_TOLERANCE)


JS_ERRORS_SCRIPT = """
import { prepareAudio, prepareInput } from "../web/preprocess.mjs";
const photo = { input_shape: [3, 8, 8], input: { range: [0, 1], modality: "image" } };
const audio = { input_shape: [1, 8, 8], input: { range: [0, 1], modality: "audio_features",
  audio: { sample_rate: 8000, n_mels: 8, frames: 8, duration: 0.25, n_fft: 128, dynamic_range_db: 60 } } };
const attempts = [
  () => prepareInput(new Uint8Array(4 * 4 * 2), 4, 4, 2, photo),
  () => prepareInput(new Uint8Array(10), 4, 4, 3, photo),
  () => prepareInput(new Uint8Array(0), 0, 4, 3, photo),
  () => prepareInput(new Uint8Array(48), 4, 4, 3, photo, { channelOrder: "argb" }),
  () => prepareInput(new Uint8Array(48), 4, 4, 3, audio),
  () => prepareAudio(new Float32Array(100), undefined, audio),
  () => prepareAudio(Float32Array.of(0, NaN), 8000, audio),
  () => prepareAudio(new Uint8Array(100), 8000, audio),
  () => prepareAudio(new Float32Array(100), 8000, photo),
];
console.log(JSON.stringify(attempts.map((attempt) => { try { attempt(); return null; } catch (e) { return e.message; } })));
"""


def test_javascript_refuses_what_it_cannot_prepare_with_one_clear_line(node):
    done = _run(node, "--input-type=module", "-e", JS_ERRORS_SCRIPT)
    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)
    for message, expected in zip(messages, ["a picture of 2 channels", "must hold width * height * channels",
                                            "width must be a positive integer", "channelOrder must be one of",
                                            "prepareInput makes pictures", "sampleRate must be a positive integer",
                                            "NaN", "must be a non-empty Float32Array", "prepareAudio makes features"]):
        assert message is not None and expected in message and "\n" not in message, (expected, message)


def test_an_int8_artifact_runs_as_in_python(node, tmp_path):
    """onnxruntime-node runs the int8 embed graph (QDQ) as onnxruntime in Python does."""
    pytest.importorskip("torch")
    from edgeadapt.export import export_artifact
    from edgeadapt.export.quantize import calibration_sample
    from edgeadapt.sdk.recipes import dataset_classes

    manifest = rt.load(PRETRAINED).manifest
    int8 = export_artifact(PRETRAINED / "checkpoint", tmp_path / "int8", manifest["max_ways"], manifest["max_shots"],
                           executorch=False, scope=manifest["scope"], quantize="int8",
                           calibration=calibration_sample(dataset_classes("glyphs", None, "train")))
    support_x, query_x, support, _ = fixed_task(ways=3)
    labels = [f"character-{c}" for c, _ in support]
    np.save(tmp_path / "support_x.npy", support_x)
    np.save(tmp_path / "query_x.npy", query_x)
    (tmp_path / "support_y.json").write_text(json.dumps(labels))
    out = tmp_path / "result.json"
    done = _run(node, "run.mjs", str(int8), "--support-x", str(tmp_path / "support_x.npy"), "--support-y",
                str(tmp_path / "support_y.json"), "--query-x", str(tmp_path / "query_x.npy"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    expected = rt.load(int8, threads=1).adapt(support_x, labels).predict_proba(query_x)
    np.testing.assert_allclose(json.loads(out.read_text())["probabilities"], expected, atol=TOLERANCE, rtol=0)
