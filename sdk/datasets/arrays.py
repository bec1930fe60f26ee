"""A dataset from arrays: examples and one label each (numpy in Python, or an ``.npz`` file with ``x`` and ``y``)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edgeadapt.runtime.format.errors import InputError
from edgeadapt.runtime.format.inputs import InputSpec

from ..errors import DatasetError
from .base import ClassDataset


def from_arrays(x: np.ndarray, y: np.ndarray, input_spec: InputSpec | None = None,
                groups: Sequence[str] | np.ndarray | None = None) -> ClassDataset:
    """Examples ``x`` labelled ``y`` (``(n,)`` integers or strings; a class per distinct label, in sorted order).

    ``x`` is float32 model inputs ``(n, *shape)`` (vectors ``(n, d)``, pictures ``(n, C, H, W)``), or uint8 pictures
    ``(n, H, W)`` / ``(n, H, W, C)``, kept as uint8 (channels first). ``input_spec`` describes one input (default:
    a picture in [0, 1], or a vector). ``groups``: a group name per example, the same within a class.
    """
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1 or len(y) != len(x) or len(x) == 0:
        raise DatasetError(f"need examples x (n, ...) and labels y (n,), got shapes {x.shape} and {y.shape}")
    if y.dtype.kind not in "iuUS":
        raise DatasetError(f"labels must be integers or strings, got {y.dtype}")
    stored = _stored(x)
    names, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(names) < 2 or counts.min() < 2:
        raise DatasetError(f"need at least 2 classes of at least 2 examples; got {len(names)} classes of "
                           f"{counts.min()}..{counts.max()} examples")
    order = np.argsort(inverse, kind="stable")
    class_groups = _class_groups(groups, inverse, len(names))
    spec = input_spec or _default_spec(stored)
    try:
        return ClassDataset(torch.from_numpy(np.ascontiguousarray(stored[order])), tuple(counts.tolist()),
                            tuple(str(n) for n in names), class_groups, spec)
    except InputError as e:
        raise DatasetError(str(e)) from None


def load_arrays(path: Path, input_spec: InputSpec | None = None) -> ClassDataset:
    """:func:`from_arrays` of the ``.npz`` file at ``path`` (arrays ``x``, ``y`` and optionally ``groups``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path} is not a readable .npz file of arrays x and y: {e}") from None
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{path} holds {sorted(arrays)}; expected arrays x (examples) and y (labels)")
    return from_arrays(arrays["x"], arrays["y"], input_spec, arrays.get("groups"))


def _stored(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4 and x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        raise DatasetError(f"uint8 examples are pictures (n, H, W) or (n, H, W, C), got {x.shape}")
    if x.dtype != np.float32 or x.ndim < 2:
        raise DatasetError(f"examples must be float32 (n, *shape) or uint8 pictures, got {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise DatasetError("examples hold NaN or infinite values")
    return x


def _default_spec(stored: np.ndarray) -> InputSpec:
    """A vector or a picture of the examples' shape; float values may span more than [0, 1] (the data's range)."""
    span = (0.0, 1.0) if stored.dtype == np.uint8 else (min(0.0, float(stored.min())), max(1.0, float(stored.max())))
    if stored.ndim == 2:
        return InputSpec(stored.shape[1:], modality="vector", layout="C", value_range=span)
    return InputSpec(stored.shape[1:], resize="lanczos", value_range=span)


def _class_groups(groups: Sequence[str] | np.ndarray | None, inverse: np.ndarray, n: int) -> tuple[str, ...]:
    if groups is None:
        return ("",) * n
    groups = np.asarray(groups).astype(str)
    if groups.shape != inverse.shape:
        raise DatasetError(f"need one group per example, got {groups.shape} for {inverse.shape} examples")
    per_class = [sorted(set(groups[inverse == c])) for c in range(n)]
    mixed = [c for c, names in enumerate(per_class) if len(names) != 1]
    if mixed:
        raise DatasetError(f"the examples of class {mixed[0]} are in groups {per_class[mixed[0]]}: a class belongs to "
                           "one group")
    return tuple(names[0] for names in per_class)
