"""The ExecuTorch program (``model.pte``) of an artifact: the same ``embed``, ``adapt`` and ``predict`` as the ONNX
graphs, as methods of one program (``embed`` holds the frozen layers' weights; the others take its features).

Convolutions whose weights adapt, and their gradients, are first rewritten as im2col + matrix products
(:func:`~edgeadapt.export.xnnpack_decompositions.matmul_decompositions`): XNNPACK delegates matrix
products with weights that are program inputs, but not such convolutions, which would otherwise
run on ExecuTorch's portable reference kernels (about 70x slower than onnxruntime).

Each ``adapt_<n>`` method takes exactly ``n`` support examples, for a ladder of sizes up to
``max_ways * max_shots`` where layers adapt, the maximum alone where only the head does (:func:`support_sizes`);
the runtime pads a task to the smallest size that holds it (example weight 0.0). Padded examples cost as much as
real ones (adapting the last block, its forward and backward pass for each), so the ladder holds the support sizes of
the usual tasks exactly: 5, 10 and 20 ways times 1, 5 and 10 shots. Methods share the program's
weights, so each adds only its own instructions to the file. A
dynamic support size, as in the ONNX graph, fails ExecuTorch 1.5's XNNPACK lowering ("Output node ... is already in the inputs ... pass through arguments").
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from edgeadapt.runtime.format.names import EMBED_METHOD, PREDICT_METHOD, adapt_method
from edgeadapt.sdk.inner_loop import InnerLoop

from .onnx_graphs import GraphSpec, adapt_program, embed_program, predict_program
from .xnnpack_decompositions import matmul_decompositions

if TYPE_CHECKING:
    from executorch.exir import EdgeProgramManager

PREDICT_BATCH = 128  # inputs per predict call that the program's memory is planned for
SIZE_LADDER = (5, 10, 20, 25, 50, 100)  # support sizes below the maximum that get their own adapt method


def support_sizes(spec: GraphSpec, inner: InnerLoop) -> list[int]:
    """The support sizes with an ``adapt_<n>`` method: where layers adapt, the ladder below the maximum and the
    maximum; where only the head adapts (on embed's features), the maximum alone: a padded example then costs a row
    of the head's products, less than the 57 KB another method adds to the program."""
    if not adapts_layers(inner):
        return [spec.support_size]
    return [n for n in SIZE_LADDER if n < spec.support_size] + [spec.support_size]


def adapts_layers(inner: InnerLoop) -> bool:
    """Whether ``inner`` adapts parameters other than the head's."""
    return any(inner.is_adapted(name) for name in inner.params() if not name.startswith("head."))


def executorch_available() -> bool:
    """Whether the optional ``executorch`` package (``pip install './[executorch]'``) is installed."""
    return importlib.util.find_spec("executorch") is not None


def lower_to_xnnpack(embed: nn.Sequential | None, inner: InnerLoop, spec: GraphSpec, input_shape: tuple[int, ...],
                     adapt_sizes: list[int], predict_batch: int | None = PREDICT_BATCH,
                     calibration: np.ndarray | None = None) -> EdgeProgramManager:
    """``adapt_<n>`` for each of ``adapt_sizes`` (and ``predict`` and ``embed``, unless ``predict_batch`` is None)
    traced with :func:`matmul_decompositions` and lowered to ExecuTorch, XNNPACK taking every operator it can
    (:func:`~edgeadapt.export.xnnpack_partitioners.xnnpack_partitioners`). ``inner`` and ``spec`` are the adapted
    part's, on ``embed``'s features of inputs of ``input_shape``; with ``calibration``, ``embed`` is int8
    (:func:`int8_embed_program`)."""
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    from .xnnpack_partitioners import xnnpack_partitioners

    adapts_convolutions = adapts_layers(inner)
    table = matmul_decompositions(convolution_weights_are_inputs=adapts_convolutions)
    programs = {adapt_method(n): adapt_program(inner, spec, table, fixed_support=n) for n in adapt_sizes}
    if predict_batch is not None:
        programs[PREDICT_METHOD] = predict_program(inner, spec, predict_batch, table)
        if embed is not None and calibration is not None:
            programs[EMBED_METHOD] = int8_embed_program(embed, input_shape, predict_batch, calibration)
        elif embed is not None:  # constant weights: XNNPACK's own convolution takes them
            programs[EMBED_METHOD] = embed_program(embed, input_shape, predict_batch, matmul_decompositions(False))
    constant_convolutions = embed is not None or not adapts_convolutions
    return to_edge_transform_and_lower(programs, partitioner=xnnpack_partitioners(constant_convolutions),
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))


def int8_embed_program(layers: nn.Sequential, input_shape: tuple[int, ...], max_batch: int,
                       calibration: np.ndarray) -> torch.export.ExportedProgram:
    """``x -> features`` through ``layers`` quantised for XNNPACK (PyTorch 2 export quantisation with
    :class:`~edgeadapt.export.xnnpack_quantization.EmbedQuantizer`: int8 weights per output channel, symmetric;
    int8 activations whose ranges are the minimum and maximum observed on ``calibration``, a convolution and its
    clamp quantised as one); an ExportedProgram of 1..``max_batch`` inputs."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .xnnpack_quantization import EmbedQuantizer

    example = (torch.zeros(2, *input_shape),)
    shapes = ({0: torch.export.Dim("batch", min=1, max=max_batch)},)
    observed = prepare_pt2e(torch.export.export(layers.eval(), example, dynamic_shapes=shapes).module(),
                            EmbedQuantizer())
    with torch.no_grad():
        for start in range(0, len(calibration), max_batch):
            observed(torch.from_numpy(calibration[start: start + max_batch]))
    return torch.export.export(convert_pt2e(observed), example, dynamic_shapes=shapes)


def export_executorch(embed: nn.Sequential | None, inner: InnerLoop, spec: GraphSpec, input_shape: tuple[int, ...],
                      path: str | os.PathLike, predict_batch: int = PREDICT_BATCH,
                      calibration: np.ndarray | None = None) -> Path:
    """Write ``embed`` (when there is one; int8 with ``calibration``), ``adapt_<n>`` (for each of
    :func:`support_sizes`) and ``predict`` as methods of one ExecuTorch program at ``path``."""
    edge = lower_to_xnnpack(embed, inner, spec, input_shape, support_sizes(spec, inner), predict_batch, calibration)
    target = Path(path)
    target.write_bytes(edge.to_executorch().buffer)
    return target
