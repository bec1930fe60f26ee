"""What every meta-learning algorithm provides: a meta-gradient, an outer optimiser and schedule, a clipping policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

import torch

from ..heads import is_per_task
from ..inner_loop import PAD_LABEL, InnerLoop, Params
from ..tasks import TaskBatch


class MetaStep(NamedTuple):
    """A meta-gradient and the mean query loss / accuracy of the adapted parameters (None without queries)."""

    gradient: Params
    query_loss: float | None
    query_accuracy: float | None


@dataclass(frozen=True)
class OuterSettings:
    """The outer loop's hyperparameters that an algorithm turns into an optimiser, schedule and clipping."""

    outer_lr: float
    num_iterations: int
    outer_lr_final: float = 0.0
    grad_clip: float = 10.0


class MetaAlgorithm:
    """Base class: subclasses set ``name`` and implement :meth:`meta_gradient`.

    The direction ``d`` a meta-gradient returns is such that the outer optimiser's step ``params -= lr * d``
    is the algorithm's meta-update. By default the outer optimiser is Adam at a constant rate and the
    meta-gradient's norm is clipped to ``grad_clip``.
    """

    name: str = ""

    def meta_gradient(self, inner: InnerLoop, params: Params, batch: TaskBatch,
                      step_masks: torch.Tensor | None = None) -> MetaStep:
        """The meta-gradient of one meta-batch, from the inner loop applied to each of its tasks (each inner step
        on the support examples ``step_masks`` selects, if given: see :mod:`~edgeadapt.sdk.minibatches`)."""
        raise NotImplementedError

    def weight(self, batch: TaskBatch) -> int:
        """How many items the meta-gradient is a mean over (its weight when processes combine their shares).

        By default, the real (unpadded) query examples: the gradient is that of their mean loss.
        """
        return query_count(batch)

    def optimizer(self, parameters: Iterable[torch.nn.Parameter], settings: OuterSettings) -> torch.optim.Optimizer:
        """The outer optimiser."""
        return torch.optim.Adam(parameters, lr=settings.outer_lr)

    def scheduler(self, optimizer: torch.optim.Optimizer,
                  settings: OuterSettings) -> torch.optim.lr_scheduler.LRScheduler:
        """The outer learning-rate schedule, stepped once per meta-iteration."""
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

    def clip(self, parameters: Iterable[torch.nn.Parameter], settings: OuterSettings) -> None:
        """Clip the meta-gradients held in ``.grad`` before the outer step."""
        torch.nn.utils.clip_grad_norm_(list(parameters), settings.grad_clip)


def is_meta_parameter(inner: InnerLoop, name: str) -> bool:
    """Whether the meta-update moves ``name``: not a head that each task re-initialises (zeros, prototypes)."""
    return not is_per_task(inner.head_init) or not name.startswith("head.")


def query_metrics(inner: InnerLoop, outputs: torch.Tensor, query_y: torch.Tensor) -> tuple[torch.Tensor, float | None]:
    """Mean query loss over the tasks of a batch, and mean accuracy for classification.

    Every task has as many queries (padding queries, labelled ``PAD_LABEL``, are left out).
    """
    loss = inner.loss_value(outputs.flatten(0, 1), query_y.flatten(0, 1))
    if not inner.classifies:
        return loss, None
    real = query_y != PAD_LABEL
    return loss, ((outputs.argmax(-1) == query_y) & real).sum().item() / max(real.sum().item(), 1)


def query_count(batch: TaskBatch) -> int:
    """The real (unpadded) query examples of a batch: what its query metrics are means over."""
    return int((batch.query_y != PAD_LABEL).sum())


def meta_step(inner: InnerLoop, gradient: Params, outputs: torch.Tensor, batch: TaskBatch) -> MetaStep:
    """A :class:`MetaStep` with the query metrics of ``outputs``."""
    loss, accuracy = query_metrics(inner, outputs.detach(), batch.query_y)
    return MetaStep(gradient, loss.item(), accuracy)
