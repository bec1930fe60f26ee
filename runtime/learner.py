"""The on-device API: load an artifact, adapt it to a few labelled examples, predict. numpy + onnxruntime only
(ExecuTorch optional)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Hashable, Sequence

import numpy as np

from .artifact import read_manifest
from .backends import BACKENDS, PTE_FILE, Backend, ExecuTorchBackend, OnnxRuntimeBackend
from .errors import AdaptationError, ArtifactError, InputError, InputTypeError, SelfTestError

STATE_FORMAT = 1


class Learner:
    """A loaded artifact. Immutable and safe to share between threads: every ``adapt`` starts from the
    meta-learned weights stored in the artifact."""

    def __init__(self, path: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.backend = backend
        self._engine: Backend
        if backend == "onnxruntime":
            self._engine = OnnxRuntimeBackend(self.path, threads, self.manifest["onnx"]["min_onnxruntime"])
        else:
            if PTE_FILE not in self.manifest["files"]:
                raise ArtifactError(f"{self.path} has no ExecuTorch program ({PTE_FILE}); export it with executorch "
                                    "installed")
            settings = self.manifest["executorch"]
            names = [p["name"] for p in self.manifest["adapted_parameters"]]
            self._engine = ExecuTorchBackend(self.path, threads, names, [int(n) for n in settings["support_sizes"]],
                                             int(settings["predict_batch"]))
        self._parameters = self._engine.parameter_names
        self._identity = self.manifest["files"]["adapt.onnx"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input_shape"])

    @property
    def max_ways(self) -> int:
        return int(self.manifest["max_ways"])

    @property
    def max_shots(self) -> int:
        return int(self.manifest["max_shots"])

    def adapt(self, support_x: np.ndarray, support_y: Sequence[Hashable], steps: int | None = None) -> "AdaptedLearner":
        """A classifier personalised to ``support_x`` (n, *input_shape) labelled by ``support_y`` (n labels)."""
        if steps is not None and steps != self.manifest["inner_steps"]:
            raise InputError(f"this artifact adapts with {self.manifest['inner_steps']} steps; got steps={steps}")
        x = self._images(support_x, "support_x")
        labels = list(support_y) if not isinstance(support_y, np.ndarray) else support_y.tolist()
        if len(labels) != len(x):
            raise InputError(f"support_x has {len(x)} examples but support_y has {len(labels)} labels")
        counts = Counter(labels)
        if len(counts) < 2:
            raise InputError(f"adaptation needs at least 2 classes, got {len(counts)}")
        if len(counts) > self.max_ways:
            raise InputError(f"{len(counts)} classes exceed this artifact's max_ways={self.max_ways}")
        label, most = counts.most_common(1)[0]
        if most > self.max_shots:
            raise InputError(f"class {label!r} has {most} examples; this artifact takes at most "
                             f"max_shots={self.max_shots} per class")
        classes = _ordered(counts)
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[c] for c in labels], np.int64)
        outputs = self._engine.adapt(np.ascontiguousarray(x), y, np.ones(len(x), np.float32),
                                     _class_mask(len(classes), self.max_ways))
        params = dict(zip(self._parameters, outputs))
        if not all(np.isfinite(p).all() for p in params.values()):
            raise AdaptationError("adaptation diverged: the adapted parameters are not finite")
        return AdaptedLearner(self, tuple(classes), params)

    def self_test(self, atol: float = 1e-4) -> float:
        """Adapt to the artifact's reference task and compare with PyTorch's probabilities from export time.

        Returns the largest absolute difference; raises SelfTestError above ``atol``.
        """
        try:
            with np.load(self.path / "selfcheck.npz", allow_pickle=False) as data:
                ref = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ArtifactError(f"{self.path / 'selfcheck.npz'} is not readable: {e}") from e
        adapted = self.adapt(ref["support_x"], ref["support_y"].tolist())
        difference = float(np.abs(adapted.predict_proba(ref["query_x"]) - ref["probabilities"]).max())
        if not difference <= atol:
            raise SelfTestError(f"probabilities differ from PyTorch's by {difference:.2e} > {atol:.0e}")
        return difference

    def restore(self, path: str | os.PathLike) -> "AdaptedLearner":
        """Load a state written by :meth:`AdaptedLearner.save`, checking it belongs to this artifact."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise ArtifactError(f"no saved state at {path}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ArtifactError(f"{path} is not a readable saved state: {e}") from e
        try:
            meta = json.loads(str(arrays.pop("__meta__")))
        except (KeyError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{path} has no valid metadata: {e}") from e
        if meta.get("format") != STATE_FORMAT:
            raise ArtifactError(f"{path}: unknown state format {meta.get('format')!r}")
        if meta.get("artifact") != self._identity:
            raise ArtifactError(f"{path} was adapted from a different artifact than {self.path}")
        if meta.get("sha256") != _digest(arrays, meta["classes"]):
            raise ArtifactError(f"{path} does not match its checksum: corrupt or modified")
        if sorted(arrays) != sorted(self._parameters):
            raise ArtifactError(f"{path} holds parameters {sorted(arrays)}, expected {sorted(self._parameters)}")
        return AdaptedLearner(self, tuple(meta["classes"]), arrays)

    def _images(self, x: Any, name: str) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise InputTypeError(f"{name} must be a numpy array, got {type(x).__name__}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) * np.float32(self.manifest.get("uint8_scale", 1 / 255))
        elif x.dtype != np.float32:
            raise InputTypeError(f"{name} must be float32 (or uint8), got {x.dtype}")
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape:
            raise InputError(f"{name} must have shape (n, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if len(x) == 0:
            raise InputError(f"{name} is empty")
        if not np.isfinite(x).all():
            raise InputError(f"{name} contains NaN or infinite values")
        return x


class AdaptedLearner:
    """A personalised classifier: ``predict`` returns labels, ``predict_proba`` probabilities ordered as ``classes``."""

    def __init__(self, learner: Learner, classes: tuple[Hashable, ...], params: dict[str, np.ndarray]):
        self._learner = learner
        self.classes = classes
        self._params = params
        self._class_mask = _class_mask(len(classes), learner.max_ways)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(m, n_classes) probabilities for inputs ``x`` (m, *input_shape)."""
        images = np.ascontiguousarray(self._learner._images(x, "x"))
        probabilities = self._learner._engine.predict(images, self._class_mask, self._params)
        return probabilities[:, : len(self.classes)]

    def predict(self, x: np.ndarray) -> list[Hashable]:
        """The most probable label for each input."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the personalised state atomically (npz of arrays + JSON metadata, checksummed; no pickle)."""
        try:
            classes = json.loads(json.dumps(list(self.classes)))
        except TypeError as e:
            raise InputTypeError(f"labels must be JSON-serialisable (ints, floats, strings) to be saved: {e}") from e
        if classes != list(self.classes):
            raise InputTypeError("labels do not survive a JSON round trip (use ints or strings)")
        meta = {"format": STATE_FORMAT, "artifact": self._learner._identity, "classes": classes,
                "sha256": _digest(self._params, classes)}
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, __meta__=np.array(json.dumps(meta)), **self._params)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target


def load(path: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None) -> Learner:
    """Load the artifact folder at ``path`` (verifying its manifest) for adaptation on this device.

    ``backend`` is "onnxruntime" or "executorch" (needs the optional executorch package); ``threads``
    caps the engine's intra-op threads (default: the engine's own choice).
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    return Learner(path, backend, threads)


def _class_mask(n_classes: int, max_ways: int) -> np.ndarray:
    """1.0 for the task's classes (the first ``n_classes`` outputs), 0.0 for the unused ones."""
    return (np.arange(max_ways) < n_classes).astype(np.float32)


def _ordered(counts: Counter) -> list[Hashable]:
    try:
        return sorted(counts)
    except TypeError:  # labels of mixed types: keep first-seen order
        return list(counts)


def _digest(params: dict[str, np.ndarray], classes: list[Any]) -> str:
    digest = hashlib.sha256(json.dumps(classes).encode())
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name], dtype=np.float32).tobytes())
    return digest.hexdigest()
