"""Named datasets, open to users: a registry of recipes (where a dataset's classes come from, its default model
and hyperparameters) that the command line, the benchmarks and the tests share.

Register your own with :func:`register_dataset` in a module that ``edgeadapt --import MODULE`` (or an
``edgeadapt.plugins`` entry point) imports; the built-ins are ``folder`` (a user's folder or arrays, ``--data``),
``glyphs``, ``omniglot``, ``mnist``, ``fsdd`` and ``sine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from torch import nn

from edgeadapt.runtime.format.inputs import InputSpec

from .backbones import BackboneSettings, build_backbone
from .datasets import (
    OMNIGLOT_VALIDATION_ALPHABETS,
    ClassDataset,
    SineTaskSampler,
    find_data_dir,
    glyph_splits,
    load_fsdd,
    load_mnist,
    load_omniglot,
    make_glyphs,
    omniglot_path,
    omniglot_splits,
)
from .datasets.arrays import from_arrays
from .datasets.base import STROKES
from .datasets.source import DataSource, load_source
from .datasets.splits import split_classes
from .errors import ConfigError
from .sanity import class_hashes
from .tasks import EpisodeSampler
from .training import TaskSampler

SPLITS = ("train", "validation", "all")
GLYPH_CLASSES = {"train": 600, "validation": 200}
OUTER_LR = {"reptile": 0.1, "fomaml": 0.001, "maml": 0.001}  # the default outer rate of each algorithm
DEFAULT_OUTER_LR = 0.001  # an algorithm registered by a user

ClassLoader = Callable[[DataSource, str], ClassDataset]  # (where the data is and how to read it, split) -> classes
DIGITS_HELD_OUT = ("7", "8", "9")  # MNIST and FSDD: the digits validation tasks are drawn from


@dataclass(frozen=True)
class DatasetRecipe:
    """A named dataset.

    Args:
        name: what ``--dataset`` calls it.
        classes: ``(source, split) -> ClassDataset`` for classification datasets (``source``: ``--data`` and how
            to read it, a :class:`~edgeadapt.sdk.datasets.source.DataSource`).
        regression: for regression datasets instead: ``(shots, query, seed) -> TaskSampler``, with ``input``,
            what one of its inputs is.
        defaults: ``iterations``, ``inner_steps``, ``inner_lr`` and ``hidden`` when the command line gives none.
        rotations: train on each class rotated by 90, 180 and 270 degrees as new classes (characters; never photos).
        model: the name of the default backbone (:mod:`~edgeadapt.sdk.backbones`).
        help: one line for ``--help``.
    """

    name: str
    classes: ClassLoader | None = None
    regression: Callable[[int, int, int], TaskSampler] | None = None
    input: InputSpec | None = None
    defaults: dict[str, Any] = field(default_factory=lambda: {"iterations": 400, "inner_steps": 5, "inner_lr": 0.1,
                                                              "hidden": 32})
    rotations: bool = False
    model: str = "conv4"
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


def build_default_model(dataset: str, settings: BackboneSettings, data: DataSource | Path | None = None,
                        model: str | None = None) -> nn.Module:
    """The backbone ``model`` (default: the dataset's, e.g. Conv4 for pictures, an MLP for sine regression), sized
    for the dataset's inputs (a regression dataset's models have one output)."""
    recipe = get_dataset(dataset)
    if recipe.regression is not None:
        settings = replace(settings, ways=1)
    return build_backbone(model or recipe.model, dataset_input(dataset, data), settings)


def dataset_input(dataset: str, data: DataSource | Path | None = None) -> InputSpec:
    """What one input of ``dataset`` is (its classes' description; a regression dataset's own)."""
    recipe = get_dataset(dataset)
    return recipe.input if recipe.input is not None else dataset_classes(dataset, data, "train").input_spec


def as_source(data: DataSource | Path | str | None) -> DataSource:
    """``data`` as a :class:`DataSource` (a path alone is read with the default settings)."""
    return data if isinstance(data, DataSource) else DataSource(None if data is None else Path(data))


def make_sampler(dataset: str, data: DataSource | Path | None, split: str, ways: int, shots: int, query_shots: int,
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
    description["name"] = as_source(data).title() or dataset  # what the data is called, for manifests
    description["input"] = classes.input_spec.to_json()  # what one input is, as far as the device
    description["class_hashes"] = class_hashes(classes)  # which classes: eval warns when it meets them again
    if training and recipe.rotations:
        classes = classes.with_rotations()
    if dataset == "omniglot":
        description["validation_alphabets"] = list(OMNIGLOT_VALIDATION_ALPHABETS)
    description["classes"] = classes.n_classes
    sampler = EpisodeSampler(classes, ways, shots, query_shots, seed, min_ways, min_shots, within_alphabet)
    return sampler, {**description, "within_alphabet": within_alphabet}


def dataset_classes(dataset: str, data: DataSource | Path | None, split: str) -> ClassDataset:
    """The classes of one split of a classification dataset (unrotated), loaded once per process."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if get_dataset(dataset).classes is None:
        raise ConfigError(f"{dataset} is a regression dataset: it has no classes")
    return _classes(dataset, as_source(data), split)


