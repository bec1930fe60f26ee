"""The built-in few-shot backbones beyond Conv4 and the MLP: ResNet-12, MobileNetV1 and MobileNetV2.

Each follows the model convention (:mod:`~edgeadapt.sdk.contract`): ``features`` is an ``nn.Sequential`` whose
items are the stem, then one module per residual, depthwise-separable or inverted-residual block, then global
average pooling and ``nn.Flatten()`` (and optionally :class:`~edgeadapt.sdk.models.ScaledNormalize`); ``head`` is an
``nn.Linear``. Because every block is one item of ``features``, scope ``"last_block"`` (:mod:`~edgeadapt.sdk.scopes`)
adapts exactly the last block, the pooling after it and the head. Every network is registered
(``@register_model``) with its constructor arguments in ``self.config``, so checkpoints rebuild it; the backbone
registry (:mod:`~edgeadapt.sdk.backbones`) sizes them for a dataset's inputs.

The MobileNets take ``padding``: ``"symmetric"`` (default, PyTorch's: ``kernel // 2`` on every side) or ``"same"``
(TensorFlow's SAME, what TFLite models were trained with: a stride-2 convolution of an even side pads 0 before and
1 after), so that weights imported from a TFLite file (:mod:`~edgeadapt.sdk.importers`) compute what they did there.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .errors import ConfigError
from .models import ACTIVATIONS, NORMS, ScaledNormalize, _check_activation, register_model

RESNET12_WIDTHS = (64, 160, 320, 640)  # channels of the four stages (MetaOptNet's ResNet-12)
# (output channels as multiples of the stem's width, stride) of each depthwise-separable block
MOBILENET_V1_LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    # the 13 blocks of Howard et al. (2017): 1/32 of the input side, 1024 features at width 32
    "full": ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (16, 1), (16, 1), (16, 1), (16, 1),
             (32, 2), (32, 1)),
    # the first 6: 84x84 inputs end at 6x6 (1/16), 512 features at width 32
    "compact": ((2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2)),
}
# (expansion t, output channels c at stem width 32, repeats n, first stride s) of each stage, Sandler et al. (2018)
MOBILENET_V2_LAYOUTS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    # all 17 inverted-residual blocks (the final 1x1 convolution to 1280 channels is left out: 320 features)
    "full": ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1)),
    # 8 blocks: 84x84 inputs end at 3x3 (1/32), 128 features at width 32
    "compact": ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 128, 1, 2)),
}


def _check_common(activation: str, norm: str, feature_norm: float | None) -> None:
    """ConfigError for an unknown activation or normalisation, or a feature norm that is not positive."""
    _check_activation(activation)
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    if feature_norm is not None and not feature_norm > 0:
        raise ConfigError(f"feature_norm must be > 0 or None, got {feature_norm}")


PADDINGS = ("symmetric", "same")  # the MobileNets' ``padding`` choices (see the module's docstring)


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {list(PADDINGS)}, got {padding!r}")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis of ``size``: ``(before, after)``, the odd one after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's SAME pads (zeros, the odd one at the bottom and right), with plain
    ``nn.functional.pad`` + ``conv2d`` so that torch.export and ONNX export take it; its parameters are named as
    ``nn.Conv2d``'s (built with ``padding=0``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = nn.functional.pad(x, (left, right, top, bottom))
        return self._conv_forward(x, self.weight, self.bias)


def _conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int, norm: str,
               groups: int = 1, padding: str = "symmetric") -> list[nn.Module]:
    """A bias-free ``kernel`` x ``kernel`` convolution (padded to keep the side at stride 1: ``padding``
    ``"symmetric"``, PyTorch's ``kernel // 2``, or TensorFlow's ``"same"``) and its normalisation."""
    if padding == "same" and stride > 1:  # at stride 1 and an odd kernel, SAME is symmetric
        conv: nn.Conv2d = SameConv2d(in_channels, out_channels, kernel, stride=stride, padding=0, groups=groups,
                                     bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups,
                         bias=False)
    return [conv, NORMS[norm](out_channels)]


class GlobalAveragePool(nn.Module):
    """The mean of each channel over its positions: ``(N, C, H, W) -> (N, C, 1, 1)``.

    What ``nn.AdaptiveAvgPool2d(1)`` computes, as one plain mean: PyTorch's adaptive pooling restrides its result
    in place (``as_strided_``), and the gradient of that is an ``as_strided_scatter``, for which ExecuTorch 1.5 has
    no kernel (the adapt program of a last block ending on a pooled map larger than 1x1 would not load).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def _pooled_features(blocks: Sequence[nn.Module], feature_norm: float | None) -> nn.Sequential:
    """``blocks``, then global average pooling and ``nn.Flatten()`` (and :class:`ScaledNormalize`): the features."""
    return nn.Sequential(*blocks, GlobalAveragePool(), nn.Flatten(),
                         *([ScaledNormalize(feature_norm)] if feature_norm is not None else []))


