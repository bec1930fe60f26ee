"""The meta-training loop: sample a meta-batch, ask the algorithm for a meta-gradient, step the outer optimiser.

Each algorithm (:mod:`~edgeadapt.sdk.algorithms`) brings its own outer optimiser, schedule and clipping.
Runs resume exactly from a checkpoint: weights, optimiser and schedule state, iteration and history are
saved, and the tasks of an iteration follow from the seed and the iteration alone. Under ``torchrun`` the
meta-batch is shared among the processes (see :class:`MetaTrainer`).
"""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from . import distributed
from .algorithms import ALGORITHMS, MetaStep, OuterSettings, get_algorithm
from .algorithms.base import query_count
from .checkpoint import CheckpointError, load_lr_scales, load_training_state, save_checkpoint
from .errors import ConfigError
from .frozen_layers import cache_frozen_layers, frozen_state, part_scales
from .heads import is_per_task
from .inner_loop import InnerLoop, Params
from .minibatches import iteration_minibatch_masks
from .run_loop import RunOptions, drive
from .run_state import load_optimizer_tensors, load_weights, optimizer_tensors, same_tensors
from .tasks import TaskBatch

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


class TaskSampler(Protocol):
    """Anything that draws the tasks of a meta-batch by position (see ``EpisodeSampler.tasks``)."""

    loss: str
    seed: int

    def tasks(self, iteration: int, indices: range) -> TaskBatch: ...
    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MetaConfig:
    """Every hyperparameter of a meta-training run (stored in checkpoints as ``training``)."""

    algorithm: str
    _: KW_ONLY
    inner_lr: float
    outer_lr: float
    inner_steps: int
    meta_batch_size: int
    num_iterations: int
    scope: str = "all"
    loss: str = "cross_entropy"
    outer_lr_final: float = 0.0
    grad_clip: float = 10.0
    head_init: str = "learned"
    head_scale: float = 1.0
    inner_batch: int | None = None
    cache_frozen: bool = False

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.meta_batch_size < 1 or self.num_iterations < 0:
            raise ConfigError("meta_batch_size must be >= 1 and num_iterations >= 0")
        if not self.outer_lr > 0:
            raise ConfigError(f"outer_lr must be > 0, got {self.outer_lr}")
        if not 0 <= self.outer_lr_final <= self.outer_lr:
            raise ConfigError(f"outer_lr_final must be in [0, outer_lr], got {self.outer_lr_final}")
        if self.inner_batch is not None and self.inner_batch < 1:
            raise ConfigError(f"inner_batch must be >= 1, got {self.inner_batch}")

    @property
    def outer(self) -> OuterSettings:
        """The settings the algorithm turns into its outer optimiser, schedule and clipping."""
        return OuterSettings(self.outer_lr, self.num_iterations, self.outer_lr_final, self.grad_clip)


