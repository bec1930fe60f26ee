"""The saved state of an adapted learner: a zip (stored, not compressed) of one ``.npy`` per adapted parameter, the
stored support set (``support/x.npy``, ``support/y.npy``) that :meth:`AdaptedLearner.update` re-adapts from, and
``meta.json`` (state format, artifact identity, class list, the sha256 of each array's exact stored bytes, sealed by
its own checksum). Everything is checked before use; nothing is unpickled.

Format 3 adds the support set to format 2. A format-2 state still loads (it predicts; ``update`` refuses it, having
no examples to re-adapt from); format 1 gets a message to adapt again.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, InputError, InputTypeError
from .format.files import atomic_write, read_regular_file, sha256_bytes
from .format.manifest import parse_json, seal_matches, sealed

STATE_FORMAT = 3
READABLE_FORMATS = (2, 3)
META = "meta.json"
SUPPORT_X, SUPPORT_Y = "support/x.npy", "support/y.npy"
DTYPE = np.dtype("<f4")  # little-endian float32, whatever this machine's byte order
LABEL_DTYPE = np.dtype("<i8")
MAX_META_BYTES = 1 << 20
NPY_HEADER_BYTES = 4096  # an upper bound on a .npy header


@dataclass(frozen=True)
class StateSpec:
    """What a state of one artifact may hold: parameter shapes, class and example limits, the input shape."""

    artifact: str
    shapes: dict[str, tuple[int, ...]]
    max_ways: int
    max_shots: int
    input_shape: tuple[int, ...]


@dataclass(frozen=True)
class Support:
    """The stored support set: examples ``x`` (n, *input_shape) float32 and class indices ``y`` (n,) int64."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class State:
    """A verified state: the class list, the adapted parameters, and the support set (None for format 2)."""

    classes: list[Any]
    params: dict[str, np.ndarray]
    support: Support | None


