"""The engines that run an artifact's ``embed``, ``adapt`` and ``predict`` programs: onnxruntime or ExecuTorch.

Both take and return numpy arrays, so :class:`edgeadapt.runtime.Learner` does not care which one
runs. ExecuTorch is optional: its Python bindings (the ``executorch`` package) bring torch with
them, whereas the ``.pte`` program itself runs in ExecuTorch's C++ runtime on devices without torch.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar

import numpy as np
from packaging.version import Version

from .errors import ArtifactError, EngineError, InputError
from .format.extras import require
from .format.manifest import VerifiedArtifact
from .format.names import (ADAPT_INPUTS, ADAPT_ONNX, EMBED_METHOD, EMBED_ONNX, PREDICT_INPUTS, PREDICT_METHOD,
                           PREDICT_ONNX, PTE, adapt_method)

T = TypeVar("T")


class Backend(Protocol):
    """Runs the programs of an artifact."""

    parameter_names: list[str]

    def embed(self, x: np.ndarray) -> np.ndarray:
        """The features of inputs ``x`` (``x`` itself when the artifact has no ``embed``)."""

    def adapt(self, support_features: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        """The adapted parameters, in the order of ``parameter_names``."""

    def predict(self, features: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities ``(len(features), max_ways)``."""


class OnnxRuntimeBackend:
    """``embed.onnx`` (when present), ``adapt.onnx`` and ``predict.onnx`` in onnxruntime sessions (CPU), built from
    the verified bytes."""

    def __init__(self, artifact: VerifiedArtifact, threads: int | None):
        ort = require("onnxruntime", "runtime", "running an artifact")

        folder, minimum = artifact.folder, artifact.manifest["onnx"]["min_onnxruntime"]
        if Version(ort.__version__) < Version(minimum):
            raise ArtifactError(f"{folder} needs onnxruntime >= {minimum}; this is onnxruntime {ort.__version__}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        graphs = [name for name in (EMBED_ONNX, ADAPT_ONNX, PREDICT_ONNX) if name in artifact.files]
        try:
            sessions = {name: ort.InferenceSession(artifact.files[name], options, providers=["CPUExecutionProvider"])
                        for name in graphs}
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise ArtifactError(f"{folder}: onnxruntime cannot load the graphs: {e}") from e
        self._embed, self._adapt, self._predict = sessions.get(EMBED_ONNX), sessions[ADAPT_ONNX], sessions[PREDICT_ONNX]
        self.parameter_names = [output.name for output in self._adapt.get_outputs()]
        expected = [p["name"] for p in artifact.manifest["adapted_parameters"]]
        predict_inputs = [i.name for i in self._predict.get_inputs()]
        if self.parameter_names != expected or predict_inputs != [*PREDICT_INPUTS, *expected]:
            raise ArtifactError(f"{folder}: the graphs' parameters differ from the manifest's adapted_parameters")

    def embed(self, x: np.ndarray) -> np.ndarray:
        if self._embed is None:
            return x
        return _engine_call("embed", lambda: self._embed.run(None, {self._embed.get_inputs()[0].name: x})[0])

    def adapt(self, support_features: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        inputs = dict(zip(ADAPT_INPUTS, (support_features, support_y, example_mask, class_mask)))
        return _engine_call("adapt", lambda: self._adapt.run(None, inputs))

    def predict(self, features: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        inputs = dict(zip(PREDICT_INPUTS, (features, class_mask)), **params)
        return _engine_call("predict", lambda: self._predict.run(None, inputs)[0])


class ExecuTorchBackend:
    """The ``embed`` (when present), ``adapt`` and ``predict`` methods of ``model.pte`` (XNNPACK-delegated) in
    ExecuTorch's runtime.

    Method ``adapt_<n>`` takes exactly ``n`` examples, for each n in ``support_sizes``: a task is padded
    (example weight 0.0) to the smallest that holds it. ``embed`` and ``predict`` are planned for at most
    ``predict_batch`` inputs, or fewer where ExecuTorch's memory plan bounds the input lower (the program says;
    for a 224 x 224 MobileNet's embed ExecuTorch 1.5 planned 15), so larger batches run in chunks.
    """

    def __init__(self, artifact: VerifiedArtifact, threads: int | None):
        if PTE not in artifact.files:
            raise ArtifactError(f"{artifact.folder} has no ExecuTorch program ({PTE}); export it with executorch "
                                "installed")
        if "executorch" not in artifact.manifest:
            raise ArtifactError(f"{artifact.folder}: the manifest has no executorch settings for {PTE}")
        settings = artifact.manifest["executorch"]
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as e:
            raise InputError("backend 'executorch' needs the executorch package "
                             "(pip install './[executorch]')") from e
        if threads is not None:
            _set_xnnpack_threads(threads)
        self._torch = torch
        try:
            # The verified bytes, not the path. The program reads them in place and its methods need the program:
            # both are kept alive as long as this backend (freed early, executing a method crashes the process).
            self._bytes = artifact.files[PTE]
            self._program = Runtime.get().load_program(self._bytes)
            self._adapt = {n: self._program.load_method(adapt_method(n)) for n in sorted(settings["support_sizes"])}
            self._predict = self._program.load_method(PREDICT_METHOD)
            self._embed = self._program.load_method(EMBED_METHOD) if EMBED_ONNX in artifact.files else None
        except Exception as e:  # the bindings raise RuntimeError/ValueError for unreadable programs
            raise ArtifactError(f"{artifact.folder / PTE}: ExecuTorch cannot load the program: {e}") from e
        self.parameter_names = [p["name"] for p in artifact.manifest["adapted_parameters"]]
        self._predict_batch = settings["predict_batch"]

    def adapt(self, support_x: np.ndarray, support_y: np.ndarray, example_mask: np.ndarray,
              class_mask: np.ndarray) -> list[np.ndarray]:
        size = next(n for n in self._adapt if n >= len(support_x))
        padding = size - len(support_x)
        task = (support_x, support_y, example_mask)
        if padding:  # a task of a ladder size (the usual ones) runs as it is, uncopied
            task = tuple(np.concatenate([a, np.zeros((padding, *a.shape[1:]), a.dtype)]) for a in task)
        inputs = [self._tensor(a) for a in (*task, class_mask)]
        return _engine_call("adapt", lambda: [t.numpy() for t in self._adapt[size].execute(inputs)])

    def embed(self, x: np.ndarray) -> np.ndarray:
        if self._embed is None:
            return x
        return _engine_call("embed", lambda: self._chunked(self._embed, x, []))

    def predict(self, features: np.ndarray, class_mask: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        rest = [self._tensor(class_mask), *(self._tensor(params[name]) for name in self.parameter_names)]
        return _engine_call("predict", lambda: self._chunked(self._predict, features, rest))

    def _chunked(self, method: Any, x: np.ndarray, rest: list[Any]) -> np.ndarray:
        """``method``'s first output for ``x`` (then ``rest``), run on at most as many rows at a time as its
        first input is planned for (``predict_batch`` or fewer)."""
        rows = min(self._predict_batch, method.metadata.input_tensor_meta(0).sizes()[0])
        return np.concatenate([method.execute([self._tensor(x[i: i + rows]), *rest])[0].numpy()
                               for i in range(0, len(x), rows)])

    def _tensor(self, array: np.ndarray) -> Any:
        """A tensor sharing ``array``'s memory, or a copy's where ``array`` is read-only (a restored state's view)."""
        return self._torch.from_numpy(array if array.flags.writeable else array.copy())


BackendFactory = Callable[[VerifiedArtifact, "int | None"], Backend]  # (verified artifact, threads) -> engine
BACKENDS: dict[str, BackendFactory] = {"onnxruntime": OnnxRuntimeBackend, "executorch": ExecuTorchBackend}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``load(path, backend=name)`` run artifacts with ``factory(artifact, threads)``, an object with
    :class:`Backend`'s ``parameter_names``, ``adapt`` and ``predict`` (e.g. another engine of the same ONNX files)."""
    if name in BACKENDS and BACKENDS[name] is not factory:
        raise InputError(f"a backend called {name!r} is already registered")
    BACKENDS[name] = factory


def _engine_call(program: str, call: Callable[[], T]) -> T:
    """``call()``, with any exception the engine raises turned into EngineError."""
    try:
        return call()
    except Exception as e:  # onnxruntime and ExecuTorch raise their own exception types
        raise EngineError(f"the engine failed while running {program}: {type(e).__name__}: {e}") from e


def _set_xnnpack_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide threadpool, which XNNPACK's kernels use."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    if _threadpool_get_thread_count() != threads:
        _unsafe_reset_threadpool(threads)
