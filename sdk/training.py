"""The meta-training loop: sample a meta-batch, take a meta-gradient, step the outer optimiser.

Reptile's outer step size anneals linearly (as in Nichol et al., 2018); MAML and FOMAML use
Adam with gradient-norm clipping. Runs resume exactly from a checkpoint: weights, optimiser
state, sampler random state, iteration and history are all saved.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from .algorithms import ALGORITHMS, META_GRADIENTS
from .checkpoint import CheckpointError, load_training_state, save_checkpoint
from .inner_loop import InnerLoop
from .tasks import TaskBatch

log = logging.getLogger(__name__)


class TaskSampler(Protocol):
    """Anything that draws meta-batches and can save its random state (see ``EpisodeSampler``)."""

    loss: str

    def sample(self, meta_batch_size: int) -> TaskBatch: ...
    def describe(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass(frozen=True)
class MetaConfig:
    """Every hyperparameter of a meta-training run (stored in checkpoints as ``training``)."""

    algorithm: str
    inner_lr: float
    outer_lr: float
    inner_steps: int
    meta_batch_size: int
    num_iterations: int
    scope: str = "all"
    loss: str = "cross_entropy"
    outer_lr_final: float = 0.0
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.meta_batch_size < 1 or self.num_iterations < 0:
            raise ValueError("meta_batch_size must be >= 1 and num_iterations >= 0")
        if not self.outer_lr > 0:
            raise ValueError(f"outer_lr must be > 0, got {self.outer_lr}")

    def outer_lr_at(self, iteration: int) -> float:
        """Reptile anneals linearly from ``outer_lr`` to ``outer_lr_final``; the others keep ``outer_lr``."""
        if self.algorithm != "reptile":
            return self.outer_lr
        done = iteration / max(self.num_iterations, 1)
        return self.outer_lr + done * (self.outer_lr_final - self.outer_lr)


class MetaTrainer:
    """Holds a run's mutable state (model, optimiser, iteration, history) and advances it."""

    def __init__(self, model: nn.Module, sampler: TaskSampler, config: MetaConfig,
                 device: str | torch.device | None = None):
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device)
        self.sampler = sampler
        self.config = config
        self.inner = InnerLoop(model, config.inner_lr, config.inner_steps, config.loss, config.scope)
        params = list(model.parameters())
        if config.algorithm == "reptile":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=config.outer_lr)
        else:
            self.optimizer = torch.optim.Adam(params, lr=config.outer_lr)
        self.iteration = 0
        self.history: list[dict[str, Any]] = []

    def step(self) -> dict[str, Any]:
        """One meta-iteration; returns (and records) its metrics."""
        batch = TaskBatch(*(t.to(self.device) for t in self.sampler.sample(self.config.meta_batch_size)))
        params = self.inner.params()
        result = META_GRADIENTS[self.config.algorithm](self.inner, params, batch)
        lr = self.config.outer_lr_at(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for name, p in self.model.named_parameters():
            p.grad = result.gradient[name].detach().clone()
        if self.config.algorithm != "reptile":
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1
        record = {"iteration": self.iteration, "outer_lr": lr, "loss": result.query_loss,
                  "accuracy": result.query_accuracy}
        record = {k: v for k, v in record.items() if v is not None}
        self.history.append(record)
        return record

    def checkpoint_config(self, data: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
        return {"training": asdict(self.config), "data": data or self.sampler.describe(), "seed": seed}

    def save(self, path: str | os.PathLike, data: dict[str, Any] | None = None, seed: int | None = None) -> Path:
        """Checkpoint weights and everything needed to continue bit-identically."""
        opt_state = self.optimizer.state_dict()
        tensors = {f"sampler.{k}": v for k, v in self.sampler.state_dict().items()}
        for index, slots in opt_state["state"].items():
            for slot, value in slots.items():
                tensors[f"optimizer.{index}.{slot}"] = torch.as_tensor(value)
        state = {"iteration": self.iteration, "history": self.history,
                 "optimizer_param_groups": opt_state["param_groups"]}
        return save_checkpoint(path, self.model, self.checkpoint_config(data, seed), tensors, state)

    def restore(self, path: str | os.PathLike) -> None:
        """Load the training state saved by :meth:`save` (the model's weights must already be loaded)."""
        tensors, state = load_training_state(path)
        self.sampler.load_state_dict({k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")})
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, slot = key.split(".", 2)
                slots.setdefault(int(index), {})[slot] = value.to(self.device)
        try:
            self.optimizer.load_state_dict({"state": slots, "param_groups": state["optimizer_param_groups"]})
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: optimiser state does not fit this run: {e}") from e
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])


def train_maml(
    model: nn.Module,
    task_sampler: TaskSampler,
    inner_lr: float,
    outer_lr: float,
    inner_steps: int,
    algorithm: str = "maml",
    meta_batch_size: int = 5,
    num_iterations: int = 1000,
    *,
    scope: str = "all",
    outer_lr_final: float = 0.0,
    grad_clip: float = 10.0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    metrics_path: str | os.PathLike | None = None,
    data: dict[str, Any] | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Meta-train ``model`` in place with MAML, FOMAML or Reptile; return it and its per-iteration history.

    ``task_sampler`` provides meta-batches (e.g. :class:`~edgeadapt.sdk.tasks.EpisodeSampler`) and its
    ``loss`` ("cross_entropy" or "mse"). With ``checkpoint_dir`` the run is saved every
    ``checkpoint_every`` iterations (0: only at the end), and ``resume=True`` continues from it exactly.
    ``metrics_path`` receives one JSON line per iteration.
    """
    config = MetaConfig(algorithm, inner_lr, outer_lr, inner_steps, meta_batch_size, num_iterations,
                        scope, task_sampler.loss, outer_lr_final, grad_clip)
    trainer = MetaTrainer(model, task_sampler, config, device)
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        trainer.restore(checkpoint_dir)
        log.info("resumed from %s at iteration %d", checkpoint_dir, trainer.iteration)
    metrics = open(metrics_path, "w", buffering=1) if metrics_path else None
    if metrics:  # a resumed run rewrites the lines up to its checkpoint, dropping any written after it
        metrics.writelines(json.dumps(r) + "\n" for r in trainer.history)
    bar = tqdm(total=num_iterations, initial=trainer.iteration, disable=not progress, desc=algorithm,
               dynamic_ncols=True)
    try:
        while trainer.iteration < num_iterations:
            record = trainer.step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("loss", "accuracy")})
            if metrics:
                metrics.write(json.dumps(record) + "\n")
            if checkpoint_dir and checkpoint_every and trainer.iteration % checkpoint_every == 0:
                if metrics:
                    metrics.flush()
                trainer.save(checkpoint_dir, data, seed)
    finally:
        bar.close()
        if metrics:
            metrics.close()
    if checkpoint_dir:
        trainer.save(checkpoint_dir, data, seed)
    return trainer.model, trainer.history


def reptile_train(
    model: nn.Module,
    task_sampler: TaskSampler,
    meta_lr: float,
    inner_lr: float,
    inner_steps: int,
    num_iterations: int,
    **kwargs: Any,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Reptile: ``train_maml(..., algorithm="reptile")`` with outer step ``meta_lr`` annealed linearly."""
    return train_maml(model, task_sampler, inner_lr, meta_lr, inner_steps, "reptile",
                      num_iterations=num_iterations, **kwargs)
