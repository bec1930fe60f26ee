"""The engines that run an artifact's ``adapt`` and ``predict`` programs: onnxruntime or ExecuTorch.

Both take and return numpy arrays, so :class:`edgeadapt.runtime.Learner` does not care which one
runs. ExecuTorch is optional: its Python bindings (the ``executorch`` package) bring torch with
them, whereas the ``.pte`` program itself runs in ExecuTorch's C++ runtime on devices without torch.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ArtifactError, InputError

BACKENDS = ("onnxruntime", "executorch")
PTE_FILE = "model.pte"


class Backend(Protocol):
    """Runs the two programs of an artifact."""

    parameter_names: list[str]

    def adapt(self, support_x: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        """The adapted parameters, in the order of ``parameter_names``."""

    def predict(self, x: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities ``(len(x), max_ways)``."""


class OnnxRuntimeBackend:
    """``adapt.onnx`` and ``predict.onnx`` in onnxruntime sessions (CPU)."""

    def __init__(self, folder: Path, threads: int | None, min_version: str):
        import onnxruntime as ort

        if _version(ort.__version__) < _version(min_version):
            raise ArtifactError(f"{folder} needs onnxruntime >= {min_version}; this is onnxruntime {ort.__version__}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._adapt = ort.InferenceSession(str(folder / "adapt.onnx"), options, providers=["CPUExecutionProvider"])
            self._predict = ort.InferenceSession(str(folder / "predict.onnx"), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise ArtifactError(f"{folder}: onnxruntime cannot load the graphs: {e}") from e
        self.parameter_names = [output.name for output in self._adapt.get_outputs()]

    def adapt(self, support_x: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        return self._adapt.run(None, {"support_x": support_x, "support_y": support_y,
                                      "example_mask": example_mask, "class_mask": class_mask})

    def predict(self, x: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        return self._predict.run(None, {"x": x, "class_mask": class_mask, **params})[0]


class ExecuTorchBackend:
    """The ``adapt`` and ``predict`` methods of ``model.pte`` (XNNPACK-delegated) in ExecuTorch's runtime.

    Method ``adapt_<n>`` takes exactly ``n`` examples, for each n in ``support_sizes``: a task is padded
    (example weight 0.0) to the smallest that holds it. ``predict`` is planned for at most
    ``predict_batch`` inputs, so larger batches run in chunks.
    """

    def __init__(self, folder: Path, threads: int | None, parameter_names: list[str], support_sizes: list[int],
                 predict_batch: int):
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as e:
            raise InputError("backend 'executorch' needs the executorch package "
                             "(pip install 'edgeadapt[executorch]')") from e
        if threads is not None:
            _set_xnnpack_threads(threads)
        self._torch = torch
        try:
            program = Runtime.get().load_program(folder / PTE_FILE)
            self._adapt = {n: program.load_method(f"adapt_{n}") for n in sorted(support_sizes)}
            self._predict = program.load_method("predict")
        except Exception as e:  # the bindings raise RuntimeError/ValueError for unreadable programs
            raise ArtifactError(f"{folder / PTE_FILE}: ExecuTorch cannot load the program: {e}") from e
        self.parameter_names = parameter_names
        self._predict_batch = predict_batch

    def adapt(self, support_x: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        size = next(n for n in self._adapt if n >= len(support_x))
        padding = size - len(support_x)
        padded = [np.concatenate([a, np.zeros((padding, *a.shape[1:]), a.dtype)])
                  for a in (support_x, support_y, example_mask)]
        inputs = [self._torch.from_numpy(a) for a in (*padded, class_mask)]
        return [t.numpy() for t in self._adapt[size].execute(inputs)]

    def predict(self, x: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        weights = [self._torch.from_numpy(params[name]) for name in self.parameter_names]
        mask = self._torch.from_numpy(class_mask)
        chunks = [self._predict.execute([self._torch.from_numpy(x[i: i + self._predict_batch]), mask, *weights])[0]
                  for i in range(0, len(x), self._predict_batch)]
        return np.concatenate([c.numpy() for c in chunks])


def _version(text: str) -> tuple[int, ...]:
    """(1, 18, 1) from "1.18.1" (ignoring any suffix such as "+cpu" or "rc1")."""
    numbers = []
    for part in text.split("+")[0].split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def _set_xnnpack_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide threadpool, which XNNPACK's kernels use."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    if _threadpool_get_thread_count() != threads:
        _unsafe_reset_threadpool(threads)
