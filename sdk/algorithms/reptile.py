"""Reptile (Nichol et al., 2018): move the initialisation towards the weights adapted to each task."""

from __future__ import annotations

from typing import Iterable

import torch

from ..inner_loop import InnerLoop, Params
from ..tasks import TaskBatch
from .base import MetaAlgorithm, MetaStep, OuterSettings, is_meta_parameter, meta_step


class Reptile(MetaAlgorithm):
    """Reptile: direction ``params - mean(adapted)``, plain SGD whose step anneals linearly, no clipping."""

    name = "reptile"

    def meta_gradient(self, inner: InnerLoop, params: Params, batch: TaskBatch,
                      step_masks: torch.Tensor | None = None) -> MetaStep:
        with torch.no_grad():
            adapted = inner.adapt_batch(params, batch.support_x, batch.support_y, step_masks=step_masks)
            direction = {k: params[k] - adapted[k].mean(0) if is_meta_parameter(inner, k)
                         else torch.zeros_like(params[k]) for k in params}
            if not batch.query_x.shape[1]:
                return MetaStep(direction, None, None)
            outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y)
        return meta_step(inner, direction, outputs, batch)

    def weight(self, batch: TaskBatch) -> int:
        """The direction is a mean over the tasks."""
        return len(batch.support_x)

    def optimizer(self, parameters: Iterable[torch.nn.Parameter], settings: OuterSettings) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=settings.outer_lr)

    def scheduler(self, optimizer: torch.optim.Optimizer,
                  settings: OuterSettings) -> torch.optim.lr_scheduler.LRScheduler:
        """Linear annealing from ``outer_lr`` to ``outer_lr_final`` over the run."""
        return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0,
                                                 end_factor=settings.outer_lr_final / settings.outer_lr,
                                                 total_iters=max(settings.num_iterations, 1))

    def clip(self, parameters: Iterable[torch.nn.Parameter], settings: OuterSettings) -> None:
        """Reptile's direction is a difference of weights, not a gradient: it is not clipped."""
