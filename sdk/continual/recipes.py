"""The tuned settings of each continual method on rotated MNIST: ``edgeadapt continual``'s defaults and the
benchmark's (``benchmarks/continual_mnist.py``), so that the documented command reproduces the documented table.

Hyperparameters (alpha_f = inner lr, alpha_m = meta lr, K = inner steps, EWC lambda) are the best values of the
Optuna search (``edgeadapt continual --search``; docs/benchmarks.md, "hyperparameter search"), rounded, with
K = 5 for Reptile as published. The CNN is not searched: it takes the MLP's values with alpha_f = 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stream:
    """How much of rotated MNIST one run sees, and how long it trains on each task."""

    hidden: int  # MLP width / CNN filters
    train_size: int  # training images per task
    eval_size: int  # test images scored per task
    steps: int  # gradient steps per task
    batch: int  # examples per step


STREAMS = {"mlp": Stream(hidden=100, train_size=20000, eval_size=10000, steps=2000, batch=64),
           "cnn": Stream(hidden=32, train_size=10000, eval_size=1000, steps=150, batch=32)}
HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "sgd": {"inner_lr": 0.19},
    "sgd-ewc": {"inner_lr": 0.26, "ewc_lambda": 14.1},
    "reptile": {"inner_lr": 0.12, "meta_lr": 0.88, "inner_steps": 5},
    "reptile-ewc": {"inner_lr": 0.047, "meta_lr": 0.73, "inner_steps": 5, "ewc_lambda": 20.5},
}
CNN_INNER_LR = 0.05  # stable with EWC
# The methods with a replay memory: the named method they add the memory to, and what they change of its values.
REPLAY_METHODS = {"sgd+replay": "sgd", "reptile+replay": "reptile", "reptile+replay+ewc": "reptile-ewc"}
# Chosen on the validation slice by ``benchmarks/continual_mnist.py --replay-grid`` (MLP, seed 0, memory 800).
REPLAY_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "sgd+replay": {"inner_lr": 0.1, "memory_policy": "balanced", "distill": 0.5},
    "reptile+replay": {"inner_lr": 0.1, "meta_lr": 0.88, "memory_policy": "balanced", "distill": 0.5},
    "reptile+replay+ewc": {"inner_lr": 0.1, "meta_lr": 0.6, "ewc_lambda": 2.0, "memory_policy": "balanced",
                           "distill": 0.5},
}


def base_method(method: str) -> str:
    """The named method (:data:`~.config.METHODS`) under ``method``: itself, or the one a replay method extends."""
    return REPLAY_METHODS.get(method, method)


def hyperparameters(method: str, arch: str) -> dict[str, Any]:
    """The values ``method`` (a named method or a replay method) runs with on ``arch`` (``mlp`` or ``cnn``)."""
    values = {**HYPERPARAMETERS[base_method(method)], **REPLAY_HYPERPARAMETERS.get(method, {})}
    return values if arch == "mlp" else {**values, "inner_lr": CNN_INNER_LR}
