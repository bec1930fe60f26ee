"""Train one model through a stream of tasks with SGD or Reptile, each optionally with EWC; resumable exactly.

Every method takes the same number of gradient steps per task (``steps_per_task``, minibatches of
``batch_size`` drawn with replacement): SGD steps the model directly; Reptile runs ``meta_batch`` inner loops
of K steps from the slow weights and then updates them (so ``steps_per_task`` is rounded up to whole outer
updates). After each task every task is scored (a row of the accuracy matrix) and, with EWC, the task is
consolidated at the weights that are scored (Reptile: the slow weights).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, load_checkpoint, load_training_state, save_checkpoint
from ..errors import ConfigError, DivergedError
from .ewc import EWC, FISHERS
from .lr_policy import POLICY_MAX_LR, MetaLRPolicy
from .meta_controller import ControllerConfig, MetaController
from .metrics import accuracy
from .streams import Task

log = logging.getLogger(__name__)
METHODS = ("sgd", "sgd-ewc", "reptile", "reptile-ewc")


@dataclass(frozen=True)
class ContinualConfig:
    """Every setting of a continual run (stored in checkpoints as ``continual``)."""

    method: str = "sgd"
    steps_per_task: int = 1000
    batch_size: int = 32
    controller: ControllerConfig = ControllerConfig()  # Reptile's; its inner_lr is also the SGD methods' rate
    meta_lr_policy: bool = False
    ewc_lambda: float = 100.0
    fisher: str = "true"
    fisher_samples: int = 500
    online_gamma: float | None = None
    replay_per_task: int = 100
    eval_every: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.controller, dict):  # as stored in a checkpoint's JSON
            object.__setattr__(self, "controller", ControllerConfig(**self.controller))
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.fisher not in FISHERS:
            raise ConfigError(f"fisher must be one of {FISHERS}, got {self.fisher!r}")
        if min(self.steps_per_task, self.batch_size, self.fisher_samples, self.replay_per_task) < 1:
            raise ConfigError("steps_per_task, batch_size, fisher_samples and replay_per_task must be >= 1")
        meta_lr = self.controller.meta_lr
        if self.meta_lr_policy and not (self.reptile and 0 < meta_lr < POLICY_MAX_LR):
            raise ConfigError(f"the meta learning-rate policy needs a Reptile method and a meta_lr (its starting "
                             f"value) in (0, {POLICY_MAX_LR}), got {self.method} with {meta_lr}")
        if not self.reptile and self.controller.inner_optimizer != "sgd":
            raise ConfigError("the SGD methods step with plain SGD; --inner-optimizer applies to Reptile only")

    def replace(self, **changes: Any) -> ContinualConfig:
        """A copy with ``changes``, which may name this config's fields or the controller's (inner_lr, ...)."""
        inner = {k: changes.pop(k) for k in list(changes) if k in ControllerConfig.__dataclass_fields__}
        return dataclasses.replace(self, controller=dataclasses.replace(self.controller, **inner), **changes)

    @property
    def reptile(self) -> bool:
        return self.method.startswith("reptile")

    @property
    def ewc(self) -> bool:
        return self.method.endswith("-ewc")

    @property
    def steps_per_update(self) -> int:
        """Gradient steps in one update: K x meta_batch for Reptile, 1 for SGD."""
        return self.controller.inner_steps * self.controller.meta_batch if self.reptile else 1


class ContinualRun:
    """A model, its task stream and the state of training through it (task, step, matrix, anchors, RNG)."""

    def __init__(self, model: nn.Module, tasks: list[Task], config: ContinualConfig, seed: int = 0,
                 data: dict[str, Any] | None = None):
        self.model = model
        self.tasks = tasks
        self.data = data or {"tasks": [t.name for t in tasks]}  # how the stream was made, kept in checkpoints
        self.config = config
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.controller = MetaController(model, config.controller) if config.reptile else None
        self.optimizer = None if config.reptile else torch.optim.SGD(model.parameters(), lr=config.controller.inner_lr)
        self.ewc = EWC(model, config.ewc_lambda, config.fisher, config.online_gamma) if config.ewc else None
        self.policy = MetaLRPolicy(config.controller.meta_lr, POLICY_MAX_LR) if config.meta_lr_policy else None
        self.replay: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.task = 0
        self.step = 0
        self.matrix: list[list[float]] = []
        self.curve: list[dict[str, Any]] = []
        self.records = 0

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on (x, y), plus the EWC penalty when the method has one."""
        loss = F.cross_entropy(self.model(x), y)
        return loss + self.ewc.penalty() if self.ewc is not None else loss

    def update(self) -> dict[str, Any]:
        """One SGD step, or one Reptile outer update; returns its metrics record."""
        task = self.tasks[self.task]
        if self.controller is None:
            loss = self.loss(*self._batch(task))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses, meta_lr = [float(loss.detach())], None
        else:
            losses = []
            for _ in range(self.config.controller.meta_batch):
                self.controller.reset_to_slow()
                for _ in range(self.config.controller.inner_steps):
                    losses.append(self.controller.inner_loop_step(self.loss(*self._batch(task))))
                self.controller.finish_inner_loop()
            alpha = None
            if self.policy is not None:
                alpha = self.policy.update(self.policy.features(losses, len(task.train_y)), self._replay_loss)
            meta_lr = self.controller.apply_outer_loop_update(alpha)
        self.step += self.config.steps_per_update
        record = {"task": self.task, "step": self.step, "loss": sum(losses) / len(losses)}
        if not math.isfinite(record["loss"]):
            raise DivergedError(f"training diverged at task {self.task}, step {self.step} (loss {record['loss']}): "
                                "lower the inner lr or the EWC lambda")
        return record if meta_lr is None else {**record, "meta_lr": meta_lr}

    def evaluate(self) -> list[float]:
        """Accuracy on every task's evaluation set, of the weights being learned (Reptile: the slow weights)."""
        if self.controller is not None:
            self.controller.apply_meta_weights()
        return [accuracy(self.model, t.eval_x, t.eval_y) for t in self.tasks]

    def finish_task(self) -> dict[str, Any]:
        """Score every task (a matrix row), consolidate this task for EWC, and move to the next task."""
        row = self.evaluate()
        self.matrix.append(row)
        self.curve.append({"task": self.task, "step": self.step, "accuracies": row})
        if self.ewc is not None:
            task = self.tasks[self.task]
            index = self._subset(len(task.train_y), self.config.fisher_samples, salt=1)
            self.ewc.consolidate_task((task.train_x[index], task.train_y[index]))
        record = {"task": self.task, "step": self.step, "accuracies": row}
        self.task, self.step = self.task + 1, 0
        return record

    def train(self, checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 0,
              metrics_path: str | os.PathLike | None = None, progress: bool = True) -> list[list[float]]:
        """Train through the remaining tasks; return the accuracy matrix (row i: after task i, column j: task j).

        Checkpoints go to ``checkpoint_dir`` after each task and every ``checkpoint_every`` gradient steps;
        ``metrics_path`` gets one JSON line per update and one per evaluation (a resumed run keeps the lines up
        to its checkpoint and drops any written after it).
        """
        metrics = _open_metrics(metrics_path, self.records) if metrics_path else None
        steps = self.config.steps_per_task
        bar = tqdm(total=len(self.tasks) * steps, initial=self.task * steps + self.step, disable=not progress,
                   desc=self.config.method, dynamic_ncols=True)

        def write(record: dict[str, Any]) -> None:
            self.records += 1
            if metrics:
                metrics.write(json.dumps(record) + "\n")

        try:
            while self.task < len(self.tasks):
                if self.step == 0 and self.policy is not None:
                    self._add_replay(self.tasks[self.task])
                while self.step < steps:
                    record = self.update()
                    write(record)
                    bar.update(self.task * steps + min(self.step, steps) - bar.n)
                    bar.set_postfix(task=self.task, loss=f"{record['loss']:.3f}")
                    if self.step < steps and _crossed(self.step, self.config.steps_per_update, self.config.eval_every):
                        row = self.evaluate()
                        self.curve.append({"task": self.task, "step": self.step, "accuracies": row})
                        write({"task": self.task, "step": self.step, "accuracies": row})
                    if checkpoint_dir and self.step < steps and _crossed(self.step, self.config.steps_per_update,
                                                                         checkpoint_every):
                        self._checkpoint(checkpoint_dir, metrics)
                write(self.finish_task())
                if checkpoint_dir:
                    self._checkpoint(checkpoint_dir, metrics)
        finally:
            bar.close()
            if metrics:
                metrics.close()
        return self.matrix

    def save(self, path: str | os.PathLike) -> Path:
        """Checkpoint the model and everything needed to continue bit-identically (between updates)."""
        tensors = {"rng": self.generator.get_state()}
        if self.controller is not None:
            tensors.update(self.controller.state_tensors())
        if self.ewc is not None:
            tensors.update(self.ewc.state_tensors())
        if self.policy is not None:
            tensors["policy.weight"] = self.policy.weight
        for t, (x, y) in enumerate(self.replay):
            tensors.update({f"replay.{t}.x": x, f"replay.{t}.y": y})
        state = {"task": self.task, "step": self.step, "matrix": self.matrix, "curve": self.curve,
                 "records": self.records, "ewc_anchors": len(self.ewc.anchors) if self.ewc else 0,
                 "replay_tasks": len(self.replay)}
        config = {"continual": asdict(self.config), "data": self.data, "seed": self.seed}
        return save_checkpoint(path, self.model, config, tensors, state)

    @classmethod
    def resume(cls, path: str | os.PathLike, tasks: list[Task], data: dict[str, Any] | None = None) -> ContinualRun:
        """The run saved at ``path`` (its own model and configuration), ready to continue on ``tasks``.

        With ``data``, the stream's description must equal the one the run was saved with.
        """
        model, config = load_checkpoint(path)
        try:
            run = cls(model, tasks, ContinualConfig(**config["continual"]), int(config["seed"]), config["data"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is not a continual-learning checkpoint: {e}") from e
        if data is not None and data != run.data:
            raise CheckpointError(f"{path} was trained on {run.data}, not {data}")
        tensors, state = load_training_state(path)
        try:
            run.generator.set_state(tensors["rng"])
            if run.controller is not None:
                run.controller.load_state_tensors(tensors)
            if run.ewc is not None:
                run.ewc.load_state_tensors(tensors, int(state["ewc_anchors"]))
            if run.policy is not None:
                run.policy.weight = tensors["policy.weight"].clone()
            run.replay = [(tensors[f"replay.{t}.x"], tensors[f"replay.{t}.y"]) for t in range(state["replay_tasks"])]
            run.task, run.step, run.records = int(state["task"]), int(state["step"]), int(state["records"])
            run.matrix, run.curve = state["matrix"], state["curve"]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: training state is incomplete or does not fit: {e}") from e
        if run.task > len(tasks) or len(run.matrix) != run.task:
            raise CheckpointError(f"{path} is at task {run.task} of a {len(tasks)}-task stream; it does not fit")
        return run

    def _checkpoint(self, path: str | os.PathLike, metrics: Any) -> None:
        if metrics:
            metrics.flush()
        self.save(path)

    def _batch(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(task.train_y), (self.config.batch_size,), generator=self.generator)
        return task.train_x[index], task.train_y[index]

    def _add_replay(self, task: Task) -> None:
        """Keep ``replay_per_task`` of ``task``'s training examples for the meta learning-rate policy."""
        index = self._subset(len(task.train_y), self.config.replay_per_task, salt=2)
        self.replay.append((task.train_x[index], task.train_y[index]))

    def _subset(self, n: int, k: int, salt: int) -> torch.Tensor:
        """``k`` of ``n`` indices fixed by (seed, task, salt), so the minibatch stream is the same for every method."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.task * 101 + salt)
        return torch.randperm(n, generator=generator)[:k]

    def _replay_loss(self, meta_lr: float) -> float:
        """Loss on the replay buffer of the slow weights after an outer update with ``meta_lr``."""
        params = self.controller.slow_weights_after(meta_lr)
        x = torch.cat([r[0] for r in self.replay])
        y = torch.cat([r[1] for r in self.replay])
        with torch.no_grad():
            return float(F.cross_entropy(functional_call(self.model, params, (x,)), y))


def _crossed(step: int, increment: int, every: int) -> bool:
    """Whether the last ``increment`` steps, ending at ``step``, crossed a multiple of ``every`` (0: never)."""
    return every > 0 and step // every > (step - increment) // every


def _open_metrics(path: str | os.PathLike, keep: int) -> Any:
    """The metrics file opened for appending after its first ``keep`` lines (the rest is dropped)."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)[:keep] if keep and path.exists() else []
    if len(lines) < keep:
        log.warning("%s holds %d of the %d records before the checkpoint", path, len(lines), keep)
    handle = open(path, "w", buffering=1)
    handle.writelines(lines)
    return handle
