"""Reptile's fast and slow weights for a stream of tasks: the slow weights move towards each task's solution.

One outer step: ``reset_to_slow()`` (the model's parameters become the slow weights), K calls of
``inner_loop_step(loss)`` (a torch.optim step of the fast weights, which are the model's parameters), then
``apply_outer_loop_update()``:

    delta      = theta_fast - theta_slow          (mean over ``meta_batch`` inner runs when that is > 1)
    v          = momentum * v + delta             (only when ``momentum`` > 0; v starts at 0)
    theta_slow = theta_slow + alpha_m * (v if momentum else delta)

so the slow weights are an exponential moving average of task solutions. ``apply_meta_weights()`` puts the
slow weights into the model for evaluation or deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError

Params = dict[str, torch.Tensor]
INNER_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


@dataclass(frozen=True)
class ControllerConfig:
    """Hyperparameters of :class:`MetaController` (alpha_f, alpha_m, K and the options of the slow update)."""

    inner_optimizer: str = "sgd"
    inner_lr: float = 0.05
    meta_lr: float = 0.1
    inner_steps: int = 5
    momentum: float = 0.0
    meta_batch: int = 1

    def __post_init__(self) -> None:
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            raise ConfigError(f"inner_optimizer must be one of {sorted(INNER_OPTIMIZERS)}, got {self.inner_optimizer!r}")
        if not self.inner_lr > 0:
            raise ConfigError(f"inner_lr must be > 0, got {self.inner_lr}")
        if not 0 <= self.meta_lr <= 1:
            raise ConfigError(f"meta_lr must be in [0, 1], got {self.meta_lr}")
        if self.inner_steps < 1 or self.meta_batch < 1:
            raise ConfigError("inner_steps and meta_batch must be >= 1")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")


class MetaController:
    """Slow (meta) weights kept beside ``model``, whose own parameters are the fast (task) weights."""

    def __init__(self, model: nn.Module, config: ControllerConfig):
        self.model = model
        self.config = config
        self.slow: Params = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.velocity: Params = {n: torch.zeros_like(p) for n, p in self.slow.items()} if config.momentum else {}
        self._finished: list[Params] = []
        self.optimizer: torch.optim.Optimizer = self._new_optimizer()
        self.steps_taken = 0

    def reset_to_slow(self) -> None:
        """Start an inner loop: fast weights := slow weights, with a fresh inner optimiser."""
        self.apply_meta_weights()
        self.optimizer = self._new_optimizer()
        self.steps_taken = 0

    def inner_loop_step(self, loss: torch.Tensor) -> float:
        """One inner-optimiser step of the fast weights down ``loss``; returns the loss value."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_taken += 1
        return float(loss.detach())

    def finish_inner_loop(self) -> None:
        """Keep this inner run's ``theta_fast - theta_slow`` for a multi-run (``meta_batch`` > 1) outer update."""
        self._finished.append(self._fast_minus_slow())

    def outer_direction(self) -> Params:
        """The step the next outer update scales by alpha_m (momentum-adjusted delta); changes nothing."""
        deltas = self._finished or [self._fast_minus_slow()]
        delta = {n: torch.stack([d[n] for d in deltas]).mean(0) for n in self.slow}
        if not self.config.momentum:
            return delta
        return {n: self.config.momentum * self.velocity[n] + delta[n] for n in self.slow}

    def apply_outer_loop_update(self, meta_lr: float | None = None) -> float:
        """theta_slow += alpha_m * direction (``meta_lr`` overrides the config's alpha_m); returns alpha_m used."""
        lr = self.config.meta_lr if meta_lr is None else meta_lr
        direction = self.outer_direction()
        if self.config.momentum:
            self.velocity = {n: d.clone() for n, d in direction.items()}
        for name, step in direction.items():
            self.slow[name].add_(step, alpha=lr)
        self._finished.clear()
        return lr

    def apply_meta_weights(self) -> None:
        """Copy the slow weights into the model (for evaluation, export, or the next inner loop)."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(self.slow[name])

    def slow_weights_after(self, meta_lr: float) -> Params:
        """What the slow weights would be after an outer update with ``meta_lr`` (for trying step sizes)."""
        direction = self.outer_direction()
        return {n: self.slow[n] + meta_lr * direction[n] for n in self.slow}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Slow weights and momentum, for a checkpoint taken between outer updates."""
        return {**{f"slow.{n}": t for n, t in self.slow.items()}, **{f"velocity.{n}": t for n, t in self.velocity.items()}}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` saved; the next inner loop starts from these slow weights."""
        missing = [f"slow.{n}" for n in self.slow if f"slow.{n}" not in tensors]
        missing += [f"velocity.{n}" for n in self.velocity if f"velocity.{n}" not in tensors]
        if missing:
            raise CheckpointError(f"controller state lacks {missing[:3]}{'...' if len(missing) > 3 else ''}")
        self.slow = {n: tensors[f"slow.{n}"].clone() for n in self.slow}
        self.velocity = {n: tensors[f"velocity.{n}"].clone() for n in self.velocity}
        self._finished.clear()
        self.reset_to_slow()

    def _fast_minus_slow(self) -> Params:
        return {n: p.detach() - self.slow[n] for n, p in self.model.named_parameters()}

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return INNER_OPTIMIZERS[self.config.inner_optimizer](self.model.parameters(), lr=self.config.inner_lr)
