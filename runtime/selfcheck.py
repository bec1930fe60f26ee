"""The artifact's self-check task (``selfcheck.npz``): a full-size support set, queries, and the probabilities
PyTorch predicted for them at export time. Read within bounds (:mod:`.format.archive`): every array's dtype and
shape follow from the manifest and are checked before anything is allocated."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import ArtifactError
from .format.archive import Shape, read_npy, read_stored_zip

FLOAT, INDEX = np.dtype("<f4"), np.dtype("<i8")


def read_selfcheck(data: bytes, manifest: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """``support_x``, ``support_y``, ``query_x`` and ``probabilities`` from the verified bytes ``data``."""
    input_shape, ways = tuple(manifest["input_shape"]), manifest["max_ways"]
    support = ways * manifest["max_shots"]
    expected: dict[str, tuple[Shape, np.dtype]] = {
        "support_x": ((support, *input_shape), FLOAT), "support_y": ((support,), INDEX),
        "query_x": ((None, *input_shape), FLOAT), "probabilities": ((None, ways), FLOAT)}
    members = read_stored_zip(io.BytesIO(data), len(data), {f"{name}.npy": len(data) for name in expected}, where)
    missing = sorted(set(f"{name}.npy" for name in expected) - set(members))
    if missing:
        raise ArtifactError(f"{where} lacks {missing}")
    arrays = {name: read_npy(members[f"{name}.npy"], shape, dtype, f"{where}: {name}")
              for name, (shape, dtype) in expected.items()}
    if len(arrays["query_x"]) != len(arrays["probabilities"]):
        raise ArtifactError(f"{where}: {len(arrays['query_x'])} queries but {len(arrays['probabilities'])} rows of "
                            "probabilities")
    return arrays
