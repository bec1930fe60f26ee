"""Continual-learning scores: accuracy, the accuracy matrix's summaries, and few-shot re-adaptation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .streams import Task


@torch.no_grad()
@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    correct = sum(int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / max(len(x), 1)


def average_accuracy(matrix: list[list[float]]) -> float:
    """Mean accuracy over all tasks after training through the last one (the matrix's last row)."""
    return sum(matrix[-1]) / len(matrix[-1])


def forgetting(matrix: list[list[float]]) -> float:
    """Minus the backward transfer: mean over earlier tasks j of R[j][j] - R[T-1][j] (0 for a single task).

    ``matrix[i][j]`` is the accuracy on task j after training through task i; positive means forgotten.
    """
    last = len(matrix) - 1
    if last == 0:
        return 0.0
    return sum(matrix[j][j] - matrix[last][j] for j in range(last)) / last


def backward_transfer(matrix: list[list[float]]) -> float:
    """Lopez-Paz & Ranzato's BWT: mean over the tasks before the last of (accuracy at the end - accuracy right
    after learning it); minus :func:`forgetting`."""
    return -forgetting(matrix)


def forward_transfer(matrix: list[list[float]], initial: list[float]) -> float:
    """Lopez-Paz & Ranzato's FWT: mean over the tasks after the first of (accuracy just before learning it -
    accuracy of the network before any training, ``initial``)."""
    if len(matrix) < 2:
        return 0.0
    return sum(matrix[j - 1][j] - initial[j] for j in range(1, len(matrix))) / (len(matrix) - 1)


def few_shot_accuracy(model: nn.Module, task: Task, shots: int, steps: int, lr: float, seed: int = 0) -> float:
    """Accuracy on ``task`` after ``steps`` full-batch SGD steps (rate ``lr``) on ``shots`` examples per class.

    The examples are drawn from the task's training set with ``seed``; ``model`` itself is left unchanged.
    """
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in torch.unique(task.train_y):
        members = torch.nonzero(task.train_y == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    index = torch.cat(picks)
    learner = copy.deepcopy(model)
    optimizer = torch.optim.SGD(learner.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(learner(task.train_x[index]), task.train_y[index]).backward()
        optimizer.step()
    return accuracy(learner, task.eval_x, task.eval_y)
