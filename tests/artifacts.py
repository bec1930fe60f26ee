"""Torch-free helpers for the runtime tests: random tasks, and copies of an artifact with an edited manifest."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeadapt.runtime.format.manifest import manifest_text


def task(ways: int, shots: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A random task: (ways * shots, 1, 28, 28) float32 images in [0, 1) and their labels."""
    g = np.random.default_rng(seed)
    x = g.random((ways * shots, 1, 28, 28), dtype=np.float32)
    return x, [f"class-{c}" for c in range(ways) for _ in range(shots)]


def copy_with_manifest(source: Path, dest: Path, edit: Callable[[dict[str, Any]], None], reseal: bool) -> Path:
    """A copy of the artifact at ``source`` whose manifest ``edit`` changed, with its checksum updated or not."""
    shutil.copytree(source, dest)
    path = dest / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    if reseal:
        manifest.pop("manifest_sha256", None)
        path.write_text(manifest_text(manifest))
    else:
        path.write_text(json.dumps(manifest))
    return dest


def npy(array: np.ndarray) -> bytes:
    """The bytes ``np.save`` would write for ``array``."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def zip_members(path: Path) -> dict[str, bytes]:
    """Every member of the zip (a saved state) at ``path``."""
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip at ``path`` holding ``members``."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path
