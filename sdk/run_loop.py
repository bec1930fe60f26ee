"""Drive a resumable training run: step it to the end with progress, metrics JSONL and periodic checkpoints."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any, Callable, Protocol, TypedDict

from tqdm.auto import tqdm

from . import distributed
from .errors import ConfigError, DivergedError

log = logging.getLogger(__name__)


class Run(Protocol):
    """A training run that advances one step at a time and records one metrics dict per step."""

    iteration: int
    history: list[dict[str, Any]]

    def step(self) -> dict[str, Any]: ...

    def restore(self, path: str | os.PathLike) -> None: ...


class RunOptions(TypedDict, total=False):
    """Keyword options of a driven run (``pretrain``, ``meta_train``): see :func:`drive`."""

    checkpoint_dir: str | os.PathLike | None
    checkpoint_every: int
    resume: bool
    metrics_path: str | os.PathLike | None
    progress: bool


PROGRESS_KEYS = ("loss", "accuracy")


def drive(run: Run, total: int, *, desc: str, save: Callable[[str | os.PathLike], Any],
          checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 0, resume: bool = False,
          metrics_path: str | os.PathLike | None = None, progress: bool = True,
          evaluate: Callable[[], dict[str, float]] | None = None, evaluate_every: int = 0) -> None:
    """Step ``run`` until ``run.iteration == total``.

    ``resume=True`` first restores the run from ``checkpoint_dir`` exactly (as does a process that
    ``torchrun --max-restarts`` restarted after a failure, when a checkpoint exists).
    Each step's record gets ``elapsed``: training seconds since the run began, summed across resumptions.
    ``metrics_path`` receives one JSON line per step (a resumed run rewrites the lines up to its checkpoint,
    dropping any written after it); with ``checkpoint_dir`` the run is saved by ``save`` every
    ``checkpoint_every`` steps (0: only at the end), after any step that leaves the run's ``checkpoint_due`` set
    (a continual run's task boundaries), and at the end. ``evaluate``, every ``evaluate_every``
    steps and at the end, adds its metrics to that step's record (its own time is not counted as training).
    Of several processes (``torchrun``), only rank 0 writes metrics and checkpoints and shows progress.
    """
    if distributed.resuming(resume, checkpoint_dir):
        if checkpoint_dir is None:
            raise ConfigError("resume=True needs checkpoint_dir")
        run.restore(checkpoint_dir)
        log.info("resumed from %s at step %d", checkpoint_dir, run.iteration)
    if not distributed.world().is_main:
        metrics_path, checkpoint_dir, progress = None, None, False
    metrics = open(metrics_path, "w", buffering=1) if metrics_path else None
    if metrics:
        metrics.writelines(json.dumps(r) + "\n" for r in run.history)
    bar = tqdm(total=total, initial=run.iteration, disable=not progress, desc=desc, dynamic_ncols=True)
    elapsed = run.history[-1].get("elapsed", 0.0) if run.history else 0.0
    try:
        while run.iteration < total:
            started = time.perf_counter()
            record = run.step()
            elapsed += time.perf_counter() - started
            record["elapsed"] = round(elapsed, 3)
            _check_finite(record, run.iteration, desc)
            if evaluate and ((evaluate_every and run.iteration % evaluate_every == 0) or run.iteration == total):
                record.update(evaluate())
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in PROGRESS_KEYS})
            if metrics:
                metrics.write(json.dumps(record) + "\n")
            periodic = checkpoint_every and run.iteration % checkpoint_every == 0
            if checkpoint_dir and (periodic or getattr(run, "checkpoint_due", False)):
                if metrics:
                    metrics.flush()
                save(checkpoint_dir)
    finally:
        bar.close()
        if metrics:
            metrics.close()
    if checkpoint_dir:
        save(checkpoint_dir)


def _check_finite(record: dict[str, Any], step: int, desc: str) -> None:
    """Stop a run whose loss is no longer finite, before a NaN reaches its checkpoint or metrics."""
    loss = record.get("loss")
    if loss is not None and not math.isfinite(loss):
        raise DivergedError(f"{desc} diverged at step {step} (loss {loss}): lower the learning rates (inner and "
                            "outer); from a pretrained checkpoint, start each task's head at the class prototypes "
                            "(--head-init prototypes with a --head-scale below 1)")
