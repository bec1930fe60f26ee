"""Named datasets, their default models and hyperparameters: what the CLI and benchmarks share."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from .datasets import (
    OMNIGLOT_VALIDATION_ALPHABETS,
    ClassDataset,
    DatasetError,
    SineTaskSampler,
    find_data_dir,
    glyph_splits,
    load_omniglot,
    make_glyphs,
    omniglot_path,
    omniglot_splits,
)
from .models import MLP, Conv4
from .sanity import class_hashes
from .tasks import EpisodeSampler
from .training import TaskSampler

DATASETS = ("glyphs", "omniglot", "sine")
SPLITS = ("train", "validation", "all")
GLYPH_CLASSES = {"train": 600, "validation": 200}

# Per dataset: iterations, inner steps, inner lr, hidden width; outer lr per algorithm.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "glyphs": {"iterations": 400, "inner_steps": 5, "inner_lr": 0.1, "hidden": 32},
    "omniglot": {"iterations": 20000, "inner_steps": 5, "inner_lr": 0.1, "hidden": 64},
    "sine": {"iterations": 10000, "inner_steps": 5, "inner_lr": 0.02, "hidden": 40},
}
_OUTER_LR = {"reptile": 0.1, "fomaml": 0.001, "maml": 0.001}


def recipe_defaults(dataset: str, algorithm: str) -> dict[str, Any]:
    """Default hyperparameters for ``dataset`` trained with ``algorithm``."""
    return {**_DEFAULTS[dataset], "outer_lr": _OUTER_LR[algorithm]}


def build_default_model(dataset: str, ways: int, hidden: int, activation: str = "relu") -> nn.Module:
    """Conv4 for image datasets, a two-hidden-layer MLP for sine regression."""
    if dataset == "sine":
        return MLP(1, (hidden, hidden), 1, activation=activation)
    return Conv4(ways=ways, hidden=hidden, activation=activation)


def make_sampler(dataset: str, data: Path | None, split: str, ways: int, shots: int, query_shots: int,
                 seed: int, training: bool, min_ways: int | None = None,
                 min_shots: int | None = None, within_alphabet: bool = False) -> tuple[TaskSampler, dict[str, Any]]:
    """A task sampler over one split, and a JSON description of where its tasks come from.

    Training splits of image datasets are augmented with 90/180/270 degree rotations. ``min_ways`` /
    ``min_shots`` make task sizes vary, padded to ``ways`` x ``shots``; ``within_alphabet`` draws each task's
    classes from one alphabet (see ``EpisodeSampler``).
    """
    description: dict[str, Any] = {"dataset": dataset, "split": split, "ways": ways, "shots": shots,
                                   "query_shots": query_shots, "min_ways": min_ways or ways,
                                   "min_shots": min_shots or shots}
    if dataset == "sine":
        return SineTaskSampler(shots=shots, query=query_shots, seed=seed), description
    classes = dataset_classes(dataset, data, split)
    description["class_hashes"] = class_hashes(classes)  # which classes: eval warns when it meets them again
    if training:
        classes = classes.with_rotations()
    if dataset == "omniglot":
        description["validation_alphabets"] = list(OMNIGLOT_VALIDATION_ALPHABETS)
    description["classes"] = classes.n_classes
    sampler = EpisodeSampler(classes, ways, shots, query_shots, seed, min_ways, min_shots, within_alphabet)
    return sampler, {**description, "within_alphabet": within_alphabet}


def dataset_classes(dataset: str, data: Path | None, split: str) -> ClassDataset:
    """The classes of one split of an image dataset (unrotated), loaded once per process."""
    return _classes(dataset, None if data is None else str(data), split)


@lru_cache(maxsize=8)
def _classes(dataset: str, data: str | None, split: str) -> ClassDataset:
    if dataset == "glyphs":
        if split == "all":
            return make_glyphs(sum(GLYPH_CLASSES.values()), seed=0)
        train, validation = glyph_splits(GLYPH_CLASSES["train"], GLYPH_CLASSES["validation"], seed=0)
        return train if split == "train" else validation
    if dataset != "omniglot":
        raise DatasetError(f"unknown dataset {dataset!r}; choose from {DATASETS}")
    path = Path(data) if data else omniglot_path(find_data_dir())
    if path.is_dir() and (path / "omniglot").is_dir():
        path = omniglot_path(path)
    full = load_omniglot(path)
    if split == "all":
        return full
    train, validation = omniglot_splits(full, rotate_train=False)
    return train if split == "train" else validation