class MetaTrainer:
    """Holds a run's mutable state (model, optimiser, schedule, iteration, history) and advances it.

    Task ``i`` of iteration ``t`` depends only on the sampler's seed, ``t`` and ``i``. Under ``torchrun`` each
    process draws its contiguous share of the meta-batch and :meth:`reduce` combines the shares' meta-gradients
    and metrics into exactly the meta-batch's (up to float rounding), so any number of processes takes the
    same steps as one.

    ``vectorise`` chooses how first-order algorithms (Reptile, FOMAML) adapt a meta-batch (see
    :meth:`InnerLoop.adapt_batch`): all tasks at once with ``vmap``, or task by task. By default vmap on
    accelerators, and on a CPU where the frozen layers are cached (``config.cache_frozen``: the adapted part is
    small, so one operator for every task beats one per task, 1.7x at 1 shot and 1.5x at 5 in
    benchmarks/reptile_throughput.py); task by task on a CPU otherwise, where vmap's grouped convolutions over
    whole images are slower. MAML always uses vmap.

    ``lr_scales``: per-parameter inner rates (see :class:`InnerLoop`), kept constant and saved with the run.

    ``config.cache_frozen``: the frozen layers' outputs are computed once per example, and the inner loop and the
    outer optimiser work on the model's adapted part (:mod:`~edgeadapt.sdk.frozen_layers`; the same modules, so
    ``model`` is what is trained and saved). Reptile takes the same steps either way; FOMAML and MAML then leave
    the frozen layers as they are.
    """

    def __init__(self, model: nn.Module, sampler: TaskSampler, config: MetaConfig,
                 device: str | torch.device | None = None, timeout: float = distributed.DEFAULT_TIMEOUT,
                 vectorise: bool | None = None, lr_scales: Params | None = None):
        self.world = distributed.join(device, timeout)
        if config.meta_batch_size < self.world.size:
            raise ConfigError(f"a meta-batch of {config.meta_batch_size} tasks cannot be shared by "
                             f"{self.world.size} processes")
        self.device = distributed.device_for(device)
        # eval mode: tasks are adapted and scored through the inner loop, which normalises by batch-norm layers'
        # running statistics; meta-training never changes them
        self.model = model.to(self.device).eval()
        distributed.broadcast_parameters(self.model)
        self.lr_scales = None if lr_scales is None else {k: v.to(self.device) for k, v in lr_scales.items()}
        self.trained, self.sampler, self._source, inner_scales = self.model, sampler, sampler, self.lr_scales
        if config.cache_frozen:
            self.trained, self.sampler = cache_frozen_layers(self.model, sampler, config.scope, self.device)
            inner_scales = part_scales(self.model, config.scope, self.lr_scales)
        self.config = config
        self.algorithm = get_algorithm(config.algorithm)
        ways = getattr(sampler, "ways", None) if is_per_task(config.head_init) else None
        self.inner = InnerLoop(self.trained, config.inner_lr, config.inner_steps, config.loss, config.scope,
                               config.head_init, ways, head_scale=config.head_scale,
                               vectorise=self._vectorise(config) if vectorise is None else vectorise,
                               lr_scales=inner_scales)
        self.optimizer = self.algorithm.optimizer(self.trained.parameters(), config.outer)
        self.scheduler = self.algorithm.scheduler(self.optimizer, config.outer)
        self.iteration = 0
        self.history: list[dict[str, Any]] = []

    def _vectorise(self, config: MetaConfig) -> bool:
        """The default of ``vectorise`` (see the class docstring)."""
        return self.device.type != "cpu" or config.cache_frozen

    def reduce(self, result: MetaStep, batch: TaskBatch) -> MetaStep:
        """Combine the processes' meta-gradients and query metrics, each weighted by what it is a mean over."""
        if self.world.size == 1:
            return result
        weight, count = float(self.algorithm.weight(batch)), float(query_count(batch))
        metrics = [result.query_loss or 0.0, result.query_accuracy or 0.0]
        flat = torch.cat([torch.cat([g.detach().double().flatten() for g in result.gradient.values()]) * weight,
                          torch.tensor([weight, metrics[0] * count, metrics[1] * count, count],
                                       dtype=torch.float64, device=self.device)])
        total = distributed.all_sum(flat)
        weight, loss, accuracy, count = total[-4:].tolist()
        flat = total[:-4] / weight
        gradient, offset = {}, 0
        for name, g in result.gradient.items():
            gradient[name] = flat[offset: offset + g.numel()].view_as(g).to(g.dtype)
            offset += g.numel()
        return MetaStep(gradient, None if result.query_loss is None else loss / count,
                        None if result.query_accuracy is None else accuracy / count)

    def step_masks(self, batch: TaskBatch, share: range) -> torch.Tensor | None:
        """Each task's inner mini-batches (``inner_batch`` examples per step), or None for full-batch steps.

        Like its tasks, an iteration's mini-batches follow from the seed, the iteration and the task's position.
        """
        if self.config.inner_batch is None:
            return None
        masks = iteration_minibatch_masks(batch.support_y, self.config.inner_batch, self.config.inner_steps,
                                          self.sampler.seed, self.iteration, share)
        return masks.to(self.device)

    def step(self) -> dict[str, Any]:
        """One meta-iteration; returns (and records) its metrics."""
        share = distributed.shard(self.config.meta_batch_size, self.world)
        batch = TaskBatch(*(t.to(self.device) for t in self.sampler.tasks(self.iteration, share)))
        gradient = self.algorithm.meta_gradient(self.inner, self.inner.params(), batch, self.step_masks(batch, share))
        result = self.reduce(gradient, batch)
        lr = self.optimizer.param_groups[0]["lr"]
        for name, p in self.trained.named_parameters():
            p.grad = result.gradient[name].detach().clone()
        self.algorithm.clip(self.trained.parameters(), self.config.outer)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1
        record = {"iteration": self.iteration, "outer_lr": lr, "loss": result.query_loss,
                  "accuracy": result.query_accuracy}
        record = {k: v for k, v in record.items() if v is not None}
        self.history.append(record)
        return record

    def checkpoint_config(self, data: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
        return {"training": asdict(self.config), "data": data or self.sampler.describe(), "seed": seed,
                **self.world.describe()}

    def save(self, path: str | os.PathLike, data: dict[str, Any] | None = None, seed: int | None = None) -> Path:
        """Checkpoint weights and everything needed to continue bit-identically (tasks follow the iteration)."""
        tensors, param_groups = optimizer_tensors(self.optimizer)
        state = {"iteration": self.iteration, "history": self.history, "optimizer_param_groups": param_groups,
                 "scheduler": self.scheduler.state_dict()}
        return save_checkpoint(path, self.model, self.checkpoint_config(data, seed), tensors, state,
                               self.lr_scales)

    def _frozen_state(self) -> Params | None:
        """A copy of the frozen layers' weights and statistics, when their outputs are cached."""
        return frozen_state(self.model, self.config.scope) if self.config.cache_frozen else None

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from :meth:`save`'s checkpoint: weights, optimiser, schedule, iteration and history."""
        tensors, state = load_training_state(path)
        cached_from = self._frozen_state()
        load_weights(self.model, path, self.device)
        if not same_tensors(cached_from, self._frozen_state()):  # the cache was made by other frozen layers
            self.sampler = cache_frozen_layers(self.model, self._source, self.config.scope, self.device)[1]
        load_optimizer_tensors(self.optimizer, tensors, state["optimizer_param_groups"], path, self.device)
        if "scheduler" not in state:
            raise CheckpointError(f"{path}: no learning-rate schedule state (saved by an older edgeadapt)")
        self.scheduler.load_state_dict(state["scheduler"])
        if not same_tensors(load_lr_scales(path), self.lr_scales):
            raise ConfigError(f"{path} was trained with other per-parameter inner rates (lr_scales) than this run's")
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])


