"""Meta-gradients of Reptile, FOMAML and MAML for one meta-batch, as pure functions.

Each returns a direction ``d`` such that the outer optimiser's step ``params -= lr * d``
is the algorithm's meta-update, plus the query metrics after adaptation. All three
share :class:`~edgeadapt.sdk.inner_loop.InnerLoop`, vectorised over the tasks of the batch.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .inner_loop import PAD_LABEL, InnerLoop, Params
from .tasks import TaskBatch

ALGORITHMS = ("maml", "fomaml", "reptile")


class MetaStep(NamedTuple):
    """A meta-gradient and the mean query loss / accuracy of the adapted parameters (None without queries)."""

    gradient: Params
    query_loss: float | None
    query_accuracy: float | None


def query_metrics(inner: InnerLoop, outputs: torch.Tensor, query_y: torch.Tensor) -> tuple[torch.Tensor, float | None]:
    """Mean query loss over the tasks of a batch, and mean accuracy for classification.

    Every task has as many queries (padding queries, labelled ``PAD_LABEL``, are left out).
    """
    loss = inner.loss_value(outputs.flatten(0, 1), query_y.flatten(0, 1))
    if inner.loss != "cross_entropy":
        return loss, None
    real = query_y != PAD_LABEL
    return loss, ((outputs.argmax(-1) == query_y) & real).sum().item() / max(real.sum().item(), 1)


def maml_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """MAML: the exact gradient of the post-adaptation query loss, through the inner loop."""
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    with torch.enable_grad():
        adapted = inner.adapt_batch(leaves, batch.support_x, batch.support_y)
        outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y)
        loss = query_metrics(inner, outputs, batch.query_y)[0]
        gradient = torch.autograd.grad(loss, list(leaves.values()))
    return _step(inner, dict(zip(leaves, gradient)), outputs.detach(), batch)


def fomaml_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """First-order MAML: the query-loss gradient at the adapted parameters, averaged over tasks."""
    adapted = {k: v.requires_grad_() for k, v in inner.adapt_batch(params, batch.support_x, batch.support_y).items()}
    with torch.enable_grad():
        outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y)
        # Scaled to the sum of per-task means, so each slice holds that task's own gradient.
        loss = query_metrics(inner, outputs, batch.query_y)[0] * len(outputs)
        per_task = torch.autograd.grad(loss, list(adapted.values()))
    return _step(inner, {k: g.mean(0) for k, g in zip(adapted, per_task)}, outputs.detach(), batch)


def reptile_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """Reptile: ``params - mean(adapted)``, so a step of size eps moves towards the adapted weights."""
    adapted = inner.adapt_batch(params, batch.support_x, batch.support_y)
    direction = {k: params[k] - adapted[k].mean(0) for k in params}
    outputs = inner.query_outputs(adapted, batch.query_x, batch.support_y) if batch.query_x.shape[1] else None
    if outputs is None:
        return MetaStep(direction, None, None)
    return _step(inner, direction, outputs, batch)


def _step(inner: InnerLoop, gradient: Params, outputs: torch.Tensor, batch: TaskBatch) -> MetaStep:
    loss, accuracy = query_metrics(inner, outputs, batch.query_y)
    return MetaStep(gradient, loss.item(), accuracy)


META_GRADIENTS: dict[str, Callable[[InnerLoop, Params, TaskBatch], MetaStep]] = {
    "maml": maml_gradient,
    "fomaml": fomaml_gradient,
    "reptile": reptile_gradient,
}
