"""Class-disjoint train / validation splits of a user's dataset: by seed, by group, or from a file.

A class (or, with ``by="group"``, a whole group of classes) is in validation when its name is listed in the
split file, or else when it is among the ``validation`` fraction whose BLAKE2 hash of ``"seed/name"`` is lowest.
A hash, not a shuffle: a class keeps its side when other classes are added to the folder or removed from it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, DatasetError
from .base import ClassDataset

SplitBy = Literal["class", "group"]


@dataclass(frozen=True)
class SplitRule:
    """How a dataset's classes are divided into training and validation.

    Args:
        validation: the fraction of classes (or groups) held out for validation.
        seed: which classes: another seed, another class-disjoint split.
        by: ``class`` (classes fall either side independently) or ``group`` (a group's classes stay together: the
            optional group level of a folder, e.g. a photo session, a speaker or an alphabet).
        file: a text file naming the validation classes (or groups), one per line; overrides ``validation``.
    """

    validation: float = 0.2
    seed: int = 0
    by: SplitBy = "class"
    file: Path | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.validation < 1.0:
            raise ConfigError(f"the validation fraction must be in (0, 1), got {self.validation}")
        if self.by not in ("class", "group"):
            raise ConfigError(f"split by 'class' or 'group', got {self.by!r}")


def split_classes(dataset: ClassDataset, rule: SplitRule) -> tuple[ClassDataset, ClassDataset]:
    """``(train, validation)``: the classes of ``dataset`` on either side of ``rule``; DatasetError when a side is
    empty or the file names what the dataset does not have."""
    keys = dataset.class_names if rule.by == "class" else dataset.groups
    names = sorted(set(keys))
    held_out = _listed(rule.file, names, rule.by) if rule.file is not None else _hashed(names, rule)
    validation = [c for c, key in enumerate(keys) if key in held_out]
    train = [c for c, key in enumerate(keys) if key not in held_out]
    if not validation or not train:
        raise DatasetError(f"splitting {len(names)} {rule.by}s leaves {len(train)} classes to train on and "
                           f"{len(validation)} to validate on; both need some (add classes or change the split)")
    return dataset.take(train), dataset.take(validation)


def _hashed(names: list[str], rule: SplitRule) -> set[str]:
    count = min(max(round(rule.validation * len(names)), 1), len(names) - 1)
    def rank(name: str) -> bytes:
        return hashlib.blake2b(f"{rule.seed}/{name}".encode(), digest_size=8).digest()
    return set(sorted(names, key=rank)[:count])


def _listed(file: Path, names: list[str], by: str) -> set[str]:
    try:
        listed = {line.strip() for line in Path(file).read_text().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the split file {file}: {e}") from None
    unknown = sorted(listed - set(names))
    if unknown:
        raise DatasetError(f"the split file {file} names {by}s the data does not have: {unknown[:5]}")
    return listed