class ResidualBlock(nn.Module):
    """ResNet-12's block: three [3x3 conv, norm, activation] (the last activation after the sum), a 1x1 conv + norm
    shortcut, then 2x2 max pooling (stride 2), all one module so that scope ``"last_block"`` adapts all of it."""

    def __init__(self, in_channels: int, out_channels: int, activation: str, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_norm(in_channels, out_channels, 3, 1, norm), ACTIVATIONS[activation](),
            *_conv_norm(out_channels, out_channels, 3, 1, norm), ACTIVATIONS[activation](),
            *_conv_norm(out_channels, out_channels, 3, 1, norm))
        self.shortcut = nn.Sequential(*_conv_norm(in_channels, out_channels, 1, 1, norm))
        self.activation = ACTIVATIONS[activation]()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.body(x) + self.shortcut(x)))


@register_model
class ResNet12(nn.Module):
    """ResNet-12 (Oreshkin et al., 2018; Lee et al., 2019): four :class:`ResidualBlock` s, each halving the side with
    2x2 max pooling, then global average pooling; a linear head.

    With the default widths (64, 160, 320, 640), 3 input channels and 5 ways it has 12,427,525 parameters (any input
    side from 16 up; 84x84 ends at 5x5 before pooling). Leaky ReLU (slope 0.1) and batch norm by default.
    The max pooling of the last block is exported with its gradient (scope ``"last_block"``): export rewrites
    ``max_pool2d_with_indices_backward`` as a scatter-add (``edgeadapt.export.decompositions.max_pool_backward``)
    that routes each output's gradient to the position its forward pass chose, ties included, as autograd does.
    """

    def __init__(self, ways: int = 5, in_channels: int = 3, widths: Sequence[int] = RESNET12_WIDTHS,
                 activation: str = "leaky_relu", norm: str = "batch", feature_norm: float | None = None):
        super().__init__()
        _check_common(activation, norm, feature_norm)
        if len(widths) != 4 or min(widths) < 1:
            raise ConfigError(f"ResNet12 takes four positive stage widths, got {list(widths)}")
        self.config = {"ways": ways, "in_channels": in_channels, "widths": list(widths), "activation": activation,
                       "norm": norm, "feature_norm": feature_norm}
        channels = [in_channels, *widths]
        self.features = _pooled_features(
            [ResidualBlock(channels[i], channels[i + 1], activation, norm) for i in range(4)], feature_norm)
        self.head = nn.Linear(widths[-1], ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet12_widths(first: int) -> tuple[int, int, int, int]:
    """The four stage widths for a first stage of ``first`` channels, in the default's proportions (64:160:320:640)."""
    return first, first * 5 // 2, first * 5, first * 10


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1's block: a depthwise 3x3 convolution (``groups`` = channels) with its norm and activation, then a
    pointwise 1x1 convolution with its norm and activation."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str, norm: str,
                 padding: str = "symmetric"):
        super().__init__(*_conv_norm(in_channels, in_channels, 3, stride, norm, groups=in_channels, padding=padding),
                         ACTIVATIONS[activation](),
                         *_conv_norm(in_channels, out_channels, 1, 1, norm), ACTIVATIONS[activation]())


def _stem(in_channels: int, width: int, activation: str, norm: str, padding: str = "symmetric") -> nn.Sequential:
    """A MobileNet's stem: a 3x3 convolution of stride 2, its norm and activation."""
    return nn.Sequential(*_conv_norm(in_channels, width, 3, 2, norm, padding=padding), ACTIVATIONS[activation]())


