"""Where the real datasets live: an explicit path, ``$EDGEADAPT_DATA``, or ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: ``explicit``, else ``$EDGEADAPT_DATA``, else ``<repo>/../shared/data`` if it exists.

    Raises DatasetError when the chosen folder does not exist or none of the three applies.
    """
    for source, value in (("path", explicit), ("EDGEADAPT_DATA", os.environ.get("EDGEADAPT_DATA") or None)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise DatasetError(f"data folder {path} (from {source}) does not exist")
            return path
    root = _repo_root()
    if root is not None and (root.parent / "shared" / "data").is_dir():
        return root.parent / "shared" / "data"
    raise DatasetError(
        "no data folder found: pass a path, set EDGEADAPT_DATA, "
        "or place the data in ../shared/data beside the edgeadapt checkout"
    )


def _repo_root() -> Path | None:
    """The edgeadapt checkout holding this file (a folder with edgeadapt's pyproject.toml), if any."""
    for folder in Path(__file__).resolve().parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "edgeadapt"' in pyproject.read_text(errors="replace"):
            return folder
    return None
