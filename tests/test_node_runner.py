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
    for name in ("manifest.json", "adapt.onnx", "predict.onnx"):
        shutil.copy(PRETRAINED / name, tampered / name)
    graph = bytearray((tampered / "predict.onnx").read_bytes())
    graph[-1] ^= 1
    (tampered / "predict.onnx").write_bytes(bytes(graph))
    (tmp_path / "y.json").write_text(json.dumps(["a", "a", "b", "b"]))
    done = _run(node, "run.mjs", str(tampered), "--support-x", str(tmp_path / "x.npy"),
                "--support-y", str(tmp_path / "y.json"), "--query-x", str(tmp_path / "x.npy"))
    assert done.returncode == 2 and "predict.onnx does not match its sha256" in done.stderr


PREPARE_SCRIPT = """
import { readFileSync } from "node:fs";
import { prepareInput } from "../web/preprocess.mjs";
const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = prepareInput(Uint8Array.from(job.pixels), job.width, job.height, job.channels, job.manifest, job.ink);
console.log(JSON.stringify(Array.from(out)));
"""


@pytest.mark.parametrize("kind", ["photo", "drawing"])
def test_javascript_prepares_inputs_by_the_input_description_as_the_runtime_does(node, tmp_path, kind):
    """examples/web/preprocess.mjs's prepareInput against edgeadapt.runtime.preprocess.prepare: an RGB photo with
    per-channel normalisation (never inverted), and a dark-ink drawing for an ink-high model."""
    from edgeadapt.runtime.format.inputs import InputSpec
    from edgeadapt.runtime.preprocess import prepare

    rng = np.random.default_rng(0)
    if kind == "photo":
        spec = InputSpec((3, 10, 12), mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), resize="lanczos")
        picture = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    else:
        spec = InputSpec((1, 28, 28), modality="strokes", polarity="ink_high", resize="lanczos")
        picture = np.where(rng.random((105, 105, 1)) < 0.1, 0, 255).astype(np.uint8)
    manifest = {"input_shape": list(spec.shape), "input_dtype": "float32", "input": spec.manifest_entry()}
    job = {"pixels": picture.ravel().tolist(), "width": picture.shape[1], "height": picture.shape[0],
           "channels": picture.shape[2], "manifest": manifest, "ink": "dark"}
    (tmp_path / "job.json").write_text(json.dumps(job))
    (NODE_DIR / ".prepare-check.mjs").write_text(PREPARE_SCRIPT)
    try:
        done = _run(node, ".prepare-check.mjs", str(tmp_path / "job.json"))
    finally:
        (NODE_DIR / ".prepare-check.mjs").unlink()
    assert done.returncode == 0, done.stderr
    ours = np.array(json.loads(done.stdout), np.float32).reshape(spec.shape)
    expected = prepare([picture[:, :, 0] if kind == "drawing" else picture], manifest)[0]
    scale = 1.0 / min(spec.std) if spec.std else 1.0
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1.01 / 255 * scale)
