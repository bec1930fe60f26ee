"""Networks for few-shot learning, and a registry so checkpoints can rebuild them without pickling."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from .errors import ConfigError, ConfigTypeError

_REGISTRY: dict[str, type[nn.Module]] = {}

def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make ``cls`` rebuildable by name from a checkpoint's JSON config.

    The class must keep its constructor keyword arguments in ``self.config`` (a JSON-able dict).
    """
    _REGISTRY[cls.__name__] = cls
    return cls

def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate the registered model ``name`` with keyword arguments ``config``, in eval mode.

    Eval mode is the mode the inner loop, meta-training and evaluation need (batch norm normalises by its
    running statistics); :func:`~edgeadapt.sdk.pretraining.pretrain` switches to training mode itself.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**config).eval()

def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": ...}`` describing how to rebuild ``model``."""
    name = type(model).__name__
    if _REGISTRY.get(name) is not type(model) or not isinstance(getattr(model, "config", None), dict):
        raise ConfigTypeError(
            f"{name} cannot be saved: decorate it with @register_model and store its "
            "constructor arguments in self.config"
        )
    return {"name": name, "config": dict(model.config)}


class LeakyReLU(nn.LeakyReLU):
    """Leaky ReLU with ResNet-12's negative slope, 0.1 (PyTorch's default is 0.01)."""

    def __init__(self) -> None:
        super().__init__(negative_slope=0.1)


# ReLU's gradient jumps at 0, so the adapted weights are a discontinuous function of the support set:
# two float32 implementations that round differently can disagree by far more than their rounding
# on tasks that sit near a jump. ELU's gradient is continuous (see docs/deploy.md, "Known limits").
# ReLU6 (jumps at 0 and 6), leaky ReLU (at 0) and hardswish (at -3 and 3) jump too; the MobileNets and
# ResNet-12 (edgeadapt.sdk.networks) use them as their papers do.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "relu6": nn.ReLU6,
                                           "hardswish": nn.Hardswish, "leaky_relu": LeakyReLU}


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")


# "group": GroupNorm over all channels, which normalises each example by its own statistics. "batch":
# BatchNorm, which normalises by batch statistics while pretraining and by the running statistics it kept
# afterwards (in eval mode, which the inner loop requires): a fixed per-channel affine map, so each example's
# features still depend on that example alone (non-transductive). On Omniglot, batch norm's features are
# markedly better (docs/benchmarks.md, "Pretraining variants").
NORMS: dict[str, Callable[[int], nn.Module]] = {"group": lambda channels: nn.GroupNorm(1, channels),
                                                "batch": nn.BatchNorm2d}


def _conv_block(in_channels: int, out_channels: int, activation: str, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        NORMS[norm](out_channels),
        ACTIVATIONS[activation](),
    )


def batch_statistics_in_use(model: nn.Module) -> bool:
    """Whether some batch-norm layer of ``model`` is in training mode (normalising by the batch at hand)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())

class ScaledNormalize(nn.Module):
    """Features rescaled to a fixed Euclidean norm: ``scale * x / ||x||`` (per example, over the last dimension)."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.normalize(x, dim=-1)


@register_model
class Conv4(nn.Module):
    """Four [3x3 conv, stride 2, normalisation, activation] blocks and a linear head (Reptile's Omniglot net).

    With 64 filters, one input channel, 28x28 inputs and 5 ways it has 113,221 parameters.
    The head is ``self.head``; everything before it is ``self.features``. ``activation`` is
    ``"relu"`` (the paper's) or ``"elu"`` (smooth, for adaptation that rounding cannot tip; see ``ACTIVATIONS``).
    With ``feature_norm`` the features are L2-normalised and scaled to that norm (see ``ScaledNormalize``), so
    prototypes compare directions, as the cosine classifier of :mod:`~edgeadapt.sdk.pretraining` trains them to.
    ``norm`` is ``"group"`` (GroupNorm over all channels) or ``"batch"`` (BatchNorm, see ``NORMS``).
    """

    def __init__(self, ways: int = 5, in_channels: int = 1, hidden: int = 64, image_size: int = 28,
                 activation: str = "relu", feature_norm: float | None = None, norm: str = "group"):
        super().__init__()
        _check_activation(activation)
        if feature_norm is not None and not feature_norm > 0:
            raise ConfigError(f"feature_norm must be > 0 or None, got {feature_norm}")
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        self.config = {"ways": ways, "in_channels": in_channels, "hidden": hidden, "image_size": image_size,
                       "activation": activation, "feature_norm": feature_norm, "norm": norm}
        self.features = nn.Sequential(
            *(_conv_block(in_channels if i == 0 else hidden, hidden, activation, norm) for i in range(4)),
            nn.Flatten(),
            *([ScaledNormalize(feature_norm)] if feature_norm is not None else []),
        )
        side = image_size
        for _ in range(4):
            side = (side + 1) // 2
        self.head = nn.Linear(hidden * side * side, ways)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

@register_model
class MLP(nn.Module):
    """A multilayer perceptron (ReLU by default); the default is MAML's 1-40-40-1 sine regressor."""

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] | list[int] = (40, 40), out_features: int = 1,
                 activation: str = "relu"):
        super().__init__()
        _check_activation(activation)
        self.config = {"in_features": in_features, "hidden": list(hidden), "out_features": out_features,
                       "activation": activation}
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
