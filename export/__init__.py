"""edgeadapt.export: turn a meta-trained checkpoint into an artifact that devices adapt without PyTorch.

- ``onnx_graphs``: the inner loop traced into ``adapt`` and ``predict`` programs, written as ONNX;
- ``decompositions``: the decomposition table that makes the gradient step expressible in ONNX;
- ``xnnpack_decompositions``: the rewrites on top of it that ExecuTorch's XNNPACK backend delegates;
- ``xnnpack_partitioners``: which operators XNNPACK takes (its own list, plus ELU);
- ``executorch_program``: the ExecuTorch (XNNPACK) program, ``model.pte``;
- ``artifact``: :func:`export_artifact`, the folder with graphs, ORT copies, self-check and sealed manifest;
- ``errors``: :class:`ExportError` and :class:`UnsupportedExportError` (SDK errors).
"""

from .artifact import export_artifact

__all__ = ["export_artifact"]
