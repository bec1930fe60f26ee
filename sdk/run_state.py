"""An optimiser's state as safetensors tensors + JSON, so training runs resume exactly without pickling."""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import CheckpointError

OPTIMIZER_PREFIX = "optimizer."


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The optimiser's per-parameter slots as named tensors, and its parameter groups (JSON)."""
    state = optimizer.state_dict()
    tensors = {f"{OPTIMIZER_PREFIX}{index}.{slot}": torch.as_tensor(value)
               for index, slots in state["state"].items() for slot, value in slots.items()}
    return tensors, state["param_groups"]


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           param_groups: list[dict[str, Any]], path: str | os.PathLike,
                           device: torch.device) -> None:
    """Restore what :func:`optimizer_tensors` saved; a mismatch is a CheckpointError naming ``path``."""
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(OPTIMIZER_PREFIX):
            _, index, slot = key.split(".", 2)
            slots.setdefault(int(index), {})[slot] = value.to(device)
    try:
        optimizer.load_state_dict({"state": slots, "param_groups": param_groups})
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: optimiser state does not fit this run: {e}") from e


def with_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every name prefixed by ``prefix`` (e.g. "sampler.")."""
    return {f"{prefix}{k}": v for k, v in tensors.items()}


def without_prefix(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, with it removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
