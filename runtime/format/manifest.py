"""The artifact manifest: format version, schema, canonical bytes, self-checksum, and the verified reader.

The manifest is the root of trust of an artifact: it names every file with its sha256 and holds the settings
the runtime uses. Its own ``manifest_sha256`` is the sha256 of its canonical form without that key (JSON with
sorted keys, no spaces, UTF-8), so an edited value is caught like a corrupt file; a signature
(:mod:`.signing`) covers the same canonical bytes, checksum included.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from packaging.version import InvalidVersion, Version

from .errors import ArtifactError, InputError
from .files import read_regular_file, sha256_bytes
from .inputs import InputSpec
from .names import ADAPT_INPUTS, EMBED_ONNX, MANIFEST, REQUIRED_FILES, SIGNATURE
from .signing import PublicKey, verify
from .vocab import FITS, HEAD_INITS, LAYOUTS, MODALITIES, POLARITIES, RESIZES, SCOPES

FORMAT_VERSION = 4  # 4: the frozen layers in their own embed program, stored once
CHECKSUM_KEY = "manifest_sha256"
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 30
MAX_ARTIFACT_BYTES = 2 << 30  # all of an artifact's files together
MAX_FILES = 64
MAX_DEPTH = 32
LIMIT = 1 << 16  # upper bound on ways, shots, steps, sizes
_HEX64 = re.compile(r"[0-9a-f]{64}")

Check = Callable[[Any, str], None]


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The canonical serialisation that checksums and signatures cover.

    InputError for a document JSON cannot hold exactly (NaN or infinity, text that is not valid Unicode such as
    a lone surrogate, objects that are not JSON); :func:`parse_json` refuses all of these when reading, so a
    document it returned always has canonical bytes."""
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError
        raise InputError(f"cannot be written as canonical JSON: {e}") from e


def sealed(document: dict[str, Any], key: str = CHECKSUM_KEY) -> dict[str, Any]:
    """``document`` with ``key`` set to the sha256 of its canonical form without ``key``."""
    body = {k: v for k, v in document.items() if k != key}
    return {**body, key: sha256_bytes(canonical_bytes(body))}


def seal_matches(document: dict[str, Any], key: str = CHECKSUM_KEY) -> bool:
    """Whether ``document[key]`` is the checksum :func:`sealed` would write."""
    return document.get(key) == sealed(document, key)[key]


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as written to ``manifest.json``: sealed, indented, sorted keys."""
    return json.dumps(sealed(manifest), indent=2, sort_keys=True, allow_nan=False) + "\n"


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object from ``data``, nested at most MAX_DEPTH deep, its numbers finite and its text valid Unicode
    (no lone surrogates); ArtifactError otherwise, so hashing what it returns never fails."""
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ArtifactError(f"{where} is not valid JSON: {e}") from e
    except RecursionError:
        raise ArtifactError(f"{where} is nested too deeply") from None
    if not isinstance(document, dict):
        raise ArtifactError(f"{where} must hold a JSON object")
    if _depth(document) > MAX_DEPTH:
        raise ArtifactError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    try:
        canonical_bytes(document)
    except InputError as e:
        raise ArtifactError(f"{where}: {e}") from None
    return document


@dataclass(frozen=True)
class VerifiedArtifact:
    """A manifest that passed its schema and checksum, and the bytes of every file it lists, as hashed."""

    folder: Path
    manifest: dict[str, Any]
    manifest_bytes: bytes
    files: dict[str, bytes]


