"""edgeadapt.export: turn a meta-trained checkpoint into an artifact that devices adapt without PyTorch.

- ``onnx_graphs``: the frozen layers as an ``embed`` program and the inner loop on the adapted part traced into
  ``adapt`` and ``predict`` programs, written as ONNX;
- ``decompositions``: the decomposition table that makes the gradient step expressible in ONNX;
- ``onnx_rewrites``: operators onnxruntime runs slowly (ELU) rewritten as equivalent vectorised ones;
- ``xnnpack_decompositions``: the rewrites on top of it that ExecuTorch's XNNPACK backend delegates;
- ``xnnpack_partitioners``: which operators XNNPACK takes (its own list, plus ELU);
- ``executorch_program``: the ExecuTorch (XNNPACK) program, ``model.pte``;
- ``xnnpack_quantization``: how the program's int8 embed method is quantised (as onnxruntime's QDQ form is);
- ``artifact``: :func:`export_artifact`, the folder with graphs, ORT copies, self-check and sealed manifest;
- ``quantize``: int8 artifacts (the embed graph quantised from a calibration sample);
- ``predecessor``: a re-export that restores the states saved with the artifact it replaces;
- ``errors``: :class:`ExportError` and :class:`UnsupportedExportError` (SDK errors).
"""

from .artifact import export_artifact

__all__ = ["export_artifact"]
