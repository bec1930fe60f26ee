"""int8 artifacts: the frozen layers (the ``embed`` graph) statically quantised, the adapted part kept float.

onnxruntime's quantisation tools (``quantize_static``) rewrite ``embed.onnx`` in QDQ form: weights int8, one scale
per output channel; activations uint8 with scales calibrated (min-max) on a sample of the training data. Every
engine that reads ONNX runs it (onnxruntime fuses the pairs into integer kernels; onnxruntime-web and -node
alike). The ExecuTorch program's embed method is quantised with ExecuTorch's own ``XNNPACKQuantizer`` on the same
sample (:func:`~edgeadapt.export.executorch_program.int8_embed_program`). ``adapt`` and ``predict`` stay float,
so adaptation is still exact SGD on float parameters, from features that int8 layers computed.

PyTorch cannot give the reference that the self-check task holds for such an artifact (it has no int8 graph of
its own), so the task's probabilities are those the exported graphs give through onnxruntime at export time, and
ExecuTorch's (which quantises its own way) beside them (:func:`engine_probabilities`): a device that computes
otherwise still fails ``Learner.self_test``. How far int8 moves them from the float model's is recorded in the
manifest (``quantization.selfcheck_float_difference``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgeadapt.runtime.backends import BACKENDS
from edgeadapt.runtime.format.manifest import VerifiedArtifact
from edgeadapt.runtime.format.names import EMBED_INPUTS, EXECUTORCH_PROBABILITIES, PTE, SELFCHECK
from edgeadapt.sdk.datasets.base import ClassDataset

from .onnx_graphs import strip_annotations
from .onnx_rewrites import REWRITTEN

QUANTIZATIONS = ("int8",)  # what ``export_artifact(quantize=...)`` / ``edgeadapt export --quantize`` take
CALIBRATION_EXAMPLES = 256  # training examples whose activations set the int8 scales
CALIBRATION_BATCH = 32


def calibration_sample(classes: ClassDataset, count: int = CALIBRATION_EXAMPLES, seed: int = 0) -> np.ndarray:
    """``count`` examples of ``classes`` drawn without replacement (seeded), as float32 model inputs."""
    generator = np.random.default_rng(seed)
    rows = np.sort(generator.choice(len(classes.examples), min(count, len(classes.examples)), replace=False))
    return classes.decode(classes.examples[rows]).numpy()


class _Batches(CalibrationDataReader):
    """The calibration inputs, :data:`CALIBRATION_BATCH` at a time, as the embed graph's input."""

    def __init__(self, inputs: np.ndarray):
        self._batches = iter([{EMBED_INPUTS[0]: inputs[i: i + CALIBRATION_BATCH]}
                              for i in range(0, len(inputs), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_embed(path: Path, calibration: np.ndarray) -> None:
    """Replace the float embed graph at ``path`` by its int8 QDQ form, scales calibrated on ``calibration``."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
        # symbolic shape inference fails on the exporter's Expand nodes; ONNX's own inference is enough here
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
        rewritten = [node.name for node in onnx.load(str(prepared)).graph.node if node.name.startswith(REWRITTEN)]
        quantize_static(str(prepared), str(quantized), _Batches(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=rewritten)
        model = strip_annotations(onnx.load(str(quantized)))
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def engine_probabilities(folder: Path, manifest: dict[str, Any], task: dict[str, np.ndarray],
                         backend: str = "onnxruntime") -> np.ndarray:
    """The probabilities the programs in ``folder`` (described by ``manifest``) give through ``backend``'s engine,
    one thread, for the queries of ``task`` after adapting to its support set (classes 0..k-1)."""
    files = {name: (folder / name).read_bytes() for name in manifest["files"] if name.endswith((".onnx", ".pte"))}
    engine = BACKENDS[backend](VerifiedArtifact(folder, manifest, b"", files), 1)
    ways = int(task["support_y"].max()) + 1
    class_mask = (np.arange(manifest["max_ways"]) < ways).astype(np.float32)
    support = engine.embed(np.ascontiguousarray(task["support_x"]))
    params = engine.adapt(support, task["support_y"], np.ones(len(support), np.float32), class_mask)
    named = dict(zip(engine.parameter_names, params))
    return engine.predict(engine.embed(np.ascontiguousarray(task["query_x"])), class_mask, named)[:, :ways]


def engine_selfcheck(folder: Path, manifest: dict[str, Any], quantize: str, calibrated: int) -> dict[str, Any]:
    """Rewrite the self-check task in ``folder`` with the probabilities its programs give through onnxruntime (and,
    where there is ``model.pte``, ExecuTorch's, which quantises its own way); PyTorch has no int8 graph to give
    them. Returns the manifest's ``quantization`` entry, with how far they are from PyTorch's float ones."""
    path = folder / SELFCHECK
    with np.load(path, allow_pickle=False) as stored:
        task = {name: stored[name] for name in stored.files}
    references = {"probabilities": engine_probabilities(folder, manifest, task)}
    if PTE in manifest["files"]:
        references[EXECUTORCH_PROBABILITIES] = engine_probabilities(folder, manifest, task, "executorch")
    difference = max(float(np.abs(p - task["probabilities"]).max()) for p in references.values())
    with open(path, "wb") as f:
        np.savez(f, **{**task, **{k: v.astype(np.float32) for k, v in references.items()}})
    entry = {"embed": quantize, "form": "QDQ: int8 weights per output channel, uint8 activations (min-max)",
             "calibration_examples": calibrated, "selfcheck_reference": "onnxruntime",
             "selfcheck_float_difference": round(difference, 6)}
    if PTE in manifest["files"]:
        entry["executorch_form"] = "XNNPACKQuantizer: int8 weights per output channel, symmetric; int8 activations (min-max)"
    return entry