def write_state(path: Path, spec: StateSpec, state: State) -> Path:
    """Write ``state`` atomically in format 3; InputTypeError for labels that JSON cannot hold exactly."""
    classes = state.classes
    try:
        stored = json.loads(json.dumps(classes, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"labels must be JSON-serialisable (ints, floats, strings) to be saved: {e}") from e
    if stored != classes or [type(c) for c in stored] != [type(c) for c in classes]:
        raise InputTypeError("labels do not survive a JSON round trip (use ints or strings)")
    check_classes(stored, spec.max_ways, "the labels")
    arrays = {f"{name}.npy": np.ascontiguousarray(state.params[name], dtype=DTYPE) for name in sorted(state.params)}
    if state.support is not None:
        arrays[SUPPORT_X] = np.ascontiguousarray(state.support.x, dtype=DTYPE)
        arrays[SUPPORT_Y] = np.ascontiguousarray(state.support.y, dtype=LABEL_DTYPE)
    members = {name: _npy(array) for name, array in arrays.items()}
    meta = sealed({"format": STATE_FORMAT, "artifact": spec.artifact, "classes": stored,
                   "examples": 0 if state.support is None else len(state.support.y),
                   "arrays": {name: sha256_bytes(data) for name, data in members.items()}}, "sha256")
    members[META] = json.dumps(meta, sort_keys=True).encode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return atomic_write(path, archive.getvalue())


def read_state(path: Path, spec: StateSpec) -> State:
    """The state at ``path`` (format 2 or 3), verified against ``spec``.

    Sizes are checked before anything is inflated; ArtifactError names what is wrong."""
    limits = {f"{name}.npy": 4 * math.prod(shape) + NPY_HEADER_BYTES for name, shape in spec.shapes.items()}
    most = spec.max_ways * spec.max_shots
    limits[SUPPORT_X] = 4 * most * math.prod(spec.input_shape) + NPY_HEADER_BYTES
    limits[SUPPORT_Y] = 8 * most + NPY_HEADER_BYTES
    limits[META] = MAX_META_BYTES
    if not path.exists() and not path.is_symlink():
        raise ArtifactError(f"no saved state at {path}")
    resolved = path.resolve()
    data = read_regular_file(resolved.parent, resolved.name, sum(limits.values()) + (1 << 16) * len(limits))
    members = _members(path, data, limits)
    meta = parse_json(members.pop(META), f"{path}: {META}")
    version = meta.get("format")
    if version not in READABLE_FORMATS:
        raise ArtifactError(f"{path}: state format {version!r}; this runtime reads formats "
                            f"{', '.join(map(str, READABLE_FORMATS))}")
    if not seal_matches(meta, "sha256"):
        raise ArtifactError(f"{path} does not match its checksum: corrupt or modified")
    if meta.get("artifact") != spec.artifact:
        raise ArtifactError(f"{path} was adapted from a different artifact")
    examples = meta.get("examples", 0) if version == 3 else 0
    expected = {f"{name}.npy" for name in spec.shapes} | ({SUPPORT_X, SUPPORT_Y} if examples else set())
    if set(members) != expected:
        raise ArtifactError(f"{path} holds {sorted([*members, META])}, expected {sorted([*expected, META])}")
    digests = meta.get("arrays")
    if not isinstance(digests, dict) or set(digests) != set(members):
        raise ArtifactError(f"{path}: its metadata does not list the arrays it holds")
    for member, raw in members.items():
        if sha256_bytes(raw) != digests[member]:
            raise ArtifactError(f"{path}: {member} does not match its checksum: corrupt or modified")
    params = {name: _array(members[f"{name}.npy"], shape, DTYPE, f"{path}: {name}.npy")
              for name, shape in spec.shapes.items()}
    classes = meta.get("classes")
    try:
        check_classes(classes, spec.max_ways, f"{path}: the class list")
    except (InputError, InputTypeError) as e:
        raise ArtifactError(str(e)) from e
    support = _support(members, examples, len(classes), spec, str(path)) if examples else None
    return State(classes, params, support)


def check_classes(classes: Any, max_ways: int, where: str) -> None:
    """Raise InputError / InputTypeError unless ``classes`` is 2..max_ways distinct JSON-safe labels."""
    if not isinstance(classes, list):
        raise InputTypeError(f"{where} must be a list, got {type(classes).__name__}")
    if not all(isinstance(c, (str, int, float)) and not (isinstance(c, float) and not math.isfinite(c))
               for c in classes):
        raise InputTypeError(f"{where} must hold only strings, integers and finite numbers")
    if not 2 <= len(classes) <= max_ways:
        raise InputError(f"{where} has {len(classes)} classes; this artifact takes 2..{max_ways}")
    if len(set(classes)) != len(classes):
        raise InputError(f"{where} repeats a class")


def _members(path: Path, data: bytes, limits: dict[str, int]) -> dict[str, bytes]:
    """The zip's members, each name known and each size within its limit before it is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {info.filename: info for info in z.infolist()}
            if META not in infos and "__meta__.npy" in infos:
                raise ArtifactError(f"{path} was saved in state format 1; this runtime reads formats "
                                    f"{', '.join(map(str, READABLE_FORMATS))}: adapt again and save")
            unknown = sorted(set(infos) - set(limits))
            if unknown or META not in infos or len(infos) != len(z.infolist()):
                raise ArtifactError(f"{path} holds {sorted(infos)}, expected the parameters "
                                    f"{sorted(n for n in limits if n not in (META, SUPPORT_X, SUPPORT_Y))}, "
                                    f"{META} and optionally {SUPPORT_X}, {SUPPORT_Y}")
            for name, info in infos.items():
                if info.file_size > limits[name]:
                    raise ArtifactError(f"{path}: {name} would inflate to {info.file_size} bytes, more than the "
                                        f"{limits[name]} this artifact allows; refused")
            return {name: z.read(name) for name in infos}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ArtifactError(f"{path} is not a readable saved state: {e}") from e


def _support(members: dict[str, bytes], examples: Any, n_classes: int, spec: StateSpec, where: str) -> Support:
    """The stored support set: ``examples`` rows, every class present, at most max_shots of each."""
    most = spec.max_ways * spec.max_shots
    if type(examples) is not int or not 1 <= examples <= most:
        raise ArtifactError(f"{where}: examples must be an integer in [1, {most}], got {examples!r}")
    x = _array(members[SUPPORT_X], (examples, *spec.input_shape), DTYPE, f"{where}: {SUPPORT_X}")
    y = _array(members[SUPPORT_Y], (examples,), LABEL_DTYPE, f"{where}: {SUPPORT_Y}")
    in_range = bool(((y >= 0) & (y < n_classes)).all())
    counts = np.bincount(y, minlength=n_classes) if in_range else None
    if counts is None or (counts == 0).any() or counts.max() > spec.max_shots:
        raise ArtifactError(f"{where}: the stored labels must name each of the {n_classes} classes 1 to "
                            f"{spec.max_shots} times")
    return Support(x, y)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _array(raw: bytes, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    try:
        array = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ArtifactError(f"{where} is not a readable array: {e}") from e
    if array.dtype != dtype:
        raise ArtifactError(f"{where} has dtype {array.dtype.str}; expected {dtype.str} (little-endian)")
    if array.shape != shape:
        raise ArtifactError(f"{where} has shape {array.shape}; this artifact expects {shape}")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{where} holds NaN or infinite values")
    return array.astype(dtype.newbyteorder("="))  # native byte order for the engine
