"""A run's saved state: optimiser state as safetensors tensors + JSON (no pickling), and its weights."""

from __future__ import annotations

import os
from typing import Any

import torch

from .checkpoint import CheckpointError, load_checkpoint

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



def load_weights(model: torch.nn.Module, path: str | os.PathLike, device: torch.device) -> None:
    """Load the weights of the checkpoint at ``path`` into ``model`` (which must have the same shape)."""
    saved, _ = load_checkpoint(path, device)
    try:
        model.load_state_dict(saved.state_dict())
    except RuntimeError as e:
        raise CheckpointError(f"{path} holds a different model than this run: {e}") from e


def same_tensors(a: dict[str, torch.Tensor] | None, b: dict[str, torch.Tensor] | None) -> bool:
    """Whether two optional tensor dictionaries hold the same names and values."""
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
