"""The two networks the continual benchmarks compare: an MLP on flattened pixels and the small Conv4 CNN."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models import MLP, Conv4

ARCHITECTURES = ("mlp", "cnn")


def continual_model(arch: str, hidden: int, classes: int = 10) -> tuple[nn.Module, bool]:
    """The network ``arch`` ("mlp": 784-hidden-hidden-classes, "cnn": Conv4 with ``hidden`` filters) and whether
    it takes flattened inputs."""
    if arch == "mlp":
        return MLP(28 * 28, (hidden, hidden), classes), True
    if arch == "cnn":
        return Conv4(classes, 1, hidden), False
    raise ConfigError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
