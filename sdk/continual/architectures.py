"""The two networks the continual benchmarks compare, from the model registry: an MLP on flattened pixels and
the small Conv4 CNN."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models import build_model

# Per architecture: the registered model and its configuration for ``hidden`` units and ``classes`` outputs, and
# whether it takes flattened inputs.
ARCHITECTURES = {
    "mlp": ("MLP", lambda hidden, classes: {"in_features": 28 * 28, "hidden": [hidden, hidden],
                                           "out_features": classes}, True),
    "cnn": ("Conv4", lambda hidden, classes: {"ways": classes, "in_channels": 1, "hidden": hidden}, False),
}


def continual_model(arch: str, hidden: int, classes: int = 10) -> tuple[nn.Module, bool]:
    """The network ``arch`` ("mlp": 784-hidden-hidden-classes, "cnn": Conv4 with ``hidden`` filters), built by the
    model registry (so checkpoints rebuild it), and whether it takes flattened inputs."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch must be one of {tuple(ARCHITECTURES)}, got {arch!r}")
    name, config, flat = ARCHITECTURES[arch]
    return build_model(name, config(hidden, classes)), flat
