"""The seeds' public names, kept working as thin aliases of the names this SDK uses:

- ``train_maml(model, sampler, inner_lr, outer_lr, inner_steps, algorithm="maml", meta_batch_size=5,
  num_iterations=1000, **settings)``: :func:`~edgeadapt.sdk.training.meta_train` with the settings spelled out
  (it trains all three algorithms; ``algorithm=`` picks one);
- ``reptile_train(model, sampler, meta_lr, inner_lr, inner_steps, num_iterations, **settings)``: Reptile, the outer
  rate first as the seeds order it;
- ``reptile_adapt``: :func:`~edgeadapt.sdk.evaluation.adapted_copy` (nothing in it is Reptile's);
- ``inner_update`` and ``forward_with_weights`` are the pure methods of
  :class:`~edgeadapt.sdk.inner_loop.InnerLoop`, under their seeds' names already.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .evaluation import adapted_copy
from .training import MetaConfig, TaskSampler, meta_train

# MetaConfig's settings; every other keyword goes to meta_train (lr_scales, device, data, seed, run options).
_CONFIG_FIELDS = set(MetaConfig.__dataclass_fields__) - {"algorithm", "loss"}

reptile_adapt = adapted_copy


def train_maml(model: nn.Module, task_sampler: TaskSampler, inner_lr: float, outer_lr: float, inner_steps: int,
               algorithm: str = "maml", meta_batch_size: int = 5, num_iterations: int = 1000,
               **settings: Any) -> tuple[nn.Module, list[dict[str, Any]]]:
    """``meta_train(model, task_sampler, MetaConfig(algorithm, ...), ...)`` with the settings as arguments."""
    config = {k: settings.pop(k) for k in list(settings) if k in _CONFIG_FIELDS}
    meta = MetaConfig(algorithm, inner_lr=inner_lr, outer_lr=outer_lr, inner_steps=inner_steps,
                      meta_batch_size=meta_batch_size, num_iterations=num_iterations, **config)
    return meta_train(model, task_sampler, meta, **settings)


def reptile_train(model: nn.Module, task_sampler: TaskSampler, meta_lr: float, inner_lr: float, inner_steps: int,
                  num_iterations: int, **settings: Any) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Reptile: ``train_maml(..., algorithm="reptile")`` with outer step ``meta_lr`` annealed linearly."""
    return train_maml(model, task_sampler, inner_lr, meta_lr, inner_steps, "reptile",
                      num_iterations=num_iterations, **settings)
