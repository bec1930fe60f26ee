"""The model convention, stated once, and its check.

A few-shot model here is ``features`` (an ``nn.Sequential``: one input in, one feature vector out) followed by
``head`` (an ``nn.Linear`` from those features to one output per class), and its ``forward(x)`` is
``head(features(x))``. The inner loop relies on it: it cuts ``features`` where the adaptation scope begins,
computes the frozen part once per task, starts a prototype head from the features, and runs support and query
examples through the same ``head(features(x))``. A model that names its parts otherwise (torchvision's
``classifier``) or computes more in ``forward`` becomes one with :class:`Backbone`.

:func:`check_backbone` verifies the convention on a probe batch; :class:`~edgeadapt.sdk.inner_loop.InnerLoop`
(on its first tasks), :func:`~edgeadapt.sdk.pretraining.pretrain` and ``export_artifact`` call it.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError

PROBE_EXAMPLES = 2
TOLERANCE = 1e-5  # forward(x) against head(features(x)), relative to the outputs' scale


class Backbone(nn.Module):
    """A feature extractor and a linear head in the convention: ``Backbone(features, head)``.

    ``features`` is kept as given when it is an ``nn.Sequential`` and wrapped in one otherwise (it must end in
    one feature vector per example, e.g. with ``nn.Flatten()``). Subclass it and register the subclass
    (``@register_model``, constructor arguments in ``self.config``) to save and export your own network.
    """

    def __init__(self, features: nn.Module, head: nn.Linear):
        super().__init__()
        self.features = features if isinstance(features, nn.Sequential) else nn.Sequential(features)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def follows_convention(model: nn.Module) -> bool:
    """Whether ``model`` has the two named parts (``features`` a sequence of layers, ``head`` a linear layer)."""
    return isinstance(getattr(model, "features", None), nn.Sequential) and isinstance(
        getattr(model, "head", None), nn.Linear)


def check_backbone(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """ConfigError, saying what to change, unless ``model`` follows the convention on a probe batch of
    ``input_shape`` inputs: the two parts exist, ``features`` gives ``(n, head.in_features)``, and ``forward``
    equals ``head(features(x))``. Models without the parts (which can only adapt every parameter) pass."""
    if not hasattr(model, "features") and not hasattr(model, "head"):
        return
    name = type(model).__name__
    if not follows_convention(model):
        raise ConfigError(f"{name}: `features` must be an nn.Sequential and `head` an nn.Linear (got "
                          f"{type(getattr(model, 'features', None)).__name__}, "
                          f"{type(getattr(model, 'head', None)).__name__}); wrap the network: "
                          "edgeadapt.sdk.contract.Backbone(features=..., head=model.classifier)")
    parameter = next(model.parameters())
    probe = torch.rand(PROBE_EXAMPLES, *input_shape, generator=torch.Generator().manual_seed(0))
    probe = probe.to(parameter.device, parameter.dtype)
    with torch.no_grad():
        features = model.features(probe)
        if features.shape != (PROBE_EXAMPLES, model.head.in_features):
            raise ConfigError(f"{name}.features turns inputs of shape {tuple(input_shape)} into "
                              f"{tuple(features.shape[1:])}, not the head's {model.head.in_features} features: end "
                              "features with the pooling and nn.Flatten() that forward applies")
        direct, composed = model(probe), model.head(features)
    if direct.shape != composed.shape or not torch.allclose(direct, composed, rtol=TOLERANCE,
                                                            atol=TOLERANCE * float(composed.abs().max() + 1)):
        raise ConfigError(f"{name}.forward(x) is not head(features(x)): the inner loop runs support and query "
                          "examples through head(features(x)), so move what forward adds into features, or wrap "
                          "the network in edgeadapt.sdk.contract.Backbone")
