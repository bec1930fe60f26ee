"""Supervised pretraining: the backbone trained as an ordinary classifier over every training class.

Cross-entropy over all classes (rotations included) with Adam, a one-cycle learning-rate schedule, large
batches and random affine distortions, through the model's linear head or a cosine classifier (optionally with
an additive cosine margin). Its features,
read out by a prototype-initialised head, are the starting point that meta-training (``edgeadapt train --init``)
then fine-tunes. Runs resume exactly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edgeadapt.runtime.format.vocab import SCOPES

from . import distributed
from .augment import AUGMENTATIONS, augment, default_augmentation
from .checkpoint import CheckpointError, load_training_state, save_checkpoint
from .contract import check_backbone
from .datasets.base import ClassDataset
from .errors import ConfigError
from .frozen_layers import encoded_part, frozen_state
from .run_loop import RunOptions, drive
from .run_state import load_optimizer_tensors, load_weights, optimizer_tensors, same_tensors

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


@dataclass(frozen=True)
class PretrainConfig:
    """Hyperparameters of a pretraining run (stored in checkpoints as ``pretraining``)."""

    epochs: int = 6
    batch_size: int = 256
    max_lr: float = 3e-3
    weight_decay: float = 0.0
    augmentation: str | None = None  # None: the one that suits the data's modality (augment.DEFAULT_AUGMENTATION)
    label_smoothing: float = 0.0
    classifier: str = "linear"
    margin: float = 0.0
    # "batch": batch norm normalises by each batch and updates its running statistics (training from scratch);
    # "frozen": it keeps the running statistics it started with (fine-tuning imported weights, whose folded batch
    # norm is an identity that batch statistics would replace).
    norm_statistics: str = "batch"
    # What trains: "all" layers, or only what a scope adapts ("last_block": the last block and the head; "head"),
    # the layers before it frozen and computed once per example (edgeadapt.sdk.frozen_layers; no augmentation).
    scope: str = "all"
    # With a scope other than "all": how many times each example is encoded, as stored and views - 1 times distorted
    # by the augmentation (drawn once, from the run's seed); the classifier trains on every view.
    views: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if not self.max_lr > 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("need max_lr > 0, weight_decay >= 0 and 0 <= label_smoothing < 1")
        if self.augmentation is not None and self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        if self.classifier not in CLASSIFIERS:
            raise ConfigError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if self.norm_statistics not in NORM_STATISTICS:
            raise ConfigError(f"norm_statistics must be one of {NORM_STATISTICS}, got {self.norm_statistics!r}")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.views < 1 or (self.views > 1 and self.scope == "all"):
            raise ConfigError(f"views (>= 1, got {self.views}) are encodings of each example: more than 1 needs a "
                              "scope other than 'all'")
        if self.scope != "all" and self.views == 1 and self.augmentation not in (None, "none"):
            raise ConfigError(f"scope={self.scope!r} computes the frozen layers once per example, so examples are "
                              f"read as stored: augmentation {self.augmentation!r} needs views > 1 (distorted "
                              "encodings of each example) or scope='all'")
        if not 0 <= self.margin < 1 or (self.margin and self.classifier != "cosine"):
            raise ConfigError(f"margin must be in [0, 1), and needs the cosine classifier; got {self.margin} "
                              f"with {self.classifier!r}")


CLASSIFIERS = ("linear", "cosine")
NORM_STATISTICS = ("batch", "frozen")


class CosineClassifier(nn.Module):
    """Logits ``exp(log_scale) * cos(feature, w_k)``, with a learned scale (Baseline++, Chen et al. 2019).

    Trained in place of a model's linear head, it shapes features whose directions separate classes, which is
    what a prototype head on L2-normalised features (``Conv4(feature_norm=...)``) compares.
    :meth:`with_margin` is the training loss's view: the target's cosine lowered by a margin (CosFace).
    """

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(0.01 * torch.randn(classes, features))
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * F.linear(F.normalize(features, dim=-1), F.normalize(self.weight, dim=-1))

    def with_margin(self, logits: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
        """``logits`` with each target's cosine lowered by ``margin`` (CosFace, Wang et al. 2018), for the loss:
        a class must then win by a margin, which draws each class's features closer together."""
        return logits - margin * self.log_scale.exp() * F.one_hot(labels, logits.shape[-1]).to(logits.dtype)

    def copy_to(self, head: nn.Linear, feature_norm: float) -> None:
        """Make ``head`` compute these logits on features of norm ``feature_norm`` (zero bias)."""
        with torch.no_grad():
            head.weight.copy_(self.log_scale.exp() / feature_norm * F.normalize(self.weight, dim=-1))
            head.bias.zero_()


