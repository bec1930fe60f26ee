"""``edgeadapt continual``: train through rotated MNIST with SGD, SGD + EWC, Reptile or Reptile + EWC."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from edgeadapt.runtime.format.files import atomic_write
from edgeadapt.sdk.continual.architectures import ARCHITECTURES, continual_model
from edgeadapt.sdk.continual.ewc import FISHERS
from edgeadapt.sdk.continual.meta_controller import INNER_OPTIMIZERS, ControllerConfig
from edgeadapt.sdk.continual.metrics import average_accuracy, few_shot_accuracy, forgetting
from edgeadapt.sdk.continual.recipes import STREAMS, hyperparameters
from edgeadapt.runtime.memory import POLICIES as MEMORY_POLICIES
from edgeadapt.sdk.continual.config import METHODS, ContinualConfig
from edgeadapt.sdk.continual.runner import ContinualRun
from edgeadapt.sdk.continual.streams import ROTATIONS, Task, rotated_mnist
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.sanity import warn_if_never_learned

from .common import add_command

log = logging.getLogger("edgeadapt")
FEW_SHOT = 5  # examples per class in the few-shot view
MNIST_CLASSES = 10


def add_continual_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``continual`` subcommand to ``commands`` (the CLI's subparsers)."""
    defaults, inner = ContinualConfig(), ControllerConfig()
    tuned = "default: the method's tuned value on --arch (edgeadapt.sdk.continual.recipes)"
    p = add_command(
        commands, "continual", run_continual, help="train through a stream of tasks (rotated MNIST) without forgetting",
        description="Train one model through MNIST rotated by 0, 90, 180 and 270 degrees with SGD, SGD + EWC, "
                    "Reptile (fast/slow weights) or Reptile + EWC. Writes OUT/checkpoint/ (after each task and "
                    "every --checkpoint-every steps), OUT/metrics.jsonl and OUT/summary.json (the accuracy matrix).")
    p.add_argument("--dataset", choices=("rotated-mnist",), default="rotated-mnist")
    p.add_argument("--data", type=Path, default=None,
                   help="folder holding the four MNIST IDX .gz files, or a data folder with mnist/ "
                        "(default: $EDGEADAPT_DATA)")
    p.add_argument("--method", choices=tuple(METHODS), default="sgd",
                   help="the outer rule and regulariser: sgd, sgd + EWC, reptile, reptile + EWC (default: %(default)s)")
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), default="mlp", help="mlp (784-h-h-10) or cnn (Conv4)")
    p.add_argument("--hidden", type=int, default=None, help="MLP width / CNN filters (default: mlp 100, cnn 32)")
    p.add_argument("--rotations", type=int, nargs="+", default=list(ROTATIONS), help="degrees, one task each")
    p.add_argument("--train-size", type=int, default=None, help="training images per task (default: mlp 20000, "
                                                                  "cnn 10000)")
    p.add_argument("--eval-size", type=int, default=None, help="test images scored per task (default: mlp 10000, "
                                                                "cnn 1000)")
    p.add_argument("--validation-size", type=int, default=5000,
                   help="last training images held out: never trained on, scored by --search (default: %(default)s)")
    p.add_argument("--steps-per-task", type=int, default=None,
                   help="gradient steps on each task (default: mlp 2000, cnn 150)")
    p.add_argument("--batch-size", type=int, default=None, help="(default: mlp 64, cnn 32)")
    p.add_argument("--inner-optimizer", choices=sorted(INNER_OPTIMIZERS), default=inner.inner_optimizer,
                   help="Reptile's inner optimiser (the SGD methods use plain SGD)")
    p.add_argument("--inner-lr", type=float, default=None, help=f"alpha_f, also SGD's learning rate ({tuned})")
    p.add_argument("--meta-lr", type=float, default=None, help=f"alpha_m, Reptile's slow-weight step ({tuned})")
    p.add_argument("--inner-steps", type=int, default=None, help=f"K, Reptile's inner steps ({tuned})")
    p.add_argument("--momentum", type=float, default=inner.momentum,
                   help="momentum on the slow update, v = m v + delta (0: off; 0.9 is usual)")
    p.add_argument("--meta-batch", type=int, default=inner.meta_batch,
                   help="inner runs whose deltas are averaged per slow update")
    p.add_argument("--meta-lr-policy", action="store_true",
                   help="choose alpha_m per outer step with the logistic policy trained on a replay batch")
    p.add_argument("--ewc-lambda", type=float, default=None, help=f"EWC's lambda ({tuned})")
    _add_memory_arguments(p, defaults)
    p.add_argument("--fisher", choices=FISHERS, default=defaults.fisher, help="EWC's Fisher estimate")
    p.add_argument("--fisher-samples", type=int, default=defaults.fisher_samples,
                   help="training examples the Fisher is estimated on")
    p.add_argument("--online-gamma", type=float, default=None, help="online EWC with this decay (default: off)")
    p.add_argument("--eval-every", type=int, default=0, help="also score every task every N steps (0: per task)")
    p.add_argument("--search", type=int, default=0, metavar="TRIALS",
                   help="first tune alpha_f (and Reptile's alpha_m, K) with Optuna on a validation slice of the "
                        "training set, then train with the best values (needs edgeadapt[search])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--checkpoint-every", type=int, default=500, help="gradient steps between checkpoints")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run_continual(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) the run the arguments describe; write and return its summary."""
    checkpoint = args.out / "checkpoint"
    config = _config(args)
    flatten = args.arch == "mlp"
    tasks = _tasks(args, flatten, "test")
    search = None
    data = {"dataset": args.dataset, "arch": args.arch, "hidden": args.hidden or STREAMS[args.arch].hidden,
            "rotations": list(args.rotations), "train_size": args.train_size, "eval_size": args.eval_size,
            "validation_size": args.validation_size, "tasks": [t.name for t in tasks]}
    if args.resume:
        run = ContinualRun.resume(checkpoint, tasks, data)
        if (run.config.outer, run.config.regulariser) != METHODS[args.method]:
            raise ConfigError(f"{checkpoint} was trained with {run.config.method}, not {args.method}")
    else:
        if args.search:
            search = _search(args, config, flatten)
            config = config.replace(**search["best"])
        torch.manual_seed(args.seed)
        run = ContinualRun(_model(args), tasks, config, args.seed, data)
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("continual %s on %s (%s)", run.config.method, args.dataset, ", ".join(t.name for t in tasks))
    matrix = run.train(checkpoint, args.checkpoint_every, args.out / "metrics.jsonl", progress=not args.no_progress)
    if run.controller is not None:
        run.controller.apply_meta_weights()
    inner = run.config.controller
    summary = {
        "method": run.config.method, "tasks": [t.name for t in tasks], "matrix": matrix,
        "average": average_accuracy(matrix), "forgetting": forgetting(matrix),
        "few_shot": {"shots": FEW_SHOT, "steps": inner.inner_steps, "lr": inner.inner_lr,
                     "accuracy": [few_shot_accuracy(run.model, t, FEW_SHOT, inner.inner_steps, inner.inner_lr,
                                                    args.seed) for t in tasks]},
        "config": dataclasses.asdict(run.config), "checkpoint": str(checkpoint),
    }
    if search is not None:
        summary["search"] = search
    atomic_write(args.out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    warn_if_never_learned(matrix, summary["tasks"], MNIST_CLASSES)
    print(f"{run.config.method}: final average accuracy {100 * summary['average']:.1f}%, "
          f"forgetting {100 * summary['forgetting']:.1f} points")
    return summary


def _add_memory_arguments(p: argparse.ArgumentParser, defaults: ContinualConfig) -> None:
    """The replay memory's options."""
    p.add_argument("--memory", type=int, default=0, metavar="N",
                   help="a replay memory of N examples over the whole stream, filled from every finished task by "
                        "--memory-policy and replayed beside every later minibatch (0: no memory; default: "
                        "%(default)s)")
    p.add_argument("--replay-size", type=int, default=None, metavar="R",
                   help="remembered examples beside each minibatch (default: as many as --batch-size)")
    p.add_argument("--memory-policy", choices=sorted(MEMORY_POLICIES), default=defaults.memory_policy,
                   help="which examples the memory keeps: uniform or class-balanced reservoir sampling")
    p.add_argument("--distill", type=float, default=defaults.distill,
                   help="with --memory: weight of holding the network's outputs on replayed examples to those it gave "
                        "when they were stored (dark experience replay; 0: labels only)")
    p.add_argument("--steps-per-batch", type=int, default=defaults.steps_per_batch, metavar="S",
                   help="gradient steps each draw of the current task's examples serves, each beside a fresh draw "
                        "from the memory (Meta-Experience Replay's s; default: %(default)s)")


