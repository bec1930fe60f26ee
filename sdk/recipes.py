"""Named datasets, open to users: a registry of recipes (where a dataset's classes come from, its default model
and hyperparameters) that the command line, the benchmarks and the tests share.

Register your own with :func:`register_dataset` in a module that ``edgeadapt --import MODULE`` (or an
``edgeadapt.plugins`` entry point) imports; the built-ins are ``glyphs``, ``omniglot`` and ``sine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from torch import nn

from edgeadapt.runtime.format.inputs import InputSpec

from .datasets import (
    OMNIGLOT_VALIDATION_ALPHABETS,
    ClassDataset,
    SineTaskSampler,
    find_data_dir,
    glyph_splits,
    load_omniglot,
    make_glyphs,
    omniglot_path,
    omniglot_splits,
)
from .errors import ConfigError
from .models import MLP, Conv4
from .sanity import class_hashes
from .tasks import EpisodeSampler
from .training import TaskSampler

SPLITS = ("train", "validation", "all")
GLYPH_CLASSES = {"train": 600, "validation": 200}
OUTER_LR = {"reptile": 0.1, "fomaml": 0.001, "maml": 0.001}  # the default outer rate of each algorithm
DEFAULT_OUTER_LR = 0.001  # an algorithm registered by a user

ClassLoader = Callable[[Path | None, str], ClassDataset]  # (data path or None, split) -> the split's classes


def conv4_for(spec: InputSpec, ways: int, hidden: int, activation: str) -> nn.Module:
    """Conv4 sized for square pictures of ``spec``'s shape."""
    channels, height, width = spec.shape
    if height != width:
        raise ConfigError(f"Conv4 takes square inputs, not {spec.shape}: register a model of your own")
    return Conv4(ways=ways, in_channels=channels, hidden=hidden, image_size=height, activation=activation)


@dataclass(frozen=True)
class DatasetRecipe:
    """A named dataset.

    Args:
        name: what ``--dataset`` calls it.
        classes: ``(data, split) -> ClassDataset`` for classification datasets (``data``: ``--data`` or None).
        regression: for regression datasets instead: ``(shots, query, seed) -> TaskSampler``, with ``input``,
            what one of its inputs is.
        defaults: ``iterations``, ``inner_steps``, ``inner_lr`` and ``hidden`` when the command line gives none.
        rotations: train on each class rotated by 90, 180 and 270 degrees as new classes (characters; never photos).
        model: ``(input spec, ways, hidden, activation) -> the default model``.
        help: one line for ``--help``.
    """

    name: str
    classes: ClassLoader | None = None
    regression: Callable[[int, int, int], TaskSampler] | None = None
    input: InputSpec | None = None
    defaults: dict[str, Any] = field(default_factory=lambda: {"iterations": 400, "inner_steps": 5, "inner_lr": 0.1,
                                                              "hidden": 32})
    rotations: bool = False
    model: Callable[[InputSpec, int, int, str], nn.Module] = conv4_for
    help: str = ""

    def __post_init__(self) -> None:
        if (self.classes is None) == (self.regression is None):
            raise ConfigError(f"dataset {self.name!r}: give exactly one of classes and regression")
        if (self.regression is None) != (self.input is None):
            raise ConfigError(f"dataset {self.name!r}: a regression dataset describes its input (input=), a "
                              "classification dataset's classes do")


DATASETS: dict[str, DatasetRecipe] = {}


def register_dataset(recipe: DatasetRecipe) -> DatasetRecipe:
    """Make ``recipe`` nameable (``edgeadapt train --dataset NAME``, :func:`make_sampler`); returns it."""
    if recipe.name in DATASETS and DATASETS[recipe.name] != recipe:
        raise ConfigError(f"a dataset called {recipe.name!r} is already registered")
    DATASETS[recipe.name] = recipe
    _classes.cache_clear()
    return recipe


def get_dataset(name: str) -> DatasetRecipe:
    """The recipe registered as ``name``; ConfigError listing the names otherwise."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)} (register yours with "
                          "edgeadapt.sdk.recipes.register_dataset in a module given to --import)")
    return DATASETS[name]


def recipe_defaults(dataset: str, algorithm: str) -> dict[str, Any]:
    """Default hyperparameters for ``dataset`` trained with ``algorithm``."""
    return {**get_dataset(dataset).defaults, "outer_lr": OUTER_LR.get(algorithm, DEFAULT_OUTER_LR)}


def build_default_model(dataset: str, ways: int, hidden: int, activation: str = "relu",
                        data: Path | None = None) -> nn.Module:
    """The dataset's default model (Conv4 for pictures, an MLP for sine regression), sized for its inputs."""
    recipe = get_dataset(dataset)
    spec = dataset_input(dataset, data)
    return recipe.model(spec, ways, hidden, activation)


