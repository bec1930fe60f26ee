"""An on-disk cache of decoded dataset arrays, so a second load skips slow image decoding."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from edgeadapt.runtime.format.files import atomic_path

logger = logging.getLogger(__name__)


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$EDGEADAPT_CACHE``, else ``~/.cache/edgeadapt``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("EDGEADAPT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "edgeadapt"


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path``, or None when it is absent or unreadable (a warning is logged)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("ignoring unreadable cache file %s (%s); decoding again", path, exc)
        return None


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` at ``path`` atomically and exactly (uncompressed .npz); failures only warn."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    except OSError as exc:
        logger.warning("could not write cache file %s (%s); continuing without a cache", path, exc)
