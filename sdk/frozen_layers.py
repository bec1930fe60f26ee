"""Meta-training and evaluation that compute the frozen layers once per example instead of once per task.

Under a scope that adapts the last block or the head (:mod:`~edgeadapt.sdk.scopes`), the layers before the cut
never change inside a task; with Reptile they never change at all (its meta-gradient is the adapted parameters'
difference, zero for what does not adapt). Their output for an example is then the same in every task that draws
it, so it can be computed once for the whole dataset: :func:`cache_frozen_layers` encodes a sampler's examples
with those layers and returns the model's adapted part (its later layers and head, the same modules, so training
the part trains the model) with a sampler of the same tasks over the encoded examples. The inner loop runs
exactly as before on the part; only what it would have recomputed per task is read instead. An ImageNet
MobileNet V1 adapting its last block at 224 x 224 spends 91% of a forward pass in the frozen layers.

What the outer loop trains changes for algorithms whose meta-gradient reaches the frozen layers (FOMAML, MAML
train them through the query loss): with the cache they stay as they are. Examples are read as stored, so
per-draw augmentation has no place here; :func:`encoded_part` can instead encode each example in several fixed
views (as stored and distorted), which pretraining uses (``PretrainConfig.views``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from edgeadapt.runtime.format.inputs import InputSpec

from .contract import Backbone
from .datasets.base import ClassDataset
from .errors import ConfigError
from .inner_loop import InnerLoop
from .scopes import first_adapted_layer, is_layered
from .tasks import EpisodeSampler

log = logging.getLogger(__name__)
ENCODE_BATCH = 128  # examples through the frozen layers at a time
LAYOUTS = {1: "C", 2: "FT", 3: "CHW"}  # an encoded example's axes by their number


def adapted_part(model: nn.Module, scope: str) -> tuple[nn.Sequential, Backbone]:
    """``model``'s frozen layers under ``scope``, and the rest as a model in the convention.

    The part's layers and head are ``model``'s own modules (parameters shared, not copied): training it trains
    ``model``. Parameter names differ by the cut (``features.13.x`` of the model is ``features.0.x`` of a part cut
    at 13); :func:`part_name` maps them.
    """
    if not is_layered(model) or scope == "all":
        raise ConfigError(f"caching frozen layers needs a model with .features and .head and a scope that freezes "
                          f"some of them (last_block or head), got scope={scope!r}")
    first = first_adapted_layer(model, scope)
    layers = list(model.features)
    return nn.Sequential(*layers[:first]), Backbone(nn.Sequential(*layers[first:]), model.head)


def deployed_split(model: nn.Module, scope: str) -> tuple[nn.Sequential | None, nn.Module]:
    """The layers an artifact computes once per input (its ``embed`` program) and the part it adapts and predicts
    with: :func:`adapted_part`'s two pieces, or ``(None, model)`` where ``scope`` freezes no layer (``"all"``, or a
    model without ``.features``/``.head``). The same cut that :func:`cache_frozen_layers` trains through."""
    if scope == "all" or not is_layered(model) or first_adapted_layer(model, scope) == 0:
        return None, model
    return adapted_part(model, scope)


def split_inner_loop(inner: InnerLoop) -> tuple[nn.Sequential | None, InnerLoop]:
    """``inner``'s frozen layers (:func:`deployed_split`) and the same inner loop on the part after them: for
    features of any input, it adapts and predicts exactly as ``inner`` does for the input."""
    frozen, part = deployed_split(inner.model, inner.scope)
    if frozen is None:
        return None, inner
    return frozen, replace(inner, model=part, lr_scales=part_scales(inner.model, inner.scope, inner.lr_scales))


def part_name(model: nn.Module, scope: str, name: str) -> str:
    """The name that ``model``'s adapted parameter ``name`` has in :func:`adapted_part`'s part."""
    if not name.startswith("features."):
        return name
    _, index, rest = name.split(".", 2)
    return f"features.{int(index) - first_adapted_layer(model, scope)}.{rest}"


Distortion = Callable[[torch.Tensor], torch.Tensor]  # decoded inputs -> distorted inputs of the same shape


def part_scales(model: nn.Module, scope: str,
                scales: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """Per-parameter rates named as ``model``'s, renamed for :func:`adapted_part`'s part (None stays None)."""
    return None if scales is None else {part_name(model, scope, k): v for k, v in scales.items()}


@torch.no_grad()
def encode(layers: nn.Sequential, classes: ClassDataset, device: torch.device | None = None,
           distort: Distortion | None = None) -> ClassDataset:
    """``classes`` with every example replaced by ``layers``' output for it (float32, the same classes and order);
    with ``distort``, for the example as ``distort`` changes it (one draw per example)."""
    device = device or next(iter(layers.parameters()), torch.empty(0)).device
    layers = layers.to(device).eval()
    distort = distort or (lambda x: x)
    chunks = [layers(distort(classes.decode(classes.examples[i: i + ENCODE_BATCH])).to(device)).float().cpu()
              for i in range(0, len(classes.examples), ENCODE_BATCH)]
    examples = torch.cat(chunks).contiguous()
    shape = tuple(examples.shape[1:])
    if len(shape) not in LAYOUTS:
        raise ConfigError(f"the frozen layers give examples of shape {shape}; caching takes 1 to 3 axes")
    low, high = float(examples.min()), float(examples.max())
    spec = InputSpec(shape, modality="vector", layout=LAYOUTS[len(shape)], value_range=(low, max(high, low + 1.0)))
    return ClassDataset(examples, classes.class_sizes, classes.class_names, classes.groups, spec)


def with_views(views: list[ClassDataset]) -> ClassDataset:
    """One dataset of several encodings of the same examples: each class holds all its examples' views."""
    first = views[0]
    rows = [v * len(first.examples) + i for c, start in enumerate(first.starts.tolist()) for v in range(len(views))
            for i in range(start, start + first.class_sizes[c])]
    examples = torch.cat([view.examples for view in views])[rows].contiguous()
    return replace(first, examples=examples, class_sizes=tuple(len(views) * n for n in first.class_sizes))


