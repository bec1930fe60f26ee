"""Task streams for continual learning: rotated MNIST (0, 90, 180, 270 degrees), one task per rotation."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..datasets import DatasetError
from ..datasets.mnist import load_mnist
from ..errors import ConfigError

ROTATIONS = (0, 90, 180, 270)
EVAL_SPLITS = ("test", "validation")


@dataclass(frozen=True)
class Task:
    """One task of a stream: training examples and the examples it is scored on (never trained on)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor


def rotated_mnist(
    data_dir: str | os.PathLike | None = None,
    rotations: tuple[int, ...] = ROTATIONS,
    train_size: int | None = None,
    eval_size: int | None = None,
    evaluate_on: str = "test",
    validation_size: int = 5000,
    flatten: bool = False,
    seed: int = 0,
) -> list[Task]:
    """Rotated MNIST: task t is MNIST rotated counter-clockwise by ``rotations[t]`` degrees (multiples of 90).

    The last ``validation_size`` training images are never trained on: ``evaluate_on="validation"`` scores
    tasks on them (for hyperparameter search), ``"test"`` on the test set (for reporting). Each task trains on
    its own random ``train_size`` images of the rest (seeded by ``seed`` and the task) and is scored on the first
    ``eval_size`` evaluation images, rotated. Pixels are float32 in [0, 1]; ``flatten`` gives (n, 784) for an MLP.
    """
    if evaluate_on not in EVAL_SPLITS:
        raise ConfigError(f"evaluate_on must be one of {EVAL_SPLITS}, got {evaluate_on!r}")
    if any(r % 90 for r in rotations):
        raise ConfigError(f"rotations must be multiples of 90 degrees, got {rotations}")
    train = load_mnist(data_dir, "train")
    if not 0 <= validation_size < len(train.labels):
        raise DatasetError(f"validation_size {validation_size} leaves no training images of {len(train.labels)}")
    pool_x, pool_y = train.images[:-validation_size or None], train.labels[:-validation_size or None]
    if evaluate_on == "test":
        test = load_mnist(data_dir, "test")
        eval_x, eval_y = test.images, test.labels
    else:
        if validation_size == 0:
            raise ConfigError("evaluate_on='validation' needs validation_size > 0")
        eval_x, eval_y = train.images[-validation_size:], train.labels[-validation_size:]
    eval_x, eval_y = _images(eval_x[:eval_size]), torch.from_numpy(eval_y[:eval_size].astype(np.int64))
    tasks = []
    for index, degrees in enumerate(rotations):
        order = np.random.default_rng([seed, index]).permutation(len(pool_y))[:train_size]
        x, y = _images(pool_x[order]), torch.from_numpy(pool_y[order].astype(np.int64))
        tasks.append(Task(f"rot{degrees}", _rotate(x, degrees, flatten), y, _rotate(eval_x, degrees, flatten), eval_y))
    return tasks


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)


def _rotate(x: torch.Tensor, degrees: int, flatten: bool) -> torch.Tensor:
    rotated = torch.rot90(x, k=degrees // 90, dims=(-2, -1)).contiguous()
    return rotated.flatten(1) if flatten else rotated
