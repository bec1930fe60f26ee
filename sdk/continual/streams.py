"""Task streams for continual learning: rotated MNIST (0, 90, 180, 270 degrees, or any angles, such as the 20-task
protocol's), one task per rotation, and permuted MNIST, one task per pixel order."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

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
    rotations: tuple[float, ...] = ROTATIONS,
    train_size: int | None = None,
    eval_size: int | None = None,
    evaluate_on: str = "test",
    validation_size: int = 5000,
    flatten: bool = False,
    seed: int = 0,
) -> list[Task]:
    """Rotated MNIST: task t is MNIST rotated counter-clockwise by ``rotations[t]`` degrees (multiples of 90 exactly,
    other angles by bilinear resampling about the centre, as Lopez-Paz & Ranzato's 20-task stream).

    The last ``validation_size`` training images are never trained on: ``evaluate_on="validation"`` scores
    tasks on them (for hyperparameter search), ``"test"`` on the test set (for reporting). Each task trains on
    its own random ``train_size`` images of the rest (seeded by ``seed`` and the task) and is scored on the first
    ``eval_size`` evaluation images, rotated. Pixels are float32 in [0, 1]; ``flatten`` gives (n, 784) for an MLP.
    """
    transforms = [(f"rot{degrees:g}", lambda x, d=degrees: _rotate(x, d)) for degrees in rotations]
    return _stream(transforms, data_dir, train_size, eval_size, evaluate_on, validation_size, flatten, seed)


def permuted_mnist(
    data_dir: str | os.PathLike | None = None,
    tasks: int = 20,
    train_size: int | None = None,
    eval_size: int | None = None,
    evaluate_on: str = "test",
    validation_size: int = 5000,
    seed: int = 0,
) -> list[Task]:
    """Permuted MNIST: task t is MNIST with its 784 pixels in a fixed random order of its own (seeded by ``seed``
    and t); flattened, as an MLP takes it. Splits and sizes as :func:`rotated_mnist`."""
    orders = [torch.from_numpy(np.random.default_rng([seed, t, 0x5045]).permutation(28 * 28)) for t in range(tasks)]
    transforms = [(f"perm{t}", lambda x, o=order: x.flatten(1)[:, o].reshape(x.shape)) for t, order in enumerate(orders)]
    return _stream(transforms, data_dir, train_size, eval_size, evaluate_on, validation_size, True, seed)


def lopez_paz_rotations(tasks: int = 20, seed: int = 0) -> tuple[float, ...]:
    """The 20-task rotated-MNIST protocol's angles: one per task, uniform in [0, 180) degrees (Lopez-Paz & Ranzato,
    NeurIPS 2017, "Gradient Episodic Memory"; with 1,000 training examples per task, as MER runs it)."""
    return tuple(float(a) for a in np.random.default_rng([seed, 0x524F54]).uniform(0.0, 180.0, tasks))


def _stream(transforms: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]], data_dir: str | os.PathLike | None,
            train_size: int | None, eval_size: int | None, evaluate_on: str, validation_size: int, flatten: bool,
            seed: int) -> list[Task]:
    """One task per (name, transform of (n, 1, 28, 28) images), each on its own random training images."""
    if evaluate_on not in EVAL_SPLITS:
        raise ConfigError(f"evaluate_on must be one of {EVAL_SPLITS}, got {evaluate_on!r}")
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
    for index, (name, transform) in enumerate(transforms):
        order = np.random.default_rng([seed, index]).permutation(len(pool_y))[:train_size]
        x, y = _images(pool_x[order]), torch.from_numpy(pool_y[order].astype(np.int64))
        shape = (lambda t: t.flatten(1)) if flatten else (lambda t: t.contiguous())
        tasks.append(Task(name, shape(transform(x)), y, shape(transform(eval_x)), eval_y))
    return tasks


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """``x`` (n, 1, h, w) rotated counter-clockwise by ``degrees``: exactly for multiples of 90, else bilinearly."""
    if float(degrees) % 90 == 0:
        return torch.rot90(x, k=int(degrees) // 90 % 4, dims=(-2, -1))
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