def frozen_state(model: nn.Module, scope: str) -> dict[str, torch.Tensor]:
    """A copy of the weights and statistics of ``model``'s layers that ``scope`` freezes (what an encoding
    depends on: a cache made from other values is stale)."""
    return {k: v.clone() for k, v in adapted_part(model, scope)[0].state_dict().items()}


def encoded_part(model: nn.Module, classes: ClassDataset, scope: str, device: torch.device | None = None,
                 views: int = 1, distort: Distortion | None = None) -> tuple[Backbone, ClassDataset]:
    """``model``'s part that ``scope`` adapts (:func:`adapted_part`), and ``classes`` encoded by the layers before it.

    ``views`` > 1 encodes every example ``views`` times, as stored and ``views - 1`` times distorted by ``distort``
    (e.g. a random crop and mirror of a photo): each class then holds ``views`` times its examples."""
    if views < 1 or (views > 1 and distort is None):
        raise ConfigError(f"views must be >= 1, and more than 1 needs a distortion; got {views}")
    frozen, part = adapted_part(model, scope)
    log.info("computing the frozen layers once for %d examples x %d views", len(classes.examples), views)
    encoded = [encode(frozen, classes, device, distort if v else None) for v in range(views)]
    return part, encoded[0] if views == 1 else with_views(encoded)


def cache_frozen_layers(model: nn.Module, sampler: object, scope: str,
                        device: torch.device | None = None) -> tuple[Backbone, EpisodeSampler]:
    """``model``'s adapted part under ``scope`` and a sampler drawing ``sampler``'s tasks (same seed, same
    examples) from its examples encoded by the frozen layers. ``sampler`` must be an
    :class:`~edgeadapt.sdk.tasks.EpisodeSampler` (a dataset of examples to encode)."""
    if not isinstance(sampler, EpisodeSampler):
        raise ConfigError(f"caching frozen layers needs an EpisodeSampler over a dataset, got {type(sampler).__name__}")
    part, encoded = encoded_part(model, sampler.dataset, scope, device)
    return part, sampler.over(encoded)