class _Classifier(nn.Module):
    """The network pretraining optimises: the model, or its features followed by a cosine classifier (the
    model's own head then frozen, as it receives the classifier's weights by :meth:`CosineClassifier.copy_to`)."""

    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.model = model
        self.cosine = CosineClassifier(model.head.in_features, model.head.out_features) if kind == "cosine" else None
        model.head.requires_grad_(self.cosine is None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.cosine is None else self.cosine(self.model.features(x))


class Pretrainer:
    """A pretraining run's state (model, optimiser, schedule, data order, step) and one step of it.

    The model must output one logit per class of ``classes`` (e.g. ``Conv4(ways=classes.n_classes)``). With
    ``config.classifier == "cosine"`` a :class:`CosineClassifier` is trained in place of its head and copied into
    it at every save (the model needs ``feature_norm``, so that the copy computes the same logits). Each
    epoch visits every drawing once in an order drawn from the run's generator; under ``torchrun`` each process
    takes its contiguous share of every batch, so the steps are those of one process (up to float rounding),
    except that batch-norm layers normalise by each process's share (as DistributedDataParallel does).
    """

    def __init__(self, model: nn.Module, classes: ClassDataset, config: PretrainConfig, seed: int = 0,
                 device: str | torch.device | None = None, timeout: float = distributed.DEFAULT_TIMEOUT):
        outputs = getattr(getattr(model, "head", None), "out_features", None)
        if outputs != classes.n_classes:
            raise ConfigError(f"the model has {outputs} outputs, the data {classes.n_classes} classes")
        self.feature_norm = getattr(model, "config", {}).get("feature_norm")
        if config.classifier == "cosine" and self.feature_norm is None:
            raise ConfigError("a cosine classifier needs a model with feature_norm (normalised features)")
        self.world = distributed.join(device, timeout)
        self.device = distributed.device_for(device)
        self.model = model.to(self.device)
        self.config, self.seed, self.source, self.trained = config, seed, classes, self.model
        if config.scope != "all":  # the frozen layers' outputs, once per example; what trains is the model's rest
            self.trained, classes = self._encoded(classes, seed)
        self.classifier = _Classifier(self.trained, config.classifier).to(self.device)
        self.network = DistributedDataParallel(self.classifier) if self.world.size > 1 else self.classifier
        self.classes = classes
        self.labels = classes.labels
        # encoded examples are read as they are (distortions, if any, made the views)
        self.augmentation = "none" if config.scope != "all" else config.augmentation or default_augmentation(
            classes.input_spec)
        self.steps_per_epoch = -(-len(self.labels) // config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.generator = torch.Generator().manual_seed(seed)
        trained = [p for p in self.classifier.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trained, lr=config.max_lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=config.max_lr,
                                                             total_steps=self.total_steps)
        self.order = torch.randperm(len(self.labels), generator=self.generator)
        self.iteration = 0
        self.history: list[dict[str, Any]] = []

    def _encoded(self, classes: ClassDataset, seed: int) -> tuple[nn.Module, ClassDataset]:
        """The model's part that the scope trains, and ``classes`` encoded by the layers before it in ``views``
        views (the later ones distorted by the augmentation, drawn from their own generator of the run's seed)."""
        generator = torch.Generator().manual_seed(seed)
        kind = self.config.augmentation or default_augmentation(classes.input_spec)
        return encoded_part(self.model, classes, self.config.scope, self.device, self.config.views,
                            lambda x: augment(x, kind, generator))

    def step(self) -> dict[str, Any]:
        """One optimiser step on the next batch; a new epoch reshuffles."""
        position = self.iteration % self.steps_per_epoch
        if position == 0 and self.iteration > 0:
            self.order = torch.randperm(len(self.labels), generator=self.generator)
        index = self.order[position * self.config.batch_size: (position + 1) * self.config.batch_size]
        share = distributed.shard(len(index), self.world)  # every process distorts the whole batch alike
        x = augment(self.classes.decode(self.classes.examples[index]), self.augmentation,
                    self.generator)[share.start:share.stop]
        x, y = x.to(self.device), self.labels[index[share.start:share.stop]].to(self.device)
        self.network.train()
        if self.config.norm_statistics == "frozen":
            for module in self.network.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        logits = self.network(x)
        trained = self.classifier.cosine.with_margin(logits, y, self.config.margin) if self.config.margin else logits
        loss = F.cross_entropy(trained, y, label_smoothing=self.config.label_smoothing, reduction="sum")
        self.optimizer.zero_grad(set_to_none=True)
        (loss * (self.world.size / len(index))).backward()  # DDP averages: the batch's mean loss's gradient
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        totals = torch.stack([loss.detach(), (logits.argmax(1) == y).sum().to(loss.dtype)])
        loss_sum, correct = (distributed.all_sum(totals) / len(index)).tolist()
        record = {"iteration": self.iteration, "epoch": self.iteration / self.steps_per_epoch, "lr": lr,
                  "loss": loss_sum, "accuracy": correct}
        self.history.append(record)
        return record

    def save(self, path: str | os.PathLike, data: dict[str, Any] | None = None, seed: int | None = None) -> Path:
        """Checkpoint the model and everything needed to continue bit-identically."""
        tensors, param_groups = optimizer_tensors(self.optimizer)
        tensors.update({"run.generator": self.generator.get_state(), "run.order": self.order})
        if self.classifier.cosine is not None:
            self.classifier.cosine.copy_to(self.model.head, self.feature_norm)
            tensors.update({f"run.cosine.{k}": v.detach() for k, v in self.classifier.cosine.state_dict().items()})
        state = {"iteration": self.iteration, "history": self.history, "optimizer_param_groups": param_groups,
                 "scheduler": self.scheduler.state_dict()}
        config = {"pretraining": asdict(self.config), "data": data or {}, "seed": seed, **self.world.describe()}
        return save_checkpoint(path, self.model, config, tensors, state)

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from :meth:`save`'s checkpoint: weights, optimiser, schedule, data order and step."""
        tensors, state = load_training_state(path)
        if "run.order" not in tensors or "scheduler" not in state:
            raise CheckpointError(f"{path} is not a pretraining checkpoint")
        cached_from = frozen_state(self.model, self.config.scope) if self.config.scope != "all" else None
        load_weights(self.model, path, self.device)
        if cached_from is not None and not same_tensors(cached_from, frozen_state(self.model, self.config.scope)):
            self.classes = self._encoded(self.source, self.seed)[1]
        if self.classifier.cosine is not None:
            prefix = "run.cosine."
            saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if set(saved) != set(self.classifier.cosine.state_dict()):
                raise CheckpointError(f"{path} was not saved by a cosine-classifier pretraining run")
            self.classifier.cosine.load_state_dict(saved)
        load_optimizer_tensors(self.optimizer, tensors, state["optimizer_param_groups"], path, self.device)
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(tensors["run.generator"])
        self.order = tensors["run.order"]
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])


