"""The adaptation routine: K full-batch SGD steps on the support loss, as pure functions.

Meta-training, evaluation and export all call this one routine, so what a device runs
after export is exactly what the model was meta-trained to adapt with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

Params = dict[str, torch.Tensor]

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}
SCOPES = ("all", "head")
MASKED_LOGIT = -1e9
PAD_LABEL = -100  # label of a padding example: ignored by the loss (PyTorch's ignore_index)


@dataclass(frozen=True)
class InnerLoop:
    """K steps of plain SGD, learning rate ``inner_lr``, on ``loss`` over the whole support set.

    ``scope`` chooses what adapts: ``"all"`` parameters, or only the ``"head"`` (parameters
    named ``head.*``; the model must compute ``head(features(x))``), in which case the
    backbone features are computed once per task and only the head is differentiated.
    The model itself is never modified: parameters are passed in as dictionaries.
    """

    model: nn.Module
    inner_lr: float
    inner_steps: int
    loss: str = "cross_entropy"
    scope: str = "all"
    _buffers: Params = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if not self.inner_lr > 0:
            raise ValueError(f"inner_lr must be > 0, got {self.inner_lr}")
        if self.scope == "head" and not (hasattr(self.model, "features") and hasattr(self.model, "head")):
            raise ValueError("scope='head' needs a model with .features and .head submodules")
        object.__setattr__(self, "_buffers", dict(self.model.named_buffers()))

    def params(self) -> Params:
        """The model's current parameters, detached, as the dictionary the functions here take."""
        return {name: p.detach() for name, p in self.model.named_parameters()}

    def is_adapted(self, name: str) -> bool:
        """Whether the inner loop updates the parameter called ``name``."""
        return self.scope == "all" or name.startswith("head.")

    def forward_with_weights(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """The model's output for ``x`` with ``params`` in place of its own parameters."""
        return functional_call(self.model, {**self._buffers, **params}, (x,))

    def loss_value(
        self, outputs: torch.Tensor, targets: torch.Tensor, example_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean loss of ``outputs`` against ``targets`` (class indices or regression targets).

        With ``example_mask`` (1.0 for real examples, 0.0 for padding) the mean runs over real examples only.
        """
        if example_mask is None:
            return LOSSES[self.loss](outputs, targets)
        per_example = LOSSES[self.loss](outputs, targets, reduction="none")
        per_example = per_example.reshape(per_example.shape[0], -1).mean(1)
        return (per_example * example_mask).sum() / example_mask.sum()

    def inner_update(
        self,
        params: Params,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        steps: int | None = None,
        example_mask: torch.Tensor | None = None,
        class_mask: torch.Tensor | None = None,
    ) -> Params:
        """Parameters after ``steps`` (default ``inner_steps``) SGD steps on one task's support set.

        A task padded to a fixed size marks padding examples with ``example_mask`` 0.0 (or the label
        ``PAD_LABEL``) and absent classes with ``class_mask`` 0.0; by default a classification task's
        classes are labels ``0..max(support_y)`` (see :meth:`task_class_mask`). Padding has no effect.
        Differentiable with respect to ``params`` (second order, for MAML) under ``torch.func``.
        """
        steps = self.inner_steps if steps is None else steps
        fast = {k: v for k, v in params.items() if self.is_adapted(k)}
        frozen = {k: v for k, v in params.items() if not self.is_adapted(k)}
        if self.scope == "head":
            features = self._submodule_forward("features", frozen, support_x)

            def outputs(fast_params: Params) -> torch.Tensor:
                return self._submodule_forward("head", fast_params, features)

        else:

            def outputs(fast_params: Params) -> torch.Tensor:
                return self.forward_with_weights(support_x, {**frozen, **fast_params})

        def support_loss(fast_params: Params) -> torch.Tensor:
            out = outputs(fast_params)
            mask = class_mask if class_mask is not None else self.task_class_mask(support_y, out.shape[-1])
            return self.loss_value(mask_classes(out, mask), support_y, example_mask)

        gradient = grad(support_loss)
        for _ in range(steps):
            g = gradient(fast)
            fast = {k: fast[k] - self.inner_lr * g[k] for k in fast}
        return {**frozen, **fast}

    def adapt_batch(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """``inner_update`` for a meta-batch of tasks at once (leading task dimension), vectorised."""
        return vmap(self.inner_update, in_dims=(None, 0, 0))(params, support_x, support_y)

    def forward_batch(self, batched_params: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a task batch ``x`` (tasks, examples, ...) with per-task parameters."""
        return vmap(self.forward_with_weights, in_dims=(0, 0))(x, batched_params)

    def query_outputs(self, batched_params: Params, query_x: torch.Tensor, support_y: torch.Tensor) -> torch.Tensor:
        """Per-task outputs for the queries; for classification, logits of classes absent from a task are masked."""
        outputs = self.forward_batch(batched_params, query_x)
        if self.loss != "cross_entropy":
            return outputs
        return mask_classes(outputs, self.task_class_mask(support_y, outputs.shape[-1]).unsqueeze(-2))

    def task_class_mask(self, support_y: torch.Tensor, n_outputs: int) -> torch.Tensor | None:
        """1.0 for the outputs ``0..max(support_y)`` a classification task uses, 0.0 for the rest (per task)."""
        if self.loss != "cross_entropy":
            return None
        top = support_y.max(dim=-1, keepdim=True).values
        return (torch.arange(n_outputs, device=support_y.device) <= top).float()

    def _submodule_forward(self, name: str, params: Params, x: torch.Tensor) -> torch.Tensor:
        prefix = f"{name}."
        sub_params = {k[len(prefix):]: v for k, v in {**self._buffers, **params}.items() if k.startswith(prefix)}
        return functional_call(getattr(self.model, name), sub_params, (x,))


def mask_classes(outputs: torch.Tensor, class_mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with absent classes (``class_mask`` 0.0) pushed to -1e9, so softmax gives them no mass."""
    if class_mask is None:
        return outputs
    return torch.where(class_mask > 0.5, outputs, torch.full_like(outputs, MASKED_LOGIT))
