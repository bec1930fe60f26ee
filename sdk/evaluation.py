"""Few-shot evaluation: adapt on each task's support set, score its queries, report mean and 95% CI."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .frozen_layers import cache_frozen_layers, part_scales
from .heads import is_per_task
from .inner_loop import PAD_LABEL, InnerLoop
from .training import TaskSampler


@dataclass(frozen=True, repr=False)
class EvalResult:
    """Per-task scores (accuracy for classification, MSE for regression) and their summary."""

    metric: str
    scores: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the normal-approximation 95% confidence interval of the mean."""
        if len(self.scores) < 2:
            return float("nan")
        return float(1.96 * self.scores.std(ddof=1) / math.sqrt(len(self.scores)))

    @property
    def num_tasks(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"EvalResult({self})"

    def __str__(self) -> str:
        if self.metric == "accuracy":
            return f"{100 * self.mean:.2f}% ± {100 * self.ci95:.2f}% ({self.num_tasks} tasks)"
        return f"{self.metric} {self.mean:.4f} ± {self.ci95:.4f} ({self.num_tasks} tasks)"


@torch.no_grad()
def _scores(inner: InnerLoop, outputs: torch.Tensor, query_y: torch.Tensor) -> torch.Tensor:
    if inner.classifies:
        real = (query_y != PAD_LABEL).float()
        return ((outputs.argmax(-1) == query_y).float() * real).sum(-1) / real.sum(-1)
    return ((outputs - query_y) ** 2).flatten(1).mean(-1)


def evaluate(
    model: nn.Module,
    task_sampler: TaskSampler,
    inner_lr: float,
    inner_steps: int,
    num_tasks: int = 1000,
    *,
    scope: str = "all",
    head_init: str = "learned",
    head_scale: float = 1.0,
    lr_scales: dict[str, torch.Tensor] | None = None,
    tasks_per_batch: int = 25,
    device: str | torch.device | None = None,
    cache_frozen: bool = False,
) -> EvalResult:
    """Mean score and 95% CI of ``model`` over ``num_tasks`` tasks, adapting with the inner loop.

    Each query is predicted on its own (the models hold no batch statistics), so the result is
    non-transductive. ``inner_steps=0`` measures the unadapted model (after its head initialisation).
    ``lr_scales``: per-parameter rates (see :class:`~edgeadapt.sdk.inner_loop.InnerLoop`). ``cache_frozen``
    computes the layers ``scope`` freezes once per example of the sampler's dataset, not once per task (the same
    scores; :mod:`~edgeadapt.sdk.frozen_layers`).
    """
    if num_tasks < 1:
        raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}")
    if inner_steps < 0:
        raise ConfigError(f"inner_steps must be >= 0, got {inner_steps}")
    if device is not None:
        model = model.to(device)
    device = next(model.parameters()).device
    ways = getattr(task_sampler, "ways", None) if is_per_task(head_init) else None
    if cache_frozen:
        lr_scales = part_scales(model, scope, lr_scales)
        model, task_sampler = cache_frozen_layers(model, task_sampler, scope, device)
    inner = InnerLoop(model, inner_lr, inner_steps, task_sampler.loss, scope, head_init, ways, head_scale=head_scale,
                      lr_scales=lr_scales)
    params = inner.params()
    scores = []
    remaining = num_tasks
    while remaining > 0:
        batch = task_sampler.sample(min(tasks_per_batch, remaining))
        sx, sy, qx, qy = (t.to(device) for t in batch)
        adapted = inner.adapt_batch(params, sx, sy)
        with torch.no_grad():
            scores.append(_scores(inner, inner.query_outputs(adapted, qx, sy), qy).cpu())
        remaining -= len(sx)
    return EvalResult("accuracy" if inner.classifies else "mse", torch.cat(scores).numpy())


def adapted_copy(
    model: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    inner_lr: float,
    inner_steps: int,
    *,
    loss: str = "cross_entropy",
    scope: str = "all",
    head_init: str = "learned",
) -> nn.Module:
    """A copy of ``model`` adapted to one task's support set with the shared inner loop; ``model`` is untouched.

    With a ``head_init`` other than "learned" the copy's head gets one output per class of the task.
    """
    ways = int(support_y.max()) + 1 if is_per_task(head_init) else None
    inner = InnerLoop(model, inner_lr, inner_steps, loss, scope, head_init, ways)
    adapted = inner.inner_update(inner.params(), support_x, support_y)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in clone.named_parameters():
            p.data = adapted[name].detach().clone()
    if is_per_task(head_init):
        clone.head.out_features = ways
    return clone
