"""Package a checkpoint as a deployable artifact: ONNX embed (the frozen layers, when the scope leaves any) + adapt +
predict graphs, their ORT-format copies, an optional ExecuTorch program, a self-check task and a hashed manifest."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from edgeadapt.runtime.format.files import atomic_folder, sha256_file
from edgeadapt.runtime.format.manifest import FORMAT_VERSION, canonical_bytes, manifest_text, sealed
from edgeadapt.runtime.format.names import (ADAPT_INPUTS, ADAPT_ONNX, EMBED_ONNX, MANIFEST, PREDICT_ONNX, PTE, SELFCHECK,
                                            SIGNATURE)
from edgeadapt.runtime.format.signing import sign
from edgeadapt.sdk.checkpoint import checkpoint_input, load_checkpoint, load_lr_scales
from edgeadapt.sdk.contract import check_backbone
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.frozen_layers import split_inner_loop
from edgeadapt.sdk.heads import is_per_task
from edgeadapt.sdk.inner_loop import InnerLoop, adaptation_settings, inner_loop_from_config
from edgeadapt.sdk.sanity import describe

from .errors import ExportError
from .executorch_program import PREDICT_BATCH, executorch_available, export_executorch, support_sizes
from .predecessor import predecessor_identities
from .quantize import QUANTIZATIONS, engine_selfcheck, quantize_embed
from .onnx_graphs import OPSET, GraphSpec, adapted_names, example_adapted, export_adapt, export_embed, export_predict

DEFAULT_MAX_WAYS = 20  # with a zeros or prototype head, which has no trained number of outputs
DEFAULT_MAX_SHOTS = 10
MIN_ONNXRUNTIME = "1.18"  # first release that reads IR version 10 (1.17.3 refuses it); tested in .ci/run

log = logging.getLogger("edgeadapt.export")


def export_artifact(checkpoint: str | os.PathLike, out: str | os.PathLike, max_ways: int | None = None,
                    max_shots: int | None = None, executorch: bool | None = None,
                    sign_key: str | os.PathLike | None = None, overwrite: bool = False, *, scope: str | None = None,
                    head_init: str | None = None, head_scale: float | None = None, inner_steps: int | None = None,
                    inner_lr: float | None = None, replaces: str | os.PathLike | None = None,
                    quantize: str | None = None, calibration: np.ndarray | None = None) -> Path:
    """Export the checkpoint's model and its inner loop to the folder ``out`` (written atomically).

    One artifact serves tasks of 2..``max_ways`` classes (absent classes masked) and 1..``max_shots``
    examples per class (a dynamic support size). With a meta-learned head ``max_ways`` defaults to, and may not
    exceed, the model's outputs (a smaller value keeps the first ``max_ways``); with a zeros or prototype head
    (``head_init``) any number is possible (default 20). ``max_shots`` defaults to 10. ``scope``,
    ``head_init``, ``head_scale``, ``inner_steps`` and ``inner_lr`` override the checkpoint's (a pretraining
    checkpoint has none of its own: it adapts as its readout, a prototype head and no step, unless
    overridden). ``executorch`` adds ``model.pte`` (default: when the executorch
    package is installed; lowering takes minutes). ``sign_key``: an Ed25519 PEM private key that signs the
    manifest (``manifest.sig``). An existing artifact at ``out`` is replaced only with ``overwrite``; anything
    else there is never replaced. ``replaces``: an earlier export of the same model whose users' saved states the
    new artifact restores, after checking that both compute the same (:mod:`~edgeadapt.export.predecessor`).
    ``quantize="int8"`` stores the frozen layers in int8, scales calibrated on ``calibration`` (float32 inputs of
    the model's training data, e.g. :func:`~edgeadapt.export.quantize.calibration_sample`; see
    :mod:`~edgeadapt.export.quantize`), in the ONNX graphs and the ExecuTorch program alike.
    """
    target = Path(out)
    executorch = _check_options(target, overwrite, executorch, sign_key, quantize, calibration)
    model, config = load_checkpoint(checkpoint)
    training = config.get("training", {})
    if training.get("loss", "cross_entropy") != "cross_entropy":
        raise ConfigError("only classification models can be exported")
    settings = adaptation_settings(training, head_init=head_init, scope=scope)
    spec = _graph_spec(model, config, settings["head_init"], max_ways, max_shots)
    check_backbone(model, spec.input_shape)
    if not is_per_task(settings["head_init"]):
        narrow_head(model, spec.max_ways)
    whole = inner_loop_from_config(model.eval(), training, load_lr_scales(checkpoint), scope=scope,
                                   head_init=head_init, head_scale=head_scale, inner_steps=inner_steps,
                                   inner_lr=inner_lr, ways=spec.max_ways if is_per_task(settings["head_init"]) else None)
    if quantize is not None:
        _check_calibration(whole, spec, quantize, calibration)
    with atomic_folder(target) as staging:
        cut = _write_programs(staging, whole, spec, executorch, calibration if quantize else None)
        write_selfcheck(whole, spec, checkpoint_input(config).bounds(), staging / SELFCHECK)
        manifest = _manifest(config, whole, spec, cut, staging)
        if quantize is not None:
            manifest["quantization"] = engine_selfcheck(staging, manifest, quantize, len(calibration))
            manifest["files"][SELFCHECK] = sha256_file(staging / SELFCHECK)
        earlier = predecessor_identities(replaces, staging) if replaces is not None else []
        if earlier:
            manifest["restores_states_of"] = earlier
        manifest = sealed(manifest)
        (staging / MANIFEST).write_text(manifest_text(manifest))
        if sign_key is not None:
            (staging / SIGNATURE).write_bytes(sign(canonical_bytes(manifest), sign_key))
    return target


def _check_options(target: Path, overwrite: bool, executorch: bool | None, sign_key: str | os.PathLike | None,
                   quantize: str | None, calibration: np.ndarray | None) -> bool:
    """ConfigError for options that cannot be met; whether to write ``model.pte``."""
    _check_target(target, overwrite)
    if sign_key is not None and not Path(sign_key).is_file():
        raise ConfigError(f"no signing key at {sign_key}")
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ConfigError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
        if calibration is None or len(calibration) == 0:
            raise ConfigError(f"--quantize {quantize} calibrates on your training data: give it with --data "
                              "(and --dataset for a named dataset), or calibration= in Python")
    if executorch is None:
        return executorch_available()
    if executorch and not executorch_available():
        raise ConfigError("the ExecuTorch program needs the executorch package: pip install './[executorch]'")
    return executorch


def _check_calibration(whole: InnerLoop, spec: GraphSpec, quantize: str, calibration: np.ndarray) -> None:
    """ConfigError unless ``whole`` leaves layers to quantise and ``calibration`` holds float32 model inputs."""
    if split_inner_loop(whole)[0] is None:
        raise ConfigError(f"--quantize {quantize} stores the frozen layers in {quantize}, and scope {whole.scope!r} "
                          "adapts every layer: nothing to quantise (export with --scope head or last_block)")
    if (not isinstance(calibration, np.ndarray) or calibration.dtype != np.float32
            or calibration.shape[1:] != spec.input_shape):
        raise ConfigError(f"calibration must be float32 model inputs of shape (n, "
                          f"{', '.join(map(str, spec.input_shape))}), got {getattr(calibration, 'shape', calibration)}")


def _write_programs(staging: Path, whole: InnerLoop, spec: GraphSpec, executorch: bool,
                    calibration: np.ndarray | None) -> dict[str, Any]:
    """The graphs of ``whole`` cut by its scope (embed over the frozen layers, int8 with ``calibration``; adapt and
    predict on its features, their parameters named as the model's), their .ort copies and ``model.pte``; returns
    the manifest's entries that depend on the cut."""
    embed, inner = split_inner_loop(whole)
    part_spec = replace(spec, input_shape=feature_shape(embed, spec.input_shape))
    names = adapted_names(whole)  # the part's parameters are the model's, in the same order
    if embed is not None:
        export_embed(embed, spec.input_shape, staging / EMBED_ONNX)
        if calibration is not None:
            quantize_embed(staging / EMBED_ONNX, calibration)
    adapt = export_adapt(inner, part_spec, staging / ADAPT_ONNX, names)
    export_predict(inner, part_spec, staging / PREDICT_ONNX, names)
    write_ort_format(staging)
    if executorch:
        log.info("lowering to ExecuTorch (%s; takes minutes)", PTE)
        export_executorch(embed, inner, part_spec, spec.input_shape, staging / PTE, calibration=calibration)
    return {"feature_shape": list(part_spec.input_shape), "ir_version": adapt.ir_version}


@torch.no_grad()
def feature_shape(embed: torch.nn.Sequential | None, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one example's features: ``embed``'s output for an input of ``input_shape`` (the input's own
    shape without ``embed``)."""
    return input_shape if embed is None else tuple(embed(torch.zeros(1, *input_shape)).shape[1:])


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse an output path that is a file, a folder holding something else, or (without ``overwrite``) an artifact."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not an artifact folder; choose another output path")
    if target.is_dir() and any(target.iterdir()):
        if not (target / MANIFEST).is_file():
            raise ConfigError(f"{target} is a folder that holds no artifact; not replacing it")
        if not overwrite:
            raise ConfigError(f"{target} already holds an artifact; pass --force (overwrite=True in Python) to replace it")


def _graph_spec(model: torch.nn.Module, config: dict, head_init: str, max_ways: int | None,
                max_shots: int | None) -> GraphSpec:
    """The input shape and task sizes the graphs serve (defaults and limits as :func:`export_artifact` says)."""
    outputs = model.head.out_features
    if max_ways is None:
        max_ways = DEFAULT_MAX_WAYS if is_per_task(head_init) else outputs
    if max_ways < 2 or (not is_per_task(head_init) and max_ways > outputs):
        limit = "at least 2" if is_per_task(head_init) else f"between 2 and the model's {outputs} outputs"
        raise ConfigError(f"max_ways must be {limit}, got {max_ways}")
    max_shots = DEFAULT_MAX_SHOTS if max_shots is None else max_shots
    if max_shots < 1:
        raise ConfigError(f"max_shots must be >= 1, got {max_shots}")
    return GraphSpec(checkpoint_input(config).shape, max_ways, max_shots)


def narrow_head(model: torch.nn.Module, ways: int) -> None:
    """Keep the first ``ways`` outputs of a meta-learned head: a task's labels 0..k-1 only ever use those."""
    head = model.head
    if head.out_features == ways:
        return
    with torch.no_grad():
        head.weight = torch.nn.Parameter(head.weight[:ways].clone())
        head.bias = torch.nn.Parameter(head.bias[:ways].clone())
    head.out_features = ways


SELFCHECK_BYTES = 8 << 20  # the reference task's inputs are kept within this (a full-size task of small inputs)


def selfcheck_task(spec: GraphSpec, queries: int) -> tuple[int, int]:
    """``(ways, shots)`` of the reference task: the artifact's full size when its inputs fit in
    :data:`SELFCHECK_BYTES`, else fewer shots, then fewer ways (2 x 1 at least) (a 224x224 photo is 0.6 MB)."""
    per_input = 4 * math.prod(spec.input_shape)
    ways, shots = spec.max_ways, spec.max_shots
    while (ways * shots + queries) * per_input > SELFCHECK_BYTES and (ways, shots) != (2, 1):
        ways, shots = (ways, shots - 1) if shots > 1 else (ways - 1, shots)
    return ways, shots


def write_selfcheck(inner: InnerLoop, spec: GraphSpec, bounds: tuple[float, float], path: Path,
                    queries: int = 8) -> None:
    """Save a task of inputs uniform within ``bounds`` (the lowest and highest value the model takes), full-size
    unless its inputs would outgrow :data:`SELFCHECK_BYTES` (:func:`selfcheck_task`), and the probabilities PyTorch
    predicts after adapting to it, so a device can check that it computes the same (``Learner.self_test``).
    ``inner`` is the whole model's inner loop: the artifact's embed + adapt + predict must give what it gives.
    Computed on one thread: a MobileNet adapting 5 steps at rate 0.5 gives probabilities 1e-4 apart on one and on
    two threads, which would make the reference depend on the exporting machine."""
    generator = torch.Generator().manual_seed(0)
    low, high = bounds
    ways, shots = selfcheck_task(spec, queries)
    support_x = low + (high - low) * torch.rand(ways * shots, *spec.input_shape, generator=generator)
    support_y = torch.arange(ways).repeat_interleave(shots)
    query_x = low + (high - low) * torch.rand(queries, *spec.input_shape, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions split over threads round differently: one thread gives one answer
    try:
        probabilities = inner.probabilities(support_x, support_y, query_x)[:, :ways]
    finally:
        torch.set_num_threads(threads)
    with open(path, "wb") as f:
        np.savez(f, support_x=support_x.numpy(), support_y=support_y.numpy(), query_x=query_x.numpy(),
                 probabilities=probabilities.numpy())


def write_ort_format(folder: Path) -> None:
    """Add ORT-format copies (``*.ort``, for ONNX Runtime Mobile) of the folder's graphs and the
    ``required_operators.config`` that a reduced-size mobile build takes (``--include_ops_by_config``)."""
    command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(folder),
               "--optimization_style", "Fixed", "--target_platform", "arm"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"ORT-format conversion failed: {result.stderr.strip()[-2000:]}")
    config = folder / "required_operators.config"
    # The generated header names the staging paths; keep only the operator lines and say what they are for.
    operators = [line for line in config.read_text().splitlines() if line and not line.startswith("#")]
    config.write_text("# Operators used by adapt.ort and predict.ort (ONNX Runtime --include_ops_by_config)\n"
                      + "\n".join(operators) + "\n")


def _manifest(config: dict[str, Any], inner: InnerLoop, spec: GraphSpec, cut: dict[str, Any],
              folder: Path) -> dict[str, Any]:
    """The manifest of the artifact in ``folder``; ``inner`` and ``spec`` are the whole model's (on inputs), ``cut``
    what :func:`_write_programs` returned."""
    params = example_adapted(inner, spec)
    manifest = {
        "format_version": FORMAT_VERSION,
        "input_shape": list(spec.input_shape),
        "feature_shape": cut["feature_shape"],  # what embed gives and adapt and predict take
        "input_dtype": "float32",
        "input": checkpoint_input(config).manifest_entry(),  # what the input is, as the dataset described it
        "uint8_scale": 1.0 / 255.0,
        "max_ways": spec.max_ways,
        "max_shots": spec.max_shots,
        "inner_steps": inner.inner_steps,
        "inner_lr": inner.inner_lr,
        "scope": inner.scope,
        "head_init": inner.head_init,
        "head_scale": inner.head_scale,
        # parameters whose inner rate is inner_lr times a constant of their own, held in the adapt graph
        "per_parameter_rates": sorted(inner.lr_scales or {}),
        "model": config["model"],
        "training": config.get("training", {}),
        "data": describe(config.get("data", {})),  # the class hashes stay in the checkpoint
        "adapt_inputs": list(ADAPT_INPUTS),
        # In the order of adapt's outputs and predict's parameter inputs (a list: the manifest's keys are sorted).
        "adapted_parameters": [{"name": name, "shape": list(params[name].shape)} for name in adapted_names(inner)],
        "onnx": {"ir_version": cut["ir_version"], "opset": OPSET, "min_onnxruntime": MIN_ONNXRUNTIME,
                 "exported_with_onnxruntime": onnxruntime.__version__},
        "files": {f.name: sha256_file(f) for f in sorted(folder.iterdir()) if f.name not in (MANIFEST, SIGNATURE)},
    }
    if (folder / PTE).exists():
        from executorch.version import __version__ as executorch_version

        manifest["executorch"] = {"support_sizes": support_sizes(spec, inner), "predict_batch": PREDICT_BATCH,
                                  "exported_with_executorch": executorch_version, "delegate": "XnnpackBackend"}
    return manifest