@lru_cache(maxsize=8)
def _classes(dataset: str, source: DataSource, split: str) -> ClassDataset:
    return get_dataset(dataset).classes(source, split)


def _pick(full: ClassDataset, train: ClassDataset, validation: ClassDataset, split: str) -> ClassDataset:
    return {"all": full, "train": train, "validation": validation}[split]


def _glyphs(source: DataSource, split: str) -> ClassDataset:
    if split == "all":
        return make_glyphs(sum(GLYPH_CLASSES.values()), seed=0)
    train, validation = glyph_splits(GLYPH_CLASSES["train"], GLYPH_CLASSES["validation"], seed=0)
    return train if split == "train" else validation


def _omniglot(source: DataSource, split: str) -> ClassDataset:
    path = source.path or omniglot_path(find_data_dir())
    if path.is_dir() and (path / "omniglot").is_dir():
        path = omniglot_path(path)
    full = load_omniglot(path)
    return full if split == "all" else _pick(full, *omniglot_splits(full, rotate_train=False), split)


@lru_cache(maxsize=2)
def _whole_source(source: DataSource) -> ClassDataset:
    """Every class of ``source``, read once per process whichever splits are asked for."""
    return load_source(source)


def _folder(source: DataSource, split: str) -> ClassDataset:
    full = _whole_source(source)
    return full if split == "all" else _pick(full, *split_classes(full, source.split), split)


def _by_digit(full: ClassDataset, split: str) -> ClassDataset:
    validation = [c for c, name in enumerate(full.class_names) if name in DIGITS_HELD_OUT]
    train = [c for c in range(full.n_classes) if c not in validation]
    return _pick(full, full.take(train), full.take(validation), split)


def _mnist(source: DataSource, split: str) -> ClassDataset:
    digits = load_mnist(source.path, "train")
    spec = InputSpec((1, *digits.images.shape[1:]), **STROKES)
    return _by_digit(from_arrays(digits.images, digits.labels, spec), split)


def _fsdd(source: DataSource, split: str) -> ClassDataset:
    spoken = load_fsdd(source.path)
    return _by_digit(spoken.classes(list(spoken.speakers)), split)


def _sine_tasks(shots: int, query: int, seed: int) -> TaskSampler:
    return SineTaskSampler(shots=shots, query=query, seed=seed)


register_dataset(DatasetRecipe("glyphs", classes=_glyphs, rotations=True,
                               help="built-in procedural characters (no files)"))
register_dataset(DatasetRecipe("omniglot", classes=_omniglot, rotations=True,
                               defaults={"iterations": 20000, "inner_steps": 5, "inner_lr": 0.1, "hidden": 64},
                               help="the Omniglot zip or folder (--data)"))
register_dataset(DatasetRecipe("folder", classes=_folder,
                               help="your own data (--data): a folder of pictures or WAV clips, one sub-folder per "
                                    "class, or an .npz of arrays x and y"))
register_dataset(DatasetRecipe("mnist", classes=_mnist, help="MNIST digits 0-6 to train, 7-9 to validate (--data: "
                                                            "the folder of its four IDX files)"))
register_dataset(DatasetRecipe("fsdd", classes=_fsdd, help="spoken digits (FSDD) 0-6 to train, 7-9 to validate, as "
                                                          "log-mel images (--data: the data folder)"))
register_dataset(DatasetRecipe("sine", regression=_sine_tasks,
                               input=InputSpec((1,), modality="vector", layout="C",
                                               value_range=SineTaskSampler().x_range),
                               defaults={"iterations": 10000, "inner_steps": 5, "inner_lr": 0.02, "hidden": 40},
                               model="mlp", help="sine-wave regression"))
