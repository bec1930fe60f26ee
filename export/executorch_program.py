"""The ExecuTorch program (``model.pte``) of an artifact: the same ``adapt`` and ``predict`` as the ONNX graphs.

Convolutions and their gradients are first rewritten as im2col + matrix products
(:func:`~edgeadapt.export.decompositions.matmul_decompositions`): XNNPACK delegates matrix
products with weights that are program inputs, but not such convolutions, which would otherwise
run on ExecuTorch's portable reference kernels (about 70x slower than onnxruntime).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeadapt.sdk.inner_loop import InnerLoop

from .decompositions import matmul_decompositions
from .onnx_graphs import GraphSpec, adapt_program, predict_program

PREDICT_BATCH = 128  # inputs per predict call that the program's memory is planned for


def executorch_available() -> bool:
    """Whether the optional ``executorch`` package (``pip install 'edgeadapt[executorch]'``) is installed."""
    try:
        import executorch.exir  # noqa: F401
    except ImportError:
        return False
    return True


def export_executorch(inner: InnerLoop, spec: GraphSpec, path: str | os.PathLike,
                      predict_batch: int = PREDICT_BATCH) -> Path:
    """Write ``adapt`` and ``predict`` as the two methods of one ExecuTorch program at ``path``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    table = matmul_decompositions()
    programs = {"adapt": adapt_program(inner, spec, table),
                "predict": predict_program(inner, spec, predict_batch, table)}
    partitioner = XnnpackPartitioner(force_non_static_weights_for_f32_linear=True)
    edge = to_edge_transform_and_lower(programs, partitioner=[partitioner],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    target = Path(path)
    target.write_bytes(edge.to_executorch().buffer)
    return target
