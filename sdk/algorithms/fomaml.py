"""First-order MAML: the query-loss gradient at the adapted parameters, averaged over the tasks."""

from __future__ import annotations

import torch

from ..inner_loop import InnerLoop, Params
from ..tasks import TaskBatch
from .base import MetaAlgorithm, MetaStep, is_meta_parameter, meta_step, query_metrics


class FOMAML(MetaAlgorithm):
    """FOMAML with Adam on the outer loop and gradient-norm clipping."""

    name = "fomaml"

    def meta_gradient(self, inner: InnerLoop, params: Params, batch: TaskBatch,
                      step_masks: torch.Tensor | None = None) -> MetaStep:
        with torch.no_grad():
            adapted = inner.adapt_batch(params, batch.support_x, batch.support_y, step_masks=step_masks)
        adapted = {k: v.detach().requires_grad_() for k, v in adapted.items()}
        with torch.enable_grad():
            outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y)
            # Scaled to the sum of per-task means, so each slice holds that task's own gradient.
            loss = query_metrics(inner, outputs, batch.query_y)[0] * len(outputs)
            per_task = torch.autograd.grad(loss, list(adapted.values()))
        gradient = {k: g.mean(0) if is_meta_parameter(inner, k) else torch.zeros_like(params[k])
                    for k, g in zip(adapted, per_task)}
        return meta_step(inner, gradient, outputs, batch)
