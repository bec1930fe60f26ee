"""The saved state of an adapted learner: a zip (stored, not compressed) of one ``.npy`` per adapted parameter, the
stored support set (``support/x.npy``, ``support/y.npy``) that :meth:`AdaptedLearner.update` re-adapts from, and
``meta.json`` (state format, artifact identity, class list, the sha256 of each array's exact stored bytes, sealed by
its own checksum). Everything is checked before use; nothing is unpickled. The file is read within the sizes the
artifact allows and members must be stored, never compressed (:mod:`.format.archive`); ``save`` runs the same
reader on what it is about to write, so it never writes a state ``restore`` would refuse.

Format 3 adds the support set to format 2, and ``offered``: per class, how many examples the learner was ever given
(``adapt`` plus every ``update``), which the ``reservoir`` keep policy draws from; a format-3 state without it (written
before it existed) counts only its stored examples. Each count is an integer from the class's stored examples to
``MAX_OFFERED``. A format-2 state still loads (it predicts; ``update`` refuses it, having
no examples to re-adapt from); format 1 gets a message to adapt again.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import ArtifactError, InputError, InputTypeError
from .format.archive import read_npy, read_stored_zip
from .format.files import atomic_write, open_regular_file, sha256_bytes
from .format.manifest import parse_json, seal_matches, sealed
from .labels import MAX_LABEL_CHARS, Label, check_classes

STATE_FORMAT = 3
READABLE_FORMATS = (2, 3)
META = "meta.json"
SUPPORT_X, SUPPORT_Y = "support/x.npy", "support/y.npy"
DTYPE = np.dtype("<f4")  # little-endian float32, whatever this machine's byte order
LABEL_DTYPE = np.dtype("<i8")
META_BYTES = 1024  # the metadata less its labels and array digests
NPY_HEADER_BYTES = 256  # an upper bound on the .npy header of an array of at most 8 dimensions
ZIP_END = 22  # the zip directory's end record
MAX_OFFERED = 10**12  # the most examples of one class a state counts as offered (update saturates there)
OFFERED_BYTES = 16  # a count in the metadata: up to 13 digits and its separator
ZIP_MEMBER = 30 + 46  # a member's local and directory headers, less its name (written in both)


@dataclass(frozen=True)
class StateSpec:
    """What a state of one artifact may hold: parameter shapes, class and example limits, the input shape; states
    of the artifact ``artifact`` are written, of it or of its ``predecessors`` (earlier exports of the same model,
    checked at export to compute the same) read."""

    artifact: str
    shapes: dict[str, tuple[int, ...]]
    max_ways: int
    max_shots: int
    input_shape: tuple[int, ...]
    predecessors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Support:
    """The stored support set: examples ``x`` (n, *input_shape) float32, class indices ``y`` (n,) int64, and per class
    the examples offered so far (``offered``, int64; None: as many as are stored)."""

    x: np.ndarray
    y: np.ndarray
    offered: np.ndarray | None = None

    def offered_counts(self, n_classes: int) -> np.ndarray:
        """Per class (``n_classes`` of them), how many examples were ever offered: at least those stored."""
        if self.offered is not None:
            return np.asarray(self.offered, np.int64)
        return np.bincount(self.y, minlength=n_classes).astype(np.int64)


@dataclass(frozen=True)
class State:
    """A verified state: the class list, the adapted parameters, and the support set (None for format 2)."""

    classes: list[Label]
    params: dict[str, np.ndarray]
    support: Support | None


def write_state(path: Path, spec: StateSpec, state: State) -> Path:
    """Write ``state`` atomically in format 3, after checking that :func:`read_state` would accept what is written.

    InputError / InputTypeError (before anything is written) for a state restore would refuse; StorageError when
    the file cannot be written. Either way a previous file at ``path`` is untouched."""
    check_classes(state.classes, spec.max_ways, "the labels")
    arrays = {f"{name}.npy": np.ascontiguousarray(state.params[name], dtype=DTYPE) for name in sorted(state.params)}
    if state.support is not None:
        arrays[SUPPORT_X] = np.ascontiguousarray(state.support.x, dtype=DTYPE)
        arrays[SUPPORT_Y] = np.ascontiguousarray(state.support.y, dtype=LABEL_DTYPE)
    members = {name: _npy(array) for name, array in arrays.items()}
    fields = {"format": STATE_FORMAT, "artifact": spec.artifact, "classes": list(state.classes),
              "examples": 0 if state.support is None else len(state.support.y),
              "arrays": {name: sha256_bytes(data) for name, data in members.items()}}
    if state.support is not None:
        fields["offered"] = [int(n) for n in state.support.offered_counts(len(state.classes))]
    meta = sealed(fields, "sha256")
    members[META] = json.dumps(meta, sort_keys=True).encode()
    if len(members[META]) > meta_limit(spec):
        raise InputError(f"the state's metadata would take {len(members[META])} bytes, more than the "
                         f"{meta_limit(spec)} restore reads: use fewer or shorter labels")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = archive.getvalue()
    try:
        parse_state(io.BytesIO(data), len(data), spec, "the state to save")
    except ArtifactError as e:
        raise InputError(f"this state cannot be saved, restore would refuse it: {e}") from e
    return atomic_write(path, data)


def read_state(path: Path, spec: StateSpec) -> State:
    """The state at ``path`` (format 2 or 3), verified against ``spec``.

    The file and each member are read within the sizes the artifact allows, nothing is inflated, and arrays are
    checked before they are allocated; ArtifactError names what is wrong."""
    limits = member_limits(spec)
    try:
        present = path.exists() or path.is_symlink()
        resolved = path.resolve()
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop, no permission
        raise ArtifactError(f"{path} cannot be read: {e}") from e
    if not present:
        raise ArtifactError(f"no saved state at {path}")
    with open_regular_file(resolved.parent, resolved.name, archive_limit(limits)) as opened:
        return parse_state(opened[0], opened[1], spec, str(path))


def parse_state(source: BinaryIO, size: int, spec: StateSpec, where: str) -> State:
    """The state held in the zip ``source`` of ``size`` bytes, verified against ``spec`` (ArtifactError if not)."""
    members = read_stored_zip(source, size, member_limits(spec), where, lambda names: _check_names(names, where))
    meta = parse_json(members.pop(META), f"{where}: {META}")
    version = meta.get("format")
    if version not in READABLE_FORMATS:
        raise ArtifactError(f"{where}: state format {version!r}; this runtime reads formats "
                            f"{', '.join(map(str, READABLE_FORMATS))}")
    if not seal_matches(meta, "sha256"):
        raise ArtifactError(f"{where} does not match its checksum: corrupt or modified")
    if meta.get("artifact") not in (spec.artifact, *spec.predecessors):
        raise ArtifactError(f"{where} was adapted from a different artifact")
    examples = meta.get("examples", 0) if version == 3 else 0
    expected = {f"{name}.npy" for name in spec.shapes} | ({SUPPORT_X, SUPPORT_Y} if examples else set())
    if set(members) != expected:
        raise ArtifactError(f"{where} holds {sorted([*members, META])}, expected {sorted([*expected, META])}")
    digests = meta.get("arrays")
    if not isinstance(digests, dict) or set(digests) != set(members):
        raise ArtifactError(f"{where}: its metadata does not list the arrays it holds")
    for member, raw in members.items():
        if sha256_bytes(raw) != digests[member]:
            raise ArtifactError(f"{where}: {member} does not match its checksum: corrupt or modified")
    classes = meta.get("classes")
    try:
        check_classes(classes, spec.max_ways, f"{where}: the class list")
    except (InputError, InputTypeError) as e:
        raise ArtifactError(str(e)) from e
    params = {name: _array(members[f"{name}.npy"], shape, DTYPE, f"{where}: {name}.npy")
              for name, shape in spec.shapes.items()}
    if not examples and "offered" in meta:
        raise ArtifactError(f"{where}: its metadata counts offered examples but it stores none")
    support = _support(members, examples, len(classes), spec, where) if examples else None
    if support is not None and "offered" in meta:
        support = Support(support.x, support.y, _offered(meta["offered"], support, len(classes), where))
    return State(classes, params, support)


def member_limits(spec: StateSpec) -> dict[str, int]:
    """The most bytes each member of a state of ``spec``'s artifact may hold."""
    limits = {f"{name}.npy": 4 * math.prod(shape) + NPY_HEADER_BYTES for name, shape in spec.shapes.items()}
    most = spec.max_ways * spec.max_shots
    limits[SUPPORT_X] = 4 * most * math.prod(spec.input_shape) + NPY_HEADER_BYTES
    limits[SUPPORT_Y] = 8 * most + NPY_HEADER_BYTES
    limits[META] = meta_limit(spec)
    return limits