def meta_train(
    model: nn.Module,
    task_sampler: TaskSampler,
    config: MetaConfig,
    *,
    lr_scales: Params | None = None,
    device: str | torch.device | None = None,
    data: dict[str, Any] | None = None,
    seed: int | None = None,
    timeout: float = distributed.DEFAULT_TIMEOUT,
    **options: Unpack[RunOptions],
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Meta-train ``model`` in place with ``config`` (MAML, FOMAML or Reptile); return it and its history.

    Args:
        model: a model in the convention of :mod:`~edgeadapt.sdk.contract` (or one that adapts every parameter).
        task_sampler: meta-batches (e.g. :class:`~edgeadapt.sdk.tasks.EpisodeSampler`); its ``loss``
            ("cross_entropy" or "mse") is the run's.
        config: every hyperparameter (:class:`MetaConfig`), stored in the checkpoint as ``training``.
        lr_scales: parameters' own constant inner rates (e.g. :func:`~edgeadapt.sdk.preconditioner.adam_lr_scales`),
            saved in the checkpoint and carried into exports.
        device, timeout: where to run; under ``torchrun`` the processes share each meta-batch and meet within
            ``timeout`` seconds (rank 0 alone writes; a process restarted by ``--max-restarts`` resumes).
        data, seed: recorded in the checkpoint (where the tasks come from, the run's seed).
        options: :class:`~edgeadapt.sdk.run_loop.RunOptions`: ``checkpoint_dir`` (saved every
            ``checkpoint_every`` iterations and at the end), ``resume`` (continue exactly), ``metrics_path`` (one
            JSON line per iteration), ``progress``.
    """
    config = replace(config, loss=task_sampler.loss)
    trainer = MetaTrainer(model, task_sampler, config, device, timeout, lr_scales=lr_scales)
    drive(trainer, config.num_iterations, desc=config.algorithm, save=lambda path: trainer.save(path, data, seed),
          **options)
    return trainer.model, trainer.history
