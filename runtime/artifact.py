"""Reading an exported artifact folder: the manifest, checked against the sha256 of every file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ArtifactError

FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "input_shape", "input_dtype", "max_ways", "max_shots", "inner_steps",
                 "inner_lr", "scope", "model", "training", "files")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The verified manifest of the artifact in ``folder``; raises ArtifactError naming what is wrong."""
    folder = Path(folder)
    path = folder / "manifest.json"
    if not folder.is_dir():
        raise ArtifactError(f"no artifact folder at {folder}")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unknown format_version {manifest.get('format_version')!r}; "
                            f"this runtime reads version {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path} lacks the keys {missing}")
    for name in ("adapt.onnx", "predict.onnx"):
        if name not in manifest["files"]:
            raise ArtifactError(f"{path} does not list {name}")
    for name, expected in manifest["files"].items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise ArtifactError(f"{folder}: file {name!r} listed in the manifest is missing")
        if sha256_file(file) != expected:
            raise ArtifactError(f"{file} does not match its sha256 in the manifest: corrupt or modified")
    return manifest
