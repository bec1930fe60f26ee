"""The artifact's self-check task (``selfcheck.npz``): a support set of up to the artifact's full size (classes
0..k-1, at most ``max_shots`` examples each), queries, and the probabilities PyTorch predicted for them at export
time. Read within bounds (:mod:`.format.archive`): every array's dtype and rank follow from the manifest and are
checked before anything is allocated, and sizes against the manifest's limits.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import ArtifactError
from .format.archive import Shape, read_npy, read_stored_zip
from .format.names import EXECUTORCH_PROBABILITIES

FLOAT, INDEX = np.dtype("<f4"), np.dtype("<i8")


def read_selfcheck(data: bytes, manifest: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """``support_x``, ``support_y``, ``query_x`` and ``probabilities`` from the verified bytes ``data``, and
    ``executorch_probabilities`` where the artifact has one (an int8 ``model.pte``, which quantises its own way)."""
    input_shape = tuple(manifest["input_shape"])
    expected: dict[str, tuple[Shape, np.dtype]] = {
        "support_x": ((None, *input_shape), FLOAT), "support_y": ((None,), INDEX),
        "query_x": ((None, *input_shape), FLOAT), "probabilities": ((None, None), FLOAT),
        EXECUTORCH_PROBABILITIES: ((None, None), FLOAT)}
    members = read_stored_zip(io.BytesIO(data), len(data), {f"{name}.npy": len(data) for name in expected}, where)
    missing = sorted(set(f"{name}.npy" for name in expected if name != EXECUTORCH_PROBABILITIES) - set(members))
    if missing:
        raise ArtifactError(f"{where} lacks {missing}")
    arrays = {name: read_npy(members[f"{name}.npy"], shape, dtype, f"{where}: {name}")
              for name, (shape, dtype) in expected.items() if f"{name}.npy" in members}
    _check_task(arrays, manifest["max_ways"], manifest["max_shots"], where)
    return arrays


def _check_task(arrays: dict[str, np.ndarray], max_ways: int, max_shots: int, where: str) -> None:
    """ArtifactError unless the arrays make one task this artifact serves, with a row of probabilities per query."""
    labels = arrays["support_y"]
    classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.bincount(labels, minlength=classes) if len(labels) and labels.min() >= 0 else np.zeros(0, int)
    if (len(arrays["support_x"]) != len(labels) or not 2 <= classes <= max_ways or len(counts) != classes
            or counts.min() < 1 or counts.max() > max_shots):
        raise ArtifactError(f"{where}: the support set is not a task of 2..{max_ways} classes labelled 0..k-1 with "
                            f"1..{max_shots} examples each")
    for name in ("probabilities", EXECUTORCH_PROBABILITIES):
        if name in arrays and arrays[name].shape != (len(arrays["query_x"]), classes):
            raise ArtifactError(f"{where}: {len(arrays['query_x'])} queries of {classes} classes but {name} of "
                                f"shape {arrays[name].shape}")