def read_artifact(folder: str | Path, public_key: PublicKey | None = None) -> VerifiedArtifact:
    """Read the artifact in ``folder``: its manifest (bounded, schema-checked, checksum verified, and signed by
    ``public_key`` when one is given) and each listed file once, checked against its sha256.

    Raises ArtifactError naming what is wrong."""
    folder = Path(folder)
    try:
        present = folder.is_dir()
    except OSError as e:  # a name too long, no permission
        raise ArtifactError(f"{folder} cannot be read: {e}") from e
    if not present:
        raise ArtifactError(f"no artifact folder at {folder}")
    where = str(folder / MANIFEST)
    raw = read_regular_file(folder, MANIFEST, MAX_MANIFEST_BYTES)
    manifest = parse_json(raw, where)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{where}: format_version {version!r} is not the version {FORMAT_VERSION} this runtime "
                            "reads; re-export the checkpoint with this edgeadapt (edgeadapt export)")
    check_manifest(manifest, where)
    if not seal_matches(manifest):
        raise ArtifactError(f"{where} does not match its own checksum ({CHECKSUM_KEY}): corrupt or modified")
    if public_key is not None:
        signature = read_regular_file(folder, SIGNATURE, 1024) if (folder / SIGNATURE).exists() else None
        verify(canonical_bytes(manifest), signature, public_key, where)
    files, budget = {}, MAX_ARTIFACT_BYTES
    for name, expected in manifest["files"].items():
        data = read_regular_file(folder, name, min(MAX_FILE_BYTES, budget))
        budget -= len(data)
        if sha256_bytes(data) != expected:
            raise ArtifactError(f"{folder / name} does not match its sha256 in the manifest: corrupt or modified")
        files[name] = data
    return VerifiedArtifact(folder, manifest, raw, files)


def check_manifest(manifest: dict[str, Any], where: str) -> None:
    """Raise ArtifactError unless every key the runtime uses is present with the right type and range."""
    for key, check in _SCHEMA.items():
        if key not in manifest:
            if key in _OPTIONAL:
                continue
            raise ArtifactError(f"{where} lacks the key {key!r}")
        check(manifest[key], f"{where}: {key}")
    if manifest["input_dtype"] != "float32":
        raise ArtifactError(f"{where}: input_dtype must be 'float32', got {manifest['input_dtype']!r}")
    try:
        InputSpec.from_manifest(manifest)
    except InputError as e:
        raise ArtifactError(f"{where}: {e}") from None
    missing = [name for name in REQUIRED_FILES if name not in manifest["files"]]
    if missing:
        raise ArtifactError(f"{where} does not list {missing}")
    if EMBED_ONNX not in manifest["files"] and manifest["feature_shape"] != manifest["input_shape"]:
        raise ArtifactError(f"{where}: feature_shape differs from input_shape but there is no {EMBED_ONNX}")


def _fail(where: str, what: str, value: Any) -> None:
    raise ArtifactError(f"{where} must be {what}, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _integer(low: int, high: int = LIMIT) -> Check:
    def check(value: Any, where: str) -> None:
        if type(value) is not int or not low <= value <= high:
            _fail(where, f"an integer in [{low}, {high}]", value)
    return check


def _number(low: float, high: float = math.inf, low_open: bool = False) -> Check:
    def check(value: Any, where: str) -> None:
        ok = type(value) in (int, float) and math.isfinite(value) and low <= value <= high
        if not ok or (low_open and value == low):
            _fail(where, f"a finite number in {'(' if low_open else '['}{low}, {high}]", value)
    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, where: str) -> None:
        if value not in options or not isinstance(value, str):
            _fail(where, f"one of {options}", value)
    return check


def _text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 256:
        _fail(where, "a non-empty string", value)


def _version(value: Any, where: str) -> None:
    _text(value, where)
    try:
        Version(value)
    except InvalidVersion:
        _fail(where, "a version such as '1.18'", value)


def _object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        _fail(where, "a JSON object", value)


def _list_of(item: Check, low: int = 1, high: int = LIMIT) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or not low <= len(value) <= high:
            _fail(where, f"a list of {low}..{high} items", value)
        for i, v in enumerate(value):
            item(v, f"{where}[{i}]")
    return check


def _fields(spec: dict[str, Check], optional: tuple[str, ...] = ()) -> Check:
    def check(value: Any, where: str) -> None:
        _object(value, where)
        for key, item in spec.items():
            if key in value:
                item(value[key], f"{where}.{key}")
            elif key not in optional:
                raise ArtifactError(f"{where} lacks the key {key!r}")
    return check


