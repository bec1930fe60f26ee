"""Warnings about results that are not what they seem: evaluation on classes the model was trained on, and
accuracy no better than chance.

Training runs record a content hash of every class they saw (``class_hashes``, in the checkpoint's ``data``), so
``edgeadapt eval`` compares the classes themselves, not the names of splits or files.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from .datasets import ClassDataset
from .evaluation import EvalResult

log = logging.getLogger("edgeadapt")
HASH_CHARS = 12  # 48 bits of sha256 per class: a chance collision among thousands of classes is ~1e-8


def class_hashes(classes: ClassDataset) -> list[str]:
    """A short sha256 of each class's images (the same class read from a zip or a folder hashes alike), sorted."""
    return sorted(hashlib.sha256(classes.class_examples(c).contiguous().numpy().tobytes()).hexdigest()[:HASH_CHARS]
                  for c in range(classes.n_classes))


def warn_if_trained_on(trained: dict[str, Any], evaluated: dict[str, Any]) -> int | None:
    """Warn when classes evaluated here are among those the checkpoint was trained on; return how many are
    (None when the checkpoint does not record its classes, as checkpoints written before 0.1.0's hashes)."""
    seen, now = trained.get("class_hashes"), evaluated.get("class_hashes")
    if seen is None or now is None:
        if trained.get("dataset") == evaluated.get("dataset"):
            log.info("the checkpoint does not record which classes it was trained on: cannot check that the "
                     "evaluated classes are unseen")
        return None
    shared = len(set(seen) & set(now))
    if shared:
        log.warning("%d of the %d classes evaluated here were in this checkpoint's training data: the accuracy is "
                    "not on unseen classes", shared, len(now))
    return shared


def at_chance(result: EvalResult, ways: int) -> bool:
    """Whether a classification result is not above chance (1 / ways) by more than its 95% CI."""
    return result.metric == "accuracy" and not result.mean - np.nan_to_num(result.ci95) > 1.0 / ways


def warn_if_chance(result: EvalResult, ways: int, what: str = "the adapted model") -> bool:
    """Warn (and return True) when ``result`` is no better than guessing among ``ways`` classes."""
    if not at_chance(result, ways):
        return False
    log.warning("%s scores %.1f%%, no better than chance (%.1f%% for %d classes): it has not learned; train longer "
                "(--iterations, --epochs) or check the learning rates", what, 100 * result.mean, 100 / ways, ways)
    return True


def describe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without its class hashes, for logs and summaries."""
    return {k: v for k, v in data.items() if k != "class_hashes"}


def warn_if_never_learned(matrix: list[list[float]], names: list[str], classes: int) -> list[str]:
    """Warn about the tasks of a continual run whose accuracy right after training on them (the diagonal of
    the accuracy matrix) stayed within half of chance of chance (below 1.5 / ``classes``); return their names."""
    unlearned = [name for i, name in enumerate(names) if matrix[i][i] < 1.5 / classes]
    if unlearned:
        log.warning("%s never learned (accuracy right after training on it below %.0f%%, chance %.0f%%): train "
                    "longer (--steps-per-task, --train-size) or check the learning rates", ", ".join(unlearned),
                    150 / classes, 100 / classes)
    return unlearned
