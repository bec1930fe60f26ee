"""The adaptation routine: a head initialisation, then K full-batch SGD steps on the support loss.

One pure function of a parameter dictionary, :meth:`InnerLoop.inner_update`, is what meta-training
(vectorised over tasks with ``vmap``, or task by task), evaluation and every exported graph run, padding and
masks included, so what a device computes after export is exactly what the model was meta-trained to adapt with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from edgeadapt.runtime.format.vocab import HEAD_INITS

from .contract import check_backbone
from .errors import ConfigError
from .heads import is_per_task, prototype_head, zero_head
from .models import batch_statistics_in_use
from .scopes import adapted_predicate, first_adapted_layer, is_layered

Params = dict[str, torch.Tensor]

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}  # the functions of vocab.LOSSES
MASKED_LOGIT = -1e9
PAD_LABEL = -100  # label of a padding example: ignored by the loss (PyTorch's ignore_index)


@dataclass(frozen=True)
class InnerLoop:
    """Start the head as ``head_init`` says, then take ``inner_steps`` SGD steps of rate ``inner_lr`` on ``loss``.

    ``scope`` ("all", "last_block" or "head", see :mod:`~edgeadapt.sdk.scopes`) chooses what adapts; the
    frozen layers' output is computed once per task. ``head_init`` ("learned", "zeros" or "prototypes", see
    :mod:`~edgeadapt.sdk.heads`) chooses where the head starts; with zeros or prototypes the head has ``ways``
    outputs (default: the model's), whatever the model was trained with; ``head_scale`` multiplies a prototype
    head's logits (an inverse temperature, see :func:`~edgeadapt.sdk.heads.prototype_head`). The model itself
    is never modified: parameters are passed in as dictionaries. ``vectorise=False`` makes :meth:`adapt_batch`
    adapt task by task when no graph is recorded (see there). ``lr_scales`` multiplies ``inner_lr`` elementwise
    for the parameters it names (per-parameter rates, e.g. :func:`~edgeadapt.sdk.preconditioner.adam_lr_scales`);
    the others step at ``inner_lr``: still plain first-order SGD, with a constant rate per element.
    """

    model: nn.Module
    inner_lr: float
    inner_steps: int
    loss: str = "cross_entropy"
    scope: str = "all"
    head_init: str = "learned"
    ways: int | None = None
    head_scale: float = 1.0
    vectorise: bool = True
    lr_scales: Params | None = field(default=None, compare=False)
    _buffers: Params = field(init=False, repr=False, compare=False)
    _first: int = field(init=False, repr=False, compare=False)
    adapts: Callable[[str], bool] = field(init=False, repr=False, compare=False)
    _verified: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.head_init not in HEAD_INITS:
            raise ConfigError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if self.inner_steps < 0:
            raise ConfigError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if not self.inner_lr > 0:
            raise ConfigError(f"inner_lr must be > 0, got {self.inner_lr}")
        if batch_statistics_in_use(self.model):
            raise ConfigError("the model has batch-norm layers in training mode: call model.eval() first (the "
                              "inner loop normalises by their running statistics, so no example depends on another)")
        if is_per_task(self.head_init) and (not self.classifies or not is_layered(self.model)):
            raise ConfigError(f"head_init={self.head_init!r} needs a classifier with .features and .head")
        object.__setattr__(self, "_first", first_adapted_layer(self.model, self.scope))
        object.__setattr__(self, "adapts", adapted_predicate(self.model, self.scope))
        object.__setattr__(self, "_buffers", dict(self.model.named_buffers()))
        if self.ways is None:
            head = getattr(self.model, "head", None)
            object.__setattr__(self, "ways", getattr(head, "out_features", None))
        if not self.head_scale > 0:
            raise ConfigError(f"head_scale must be > 0, got {self.head_scale}")
        if self.ways is not None and self.ways < 1:
            raise ConfigError(f"ways must be >= 1, got {self.ways}")
        self._check_lr_scales()

    def _check_lr_scales(self) -> None:
        """``lr_scales`` names adapted parameters, fits their shapes and holds finite rates >= 0."""
        shapes = {k: v.shape for k, v in self.model.named_parameters()}
        for name, scale in (self.lr_scales or {}).items():
            if name not in shapes or not self.adapts(name):
                raise ConfigError(f"lr_scales names {name!r}, which is not a parameter this inner loop adapts")
            if is_per_task(self.head_init) and name.startswith("head."):
                if scale.numel() != 1:
                    raise ConfigError(f"lr_scales[{name!r}]: a head built per task takes one rate, not a tensor")
            elif not _broadcasts_to(scale.shape, shapes[name]):
                raise ConfigError(f"lr_scales[{name!r}] has shape {tuple(scale.shape)}, not one that fits "
                                  f"{tuple(shapes[name])}")
            if not (torch.isfinite(scale).all() and (scale >= 0).all()):
                raise ConfigError(f"lr_scales[{name!r}] must hold finite rates >= 0")

    def params(self) -> Params:
        """The model's current parameters, detached, as the dictionary the functions here take."""
        return {name: p.detach() for name, p in self.model.named_parameters()}

    @property
    def classifies(self) -> bool:
        """Whether the loss is classification (cross-entropy over logits), not regression."""
        return self.loss == "cross_entropy"

    def is_adapted(self, name: str) -> bool:
        """Whether the inner loop updates the parameter called ``name``."""
        return self.adapts(name)

    def forward_with_weights(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """The model's output for ``x`` with ``params`` in place of its own parameters: ``head(features(x))``
        for a model in the convention (:mod:`~edgeadapt.sdk.contract`), the path support examples take."""
        if is_layered(self.model):
            return self._head(params, self._layers(params, x, 0, len(self.model.features)))
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
        first_order: bool = False,
        step_masks: torch.Tensor | None = None,
    ) -> Params:
        """Parameters after the head initialisation and ``steps`` (default ``inner_steps``) SGD steps on one task.

        This is the routine that training, evaluation and export run. A task padded to a fixed size marks
        padding examples with ``example_mask`` 0.0 (or the label ``PAD_LABEL``) and absent classes with
        ``class_mask`` 0.0; by default a classification task's classes are labels ``0..max(support_y)``
        (see :meth:`task_class_mask`). Padding has no effect. Differentiable with respect to ``params``
        (second order) under ``torch.func`` and ``torch.autograd``; with ``first_order=True`` each step's gradient
        is taken by plain autograd instead, recording no graph of it: the same steps, for callers that never
        differentiate through them, outside ``vmap``. ``step_masks`` (steps, examples) makes step ``k`` descend
        the loss of the examples ``step_masks[k]`` selects (mini-batch steps, see :mod:`~edgeadapt.sdk.minibatches`);
        the head is still initialised from the whole support set.
        """
        steps = self.inner_steps if steps is None else steps
        if step_masks is not None and tuple(step_masks.shape) != (steps, support_x.shape[0]):
            raise ConfigError(f"step_masks must have shape (steps, examples) = ({steps}, {support_x.shape[0]}), "
                              f"got {tuple(step_masks.shape)}")
        example_mask, class_mask = self._masks(support_y, example_mask, class_mask)
        fast = {k: v for k, v in params.items() if self.adapts(k)}
        frozen = {k: v for k, v in params.items() if not self.adapts(k)}
        inputs = self._frozen_forward(frozen, support_x)
        fast = self._initial_head(fast, inputs, support_y, example_mask)
        gradient = self._first_order_gradient if first_order else grad(self._support_loss)
        for step in range(steps):
            g = gradient(fast, inputs, support_y, _step_mask(example_mask, step_masks, step), class_mask)
            fast = {k: fast[k] - self._rate(k) * g[k] for k in fast}
        return {**frozen, **fast}

    def _rate(self, name: str) -> float | torch.Tensor:
        """The step size of parameter ``name``: ``inner_lr``, times its ``lr_scales`` entry if it has one."""
        if self.lr_scales is None or name not in self.lr_scales:
            return self.inner_lr
        return self.inner_lr * self.lr_scales[name]

    def adapt_batch(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                    example_mask: torch.Tensor | None = None, class_mask: torch.Tensor | None = None,
                    step_masks: torch.Tensor | None = None) -> Params:
        """:meth:`inner_update` for a meta-batch of tasks at once (leading task dimension), with ``vmap``.

        Masks have the task dimension too: ``step_masks`` is (tasks, steps, examples). With ``vectorise=False``
        and no graph being recorded (first-order callers, under ``torch.no_grad``), task by task instead, first
        order and channels-last: on a CPU ``vmap`` turns each convolution into a grouped one, slower per operation
        than one task's convolutions (see docs/benchmarks.md).
        """
        if not self._verified:  # the model convention, once, on inputs shaped as the tasks'
            check_backbone(self.model, tuple(support_x.shape[2:]))
            object.__setattr__(self, "_verified", True)
        if not (self.vectorise or torch.is_grad_enabled()):
            return self._adapt_each(params, support_x, support_y, example_mask, class_mask, step_masks)
        masks = {"example_mask": example_mask, "class_mask": class_mask, "step_masks": step_masks}
        masks = {name: mask for name, mask in masks.items() if mask is not None}  # all mapped over tasks

        def one_task(task_x: torch.Tensor, task_y: torch.Tensor, task_masks: dict[str, torch.Tensor]) -> Params:
            return self.inner_update(params, task_x, task_y, **task_masks)
        return vmap(one_task, randomness="error")(support_x, support_y, masks)

    def _adapt_each(self, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                    example_mask: torch.Tensor | None, class_mask: torch.Tensor | None,
                    step_masks: torch.Tensor | None) -> Params:
        """:meth:`adapt_batch` one task at a time, first order, images and kernels laid out channels-last."""
        params = {k: _channels_last(v) for k, v in params.items()}
        adapted = [self.inner_update(params, _channels_last(support_x[i]), support_y[i], None,
                                     None if example_mask is None else example_mask[i],
                                     None if class_mask is None else class_mask[i], first_order=True,
                                     step_masks=None if step_masks is None else step_masks[i])
                   for i in range(len(support_x))]
        return {k: torch.stack([task[k] for task in adapted]).contiguous() for k in adapted[0]}

    def forward_batch(self, batched_params: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs for a task batch ``x`` (tasks, examples, ...) with per-task parameters."""
        return vmap(self.forward_with_weights, in_dims=(0, 0))(x, batched_params)

    def query_outputs(self, batched_params: Params, query_x: torch.Tensor, support_y: torch.Tensor) -> torch.Tensor:
        """Per-task outputs for the queries; for classification, logits of classes absent from a task are masked."""
        outputs = self.forward_batch(batched_params, query_x)
        if not self.classifies:
            return outputs
        return mask_classes(outputs, self.task_class_mask(support_y, outputs.shape[-1]).unsqueeze(-2))

    def probabilities(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                      class_mask: torch.Tensor | None = None, example_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Adapt the model's own parameters to one task, then the masked softmax over its queries.

        The PyTorch reference for what an artifact's ``adapt`` + ``predict`` return.
        """
        example_mask, class_mask = self._masks(support_y, example_mask, class_mask)
        params = self.inner_update(self.params(), support_x, support_y, example_mask=example_mask,
                                   class_mask=class_mask)
        with torch.no_grad():
            return self.predict_probabilities(query_x, params, class_mask)

    def predict_probabilities(self, x: torch.Tensor, params: Params, class_mask: torch.Tensor | None) -> torch.Tensor:
        """Softmax of the outputs for ``x`` with ``params``; absent classes (``class_mask`` 0.0) get no mass.

        What an artifact's ``predict`` graph computes from the parameters its ``adapt`` graph returned.
        """
        return torch.softmax(mask_classes(self.forward_with_weights(x, params), class_mask), dim=-1)

    def task_class_mask(self, support_y: torch.Tensor, n_outputs: int) -> torch.Tensor | None:
        """1.0 for the outputs ``0..max(support_y)`` a classification task uses, 0.0 for the rest (per task)."""
        if not self.classifies:
            return None
        top = support_y.max(dim=-1, keepdim=True).values
        return (torch.arange(n_outputs, device=support_y.device) <= top).float()

    def _masks(self, support_y: torch.Tensor, example_mask: torch.Tensor | None,
               class_mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Explicit masks, or the ones a task's labels imply (padding labelled ``PAD_LABEL``)."""
        if not self.classifies:
            return example_mask, class_mask
        if example_mask is None:
            example_mask = (support_y != PAD_LABEL).float()
        if class_mask is None:
            class_mask = self.task_class_mask(support_y, self.ways)
        return example_mask, class_mask

    def _frozen_forward(self, frozen: Params, x: torch.Tensor) -> torch.Tensor:
        """What the adapted layers see: the frozen layers' output (computed once per task), or ``x`` itself."""
        return self._layers(frozen, x, 0, self._first)

    def _features(self, fast: Params, inputs: torch.Tensor) -> torch.Tensor:
        """The adapted layers' features of ``inputs`` (the frozen layers' output)."""
        return self._layers(fast, inputs, self._first, len(self.model.features))

    def _layers(self, params: Params, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if start == stop or not is_layered(self.model):
            return x
        values = {**self._buffers, **params}
        for i in range(start, stop):
            prefix = f"features.{i}."
            layer_params = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
            x = functional_call(self.model.features[i], layer_params, (x,))
        return x

    def _head(self, fast: Params, features: torch.Tensor) -> torch.Tensor:
        head_params = {k[len("head."):]: v for k, v in {**self._buffers, **fast}.items() if k.startswith("head.")}
        return functional_call(self.model.head, head_params, (features,))

    def _initial_head(self, fast: Params, inputs: torch.Tensor, support_y: torch.Tensor,
                      example_mask: torch.Tensor | None) -> Params:
        """``fast`` with the head replaced as ``head_init`` says (unchanged for "learned")."""
        if not is_per_task(self.head_init):
            return fast
        features = self._features(fast, inputs)
        if self.head_init == "zeros":
            weight, bias = zero_head(features, self.ways)
        else:
            weight, bias = prototype_head(features, support_y, example_mask, self.ways, self.head_scale)
        return {**fast, "head.weight": weight, "head.bias": bias}

    def _first_order_gradient(self, fast: Params, *inputs: torch.Tensor | None) -> Params:
        """``grad(self._support_loss)(fast, *inputs)`` by plain autograd, with no graph of the gradient itself."""
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in fast.items()}
            values = torch.autograd.grad(self._support_loss(leaves, *inputs), list(leaves.values()),
                                         materialize_grads=True)
        return dict(zip(leaves, values))

    def _support_loss(self, fast: Params, inputs: torch.Tensor, support_y: torch.Tensor,
                      example_mask: torch.Tensor | None, class_mask: torch.Tensor | None) -> torch.Tensor:
        """The loss one inner step descends, as a function of the adapted parameters ``fast``."""
        if is_layered(self.model):
            outputs = self._head(fast, self._features(fast, inputs))
        else:
            outputs = self.forward_with_weights(inputs, fast)
        return self.loss_value(mask_classes(outputs, class_mask), support_y, example_mask)


# How a checkpoint with no inner loop of its own (a pretraining run) adapts: its validation readout, a prototype
# head and no step (any inner_lr; override inner_steps to take steps).
PRETRAINED_READOUT = {"inner_lr": 0.1, "inner_steps": 0, "loss": "cross_entropy", "scope": "head",
                      "head_init": "prototypes", "head_scale": 1.0}


def adaptation_settings(training: dict, **overrides: object) -> dict[str, object]:
    """The inner-loop settings of a checkpoint's ``training`` config, with any non-None ``overrides`` applied.

    A checkpoint that has none (``training`` empty: a pretraining run) adapts as its readout,
    :data:`PRETRAINED_READOUT`. The one resolver behind ``edgeadapt eval``, ``export`` and
    :func:`inner_loop_from_config`.
    """
    base = PRETRAINED_READOUT if not training else {
        "inner_lr": training.get("inner_lr"), "inner_steps": training.get("inner_steps"),
        "loss": training.get("loss", "cross_entropy"), "scope": training.get("scope", "all"),
        "head_init": training.get("head_init", "learned"), "head_scale": training.get("head_scale", 1.0)}
    settings = {**base, **{k: v for k, v in overrides.items() if v is not None}}
    if settings["inner_lr"] is None or settings["inner_steps"] is None:
        raise ConfigError("the checkpoint has no inner-loop settings (inner_lr, inner_steps)")
    return settings


def inner_loop_from_config(model: nn.Module, training: dict, lr_scales: Params | None = None,
                           **overrides: object) -> InnerLoop:
    """The inner loop a checkpoint's ``training`` config (and ``lr_scales``, its per-parameter rates) describes,
    with any field in ``overrides`` replaced (``None`` values are ignored; see :func:`adaptation_settings`).
    Under a narrower ``scope`` than the run's, the rates of parameters that no longer adapt are dropped."""
    ways = overrides.pop("ways", None)
    settings = adaptation_settings(training, **overrides)
    rates = lr_scales_within(model, str(settings["scope"]), lr_scales)
    return InnerLoop(model, **settings, ways=ways, lr_scales=rates)  # type: ignore[arg-type]


def lr_scales_within(model: nn.Module, scope: str, lr_scales: Params | None) -> Params | None:
    """The entries of ``lr_scales`` for parameters that ``scope`` adapts (None if there are none)."""
    if lr_scales is None:
        return None
    adapts = adapted_predicate(model, scope)
    return {k: v for k, v in lr_scales.items() if adapts(k)} or None


def _step_mask(example_mask: torch.Tensor | None, step_masks: torch.Tensor | None,
               step: int) -> torch.Tensor | None:
    """The examples step ``step`` descends: the real ones (``example_mask``), within its mini-batch if any."""
    if step_masks is None:
        return example_mask
    return step_masks[step] if example_mask is None else example_mask * step_masks[step]


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without changing it."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor (images, convolution kernels) in channels-last memory layout; others unchanged."""
    return tensor.to(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def mask_classes(outputs: torch.Tensor, class_mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with absent classes (``class_mask`` 0.0) pushed to -1e9, so softmax gives them no mass."""
    if class_mask is None:
        return outputs
    return torch.where(class_mask > 0.5, outputs, torch.full_like(outputs, MASKED_LOGIT))
