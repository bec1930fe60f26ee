"""Elastic Weight Consolidation (Kirkpatrick et al., 2017): a quadratic pull towards each earlier task's weights.

After task t, ``consolidate_task((x, y))`` stores theta*_t (the model's weights) and the diagonal Fisher
information F_t estimated on (x, y); afterwards

    penalty(model) = sum_t lambda / 2 * sum_i F_t,i * (theta_i - theta*_t,i)^2.

The Fisher is ``"true"`` (default, as in the paper): F_i = mean_x sum_c p(c | x) (d log p(c | x) / d theta_i)^2,
the exact expectation over the model's own predictive distribution; or ``"empirical"``: the squared gradient of
log p(y | x) at the observed label y. Online EWC (Schwarz et al., 2018; ``gamma`` given) keeps a single
penalty: F := gamma * F + F_t and theta* := theta*_t.

A sum of quadratics is one quadratic: sum_t F_t (theta - theta*_t)^2 = A (theta - m)^2 + c with A = sum_t F_t,
m = sum_t F_t theta*_t / A and c >= 0 constant, so the penalty costs the same for 20 anchors as for one; the anchors
themselves are kept (checkpoints store them) and (A, m, c) recomputed from them in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..errors import CheckpointError, ConfigError

Params = dict[str, torch.Tensor]
FISHERS = ("true", "empirical")


@dataclass(eq=False)
class EWC:
    """Per-task anchors (theta*, F) for ``model`` and the penalty that holds the model near them.

    ``lam`` is lambda, ``fisher`` the Fisher's kind, ``gamma`` online EWC's decay (None: one penalty per task);
    the Fisher is computed ``chunk_size`` examples at a time.
    """

    model: nn.Module
    lam: float
    fisher: str = "true"
    gamma: float | None = None
    chunk_size: int = 32
    anchors: list[tuple[Params, Params]] = field(default_factory=list, init=False)
    combined: tuple[Params, Params, torch.Tensor] | None = field(default=None, init=False)  # (A, m, c), see above

    def __post_init__(self) -> None:
        if self.fisher not in FISHERS:
            raise ConfigError(f"fisher must be one of {FISHERS}, got {self.fisher!r}")
        if self.lam < 0:
            raise ConfigError(f"lambda must be >= 0, got {self.lam}")
        if self.gamma is not None and not 0 <= self.gamma <= 1:
            raise ConfigError(f"online EWC's gamma must be in [0, 1], got {self.gamma}")

    def fisher_diagonal(self, x: torch.Tensor, y: torch.Tensor) -> Params:
        """The diagonal Fisher of the model's classifier at its current weights, averaged over ``x`` (labels ``y``)."""
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        buffers = dict(self.model.named_buffers())

        def log_prob(p: Params, xi: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            logits = functional_call(self.model, {**buffers, **p}, (xi.unsqueeze(0),))
            return F.log_softmax(logits, dim=-1).gather(1, c.reshape(1, 1)).squeeze()

        per_example = vmap(grad(log_prob), in_dims=(None, 0, 0))
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for start in range(0, len(x), self.chunk_size):
            xb, yb = x[start:start + self.chunk_size], y[start:start + self.chunk_size]
            if self.fisher == "empirical":
                weighted = [(yb, torch.ones(len(yb)))]
            else:
                with torch.no_grad():
                    probs = F.softmax(functional_call(self.model, {**buffers, **params}, (xb,)), dim=-1)
                weighted = [(torch.full_like(yb, c), probs[:, c]) for c in range(probs.shape[1])]
            for labels, weight in weighted:
                g = per_example(params, xb, labels)
                for n in total:
                    total[n] += torch.einsum("b,b...->...", weight.to(g[n]), g[n] ** 2)
        return {n: t / len(x) for n, t in total.items()}

    def consolidate_task(self, data: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Anchor the model's current weights with the Fisher estimated on ``data`` = (x, y)."""
        fisher = self.fisher_diagonal(*data)
        theta = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        if self.gamma is not None and self.anchors:
            previous = self.anchors[0][1]
            fisher = {n: self.gamma * previous[n] + fisher[n] for n in fisher}
            self.anchors = []
        self.anchors.append((theta, fisher))
        self._combine()

    def _combine(self) -> None:
        """(A, m, c) of the module docstring from the anchors, in float64 then stored in the weights' dtype."""
        if not self.anchors:
            self.combined = None
            return
        total, mean, constant = {}, {}, torch.zeros((), dtype=torch.float64)
        for n in self.anchors[0][0]:
            f = torch.stack([fisher[n] for _, fisher in self.anchors]).double()
            theta = torch.stack([anchor[n] for anchor, _ in self.anchors]).double()
            a = f.sum(0)
            m = torch.where(a > 0, (f * theta).sum(0) / a.clamp_min(1e-300), theta[-1])
            constant = constant + (f * (theta - m) ** 2).sum()
            total[n], mean[n] = a.to(self.anchors[0][1][n].dtype), m.to(self.anchors[0][0][n].dtype)
        self.combined = (total, mean, constant)

    def penalty(self, model: nn.Module | None = None) -> torch.Tensor:
        """lambda/2 * sum over anchors of sum_i F_i (theta_i - theta*_i)^2, differentiable in ``model``'s weights."""
        params = dict((model or self.model).named_parameters())
        device = next(iter(params.values())).device
        if self.combined is None:
            return torch.zeros((), device=device)
        fisher, mean, constant = self.combined
        total = constant.to(device=device, dtype=torch.float32)
        for n, p in params.items():
            total = total + (fisher[n] * (p - mean[n]) ** 2).sum()
        return self.lam / 2 * total

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The anchors as flat tensors (``ewc.<t>.theta.<name>``, ``ewc.<t>.fisher.<name>``) for a checkpoint."""
        out = {}
        for t, (theta, fisher) in enumerate(self.anchors):
            out.update({f"ewc.{t}.theta.{n}": v for n, v in theta.items()})
            out.update({f"ewc.{t}.fisher.{n}": v for n, v in fisher.items()})
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], count: int) -> None:
        """Restore ``count`` anchors saved by :meth:`state_tensors`."""
        names = [n for n, _ in self.model.named_parameters()]
        try:
            self.anchors = [({n: tensors[f"ewc.{t}.theta.{n}"] for n in names},
                             {n: tensors[f"ewc.{t}.fisher.{n}"] for n in names}) for t in range(count)]
        except KeyError as e:
            raise CheckpointError(f"EWC state lacks {e.args[0]}") from None
        try:
            self._combine()
        except RuntimeError as e:
            raise CheckpointError(f"EWC state does not fit the model: {e}") from e
