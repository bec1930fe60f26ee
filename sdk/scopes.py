"""Adaptation scopes: which parameters the inner loop changes, as a predicate on parameter names.

A model that computes ``head(features(x))`` with ``features`` an ``nn.Sequential`` is cut between two of its
layers: the layers before the cut stay frozen (their output is computed once per task), everything after
it adapts. Models without that structure can only adapt ``"all"`` their parameters.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from edgeadapt.runtime.format.vocab import SCOPES

from .errors import ConfigError


def is_layered(model: nn.Module) -> bool:
    """Whether ``model`` computes ``head(features(x))`` with ``features`` a sequence of layers."""
    return isinstance(getattr(model, "features", None), nn.Sequential) and isinstance(
        getattr(model, "head", None), nn.Module)


def first_adapted_layer(model: nn.Module, scope: str) -> int:
    """Index in ``model.features`` of the first layer that adapts (``len(features)`` for ``"head"``)."""
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {SCOPES}, got {scope!r}")
    if scope == "all":
        return 0
    if not is_layered(model):
        raise ConfigError(f"scope={scope!r} needs a model with .features (nn.Sequential) and .head submodules")
    layers = list(model.features)
    if scope == "head":
        return len(layers)
    with_parameters = [i for i, layer in enumerate(layers) if any(True for _ in layer.parameters())]
    if not with_parameters:
        raise ConfigError("scope='last_block' needs a features layer with parameters")
    return with_parameters[-1]


def adapted_predicate(model: nn.Module, scope: str) -> Callable[[str], bool]:
    """``name -> bool``: whether the parameter called ``name`` adapts under ``scope``."""
    first = first_adapted_layer(model, scope)
    if first == 0:
        return lambda name: True

    def adapts(name: str) -> bool:
        if name.startswith("head."):
            return True
        parts = name.split(".")
        return parts[0] == "features" and int(parts[1]) >= first

    return adapts
