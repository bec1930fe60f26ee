"""The sine-wave regression toy of the MAML and Reptile papers: each task is y = A sin(x - phase)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError
from .base import SeededSampler, TaskBatch


class SineTaskSampler(SeededSampler):
    """Draws sine regression tasks (amplitude and phase uniform per task, x uniform), deterministic by ``seed``.

    ``sample(B)`` gives (support_x, support_y, query_x, query_y) of shapes (B, shots, 1), (B, shots, 1),
    (B, query, 1), (B, query, 1); iterating yields single tasks without the batch dimension, forever.
    Both draw from one torch.Generator, so a sampler yields one reproducible stream of tasks.
    """

    loss = "mse"
    input_shape = (1,)

    def __init__(
        self,
        shots: int = 10,
        query: int = 10,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
        seed: int = 0,
    ) -> None:
        if shots < 1 or query < 1:
            raise ConfigError(f"shots and query must be >= 1, got {shots} and {query}")
        self.shots = shots
        self.query = query
        self.amplitude = amplitude
        self.phase = phase
        self.x_range = x_range
        super().__init__(seed)

    def draw(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        """``n_tasks`` tasks as float32 (support_x, support_y, query_x, query_y), drawn from ``generator``."""
        b = n_tasks
        amplitude = _uniform((b, 1, 1), self.amplitude, generator)
        phase = _uniform((b, 1, 1), self.phase, generator)
        x = _uniform((b, self.shots + self.query, 1), self.x_range, generator)
        y = amplitude * torch.sin(x - phase)
        return TaskBatch(x[:, : self.shots], y[:, : self.shots], x[:, self.shots :], y[:, self.shots :])

    def describe(self) -> dict[str, Any]:
        """The task distribution, as JSON for checkpoints and metrics."""
        return {"shots": self.shots, "query": self.query, "amplitude": list(self.amplitude),
                "phase": list(self.phase), "x_range": list(self.x_range)}


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float32)