def _adapt_inputs(value: Any, where: str) -> None:
    if value != list(ADAPT_INPUTS):
        _fail(where, f"{list(ADAPT_INPUTS)}", value)


def _parameters(value: Any, where: str) -> None:
    _list_of(_fields({"name": _text, "shape": _list_of(_integer(1, 1 << 24), 0, 8)}))(value, where)
    names = [p["name"] for p in value]
    if len(set(names)) != len(names):
        _fail(where, "a list of distinct parameter names", names)


def _files(value: Any, where: str) -> None:
    _object(value, where)
    if not 1 <= len(value) <= MAX_FILES:
        _fail(where, f"an object of 1..{MAX_FILES} files", value)
    for name, digest in value.items():
        if (not name or Path(name).name != name or name in (".", "..", MANIFEST) or name.startswith(".")
                or not name.isprintable() or len(name) > 255):
            _fail(f"{where} key", "a plain file name", name)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            _fail(f"{where}[{name!r}]", "a sha256 hex digest", digest)


def _digest(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        _fail(where, "a sha256 hex digest", value)


def _value_range(value: Any, where: str) -> None:
    _list_of(_number(-LIMIT, LIMIT), 2, 2)(value, where)
    if not value[0] < value[1]:
        _fail(where, "[low, high] with low < high", value)


def _checksum(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        _fail(where, "a sha256 hex digest", value)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range for a finite number")
    return value


def _depth(value: Any) -> int:
    """How deeply containers nest in ``value`` (counted up to MAX_DEPTH + 1)."""
    level, depth = [value], 0
    while level and depth <= MAX_DEPTH:
        depth += 1
        level = [v for item in level for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, (dict, list))]
    return depth


_SCHEMA: dict[str, Check] = {
    "format_version": _integer(FORMAT_VERSION, FORMAT_VERSION),
    "input_shape": _list_of(_integer(1, 1 << 14), 1, 4),
    "feature_shape": _list_of(_integer(1, 1 << 24), 1, 4),
    "input_dtype": _text,
    "input": _fields({"range": _value_range, "polarity": _choice(POLARITIES), "resize": _choice(RESIZES),
                      "modality": _choice(MODALITIES), "layout": _choice(LAYOUTS),
                      "mean": _list_of(_number(-LIMIT, LIMIT), 1, 64), "std": _list_of(_number(0.0, LIMIT, True), 1, 64),
                      "fit": _choice(FITS), "audio": _object},
                     optional=("polarity", "resize", "modality", "layout", "mean", "std", "fit", "audio")),
    "uint8_scale": _number(0.0, 1.0, low_open=True),
    "max_ways": _integer(2),
    "max_shots": _integer(1),
    "inner_steps": _integer(0),
    "inner_lr": _number(0.0, 1e6),
    "scope": _choice(SCOPES),
    "head_init": _choice(HEAD_INITS),
    "head_scale": _number(0.0, 1e6, low_open=True),
    "per_parameter_rates": _list_of(_text, 0, 1 << 12),
    "model": _object,
    "training": _object,
    "data": _object,
    "adapt_inputs": _adapt_inputs,
    "adapted_parameters": _parameters,
    "onnx": _fields({"ir_version": _integer(1, 1000), "opset": _integer(1, 1000), "min_onnxruntime": _version,
                     "exported_with_onnxruntime": _text}),
    "executorch": _fields({"support_sizes": _list_of(_integer(1), 1, 64), "predict_batch": _integer(1),
                           "exported_with_executorch": _text, "delegate": _text}),
    "files": _files,
    # earlier exports of the same model (their adapt.onnx sha256) whose saved states this artifact restores
    "restores_states_of": _list_of(_digest, 1, 64),
    "quantization": _object,  # how the frozen layers are stored when not float32 (edgeadapt.export.quantize)
    CHECKSUM_KEY: _checksum,
}
_OPTIONAL = ("head_init", "head_scale", "per_parameter_rates", "executorch", "restores_states_of", "quantization")
