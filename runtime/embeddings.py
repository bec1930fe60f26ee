"""Features computed once: what :meth:`edgeadapt.runtime.Learner.embed` returns and ``adapt`` and ``predict`` take
in place of inputs, so that an app that adapts or predicts on the same inputs many times (frames of a video,
an evaluation over many tasks) runs the frozen layers once per input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The features of ``len(self)`` checked inputs, computed by the artifact whose ``adapt.onnx`` has the sha256
    ``artifact``; index it like an array (``embeddings[3:8]``, ``embeddings[[0, 4]]``) to pick rows."""

    features: np.ndarray
    artifact: str

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, rows: Any) -> "Embeddings":
        try:
            picked = self.features[rows]
        except (IndexError, TypeError, ValueError) as e:
            raise InputError(f"cannot pick rows {rows!r} of {len(self)} embeddings: {e}") from None
        if picked.ndim != self.features.ndim:
            raise InputError("pick rows of embeddings with a slice or a list of indices, not a single index")
        return Embeddings(picked, self.artifact)
