"""``edgeadapt train``: meta-train a model (Reptile, FOMAML or MAML), then score it on held-out classes."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from edgeadapt.runtime.format.vocab import HEAD_INITS, SCOPES
from edgeadapt.sdk import distributed
from edgeadapt.sdk.algorithms import ALGORITHMS
from edgeadapt.sdk.backbones import BACKBONES, BackboneSettings
from edgeadapt.sdk.checkpoint import initialise_from, load_checkpoint, load_lr_scales, start_from
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.evaluation import EvalResult, evaluate
from edgeadapt.sdk.models import ACTIVATIONS, build_model, model_spec
from edgeadapt.sdk.preconditioner import adam_lr_scales, preconditioned_parameters
from edgeadapt.sdk.recipes import SPLITS, build_default_model, make_sampler, recipe_defaults
from edgeadapt.sdk.sanity import describe, warn_if_chance
from edgeadapt.sdk.training import MetaConfig, meta_train

from .common import (
    add_command,
    add_data_arguments,
    add_distributed_arguments,
    data_source,
    positive_float,
    positive_int,
    trained_input,
)

log = logging.getLogger("edgeadapt")
INNER_RATES = ("uniform", "adam", "adam-tensor")
RUN_FILES = ("checkpoint", "metrics.jsonl", "summary.json")  # what marks a folder as a training run


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand to ``commands``."""
    train = add_command(commands, "train", run_train, help="meta-train a model, then evaluate it on held-out classes",
                                description="Meta-train with Reptile, FOMAML or MAML; checkpoints, metrics.jsonl "
                                            "and summary.json go to --out.")
    add_data_arguments(train)
    train.add_argument("--min-ways", type=positive_int, default=None,
                       help="train on tasks of --min-ways..--ways classes (padded, as deployed artifacts pad)")
    train.add_argument("--min-shots", type=positive_int, help="train on tasks of --min-shots..--shots per class")
    train.add_argument("--within-alphabet", action="store_true", help="draw each training task's classes from one "
                       "group (an Omniglot alphabet, a folder's group level): siblings, each other's hard negatives")
    train.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="reptile", help="(default: %(default)s)")
    train.add_argument("--iterations", type=positive_int, default=None, help="meta-iterations (default: per dataset)")
    train.add_argument("--meta-batch", type=positive_int, default=5, help="tasks per meta-batch (default: %(default)s)")
    train.add_argument("--inner-steps", type=positive_int, default=None, help="SGD steps on the support set")
    train.add_argument("--inner-lr", type=positive_float, default=None, help="inner SGD learning rate")
    train.add_argument("--inner-batch", type=positive_int, default=None,
                       help="support examples per inner SGD step while meta-training, drawn without replacement "
                            "(the Reptile paper's mini-batches; default: the whole support set, as deployed)")
    train.add_argument("--inner-rates", choices=INNER_RATES, default=None,
                       help="inner learning rate per parameter: uniform (inner-lr everywhere), or inner-lr times "
                            "Adam's frozen preconditioner from the --init pretraining run, per element or per tensor "
                            "(saved with the run and exported with it; default: the resumed run's, else uniform)")
    train.add_argument("--outer-lr", type=positive_float, default=None,
                       help="Reptile's initial meta step size, or MAML/FOMAML's Adam learning rate")
    train.add_argument("--scope", choices=SCOPES, default="all",
                       help="what adapts in the inner loop: all parameters, the last block and the head, or the "
                            "head only (default: %(default)s)")
    train.add_argument("--head-init", choices=HEAD_INITS, default="learned",
                       help="where each task's head starts: the meta-learned head, zeros, or class prototypes "
                            "(W_k = 2 c_k, b_k = -|c_k|^2; any number of classes) (default: %(default)s)")
    train.add_argument("--head-scale", type=positive_float, default=1.0,
                       help="inverse temperature of a prototype head's logits (default: %(default)s)")
    train.add_argument("--cache-frozen", action="store_true", help="compute the layers the scope freezes once per "
                       "example, not per task; train only what adapts (docs/sdk.md, \"Frozen layers computed once\")")
    train.add_argument("--init", type=Path, default=None,
                       help="start from this checkpoint's weights (e.g. a pretrain run's checkpoint)")
    train.add_argument("--weights", type=Path, default=None, metavar="FILE",
                       help="when not --init: start the backbone from these weights, a .safetensors state dict (e.g. "
                            "what `edgeadapt import-weights` wrote)")
    train.add_argument("--feature-norm", type=positive_float, default=None, metavar="NORM",
                       help="when not --init: L2-normalise the backbone's features and scale them to NORM")
    train.add_argument("--model", choices=sorted(BACKBONES), default=None,
                       help="the backbone, when not --init (default: the dataset's, conv4 for pictures)")
    train.add_argument("--hidden", type=positive_int, default=None,
                       help="the backbone's width: filters per conv layer (Conv4), of the first stage (ResNet-12, "
                            "MobileNets), MLP units")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                       help="hidden activation; elu keeps device adaptation within float32 rounding of PyTorch's "
                            "(see docs/deploy.md) (default: relu for Conv4, the backbone's own for the others)")
    train.add_argument("--split", choices=SPLITS, default="train",
                       help="classes to train on: train (Omniglot: 24 background alphabets), or all")
    train.add_argument("--out", type=Path, required=True, help="output folder")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--force", action="store_true", help="replace a run already saved in --out")
    train.add_argument("--checkpoint-every", type=int, default=500, help="iterations between checkpoints")
    train.add_argument("--eval-tasks", type=int, default=200,
                       help="validation tasks evaluated after training (0: skip; default: %(default)s)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_distributed_arguments(train)


def _check_run_folder(args: argparse.Namespace) -> None:
    """Refuse an --out that is a file, or that holds a run unless resuming or forced."""
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder")
    existing = [name for name in RUN_FILES if (args.out / name).exists()]
    if args.resume and not (args.out / "checkpoint").is_dir():
        raise ConfigError(f"--resume: {args.out} holds no checkpoint to continue")
    if existing and not (args.resume or args.force):
        raise ConfigError(f"{args.out} already holds a run ({', '.join(existing)}); pass --resume to continue it "
                         "or --force to replace it")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    args.resume = distributed.resuming(args.resume, args.out / "checkpoint")
    args.device = str(distributed.device_for(args.device))
    _check_run_folder(args)
    args.source = data_source(args, trained_input(args.out / "checkpoint" if args.resume else args.init))
    defaults = recipe_defaults(args.dataset, args.algorithm)
    model = None
    if args.resume:  # continue with the checkpoint's own settings unless overridden on the command line
        model, config = load_checkpoint(args.out / "checkpoint")
        saved = config.get("training", {})
        if saved.get("algorithm", args.algorithm) != args.algorithm:
            raise ConfigError(f"{args.out / 'checkpoint'} was trained with {saved['algorithm']}, "
                             f"not {args.algorithm}")
        defaults.update({k: saved[k] for k in ("inner_steps", "inner_lr", "outer_lr") if k in saved})
    pick = {k: getattr(args, k) if getattr(args, k) is not None else defaults[k]
            for k in ("iterations", "inner_steps", "inner_lr", "outer_lr", "hidden")}
    torch.manual_seed(args.seed)
    train_sampler, data = make_sampler(args.dataset, args.source, args.split, args.ways, args.shots,
                                       args.query_shots, args.seed, training=True, min_ways=args.min_ways,
                                       min_shots=args.min_shots, within_alphabet=args.within_alphabet)
    if model is None:
        model = _initial_model(args, pick["hidden"])
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("training %s with %s on %s (%s)", type(model).__name__, args.algorithm, args.dataset, describe(data))
    lr_scales = _inner_rates(args, model)
    config = MetaConfig(args.algorithm, inner_lr=pick["inner_lr"], outer_lr=pick["outer_lr"],
                        inner_steps=pick["inner_steps"], meta_batch_size=args.meta_batch,
                        num_iterations=pick["iterations"], scope=args.scope, head_init=args.head_init,
                        head_scale=args.head_scale, inner_batch=args.inner_batch, cache_frozen=args.cache_frozen)
    model, history = meta_train(
        model, train_sampler, config, lr_scales=lr_scales, device=args.device, data=data, seed=args.seed,
        timeout=args.rendezvous_timeout, checkpoint_dir=args.out / "checkpoint",
        checkpoint_every=args.checkpoint_every, resume=args.resume, metrics_path=args.out / "metrics.jsonl",
        progress=not args.no_progress)
    world = distributed.world()
    distributed.leave()
    summary: dict[str, Any] = {"checkpoint": str(args.out / "checkpoint"), "iterations": len(history),
                               **world.describe()}
    if not world.is_main:
        return summary
    if args.eval_tasks > 0:
        summary["validation"] = _before_after(args, model, pick, lr_scales)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _initial_model(args: argparse.Namespace, hidden: int) -> torch.nn.Module:
    """The default model for the dataset; with ``--init``, shaped like that checkpoint's and holding its weights."""
    if args.init is None:
        activation = args.activation or ("relu" if args.model in (None, "conv4") else None)
        settings = BackboneSettings(args.ways, hidden if args.hidden or args.model is None else None, activation,
                                    feature_norm=args.feature_norm)
        model = build_default_model(args.dataset, settings, args.source, args.model)
        if args.weights is not None:
            kept = start_from(model, args.weights)
            log.info("started from %s%s", args.weights, f" (left as initialised: {', '.join(kept)})" if kept else "")
        return model
    if args.weights is not None or args.feature_norm is not None:
        raise ConfigError("--weights and --feature-norm build a new model; with --init the checkpoint's weights and "
                          "shape are used")
    source, _ = load_checkpoint(args.init)
    spec = model_spec(source)
    model = build_model(spec["name"], {**spec["config"], "ways": args.ways})
    kept = initialise_from(model, args.init)
    log.info("initialised from %s%s", args.init, f" (new: {', '.join(kept)})" if kept else "")
    return model


def _inner_rates(args: argparse.Namespace, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The per-parameter inner rates ``--inner-rates`` asks for (a resumed run keeps its own by default)."""
    rates = args.inner_rates
    if rates is None:
        return load_lr_scales(args.out / "checkpoint") if args.resume else None
    if rates == "uniform":
        return None
    if args.init is None:
        raise ConfigError(f"--inner-rates {rates} reads Adam's state from a pretraining run: pass it with --init")
    granularity = "element" if rates == "adam" else "tensor"
    return adam_lr_scales(args.init, preconditioned_parameters(model, args.scope), granularity)


def _before_after(args: argparse.Namespace, model: torch.nn.Module, pick: dict[str, Any],
                  lr_scales: dict[str, torch.Tensor] | None) -> dict[str, Any]:
    """Held-out scores of the meta-trained model before and after adaptation, and of a random init adapted."""
    def score(m: torch.nn.Module, steps: int, rates: dict[str, torch.Tensor] | None = lr_scales) -> EvalResult:
        sampler, _ = make_sampler(args.dataset, args.source, "validation", args.ways, args.shots,
                                  args.query_shots, args.seed + 1, training=False)
        return evaluate(m, sampler, pick["inner_lr"], steps, args.eval_tasks, scope=args.scope,
                        head_init=args.head_init, head_scale=args.head_scale, lr_scales=rates, device=args.device,
                        cache_frozen=args.cache_frozen and args.scope != "all")

    torch.manual_seed(args.seed)
    spec = model_spec(model)  # a fresh network of the trained one's shape (a resumed or initialised run's own)
    untrained = build_model(spec["name"], spec["config"]).to(args.device)
    results = {
        "untrained_adapted": score(untrained, pick["inner_steps"], None),
        "meta_trained_before_adaptation": score(model, 0),
        "meta_trained_after_adaptation": score(model, pick["inner_steps"]),
    }
    print(f"Held-out {args.ways}-way {args.shots}-shot {args.dataset} ({args.eval_tasks} tasks):")
    for name, r in results.items():
        print(f"  {name.replace('_', ' '):32s} {r}")
    warn_if_chance(results["meta_trained_after_adaptation"], args.ways, "the meta-trained model, adapted,")
    return {name: {"metric": r.metric, "mean": r.mean, "ci95": r.ci95, "tasks": r.num_tasks}
            for name, r in results.items()}
