"""The on-device API: load an artifact, adapt it to a few labelled examples, predict. numpy + onnxruntime only
(ExecuTorch optional)."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .arguments import backend_argument, path_argument, threads_argument
from .backends import BACKENDS, Backend
from .embeddings import Embeddings
from .errors import (AdaptationError, ArtifactError, InputError, InputTypeError, InputWarning, PredictionError,
                     SelfTestError)
from .format.inputs import InputSpec
from .format.manifest import read_artifact
from .format.names import ADAPT_ONNX, EXECUTORCH_PROBABILITIES, SELFCHECK
from .format.signing import PublicKey
from .labels import Label, as_labels
from .memory import KEEP_POLICIES, KeepPolicy
from .selfcheck import read_selfcheck
from .state import MAX_OFFERED, State, StateSpec, Support, read_state, write_state

RANGE_TOLERANCE = 1e-3  # of the input range: values this far outside it are still accepted
INVERTED_MEAN = 0.7  # ink_high inputs whose mean exceeds this look like paper = 1 (inverted)
DEFAULT_KEEP = "reservoir"  # AdaptedLearner.update's keep policy (see KEEP_POLICIES, docs/deploy.md)


class Learner:
    """A loaded artifact. Immutable and safe to share between threads: every ``adapt`` starts from the
    meta-learned weights stored in the artifact."""

    def __init__(self, path: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None,
                 public_key: PublicKey | None = None):
        self.path = path_argument(path, "path")
        self.backend = backend_argument(backend, BACKENDS)
        threads = threads_argument(threads)
        artifact = read_artifact(self.path, public_key)
        self.manifest = artifact.manifest
        self._engine: Backend = BACKENDS[backend](artifact, threads)
        self._parameters = self._engine.parameter_names
        self._shapes = {p["name"]: tuple(p["shape"]) for p in self.manifest["adapted_parameters"]}
        self._identity = self.manifest["files"][ADAPT_ONNX]
        self._selfcheck = artifact.files[SELFCHECK]
        self._state_spec = StateSpec(self._identity, self._shapes, self.max_ways, self.max_shots, self.input_shape,
                                     tuple(self.manifest.get("restores_states_of", ())))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input_shape"])

    @property
    def max_ways(self) -> int:
        return int(self.manifest["max_ways"])

    @property
    def max_shots(self) -> int:
        return int(self.manifest["max_shots"])

    def embed(self, x: np.ndarray) -> Embeddings:
        """The features of inputs ``x`` (n, *input_shape), which :meth:`adapt` and :meth:`AdaptedLearner.predict`
        take in place of ``x`` without running the frozen layers again (the inputs themselves, checked, when the
        artifact adapts every layer)."""
        features = self._engine.embed(np.ascontiguousarray(self._images(x, "x")))
        return Embeddings(features, self._identity)

    def adapt(self, support_x: np.ndarray | Embeddings, support_y: Sequence[Label],
              steps: int | None = None) -> "AdaptedLearner":
        """A classifier personalised to ``support_x`` (n, *input_shape) labelled by ``support_y`` (n labels: strings,
        integers or finite floats, by the rule of :mod:`edgeadapt.runtime.labels`).

        ``support_x`` may be :class:`Embeddings` of this artifact (:meth:`embed`): the learner is the same, but it
        keeps no inputs, so it cannot be updated (adapt from the inputs for that)."""
        if steps is not None and steps != self.manifest["inner_steps"]:
            raise InputError(f"this artifact adapts with {self.manifest['inner_steps']} steps; got steps={steps}")
        if isinstance(support_x, Embeddings):
            x, labels = self._own(support_x, "support_x"), as_labels(support_y, "support_y")
            if len(labels) != len(x):
                raise InputError(f"support_x has {len(x)} embeddings but support_y has {len(labels)} labels")
        else:
            x, labels = self._examples(support_x, support_y, "support_x", "support_y")
        classes = _ordered(Counter(labels))
        if len(classes) < 2:
            raise InputError(f"adaptation needs at least 2 classes, got {len(classes)}")
        self._check_ways(len(classes))
        self._check_shots(labels)
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[c] for c in labels], np.int64)
        if isinstance(support_x, Embeddings):
            return self._fit(tuple(classes), x, y, None)
        return self._fit(tuple(classes), self._engine.embed(np.ascontiguousarray(x)), y, Support(np.array(x), y))

    def _own(self, embeddings: Embeddings, name: str) -> np.ndarray:
        """The features of ``embeddings``, which this artifact must have computed."""
        if embeddings.artifact != self._identity:
            raise InputError(f"{name} holds embeddings computed by another artifact; embed with this one")
        if len(embeddings) == 0:
            raise InputError(f"{name} is empty")
        return np.ascontiguousarray(embeddings.features)

    def _examples(self, x: Any, y: Any, x_name: str, y_name: str) -> tuple[np.ndarray, list[Label]]:
        """Checked inputs and labels, as many of each."""
        images, labels = self._images(x, x_name), as_labels(y, y_name)
        if len(labels) != len(images):
            raise InputError(f"{x_name} has {len(images)} examples but {y_name} has {len(labels)} labels")
        return images, labels

    def _check_shots(self, labels: list[Label]) -> None:
        label, most = Counter(labels).most_common(1)[0]
        if most > self.max_shots:
            raise InputError(f"class {label!r} has {most} examples; this artifact takes at most "
                             f"max_shots={self.max_shots} per class")

    def _check_ways(self, n_classes: int) -> None:
        if n_classes > self.max_ways:
            raise InputError(f"{n_classes} classes exceed this artifact's max_ways={self.max_ways}")

    def _fit(self, classes: tuple[Label, ...], features: np.ndarray, y: np.ndarray,
             support: Support | None) -> "AdaptedLearner":
        """Adapt the meta-learned weights to the examples of ``features`` labelled ``y`` (class indices into
        ``classes``); ``support`` is what the learner keeps to re-adapt from."""
        outputs = self._engine.adapt(features, y, np.ones(len(y), np.float32), _class_mask(len(classes), self.max_ways))
        params = dict(zip(self._parameters, outputs))
        if not all(np.isfinite(p).all() for p in params.values()):
            raise AdaptationError("adaptation diverged: the adapted parameters are not finite")
        return AdaptedLearner(self, classes, params, support)

    def self_test(self, atol: float = 1e-4) -> float:
        """Adapt to the artifact's reference task and compare with the probabilities from export time: PyTorch's,
        or for an int8 artifact the exporting engine's (this backend's where the task holds its own).

        Returns the largest absolute difference; raises SelfTestError above ``atol``.
        """
        ref = read_selfcheck(self._selfcheck, self.manifest, str(self.path / SELFCHECK))
        own = ref.get(EXECUTORCH_PROBABILITIES) if self.backend == "executorch" else None
        expected = ref["probabilities"] if own is None else own
        adapted = self.adapt(ref["support_x"], ref["support_y"].tolist())
        difference = float(np.abs(adapted.predict_proba(ref["query_x"]) - expected).max())
        if not difference <= atol:
            raise SelfTestError(f"probabilities differ from the export's reference by {difference:.2e} > {atol:.0e}")
        return difference

    def restore(self, path: str | os.PathLike) -> "AdaptedLearner":
        """Load a state written by :meth:`AdaptedLearner.save`, checking it belongs to this artifact and that every
        array has the dtype, byte order, shape and finiteness the artifact expects. A state of format 2 (no stored
        examples) predicts but cannot be updated."""
        state = read_state(path_argument(path, "path"), self._state_spec)
        return AdaptedLearner(self, tuple(state.classes), state.params, state.support)

    def _images(self, x: Any, name: str) -> np.ndarray:
        if isinstance(x, np.ma.MaskedArray):
            raise InputTypeError(f"{name} is a masked array; pass a plain numpy array (e.g. {name}.filled(0.0))")
        if not isinstance(x, np.ndarray):
            raise InputTypeError(f"{name} must be a numpy array, got {type(x).__name__}")
        x = np.asarray(x)
        if x.dtype == np.uint8:
            if x.size and x.max() == 1:
                warnings.warn(f"{name} is uint8 holding only 0 and 1: it is scaled by 1/255 as 0..255 pixels; "
                              "multiply by 255 or pass float32", InputWarning, stacklevel=3)
            x = x.astype(np.float32) * np.float32(self.manifest["uint8_scale"])
        elif x.dtype != np.float32:
            raise InputTypeError(f"{name} must be float32 (or uint8), got {x.dtype}")
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape:
            raise InputError(f"{name} must have shape (n, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if len(x) == 0:
            raise InputError(f"{name} is empty")
        if not np.isfinite(x).all():
            raise InputError(f"{name} contains NaN or infinite values")
        self._check_conventions(x, name)
        return x

    def _check_conventions(self, x: np.ndarray, name: str) -> None:
        """Refuse values outside the range the input description allows; warn where drawings whose ink is high
        look inverted (only strokes have an ink polarity)."""
        spec = InputSpec.from_manifest(self.manifest)
        low, high = spec.bounds()
        slack = RANGE_TOLERANCE * (high - low)
        smallest, largest = float(x.min()), float(x.max())
        if smallest < low - slack or largest > high + slack:
            raise InputError(f"{name} holds values in [{smallest:.4g}, {largest:.4g}]; this model takes values in "
                             f"[{round(low, 6)}, {round(high, 6)}] (see edgeadapt.runtime.preprocess)")
        if spec.polarity == "ink_high" and float(x.mean()) > low + INVERTED_MEAN * (high - low):
            warnings.warn(f"{name} looks inverted (mean {float(x.mean()):.2f}): this model expects ink = {high} on a "
                          f"background of {low}; for dark ink on light paper use "
                          "edgeadapt.runtime.preprocess.prepare(..., ink='dark')", InputWarning, stacklevel=3)


class AdaptedLearner:
    """A personalised classifier: ``predict`` returns labels, ``predict_proba`` probabilities ordered as ``classes``.

    Immutable: :meth:`update` returns a new learner and leaves this one as it was.
    """

    def __init__(self, learner: Learner, classes: tuple[Label, ...], params: dict[str, np.ndarray],
                 support: Support | None = None):
        self._learner = learner
        self.classes = classes
        self._params = params
        self._support = support
        self._class_mask = _class_mask(len(classes), learner.max_ways)

    @property
    def examples(self) -> int:
        """How many examples this learner keeps to re-adapt from (0 for one restored from a format-2 state)."""
        return 0 if self._support is None else len(self._support.y)

    @property
    def offered(self) -> dict[Label, int]:
        """Per class, how many examples this learner was ever given (``adapt`` plus every ``update``; empty for one
        restored from a format-2 state)."""
        if self._support is None:
            return {}
        return dict(zip(self.classes, self._support.offered_counts(len(self.classes)).tolist()))

    def update(self, new_x: np.ndarray, new_y: Sequence[Label], keep: str = DEFAULT_KEEP) -> "AdaptedLearner":
        """A learner that knows this one's classes and the new examples ``new_x`` labelled ``new_y`` (new classes or
        more examples of known ones).

        It re-adapts the meta-learned weights to the stored support set plus the new examples, keeping at most
        ``max_shots`` examples of each class, so the state never holds more than ``max_ways x max_shots`` examples.
        ``keep`` names which (a key of :data:`KEEP_POLICIES`): "reservoir" (the default) a uniform sample of every
        example of the class ever offered (:func:`edgeadapt.runtime.memory.reservoir`, the training side's
        definition), drawn from a generator seeded by the sha256 of this learner's stored examples, offered counts
        and the new examples, so the same update gives the same learner; "newest" the most recent ones. Classes
        keep their order; new ones follow. More than ``max_ways`` classes in all, more than ``max_shots`` new
        examples of one class or an unknown ``keep`` is an InputError, and this learner stays as it was.
        """
        learner = self._learner
        policy = _keep_policy(keep)
        if self._support is None:
            raise ArtifactError("this learner keeps no examples to re-adapt from (it was adapted from embeddings, or "
                                "restored from a state of format 2): adapt to the inputs (then save) to be able to "
                                "update it")
        x, labels = learner._examples(new_x, new_y, "new_x", "new_y")
        known = set(self.classes)
        added = [c for c in _ordered(Counter(labels)) if c not in known]
        classes = self.classes + tuple(added)
        learner._check_ways(len(classes))
        learner._check_shots(labels)
        index = {c: i for i, c in enumerate(classes)}
        new = np.array([index[c] for c in labels], np.int64)
        offered = np.zeros(len(classes), np.int64)
        offered[: len(self.classes)] = self._support.offered_counts(len(self.classes))
        all_x = np.concatenate([self._support.x, x])
        all_y = np.concatenate([self._support.y, new])
        rng = _update_generator(keep, self._support, offered, x, new)
        kept = policy(all_y, len(self._support.y), offered, learner.max_shots, rng)
        total = np.minimum(offered + np.bincount(new, minlength=len(classes)), MAX_OFFERED)
        support = Support(all_x[kept], all_y[kept], total)
        return learner._fit(classes, learner._engine.embed(np.ascontiguousarray(support.x)), support.y, support)

    def predict_proba(self, x: np.ndarray | Embeddings) -> np.ndarray:
        """(m, n_classes) probabilities for inputs ``x`` (m, *input_shape) or their :class:`Embeddings`;
        PredictionError if any is not finite."""
        learner = self._learner
        if isinstance(x, Embeddings):
            features = learner._own(x, "x")
        else:
            features = learner._engine.embed(np.ascontiguousarray(learner._images(x, "x")))
        probabilities = learner._engine.predict(features, self._class_mask, self._params)[:, : len(self.classes)]
        if not np.isfinite(probabilities).all():
            raise PredictionError("the model produced non-finite probabilities (NaN or infinite); no prediction made")
        return probabilities

    def predict(self, x: np.ndarray | Embeddings) -> list[Label]:
        """The most probable label for each input."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the personalised state atomically: state format 3, a zip of .npy arrays (the adapted parameters and
        the stored examples) and checksummed JSON metadata; no pickle.

        What is written is first read back with :meth:`Learner.restore`'s own checks, so a state that could not be
        restored is never written (InputError saying what to change). A file that cannot be written (disk full,
        permissions, a folder in the way, a name too long) is a StorageError. Either way a previous file at
        ``path`` is untouched."""
        return write_state(path_argument(path, "path"), self._learner._state_spec,
                           State(list(self.classes), self._params, self._support))


def load(path: str | os.PathLike, backend: str = "onnxruntime", threads: int | None = None,
         public_key: PublicKey | None = None) -> Learner:
    """Load the artifact folder at ``path`` (verifying its manifest and every file) for adaptation on this device.

    ``backend`` is "onnxruntime", "executorch" (needs the optional executorch package) or a name given to
    :func:`~edgeadapt.runtime.backends.register_backend`; ``threads`` (1 to 256)
    caps the engine's intra-op threads (default: the engine's own choice). ``path`` is a str or os.PathLike. With ``public_key`` (an Ed25519
    key: PEM file path, PEM bytes or 32 raw bytes; needs the ``sign`` extra) the artifact must carry a valid
    signature by that key.
    """
    return Learner(path, backend, threads, public_key)


def _keep_policy(keep: Any) -> KeepPolicy:
    if not isinstance(keep, str) or keep not in KEEP_POLICIES:
        raise InputError(f"keep must be one of {', '.join(map(repr, KEEP_POLICIES))}, got {keep!r}")
    return KEEP_POLICIES[keep]


def _update_generator(keep: str, support: Support, offered: np.ndarray, new_x: np.ndarray,
                      new_y: np.ndarray) -> np.random.Generator:
    """A generator seeded by the sha256 of everything the update depends on: the same update, the same draws."""
    digest = hashlib.sha256(keep.encode())
    for array, dtype in ((support.y, "<i8"), (offered, "<i8"), (new_y, "<i8"), (support.x, "<f4"), (new_x, "<f4")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
        digest.update(b"|")
    return np.random.default_rng(int.from_bytes(digest.digest(), "little"))


def _class_mask(n_classes: int, max_ways: int) -> np.ndarray:
    """1.0 for the task's classes (the first ``n_classes`` outputs), 0.0 for the unused ones."""
    return (np.arange(max_ways) < n_classes).astype(np.float32)


def _ordered(counts: Counter) -> list[Label]:
    try:
        return sorted(counts)
    except TypeError:  # labels of mixed types: keep first-seen order
        return list(counts)
