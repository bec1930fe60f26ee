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

        This is the routine that export traces for devices. A task padded to a fixed size marks padding
        examples with ``example_mask`` 0.0 (or the label ``PAD_LABEL``) and absent classes with
        ``class_mask`` 0.0; by default a classification task's classes are labels ``0..max(support_y)``
        (see :meth:`task_class_mask`). Padding has no effect. Differentiable with respect to ``params``
        (second order) under ``torch.func``.
        """
        steps = self.inner_steps if steps is None else steps
        fast, frozen = self._split(params)
        inputs = self._adapted_inputs(frozen, support_x)
        gradient = grad(self._support_loss)
        for _ in range(steps):
            g = gradient(fast, frozen, inputs, support_y, example_mask, class_mask)
            fast = {k: fast[k] - self.inner_lr * g[k] for k in fast}
        return {**frozen, **fast}

    def adapt_batch(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor) -> Params:
        """:meth:`inner_update` for a meta-batch of tasks at once (leading task dimension).

        The forward pass is vectorised over tasks with ``vmap``; the gradients come from
        ``torch.autograd``, whose backward kernels (GroupNorm's above all) are several times faster
        on CPU than ``torch.func.grad``'s. If any parameter requires grad, the graph through the inner
        loop is kept, so the result is differentiable with respect to ``params`` (second order, MAML).
        """
        tasks = support_x.shape[0]
        second_order = torch.is_grad_enabled() and any(p.requires_grad for p in params.values())
        fast, frozen = self._split(params)
        with torch.set_grad_enabled(second_order):
            inputs = vmap(self._adapted_inputs, in_dims=(None, 0))(frozen, support_x)
        fast = {k: v.expand(tasks, *v.shape) for k, v in fast.items()}
        batch_loss = vmap(self._support_loss, in_dims=(0, None, 0, 0))
        for _ in range(self.inner_steps):
            if not second_order:
                fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
            with torch.enable_grad():
                # Tasks are independent, so each task's slice of the summed loss's gradient is its own gradient.
                loss = batch_loss(fast, frozen, inputs, support_y).sum()
                g = torch.autograd.grad(loss, list(fast.values()), create_graph=second_order)
            fast = {k: v - self.inner_lr * gk for (k, v), gk in zip(fast.items(), g)}
        if not second_order:
            fast = {k: v.detach() for k, v in fast.items()}
        return {**{k: v.expand(tasks, *v.shape) for k, v in frozen.items()}, **fast}

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

    def _split(self, params: Params) -> tuple[Params, Params]:
        """``params`` split into those the inner loop adapts and those it leaves alone."""
        fast = {k: v for k, v in params.items() if self.is_adapted(k)}
        return fast, {k: v for k, v in params.items() if not self.is_adapted(k)}

    def _adapted_inputs(self, frozen: Params, support_x: torch.Tensor) -> torch.Tensor:
        """What the adapted parameters see: backbone features (computed once) for scope "head", else the inputs."""
        return self._submodule_forward("features", frozen, support_x) if self.scope == "head" else support_x

    def _support_loss(
        self,
        fast: Params,
        frozen: Params,
        inputs: torch.Tensor,
        support_y: torch.Tensor,
        example_mask: torch.Tensor | None = None,
        class_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss one inner step descends, as a function of the adapted parameters ``fast``."""
        if self.scope == "head":
            outputs = self._submodule_forward("head", fast, inputs)
        else:
            outputs = self.forward_with_weights(inputs, {**frozen, **fast})
        mask = class_mask if class_mask is not None else self.task_class_mask(support_y, outputs.shape[-1])
        return self.loss_value(mask_classes(outputs, mask), support_y, example_mask)

    def _submodule_forward(self, name: str, params: Params, x: torch.Tensor) -> torch.Tensor:
        prefix = f"{name}."
        sub_params = {k[len(prefix):]: v for k, v in {**self._buffers, **params}.items() if k.startswith(prefix)}
        return functional_call(getattr(self.model, name), sub_params, (x,))


def mask_classes(outputs: torch.Tensor, class_mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with absent classes (``class_mask`` 0.0) pushed to -1e9, so softmax gives them no mass."""
    if class_mask is None:
        return outputs
    return torch.where(class_mask > 0.5, outputs, torch.full_like(outputs, MASKED_LOGIT))