def _config(args: argparse.Namespace) -> ContinualConfig:
    """The run's settings: the command line's, else the method's tuned recipe (:mod:`.recipes`)."""
    stream = STREAMS[args.arch]
    for name, value in (("train_size", stream.train_size), ("eval_size", stream.eval_size),
                        ("steps_per_task", stream.steps), ("batch_size", stream.batch)):
        if getattr(args, name) is None:
            setattr(args, name, value)
    tuned = hyperparameters(args.method, args.arch)
    given = {name: getattr(args, name) for name in ("inner_lr", "meta_lr", "inner_steps", "ewc_lambda")}
    base = ContinualConfig.of(
        args.method, steps_per_task=args.steps_per_task, batch_size=args.batch_size,
        controller=ControllerConfig(inner_optimizer=args.inner_optimizer, momentum=args.momentum,
                                    meta_batch=args.meta_batch),
        memory=args.memory, memory_policy=args.memory_policy, distill=args.distill, steps_per_batch=args.steps_per_batch,
        replay_size=args.replay_size,
        meta_lr_policy=args.meta_lr_policy, fisher=args.fisher, fisher_samples=args.fisher_samples,
        online_gamma=args.online_gamma, eval_every=args.eval_every)
    return base.replace(**{**tuned, **{k: v for k, v in given.items() if v is not None}})


def _model(args: argparse.Namespace) -> torch.nn.Module:
    return continual_model(args.arch, args.hidden or STREAMS[args.arch].hidden)[0]


def _tasks(args: argparse.Namespace, flatten: bool, evaluate_on: str) -> list[Task]:
    return rotated_mnist(args.data, tuple(args.rotations), args.train_size, args.eval_size, evaluate_on,
                         args.validation_size, flatten, args.seed)


def _search(args: argparse.Namespace, config: ContinualConfig, flatten: bool) -> dict[str, Any]:
    """Optuna search on a validation slice of the training set (the test set is never looked at)."""
    from edgeadapt.sdk.continual.search import search_hyperparameters

    validation = _tasks(args, flatten, "validation")
    result = search_hyperparameters(validation, lambda: _model(args), config, args.search, args.seed)
    log.info("search: best %s (validation average %.3f)", result["best"], result["best_validation_average"])
    return result