class _MobileNet(nn.Module):
    """What both MobileNets share: their arguments, a stride-2 stem of ``width`` channels, the blocks
    :meth:`_blocks` lays out for ``layout`` (one of ``LAYOUTS``), global average pooling and a linear head; every
    strided convolution padded as ``padding`` says (``"symmetric"``, the default, or TensorFlow's ``"same"``)."""

    LAYOUTS: dict[str, tuple[tuple[int, ...], ...]] = {}

    def __init__(self, ways: int = 5, in_channels: int = 3, width: int = 32, layout: str = "compact",
                 activation: str = "relu6", norm: str = "batch", feature_norm: float | None = None,
                 padding: str = "symmetric"):
        super().__init__()
        _check_common(activation, norm, feature_norm)
        _check_padding(padding)
        if layout not in self.LAYOUTS:
            raise ConfigError(f"layout must be one of {sorted(self.LAYOUTS)}, got {layout!r}")
        if width < 1:
            raise ConfigError(f"width must be >= 1, got {width}")
        self.config = {"ways": ways, "in_channels": in_channels, "width": width, "layout": layout,
                       "activation": activation, "norm": norm, "feature_norm": feature_norm, "padding": padding}
        blocks, channels = self._blocks(width, self.LAYOUTS[layout], activation, norm, padding)
        stem = _stem(in_channels, width, activation, norm, padding)
        self.features = _pooled_features([stem, *blocks], feature_norm)
        self.head = nn.Linear(channels, ways)

    def _blocks(self, width: int, layout: tuple[tuple[int, ...], ...], activation: str,
                norm: str, padding: str) -> tuple[list[nn.Module], int]:
        """The blocks after a stem of ``width`` channels, and the channels of the last one."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model
class MobileNetV1(_MobileNet):
    """MobileNetV1 (Howard et al., 2017): a stride-2 stem, :class:`DepthwiseSeparable` blocks, global average pooling;
    a linear head: ``MobileNetV1(ways=5, in_channels=3, width=32, layout="compact", activation="relu6",
    norm="batch", feature_norm=None, padding="symmetric")``.

    ``width`` is the stem's channels (32 in the paper: width multiplier ``width / 32``); block ``i`` has
    ``MOBILENET_V1_LAYOUTS[layout][i][0] * width`` channels. ``layout="compact"`` (default) keeps the first 6 of the
    13 blocks, enough for 84x84 few-shot inputs (6x6 before pooling, 512 features): 271,685 parameters for 3 input
    channels and 5 ways; ``"full"`` is the paper's 13 blocks (1024 features, 3,212,101 parameters).
    ``padding="same"`` pads as TensorFlow does (the backbone ``mobilenet_v1_imagenet``, whose weights
    ``edgeadapt import-weights`` reads from a TFLite file, uses it); the parameters are the same either way.
    """

    LAYOUTS = MOBILENET_V1_LAYOUTS

    def _blocks(self, width: int, layout: tuple[tuple[int, ...], ...], activation: str,
                norm: str, padding: str) -> tuple[list[nn.Module], int]:
        blocks: list[nn.Module] = []
        channels = width
        for multiple, stride in layout:
            blocks.append(DepthwiseSeparable(channels, multiple * width, stride, activation, norm, padding))
            channels = multiple * width
        return blocks, channels


class InvertedResidual(nn.Module):
    """MobileNetV2's block: a 1x1 expansion by ``expansion`` (norm, activation; none when it is 1), a depthwise 3x3
    convolution (norm, activation), a linear 1x1 projection (norm), and the input added back when the shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, activation: str, norm: str,
                 padding: str = "symmetric"):
        super().__init__()
        hidden = in_channels * expansion
        expand = [*_conv_norm(in_channels, hidden, 1, 1, norm), ACTIVATIONS[activation]()] if expansion != 1 else []
        self.layers = nn.Sequential(*expand, *_conv_norm(hidden, hidden, 3, stride, norm, groups=hidden,
                                                         padding=padding),
                                    ACTIVATIONS[activation](), *_conv_norm(hidden, out_channels, 1, 1, norm))
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


@register_model
class MobileNetV2(_MobileNet):
    """MobileNetV2 (Sandler et al., 2018): a stride-2 stem, :class:`InvertedResidual` blocks, global average pooling;
    a linear head: ``MobileNetV2(ways=5, in_channels=3, width=32, layout="compact", activation="relu6",
    norm="batch", feature_norm=None, padding="symmetric")``.

    ``width`` is the stem's channels (32 in the paper); every stage's channels scale by ``width / 32`` (rounded, at
    least 1; no rounding to multiples of 8). ``layout="compact"`` (default) has 8 blocks for 84x84 few-shot inputs
    (3x3 before pooling, 128 features): 195,589 parameters for 3 input channels and 5 ways; ``"full"`` has the
    paper's 17 blocks without its final 1x1 convolution to 1280 channels (320 features, 1,813,317 parameters).
    ``activation`` is ``"relu6"`` (the paper's, default) or ``"hardswish"`` (MobileNetV3's).
    """

    LAYOUTS = MOBILENET_V2_LAYOUTS

    def _blocks(self, width: int, layout: tuple[tuple[int, ...], ...], activation: str,
                norm: str, padding: str) -> tuple[list[nn.Module], int]:
        blocks: list[nn.Module] = []
        channels = width
        for expansion, base, repeats, stride in layout:
            out = max(1, round(base * width / 32))
            for i in range(repeats):
                blocks.append(InvertedResidual(channels, out, stride if i == 0 else 1, expansion, activation, norm,
                                               padding))
                channels = out
        return blocks, channels
