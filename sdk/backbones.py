"""Backbones by name: a registry of builders that size a network for an input description.

``edgeadapt pretrain --model NAME`` and ``edgeadapt train --model NAME`` look names up here; a dataset recipe
names its default. Each builder takes what one input is (:class:`~edgeadapt.runtime.format.inputs.InputSpec`) and
:class:`BackboneSettings`, and returns a registered model (``@register_model``, so checkpoints rebuild it) that
follows the convention of :mod:`~edgeadapt.sdk.contract`. Add yours with :func:`register_backbone` in a module
that ``edgeadapt --import MODULE`` (or an ``edgeadapt.plugins`` entry point) imports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from torch import nn

from edgeadapt.runtime.format.inputs import InputSpec

from .errors import ConfigError
from .models import MLP, Conv4
from .networks import MobileNetV1, MobileNetV2, ResNet12, resnet12_widths

log = logging.getLogger("edgeadapt")


@dataclass(frozen=True)
class BackboneSettings:
    """What a backbone builder is asked for.

    Args:
        ways: outputs of the head (classes of a pretraining set, or ways of a meta-learned head).
        width: the network's width: filters per layer (Conv4), of the first stage (ResNet-12, MobileNets), units
            (MLP); None for the backbone's own default.
        activation: the hidden activation's name; None for the backbone's own default.
        norm: ``batch`` or ``group`` where the backbone offers both; None for the backbone's own default.
        feature_norm: L2-normalise the features and scale them to this norm (cosine pretraining), or None.
    """

    ways: int
    width: int | None = None
    activation: str | None = None
    norm: str | None = None
    feature_norm: float | None = None


BackboneBuilder = Callable[[InputSpec, BackboneSettings], nn.Module]
BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str, builder: BackboneBuilder) -> BackboneBuilder:
    """Make ``builder`` nameable as ``--model name``; returns it."""
    if name in BACKBONES and BACKBONES[name] is not builder:
        raise ConfigError(f"a backbone called {name!r} is already registered")
    BACKBONES[name] = builder
    return builder


def build_backbone(name: str, spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    """The backbone ``name`` sized for inputs ``spec``, in eval mode; ConfigError listing the names otherwise."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown model {name!r}; registered: {sorted(BACKBONES)} (register yours with "
                          "edgeadapt.sdk.backbones.register_backbone in a module given to --import)")
    return BACKBONES[name](spec, settings).eval()


def picture_size(spec: InputSpec, name: str) -> tuple[int, int]:
    """``(channels, side)`` of square ``CHW`` inputs; ConfigError naming the backbone otherwise."""
    if spec.layout != "CHW" or spec.shape[1] != spec.shape[2]:
        raise ConfigError(f"{name} takes square (channels, side, side) inputs, not {spec.shape}: resize the data "
                          "(--image-size) or register a backbone of your own")
    return spec.shape[0], spec.shape[1]


def _conv4(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    channels, side = picture_size(spec, "conv4")
    return Conv4(ways=settings.ways, in_channels=channels, hidden=settings.width or 64, image_size=side,
                 activation=settings.activation or "elu", feature_norm=settings.feature_norm,
                 norm=settings.norm or "group")


def _mlp(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    if spec.layout != "C":
        raise ConfigError(f"mlp takes vectors (layout C), not {spec.layout} inputs of shape {spec.shape}")
    width = settings.width or 40
    return MLP(spec.shape[0], (width, width), settings.ways, activation=settings.activation or "relu")


def _resnet12(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    channels, side = picture_size(spec, "resnet12")
    if side < 16:
        raise ConfigError(f"resnet12 halves the side four times, so it takes inputs of side 16 or more, not {side}")
    return ResNet12(ways=settings.ways, in_channels=channels, widths=resnet12_widths(settings.width or 64),
                    activation=settings.activation or "leaky_relu", norm=settings.norm or "batch",
                    feature_norm=settings.feature_norm)


def _mobilenet_v1(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    channels, _ = picture_size(spec, "mobilenet_v1")
    return MobileNetV1(ways=settings.ways, in_channels=channels, width=settings.width or 32,
                       activation=settings.activation or "relu6", norm=settings.norm or "batch",
                       feature_norm=settings.feature_norm)


# What the ImageNet MobileNet V1 of a TFLite file takes (``edgeadapt import-weights`` prints the file's own): uint8
# pixels q read as (q - 128) / 128, i.e. prepared pixels in [0, 1] mapped to [-1, 127/128].
IMAGENET_VALUE_RANGE = (-1.0, 127 / 128)


def _mobilenet_v1_imagenet(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    """The ImageNet MobileNet V1 (width 1.0) that ``edgeadapt import-weights`` fills from a TFLite file: all 13
    blocks, width 32, ReLU6, batch norm (the folded biases), TensorFlow's SAME padding. ``--hidden``,
    ``--activation`` and ``--norm`` would not fit the imported weights, so only their defaults are accepted."""
    channels, side = picture_size(spec, "mobilenet_v1_imagenet")
    if channels != 3 or side < 32:
        raise ConfigError(f"mobilenet_v1_imagenet takes RGB pictures of side 32 or more (224 as trained), not "
                          f"{spec.shape}")
    for name, value, fixed in (("width", settings.width, 32), ("activation", settings.activation, "relu6"),
                               ("norm", settings.norm, "batch")):
        if value not in (None, fixed):
            raise ConfigError(f"mobilenet_v1_imagenet has the imported model's {name}, {fixed}; got {value!r}")
    if spec.value_range != IMAGENET_VALUE_RANGE or spec.mean is not None:
        log.warning("mobilenet_v1_imagenet was trained on pixels in %s; these inputs span %s%s (read a folder with "
                    "--value-range %g %g)", IMAGENET_VALUE_RANGE, spec.value_range,
                    " (then normalised)" if spec.mean is not None else "", *IMAGENET_VALUE_RANGE)
    return MobileNetV1(ways=settings.ways, in_channels=3, width=32, layout="full", activation="relu6", norm="batch",
                       feature_norm=settings.feature_norm, padding="same")


def _mobilenet_v2(spec: InputSpec, settings: BackboneSettings) -> nn.Module:
    channels, _ = picture_size(spec, "mobilenet_v2")
    return MobileNetV2(ways=settings.ways, in_channels=channels, width=settings.width or 32,
                       activation=settings.activation or "relu6", norm=settings.norm or "batch",
                       feature_norm=settings.feature_norm)


register_backbone("conv4", _conv4)
register_backbone("mlp", _mlp)
register_backbone("resnet12", _resnet12)
register_backbone("mobilenet_v1", _mobilenet_v1)
register_backbone("mobilenet_v2", _mobilenet_v2)
register_backbone("mobilenet_v1_imagenet", _mobilenet_v1_imagenet)