def archive_limit(limits: dict[str, int]) -> int:
    """The most bytes a state's zip may take: its members at their limits, each with its local and directory
    headers (30 and 46 bytes plus the name), and the directory's end record."""
    return ZIP_END + sum(limit + ZIP_MEMBER + 2 * len(name.encode()) for name, limit in limits.items())


def meta_limit(spec: StateSpec) -> int:
    """The most bytes a state's metadata may take: room for ``max_ways`` labels of the longest kind (each
    character escaped as JSON's 12-byte surrogate pair at worst), an offered count per class and a digest per
    array."""
    return (META_BYTES + spec.max_ways * (12 * MAX_LABEL_CHARS + 8 + OFFERED_BYTES)
            + 160 * (len(spec.shapes) + 2))


def _check_names(names: list[str], where: str) -> None:
    if META not in names and "__meta__.npy" in names:
        raise ArtifactError(f"{where} was saved in state format 1; this runtime reads formats "
                            f"{', '.join(map(str, READABLE_FORMATS))}: adapt again and save")
    if META not in names:
        raise ArtifactError(f"{where} holds {sorted(names)}, expected the parameters, {META} and optionally "
                            f"{SUPPORT_X}, {SUPPORT_Y}")


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


def _offered(offered: Any, support: Support, n_classes: int, where: str) -> np.ndarray:
    """The per-class offered counts of a state's metadata: integers from each class's stored examples to
    MAX_OFFERED."""
    stored = np.bincount(support.y, minlength=n_classes)
    valid = (isinstance(offered, list) and len(offered) == n_classes
             and all(type(n) is int and stored[k] <= n <= MAX_OFFERED for k, n in enumerate(offered)))
    if not valid:
        raise ArtifactError(f"{where}: offered must list, for each of the {n_classes} classes, an integer from its "
                            f"stored examples to {MAX_OFFERED}")
    return np.array(offered, np.int64)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _array(raw: bytes, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    array = read_npy(raw, shape, dtype, where)
    if not np.isfinite(array).all():
        raise ArtifactError(f"{where} holds NaN or infinite values")
    return array