def pretrain(
    model: nn.Module,
    classes: ClassDataset,
    config: PretrainConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    data: dict[str, Any] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    evaluate_every: int = 0,
    timeout: float = distributed.DEFAULT_TIMEOUT,
    **options: Unpack[RunOptions],
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train ``model`` in place as a classifier over every class of ``classes``; return it and its history.

    ``options`` (:class:`~edgeadapt.sdk.run_loop.RunOptions`): with ``checkpoint_dir`` the run is saved every
    ``checkpoint_every`` steps (0: only at the end), and ``resume=True`` continues from that checkpoint exactly;
    ``metrics_path`` receives one JSON line per step; ``progress`` shows a bar.
    ``evaluate(model)``, every ``evaluate_every`` steps (e.g. a validation readout), adds to that step's record.
    Under ``torchrun`` the processes share each batch through DistributedDataParallel (``timeout``: seconds for
    them to meet); rank 0 alone writes, and a process restarted by ``torchrun --max-restarts`` resumes.
    """
    check_backbone(model.eval(), classes.image_shape)  # the convention the inner loop will rely on
    run = Pretrainer(model, classes, config or PretrainConfig(), seed, device, timeout)

    def evaluate_run() -> dict[str, float]:
        run.model.eval()
        return evaluate(run.model) if evaluate else {}

    drive(run, run.total_steps, desc="pretrain", save=lambda path: run.save(path, data, seed),
          evaluate=evaluate_run if evaluate else None, evaluate_every=evaluate_every, **options)
    if run.classifier.cosine is not None:
        run.classifier.cosine.copy_to(run.model.head, run.feature_norm)
        run.model.head.requires_grad_(True)
    run.model.eval()
    return run.model, run.history