def dataset_input(dataset: str, data: Path | None = None) -> InputSpec:
    """What one input of ``dataset`` is (its classes' description; a regression dataset's own)."""
    recipe = get_dataset(dataset)
    return recipe.input if recipe.input is not None else dataset_classes(dataset, data, "train").input_spec


def make_sampler(dataset: str, data: Path | None, split: str, ways: int, shots: int, query_shots: int,
                 seed: int, training: bool, min_ways: int | None = None,
                 min_shots: int | None = None, within_alphabet: bool = False) -> tuple[TaskSampler, dict[str, Any]]:
    """A task sampler over one split, and a JSON description of where its tasks come from (what an input is,
    and a content hash of every class, which ``edgeadapt eval`` compares).

    Training splits of datasets with ``rotations`` gain the 90/180/270 degree rotations as classes.
    ``min_ways`` / ``min_shots`` make task sizes vary, padded to ``ways`` x ``shots``; ``within_alphabet``
    draws each task's classes from one group (see ``EpisodeSampler``).
    """
    recipe = get_dataset(dataset)
    description: dict[str, Any] = {"dataset": dataset, "split": split, "ways": ways, "shots": shots,
                                   "query_shots": query_shots, "min_ways": min_ways or ways,
                                   "min_shots": min_shots or shots}
    if recipe.regression is not None:
        sampler = recipe.regression(shots, query_shots, seed)
        return sampler, {**description, "input": recipe.input.to_json()}
    classes = dataset_classes(dataset, data, split)
    description["input"] = classes.input_spec.to_json()  # what one input is, as far as the device
    description["class_hashes"] = class_hashes(classes)  # which classes: eval warns when it meets them again
    if training and recipe.rotations:
        classes = classes.with_rotations()
    if dataset == "omniglot":
        description["validation_alphabets"] = list(OMNIGLOT_VALIDATION_ALPHABETS)
    description["classes"] = classes.n_classes
    sampler = EpisodeSampler(classes, ways, shots, query_shots, seed, min_ways, min_shots, within_alphabet)
    return sampler, {**description, "within_alphabet": within_alphabet}


def dataset_classes(dataset: str, data: Path | None, split: str) -> ClassDataset:
    """The classes of one split of a classification dataset (unrotated), loaded once per process."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if get_dataset(dataset).classes is None:
        raise ConfigError(f"{dataset} is a regression dataset: it has no classes")
    return _classes(dataset, None if data is None else str(data), split)


@lru_cache(maxsize=8)
def _classes(dataset: str, data: str | None, split: str) -> ClassDataset:
    return get_dataset(dataset).classes(None if data is None else Path(data), split)


def _glyphs(data: Path | None, split: str) -> ClassDataset:
    if split == "all":
        return make_glyphs(sum(GLYPH_CLASSES.values()), seed=0)
    train, validation = glyph_splits(GLYPH_CLASSES["train"], GLYPH_CLASSES["validation"], seed=0)
    return train if split == "train" else validation


def _omniglot(data: Path | None, split: str) -> ClassDataset:
    path = data if data else omniglot_path(find_data_dir())
    if path.is_dir() and (path / "omniglot").is_dir():
        path = omniglot_path(path)
    full = load_omniglot(path)
    if split == "all":
        return full
    train, validation = omniglot_splits(full, rotate_train=False)
    return train if split == "train" else validation


def _sine_model(spec: InputSpec, ways: int, hidden: int, activation: str) -> nn.Module:
    return MLP(1, (hidden, hidden), 1, activation=activation)


def _sine_tasks(shots: int, query: int, seed: int) -> TaskSampler:
    return SineTaskSampler(shots=shots, query=query, seed=seed)


register_dataset(DatasetRecipe("glyphs", classes=_glyphs, rotations=True,
                               help="built-in procedural characters (no files)"))
register_dataset(DatasetRecipe("omniglot", classes=_omniglot, rotations=True,
                               defaults={"iterations": 20000, "inner_steps": 5, "inner_lr": 0.1, "hidden": 64},
                               help="the Omniglot zip or folder (--data)"))
register_dataset(DatasetRecipe("sine", regression=_sine_tasks,
                               input=InputSpec((1,), modality="vector", layout="C",
                                               value_range=SineTaskSampler().x_range),
                               defaults={"iterations": 10000, "inner_steps": 5, "inner_lr": 0.02, "hidden": 40},
                               model=_sine_model, help="sine-wave regression"))
