"""The saved state of an adapted learner: a zip (stored, not compressed) of one ``.npy`` per adapted parameter and
``meta.json`` (state format, artifact identity, class list, the sha256 of each array's exact stored bytes,
sealed by its own checksum). Everything is checked before use; nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError, InputError, InputTypeError
from .format.files import atomic_write, read_regular_file, sha256_bytes
from .format.manifest import parse_json, seal_matches, sealed

STATE_FORMAT = 2
META = "meta.json"
DTYPE = np.dtype("<f4")  # little-endian float32, whatever this machine's byte order
MAX_META_BYTES = 1 << 20
NPY_HEADER_BYTES = 4096  # an upper bound on a .npy header


def write_state(path: Path, artifact: str, classes: list[Any], params: dict[str, np.ndarray], max_ways: int) -> Path:
    """Write the state atomically; InputTypeError for labels that JSON cannot hold exactly."""
    try:
        stored = json.loads(json.dumps(classes, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"labels must be JSON-serialisable (ints, floats, strings) to be saved: {e}") from e
    if stored != classes or [type(c) for c in stored] != [type(c) for c in classes]:
        raise InputTypeError("labels do not survive a JSON round trip (use ints or strings)")
    check_classes(stored, max_ways, "the labels")
    members = {}
    for name in sorted(params):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.ascontiguousarray(params[name], dtype=DTYPE), allow_pickle=False)
        members[f"{name}.npy"] = buffer.getvalue()
    meta = sealed({"format": STATE_FORMAT, "artifact": artifact, "classes": stored,
                   "arrays": {name: sha256_bytes(data) for name, data in members.items()}}, "sha256")
    members[META] = json.dumps(meta, sort_keys=True).encode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return atomic_write(path, archive.getvalue())


def read_state(path: Path, artifact: str, shapes: dict[str, tuple[int, ...]],
               max_ways: int) -> tuple[list[Any], dict[str, np.ndarray]]:
    """The class list and parameters of the state at ``path``, verified against the artifact's ``shapes``.

    Sizes are checked before anything is inflated; ArtifactError names what is wrong."""
    expected = {f"{name}.npy": 4 * math.prod(shape) + NPY_HEADER_BYTES for name, shape in shapes.items()}
    expected[META] = MAX_META_BYTES
    if not path.exists() and not path.is_symlink():
        raise ArtifactError(f"no saved state at {path}")
    resolved = path.resolve()
    data = read_regular_file(resolved.parent, resolved.name, sum(expected.values()) + (1 << 16) * len(expected))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {info.filename: info for info in z.infolist()}
            if META not in infos and "__meta__.npy" in infos:
                raise ArtifactError(f"{path} was saved in state format 1; this runtime reads format {STATE_FORMAT}: "
                                    "adapt again and save")
            if set(infos) != set(expected) or len(infos) != len(z.infolist()):
                raise ArtifactError(f"{path} holds {sorted(infos)}, expected {sorted(expected)}")
            for name, info in infos.items():
                if info.file_size > expected[name]:
                    raise ArtifactError(f"{path}: {name} would inflate to {info.file_size} bytes, more than the "
                                        f"{expected[name]} this artifact's parameters take; refused")
            members = {name: z.read(name) for name in infos}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ArtifactError(f"{path} is not a readable saved state: {e}") from e
    meta = parse_json(members.pop(META), f"{path}: {META}")
    if meta.get("format") != STATE_FORMAT:
        raise ArtifactError(f"{path}: state format {meta.get('format')!r}; this runtime reads format {STATE_FORMAT}")
    if not seal_matches(meta, "sha256"):
        raise ArtifactError(f"{path} does not match its checksum: corrupt or modified")
    if meta.get("artifact") != artifact:
        raise ArtifactError(f"{path} was adapted from a different artifact")
    digests = meta.get("arrays")
    if not isinstance(digests, dict) or set(digests) != set(members):
        raise ArtifactError(f"{path}: its metadata does not list the arrays it holds")
    params = {}
    for member, raw in members.items():
        if sha256_bytes(raw) != digests[member]:
            raise ArtifactError(f"{path}: {member} does not match its checksum: corrupt or modified")
        name = member[: -len(".npy")]
        params[name] = _array(raw, shapes[name], f"{path}: {member}")
    classes = meta.get("classes")
    try:
        check_classes(classes, max_ways, f"{path}: the class list")
    except (InputError, InputTypeError) as e:
        raise ArtifactError(str(e)) from e
    return classes, params


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


def _array(raw: bytes, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ArtifactError(f"{where} is not a readable array: {e}") from e
    if array.dtype != DTYPE:
        raise ArtifactError(f"{where} has dtype {array.dtype.str}; expected {DTYPE.str} (little-endian float32)")
    if array.shape != shape:
        raise ArtifactError(f"{where} has shape {array.shape}; this artifact expects {shape}")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{where} holds NaN or infinite values")
    return array.astype(np.float32)  # native byte order for the engine
