"""Train one model through a stream of tasks (an outer rule, optionally a regulariser; :mod:`.config`) on the
SDK's run loop (:func:`~edgeadapt.sdk.run_loop.drive`: progress, metrics, periodic checkpoints, exact resumption).

Every method takes the same number of gradient steps per task (``steps_per_task``, minibatches of
``batch_size`` drawn with replacement): SGD steps the model directly; Reptile runs ``meta_batch`` inner loops
of K steps from the slow weights and then updates them (so ``steps_per_task`` is rounded up to whole outer
updates). One step of the run is one update; the last update of a task also scores every task (a row of the
accuracy matrix), consolidates the task for EWC at the weights that are scored (Reptile: the slow weights), offers
the task's examples to the replay memory (with those weights' outputs for them when ``distill`` is set), and asks
for a checkpoint. With a memory that holds examples, every minibatch gets ``replay_size`` remembered examples beside
the current task's, so a Reptile inner loop runs on batches mixing the current task with the memory
(Meta-Experience Replay's scheme); each
draw of the current task's examples serves ``steps_per_batch`` minibatches in a row, beside fresh memory draws (MER's
``s`` steps per incoming batch).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..checkpoint import CheckpointError, load_checkpoint, load_training_state, save_checkpoint
from ..datasets.base import task_generator
from ..errors import DivergedError
from ..run_loop import drive
from ..run_state import load_weights
from .config import ContinualConfig
from .ewc import EWC
from .lr_policy import POLICY_MAX_LR, MetaLRPolicy
from .memory import ReplayMemory
from .meta_controller import MetaController
from .metrics import accuracy
from .streams import Task

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # inputs, labels, the memory part's kept logits


class ContinualRun:
    """A model, its task stream and the state of training through it (task, step, matrix, anchors, RNG): a
    :class:`~edgeadapt.sdk.run_loop.Run` whose steps are updates."""

    def __init__(self, model: nn.Module, tasks: list[Task], config: ContinualConfig, seed: int = 0,
                 data: dict[str, Any] | None = None):
        self.model = model
        self.tasks = tasks
        self.data = data or {"tasks": [t.name for t in tasks]}  # how the stream was made, kept in checkpoints
        self.config = config
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # the minibatch stream, saved with the run
        self.controller = MetaController(model, config.controller) if config.reptile else None
        self.optimizer = None if config.reptile else torch.optim.SGD(model.parameters(), lr=config.controller.inner_lr)
        self.ewc = EWC(model, config.ewc_lambda, config.fisher, config.online_gamma) if config.ewc else None
        self.policy = MetaLRPolicy(config.controller.meta_lr, POLICY_MAX_LR) if config.meta_lr_policy else None
        self.replay: list[tuple[torch.Tensor, torch.Tensor]] = []  # the meta learning-rate policy's examples
        self.memory = (ReplayMemory(config.memory, config.memory_policy, tuple(tasks[0].train_x.shape[1:]), seed)
                       if config.memory else None)  # examples of finished tasks, replayed
        self.task = 0  # the task being learned
        self.task_step = 0  # gradient steps taken on it
        self.drawn = 0  # minibatches drawn on it
        self.incoming = torch.zeros(0, dtype=torch.int64)  # the task's examples the current draw serves
        self.iteration = 0  # updates taken on the whole stream
        self.history: list[dict[str, Any]] = []
        self.matrix: list[list[float]] = []
        self.initial: list[float] = []  # every task's accuracy before any training (for forward transfer)
        self.curve: list[dict[str, Any]] = []
        self.checkpoint_due = False  # a task has just ended

    @property
    def total_updates(self) -> int:
        return len(self.tasks) * self.config.updates_per_task

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cross-entropy on the batch, plus the memory's logit matching (``distill``) and the EWC penalty when the
        method has them."""
        x, y, targets = batch
        outputs = self.model(x)
        loss = F.cross_entropy(outputs, y)
        if targets is not None and self.config.distill:
            loss = loss + self.config.distill * F.mse_loss(outputs[len(x) - len(targets):], targets)
        return loss + self.ewc.penalty() if self.ewc is not None else loss

    def step(self) -> dict[str, Any]:
        """One update of the current task; at the task's end, the scores of every task (its ``accuracies``, a row
        of the matrix) and the move to the next task. Returns the update's metrics record."""
        if self.iteration == 0:
            self.initial = self.evaluate()
        if self.task_step == 0 and self.policy is not None:
            self._add_replay(self.tasks[self.task])
        record = self.update()
        if self.task_step >= self.config.steps_per_task:
            record["accuracies"] = self.finish_task()
        elif _crossed(self.task_step, self.config.steps_per_update, self.config.eval_every):
            record["accuracies"] = self.evaluate()
            self.curve.append({"task": self.task, "step": self.task_step, "accuracies": record["accuracies"]})
        self.checkpoint_due = "accuracies" in record and self.task_step == 0
        self.iteration += 1
        self.history.append(record)
        return record

    def update(self) -> dict[str, Any]:
        """One SGD step, or one Reptile outer update; returns its metrics record."""
        task = self.tasks[self.task]
        if self.controller is None:
            loss = self.loss(self._batch(task))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses, meta_lr = [float(loss.detach())], None
        else:
            losses = []
            for _ in range(self.config.controller.meta_batch):
                self.controller.reset_to_slow()
                for _ in range(self.config.controller.inner_steps):
                    losses.append(self.controller.inner_loop_step(self.loss(self._batch(task))))
                self.controller.finish_inner_loop()
            alpha = None
            if self.policy is not None:
                alpha = self.policy.update(self.policy.features(losses, len(task.train_y)), self._replay_loss)
            meta_lr = self.controller.apply_outer_loop_update(alpha)
        self.task_step += self.config.steps_per_update
        record = {"task": self.task, "step": self.task_step, "loss": sum(losses) / len(losses)}
        if not math.isfinite(record["loss"]):
            raise DivergedError(f"training diverged at task {self.task}, step {self.task_step} (loss "
                                f"{record['loss']}): lower the inner lr or the EWC lambda")
        return record if meta_lr is None else {**record, "meta_lr": meta_lr}

    def evaluate(self) -> list[float]:
        """Accuracy on every task's evaluation set, of the weights being learned (Reptile: the slow weights)."""
        if self.controller is not None:
            self.controller.apply_meta_weights()
        return [accuracy(self.model, t.eval_x, t.eval_y) for t in self.tasks]

    def finish_task(self) -> list[float]:
        """Score every task (a matrix row, returned), consolidate this task for EWC, and move to the next task."""
        row = self.evaluate()
        self.matrix.append(row)
        self.curve.append({"task": self.task, "step": self.task_step, "accuracies": row})
        task = self.tasks[self.task]
        if self.ewc is not None:
            index = self._subset(len(task.train_y), self.config.fisher_samples, "fisher")
            self.ewc.consolidate_task((task.train_x[index], task.train_y[index]))
        if self.memory is not None:  # every example of the task, offered in a fixed random order
            order = self._subset(len(task.train_y), len(task.train_y), "memory")
            logits = None
            if self.config.distill:  # the scored weights' outputs, which later batches are held to
                with torch.no_grad():
                    logits = self.model(task.train_x[order])
            self.memory.offer(task.train_x[order], task.train_y[order], logits)
        self.task, self.task_step, self.drawn = self.task + 1, 0, 0
        return row

    def train(self, checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 0,
              metrics_path: str | os.PathLike | None = None, progress: bool = True) -> list[list[float]]:
        """Train through the remaining tasks with :func:`~edgeadapt.sdk.run_loop.drive`; return the accuracy
        matrix (row i: after task i, column j: task j).

        Checkpoints go to ``checkpoint_dir`` after each task and every ``checkpoint_every`` gradient steps
        (rounded to whole updates); ``metrics_path`` gets one JSON line per update, with ``accuracies`` where every
        task was scored (a resumed run keeps the lines up to its checkpoint and drops any written after it).
        """
        every = max(1, round(checkpoint_every / self.config.steps_per_update)) if checkpoint_every else 0
        drive(self, self.total_updates, desc=self.config.method, save=self.save, checkpoint_dir=checkpoint_dir,
              checkpoint_every=every, metrics_path=metrics_path, progress=progress)
        return self.matrix

    def save(self, path: str | os.PathLike) -> Path:
        """Checkpoint the model and everything needed to continue bit-identically (between updates)."""
        tensors = {"rng": self.generator.get_state(), "incoming": self.incoming}
        if self.controller is not None:
            tensors.update(self.controller.state_tensors())
        if self.ewc is not None:
            tensors.update(self.ewc.state_tensors())
        if self.policy is not None:
            tensors["policy.weight"] = self.policy.weight
        for t, (x, y) in enumerate(self.replay):
            tensors.update({f"replay.{t}.x": x, f"replay.{t}.y": y})
        state = {"task": self.task, "step": self.task_step, "iteration": self.iteration, "history": self.history,
                 "matrix": self.matrix, "curve": self.curve, "ewc_anchors": len(self.ewc.anchors) if self.ewc else 0,
                 "replay_tasks": len(self.replay), "initial": self.initial, "drawn": self.drawn}
        if self.memory is not None:
            memory_tensors, state["memory"] = self.memory.state()
            tensors.update(memory_tensors)
        config = {"continual": asdict(self.config), "data": self.data, "seed": self.seed}
        return save_checkpoint(path, self.model, config, tensors, state)

    @classmethod
    def resume(cls, path: str | os.PathLike, tasks: list[Task], data: dict[str, Any] | None = None) -> ContinualRun:
        """The run saved at ``path`` (its own model and configuration), ready to continue on ``tasks``.

        With ``data``, the stream's description must equal the one the run was saved with.
        """
        model, config = load_checkpoint(path)
        try:
            run = cls(model, tasks, ContinualConfig.from_json(config["continual"]), int(config["seed"]),
                      config["data"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is not a continual-learning checkpoint: {e}") from e
        if data is not None and data != run.data:
            raise CheckpointError(f"{path} was trained on {run.data}, not {data}")
        run.restore(path)
        return run

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from :meth:`save`'s checkpoint: weights, slow weights, anchors, policy, RNG and position."""
        tensors, state = load_training_state(path)
        load_weights(self.model, path, next(self.model.parameters()).device)
        try:
            self.generator.set_state(tensors["rng"])
            if self.controller is not None:
                self.controller.load_state_tensors(tensors)
            if self.ewc is not None:
                self.ewc.load_state_tensors(tensors, int(state["ewc_anchors"]))
            if self.policy is not None:
                self.policy.weight = tensors["policy.weight"].clone()
            self.replay = [(tensors[f"replay.{t}.x"], tensors[f"replay.{t}.y"])
                           for t in range(state.get("replay_tasks", 0))]
            if self.memory is not None:
                self.memory.load(tensors, state["memory"])
            self.task, self.task_step, self.iteration = int(state["task"]), int(state["step"]), int(state["iteration"])
            self.history, self.matrix, self.curve = list(state["history"]), state["matrix"], state["curve"]
            self.initial = list(state.get("initial", []))
            self.drawn = int(state.get("drawn", 0))
            self.incoming = tensors.get("incoming", self.incoming).clone()
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: training state is incomplete or does not fit: {e}") from e
        if self.task > len(self.tasks) or len(self.matrix) != self.task:
            raise CheckpointError(f"{path} is at task {self.task} of a {len(self.tasks)}-task stream; it does not fit")

    def _batch(self, task: Task) -> Batch:
        """``batch_size`` examples of ``task`` drawn with replacement; with a memory that holds examples,
        ``replay_size`` remembered ones after them (with the logits the memory kept for them, if any). Each draw of
        the task's examples serves ``steps_per_batch`` minibatches in a row, the remembered ones drawn afresh for
        each."""
        if self.drawn % self.config.steps_per_batch == 0:
            self.incoming = torch.randint(len(task.train_y), (self.config.batch_size,), generator=self.generator)
        self.drawn += 1
        x, y = task.train_x[self.incoming], task.train_y[self.incoming]
        if self.memory is None or not len(self.memory):
            return x, y, None
        old_x, old_y, old_logits = self.memory.sample(self.config.replay_size or self.config.batch_size,
                                                      self.generator)
        return torch.cat([x, old_x]), torch.cat([y, old_y]), old_logits

    def _add_replay(self, task: Task) -> None:
        """Keep ``replay_per_task`` of ``task``'s training examples for the meta learning-rate policy."""
        index = self._subset(len(task.train_y), self.config.replay_per_task, "replay")
        self.replay.append((task.train_x[index], task.train_y[index]))

    def _subset(self, n: int, k: int, stream: str) -> torch.Tensor:
        """``k`` of ``n`` indices fixed by (seed, task, stream), the SDK's task seeding, the same for every method."""
        return torch.randperm(n, generator=task_generator(self.seed, self.task, 0, stream))[:k]

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
