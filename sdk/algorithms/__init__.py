"""Meta-learning algorithms, one per module; each is a :class:`MetaAlgorithm` found by name in ``REGISTRY``.

``base`` holds what every algorithm provides (meta-gradient, outer optimiser and schedule, clipping);
``maml``, ``fomaml`` and ``reptile`` one algorithm each.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..inner_loop import InnerLoop, Params
from ..tasks import TaskBatch
from .base import MetaAlgorithm, MetaStep, OuterSettings, query_metrics
from .fomaml import FOMAML
from .maml import MAML
from .reptile import Reptile

REGISTRY: dict[str, type[MetaAlgorithm]] = {cls.name: cls for cls in (MAML, FOMAML, Reptile)}
ALGORITHMS = tuple(REGISTRY)


def get_algorithm(name: str) -> MetaAlgorithm:
    """The algorithm called ``name`` (one of ``ALGORITHMS``)."""
    if name not in REGISTRY:
        raise ConfigError(f"algorithm must be one of {ALGORITHMS}, got {name!r}")
    return REGISTRY[name]()


def maml_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """MAML's meta-gradient of one meta-batch (``MAML().meta_gradient``)."""
    return MAML().meta_gradient(inner, params, batch)


def fomaml_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """FOMAML's meta-gradient of one meta-batch (``FOMAML().meta_gradient``)."""
    return FOMAML().meta_gradient(inner, params, batch)


def reptile_gradient(inner: InnerLoop, params: Params, batch: TaskBatch) -> MetaStep:
    """Reptile's direction for one meta-batch (``Reptile().meta_gradient``)."""
    return Reptile().meta_gradient(inner, params, batch)


__all__ = ["ALGORITHMS", "FOMAML", "MAML", "MetaAlgorithm", "MetaStep", "OuterSettings", "REGISTRY", "Reptile",
           "fomaml_gradient", "get_algorithm", "maml_gradient", "query_metrics", "reptile_gradient"]
