"""Mini-batch inner steps (the Reptile paper's recipe): which support examples each SGD step of a task sees.

A schedule is a 0/1 mask per step over a task's support examples; :meth:`InnerLoop.inner_update` takes it as
``step_masks`` and averages step ``k``'s loss over the examples ``step_masks[k]`` selects. Without one, every
step sees the whole support set, as deployed artifacts do: mini-batches are a training choice.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .datasets.base import task_generator
from .errors import ConfigError
from .inner_loop import PAD_LABEL


def minibatch_masks(example_mask: torch.Tensor, batch_size: int, steps: int,
                    generator: torch.Generator) -> torch.Tensor:
    """(steps, examples) masks: the real examples (``example_mask`` 1.0) shuffled and cut into consecutive
    mini-batches of ``batch_size``, reshuffled when too few unused ones remain for the next (sampling without
    replacement, as openai/supervised-reptile's ``_mini_batches``, except that no mini-batch spans two shuffles,
    so none repeats an example). A ``batch_size`` of at least the real examples' count gives every step the
    whole support set."""
    if batch_size < 1:
        raise ConfigError(f"the inner mini-batch size must be >= 1, got {batch_size}")
    real = example_mask.nonzero().flatten()
    if len(real) == 0:
        raise ConfigError("a task without real support examples has no mini-batches")
    masks = torch.zeros(steps, len(example_mask), dtype=example_mask.dtype)
    if batch_size >= len(real):
        masks[:, real] = 1.0
        return masks
    order, used = real[torch.randperm(len(real), generator=generator)], 0
    for step in range(steps):
        if used + batch_size > len(order):  # too few left unseen: reshuffle, as a new epoch over the examples
            order, used = real[torch.randperm(len(real), generator=generator)], 0
        masks[step, order[used: used + batch_size]] = 1.0
        used += batch_size
    return masks


def batch_minibatch_masks(example_mask: torch.Tensor, batch_size: int, steps: int,
                          generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(tasks, steps, examples): :func:`minibatch_masks` of each task of a meta-batch, task ``i`` drawn from
    ``generators[i]``."""
    return torch.stack([minibatch_masks(mask, batch_size, steps, g) for mask, g in zip(example_mask, generators)])


def iteration_minibatch_masks(support_y: torch.Tensor, batch_size: int, steps: int, seed: int, iteration: int,
                              indices: Sequence[int]) -> torch.Tensor:
    """(tasks, steps, examples) mini-batches of tasks ``indices`` of meta-batch ``iteration``, each drawn from a
    generator of ``(seed, iteration, task)`` alone, so that a resumed run, or any number of processes sharing the
    meta-batch, draws the same ones. Padding (labels ``PAD_LABEL``) is never drawn; regression targets have none."""
    real = torch.ones(support_y.shape[:2]) if support_y.is_floating_point() else (support_y != PAD_LABEL).float()
    generators = [task_generator(seed, iteration, i, "inner-batches") for i in indices]
    return batch_minibatch_masks(real.cpu(), batch_size, steps, generators)
