"""Head initialisations: where the linear classifier starts before the inner loop's first step.

``"learned"`` keeps the meta-learned head (its number of outputs is a trained property); ``"zeros"`` starts
every task from a zero head (Reptile's fix for labels whose meaning is permuted per task); ``"prototypes"``
sets each class's row from the mean support feature c_k of the class, W_k = 2 c_k, b_k = -||c_k||^2, so that
with no step at all the head classifies by nearest centroid (Proto-MAML, Triantafillou et al. 2020).
With zeros or prototypes any ``ways`` classes can be served by one model.
"""

from __future__ import annotations

import torch


def is_per_task(head_init: str) -> bool:
    """Whether ``head_init`` builds the head afresh for each task, so one model serves any number of ways."""
    return head_init != "learned"


def class_indicator(labels: torch.Tensor, example_mask: torch.Tensor, ways: int) -> torch.Tensor:
    """(n, ways) float: 1.0 where example i is a real example of class k (padding rows are all zero)."""
    classes = torch.arange(ways, device=labels.device)
    return (labels.unsqueeze(-1) == classes).to(example_mask.dtype) * example_mask.unsqueeze(-1)


def prototypes(features: torch.Tensor, labels: torch.Tensor, example_mask: torch.Tensor, ways: int) -> torch.Tensor:
    """(ways, d) mean feature of each class's real support examples (zero for a class without any)."""
    indicator = class_indicator(labels, example_mask.to(features.dtype), ways)
    counts = indicator.sum(0).clamp(min=1.0)
    return (indicator.transpose(0, 1) @ features) / counts.unsqueeze(-1)


def prototype_head(features: torch.Tensor, labels: torch.Tensor, example_mask: torch.Tensor,
                   ways: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (ways, d) and bias (ways,) of the linear head whose logits rank classes by distance to prototypes.

    ``2 c_k . f - ||c_k||^2 = ||f||^2 - ||f - c_k||^2``: the largest logit is the nearest prototype. ``scale``
    multiplies both (an inverse softmax temperature): it leaves the ranking alone but decides how saturated
    the softmax is, and so how far a gradient step can move it.
    """
    centres = prototypes(features, labels, example_mask, ways)
    return 2.0 * scale * centres, -scale * (centres * centres).sum(-1)


def zero_head(features: torch.Tensor, ways: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero weight (ways, d) and bias (ways,), of the features' dtype and device."""
    return features.new_zeros(ways, features.shape[-1]), features.new_zeros(ways)
