"""Per-parameter inner learning rates from a pretraining run's Adam state: a preconditioner frozen after pretraining.

Adam divides each gradient by the square root of its running second moment ``v``; frozen at the end of
pretraining, ``1 / (sqrt(v) + eps)`` is a fixed elementwise rate that plain first-order SGD (the device's inner
loop) can apply through :class:`~edgeadapt.sdk.inner_loop.InnerLoop`'s ``lr_scales``.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn

from .checkpoint import load_checkpoint, load_training_state
from .errors import CheckpointError, ConfigError
from .scopes import adapted_predicate

GRANULARITIES = ("element", "tensor")


def preconditioned_parameters(model: nn.Module, scope: str) -> list[str]:
    """The parameters a pretraining run's Adam state can precondition: those ``scope`` adapts, below the head
    (a head is new after pretraining, or rebuilt for each task)."""
    adapts = adapted_predicate(model, scope)
    return [n for n, _ in model.named_parameters() if adapts(n) and not n.startswith("head.")]


def adam_lr_scales(pretrained: str | os.PathLike, names: Iterable[str], granularity: str = "element"
                   ) -> dict[str, torch.Tensor]:
    """``1 / (sqrt(v) + eps)`` of each parameter in ``names``, from the Adam state of a pretraining checkpoint.

    The rates are normalised so that their mean over every named element is 1, so ``inner_lr`` keeps its
    average meaning; ``granularity="tensor"`` gives each tensor one rate, the mean of its elements'.
    """
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    model, config = load_checkpoint(pretrained)
    tensors, state = load_training_state(pretrained)
    if "pretraining" not in config:
        raise CheckpointError(f"{pretrained} is not a pretraining checkpoint (no Adam state to read)")
    cosine = config["pretraining"].get("classifier") == "cosine"
    # the optimiser's parameters, in order: the model's (its head too, unless a cosine classifier stood in for it)
    order = [n for n, _ in model.named_parameters() if not (cosine and n.startswith("head."))]
    eps = state["optimizer_param_groups"][0]["eps"]
    rates = {}
    for name in names:
        key = f"optimizer.{order.index(name)}.exp_avg_sq" if name in order else None
        if key not in tensors:
            raise CheckpointError(f"{pretrained} holds no Adam second moment for {name!r}")
        rates[name] = 1.0 / (tensors[key].sqrt() + eps)
    if granularity == "tensor":
        rates = {k: v.mean().reshape(()) for k, v in rates.items()}
        mean = torch.stack(list(rates.values())).mean()  # one rate per tensor: weight the tensors alike
    else:
        mean = torch.cat([v.flatten() for v in rates.values()]).mean()
    return {k: v / mean for k, v in rates.items()}
