"""MAML (Finn et al., 2017): the exact gradient of the post-adaptation query loss, through the inner loop."""

from __future__ import annotations

import torch

from ..inner_loop import InnerLoop, Params
from ..tasks import TaskBatch
from .base import MetaAlgorithm, MetaStep, meta_step, query_metrics


class MAML(MetaAlgorithm):
    """Second-order MAML with Adam on the outer loop and gradient-norm clipping."""

    name = "maml"

    def meta_gradient(self, inner: InnerLoop, params: Params, batch: TaskBatch,
                      step_masks: torch.Tensor | None = None) -> MetaStep:
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad():
            adapted = inner.adapt_batch(leaves, batch.support_x, batch.support_y, step_masks=step_masks)
            outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y)
            loss = query_metrics(inner, outputs, batch.query_y)[0]
            gradient = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return meta_step(inner, _zeros_for_unused(leaves, gradient), outputs, batch)


def _zeros_for_unused(leaves: Params, gradient: tuple[torch.Tensor | None, ...]) -> Params:
    """Gradients by name; a parameter the loss never reaches (a replaced head) gets zeros."""
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), gradient)}
