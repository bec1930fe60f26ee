"""int8 artifacts: the frozen layers in int8 (QDQ), the adapted part float; self-checked against onnxruntime, close
to the float artifact, refused where there is nothing to quantise or no calibration data."""

import json

import numpy as np
import onnx
import pytest
import torch

import edgeadapt.runtime as rt
from edgeadapt.cli import main
from edgeadapt.export import export_artifact
from edgeadapt.export.quantize import calibration_sample
from edgeadapt.sdk import Conv4, save_checkpoint
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.recipes import dataset_classes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A head-adapting Conv4 (16 filters) trained on nothing, with a prototype head."""
    folder = tmp_path_factory.mktemp("quantize")
    torch.manual_seed(0)
    training = {"algorithm": "reptile", "inner_lr": 0.5, "inner_steps": 2, "scope": "head", "loss": "cross_entropy",
                "head_init": "prototypes", "head_scale": 0.5}
    save_checkpoint(folder / "ckpt", Conv4(ways=4, hidden=16).eval(), {"training": training})
    return folder / "ckpt"


@pytest.fixture(scope="module")
def artifacts(checkpoint, tmp_path_factory):
    """(float, int8) artifacts of ``checkpoint``, int8 calibrated on the built-in glyphs."""
    folder = tmp_path_factory.mktemp("quantized")
    calibration = calibration_sample(dataset_classes("glyphs", None, "train"))
    float_path = export_artifact(checkpoint, folder / "float", max_ways=4, max_shots=3, executorch=False)
    int8_path = export_artifact(checkpoint, folder / "int8", max_ways=4, max_shots=3, executorch=False,
                                quantize="int8", calibration=calibration)
    return float_path, int8_path


def test_the_frozen_layers_are_int8_and_the_rest_float(artifacts):
    float_path, int8_path = artifacts
    embed = onnx.load(int8_path / "embed.onnx")
    operators = {node.op_type for node in embed.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    weights = [t for t in embed.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in weights) > 0.9 * sum(
        int(np.prod(t.dims)) for t in onnx.load(float_path / "embed.onnx").graph.initializer)
    stored = [sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(path / "embed.onnx").graph.initializer)
              for path in artifacts]
    assert stored[1] < 0.35 * stored[0]  # int8 weights, a float scale and a zero point per channel
    for name in ("adapt.onnx", "predict.onnx"):  # the adapted part is the float one, byte for byte
        assert (int8_path / name).read_bytes() == (float_path / name).read_bytes()
    manifest = json.loads((int8_path / "manifest.json").read_text())
    assert manifest["quantization"]["embed"] == "int8" and manifest["quantization"]["calibration_examples"] == 256
    assert "quantization" not in json.loads((float_path / "manifest.json").read_text())


def test_the_int8_artifact_passes_its_self_check_and_predicts_close_to_float(artifacts):
    learners = [rt.load(path, threads=1) for path in artifacts]
    assert learners[1].self_test() <= 1e-4
    glyphs = dataset_classes("glyphs", None, "validation")  # drawings like the calibration's, of unseen classes
    starts = glyphs.starts.tolist()
    x = glyphs.decode(glyphs.examples[[starts[c] + i for c in range(4) for i in range(3)]]).numpy()
    labels = [c for c in range(4) for _ in range(3)]
    queries = glyphs.decode(glyphs.examples[[starts[c] + 3 + i for c in range(4) for i in range(5)]]).numpy()
    float_p, int8_p = (learner.adapt(x, labels).predict_proba(queries) for learner in learners)
    assert np.abs(float_p - int8_p).max() < 0.05
    assert (float_p.argmax(1) == int8_p.argmax(1)).mean() >= 0.9
    assert not np.array_equal(float_p, int8_p)  # it is a different computation


def test_what_cannot_be_quantised_is_refused_before_anything_is_written(checkpoint, tmp_path):
    calibration = np.zeros((4, 1, 28, 28), np.float32)
    with pytest.raises(ConfigError, match="nothing to quantise"):
        export_artifact(checkpoint, tmp_path / "a", executorch=False, scope="all", quantize="int8",
                        calibration=calibration)
    with pytest.raises(ConfigError, match="calibrates on your training data"):
        export_artifact(checkpoint, tmp_path / "b", executorch=False, quantize="int8")
    with pytest.raises(ConfigError, match="calibrates on your training data"):
        export_artifact(checkpoint, tmp_path / "c", executorch=False, quantize="int8", calibration=calibration[:0])
    with pytest.raises(ConfigError, match=r"float32 model inputs of shape \(n, 1, 28, 28\)"):
        export_artifact(checkpoint, tmp_path / "e", executorch=False, quantize="int8",
                        calibration=np.zeros((4, 3, 28, 28), np.float32))
    with pytest.raises(ConfigError, match="quantize must be one of"):
        export_artifact(checkpoint, tmp_path / "d", executorch=False, quantize="int4", calibration=calibration)
    assert not any(tmp_path.iterdir())


def test_the_command_calibrates_on_the_data_it_is_given(checkpoint, tmp_path, capsys):
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "q"), "--max-ways", "4", "--max-shots", "3",
                 "--no-executorch", "--quantize", "int8", "--dataset", "glyphs"]) in (0, None)
    assert rt.load(tmp_path / "q").manifest["quantization"]["embed"] == "int8"
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "r"), "--no-executorch", "--quantize", "int8"]) == 2
    assert "calibrates on the model's training data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
