"""Hyperparameter search over alpha_f (inner lr), alpha_m (meta lr) and K (inner steps) with Optuna's TPE
(and EWC's lambda for the EWC methods).

A trial trains through the whole stream and scores retention: the final average accuracy over all tasks,
on tasks whose evaluation sets must be a validation slice of the training data (never the test set used for
reporting). A run that diverges scores 0. Optuna is the optional extra ``edgeadapt[search]``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from edgeadapt.runtime.format.extras import require

from ..errors import DivergedError
from .metrics import average_accuracy
from .runner import ContinualConfig, ContinualRun
from .streams import Task

INNER_STEPS = (1, 2, 5, 10)


def search_hyperparameters(
    validation_tasks: list[Task],
    make_model: Callable[[], nn.Module],
    base: ContinualConfig,
    trials: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Tune ``base`` (inner lr; Reptile: meta lr, K; EWC: lambda) by ``trials`` Optuna trials; the best and all."""
    optuna = require("optuna", "search", "hyperparameter search")

    def objective(trial: optuna.Trial) -> float:
        values: dict[str, Any] = {"inner_lr": trial.suggest_float("inner_lr", 0.005, 0.3, log=True)}
        if base.reptile:
            values["meta_lr"] = trial.suggest_float("meta_lr", 0.05, 1.0)
            values["inner_steps"] = trial.suggest_categorical("inner_steps", INNER_STEPS)
        if base.ewc:
            values["ewc_lambda"] = trial.suggest_float("ewc_lambda", 1.0, 1000.0, log=True)
        torch.manual_seed(seed)
        run = ContinualRun(make_model(), validation_tasks, base.replace(**values), seed)
        try:
            return average_accuracy(run.train(progress=False))
        except DivergedError:
            return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return {"best": study.best_params, "best_validation_average": study.best_value,
            "trials": [{"params": t.params, "validation_average": t.value} for t in study.trials]}
