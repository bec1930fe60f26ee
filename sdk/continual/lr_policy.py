"""A task-conditional meta learning rate: a logistic policy from task features to alpha_m in [0, max_lr].

    alpha_m = max_lr * sigmoid(w . phi + b),
    phi     = (mean inner loss, relative loss drop over the inner loop, inner-loss std, log10(task size) / 5)

Training rule (online, one update per outer step): the replay loss L(alpha) (the loss of the slow weights
after an outer update with step alpha, on a replay batch holding examples of every task seen so far) is
measured at alpha +- epsilon, giving the central finite difference g = dL/dalpha; then, with
dalpha/dz = alpha * (1 - alpha / max_lr) for z = w . phi + b,

    (w, b) -= policy_lr * g * dalpha/dz * (phi, 1),

a gradient step that lowers the replay loss, i.e. raises retention. The step actually taken is alpha itself.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import ConfigError

FEATURES = ("mean_loss", "loss_drop", "loss_std", "log_task_size")
POLICY_MAX_LR = 0.3


class MetaLRPolicy:
    """alpha_m as a logistic function of task features, trained by finite differences on a replay loss."""

    def __init__(self, initial_lr: float = 0.1, max_lr: float = POLICY_MAX_LR, policy_lr: float = 1.0, epsilon: float = 0.02):
        if not 0 < initial_lr < max_lr:
            raise ConfigError(f"initial_lr must lie strictly between 0 and max_lr={max_lr}, got {initial_lr}")
        self.max_lr = max_lr
        self.policy_lr = policy_lr
        self.epsilon = epsilon
        self.weight = torch.zeros(len(FEATURES) + 1, dtype=torch.float64)
        self.weight[-1] = math.log(initial_lr / (max_lr - initial_lr))  # bias: alpha = initial_lr at w = 0

    @staticmethod
    def features(inner_losses: list[float], task_size: int) -> torch.Tensor:
        """phi for one outer step from the losses of its inner loop and the task's number of examples."""
        losses = torch.tensor(inner_losses, dtype=torch.float64)
        first = max(float(losses[0]), 1e-12)
        std = float(losses.std()) if len(losses) > 1 else 0.0
        return torch.tensor([float(losses.mean()), (first - float(losses[-1])) / first, std,
                             math.log10(max(task_size, 1)) / 5], dtype=torch.float64)

    def __call__(self, phi: torch.Tensor) -> float:
        """alpha_m for features ``phi``, in [0, max_lr]."""
        return self.max_lr * float(torch.sigmoid(self._logit(phi)))

    def update(self, phi: torch.Tensor, replay_loss: Callable[[float], float]) -> float:
        """One training step of the rule above; returns the alpha_m to use for this outer step (before the step)."""
        alpha = self(phi)
        high, low = min(alpha + self.epsilon, self.max_lr), max(alpha - self.epsilon, 0.0)
        slope = (replay_loss(high) - replay_loss(low)) / (high - low)
        dalpha_dz = alpha * (1 - alpha / self.max_lr)
        self.weight -= self.policy_lr * slope * dalpha_dz * torch.cat([phi, torch.ones(1, dtype=torch.float64)])
        return alpha

    def _logit(self, phi: torch.Tensor) -> torch.Tensor:
        return self.weight[:-1] @ phi.to(torch.float64) + self.weight[-1]
