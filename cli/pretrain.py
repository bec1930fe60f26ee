"""``edgeadapt pretrain``: supervised pretraining of a backbone over every training class, then a prototype readout."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from edgeadapt.runtime.format.vocab import SCOPES
from edgeadapt.sdk import distributed
from edgeadapt.sdk.augment import AUGMENTATIONS
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.evaluation import evaluate
from edgeadapt.sdk.frozen_layers import encoded_part
from edgeadapt.sdk.backbones import BACKBONES, BackboneSettings
from edgeadapt.sdk.checkpoint import start_from
from edgeadapt.sdk.datasets.source import DataSource
from edgeadapt.sdk.models import ACTIVATIONS, NORMS
from edgeadapt.sdk.pretraining import CLASSIFIERS, NORM_STATISTICS, PretrainConfig, pretrain
from edgeadapt.sdk.recipes import SPLITS, build_default_model, dataset_classes, get_dataset, make_sampler
from edgeadapt.sdk.sanity import class_hashes
from edgeadapt.sdk.scopes import is_layered

from .common import add_command, add_distributed_arguments, add_source_arguments, data_source, trained_input

log = logging.getLogger("edgeadapt")

READOUT_TASKS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (ways, shots) read out after pretraining


def add_pretrain_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand to ``commands``."""
    p = add_command(commands, "pretrain", run_pretrain, help="train a backbone as a classifier over all training classes",
                            description="Cross-entropy over every training class (characters x 4 rotations; Adam, one-cycle "
                                        "schedule, augmentation); checkpoint, metrics.jsonl and summary.json go to "
                                        "--out. Then 0-step prototype-head accuracy on validation classes.")
    add_source_arguments(p)
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="classes to train on: train (Omniglot: 24 background alphabets), or all")
    p.add_argument("--epochs", type=int, default=PretrainConfig.epochs, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size, help="(default: %(default)s)")
    p.add_argument("--max-lr", type=float, default=PretrainConfig.max_lr,
                   help="peak of the one-cycle schedule (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=PretrainConfig.weight_decay, help="(default: %(default)s)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS, default=None,
                   help="random distortions: none, 2-pixel shifts, affine (rotation, scale, shear, shift), photo "
                        "(mirror and zoom), time_shift (spectrograms) (default: per modality: strokes shift, "
                        "photos photo, audio time_shift)")
    p.add_argument("--model", choices=sorted(BACKBONES), default=None,
                   help="the backbone (default: the dataset's, conv4 for pictures)")
    p.add_argument("--hidden", type=int, default=None,
                   help="the backbone's width: filters per conv layer (Conv4: 64), of the first stage (ResNet-12, "
                        "MobileNets) (default: the backbone's)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                   help="(default: the backbone's: elu for Conv4)")
    p.add_argument("--norm", choices=sorted(NORMS), default=None,
                   help="normalisation layers: GroupNorm, or BatchNorm (its running statistics are used after "
                        "pretraining) (default: the backbone's: group for Conv4, batch for the others)")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE",
                   help="start from these weights: a .safetensors state dict of the same backbone (a head of "
                        "another size is left as initialised)")
    p.add_argument("--norm-statistics", choices=NORM_STATISTICS, default=PretrainConfig.norm_statistics,
                   help="batch: batch norm normalises by each batch and learns its running statistics; frozen: it "
                        "keeps those it started with (fine-tuning --weights imported from another framework) "
                        "(default: %(default)s)")
    p.add_argument("--scope", choices=SCOPES, default="all",
                   help="what trains: all layers, or only the last block and the head (last_block) or the head, the "
                        "layers before computed once per photo and frozen (fine-tuning an imported backbone; no "
                        "augmentation but --views) (default: %(default)s)")
    p.add_argument("--views", type=int, default=1, help="with --scope last_block or head: encode each photo this many "
                   "times, as it is and distorted by the augmentation (2: and a random crop and mirror) (default: 1)")
    p.add_argument("--classifier", choices=CLASSIFIERS, default=PretrainConfig.classifier,
                   help="what is trained on the features: the model's linear head, or a cosine classifier with a "
                        "learned scale, copied into the head (needs --feature-norm) (default: %(default)s)")
    p.add_argument("--margin", type=float, default=PretrainConfig.margin,
                   help="additive cosine margin of the cosine classifier's loss (CosFace; 0: none) "
                        "(default: %(default)s)")
    p.add_argument("--feature-norm", type=float, default=None, metavar="NORM",
                   help="L2-normalise the model's features and scale them to NORM (default: raw features)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--eval-tasks", type=int, default=200,
                   help="validation tasks per readout cell after training (0: skip; default: %(default)s)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between 5-way 1-shot validation readouts logged to metrics.jsonl (0: none)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_distributed_arguments(p)


def run_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain (or resume), write summary.json with the prototype readout on validation classes."""
    args.device = str(distributed.device_for(args.device))
    args.source = data_source(args, trained_input(args.out / "checkpoint" if args.resume else None))
    unrotated = dataset_classes(args.dataset, args.source, args.split)
    classes = unrotated.with_rotations() if get_dataset(args.dataset).rotations else unrotated
    config = PretrainConfig(args.epochs, args.batch_size, args.max_lr, args.weight_decay, args.augmentation,
                            classifier=args.classifier, margin=args.margin, norm_statistics=args.norm_statistics,
                            scope=args.scope, views=args.views)
    torch.manual_seed(args.seed)
    model = _backbone(args, classes.n_classes)
    data = {"dataset": args.dataset, "name": args.source.title() or args.dataset, "split": args.split,
            "classes": classes.n_classes,
            "rotations": 4 if classes is not unrotated else 1, "input": unrotated.input_spec.to_json(),
            "class_hashes": class_hashes(unrotated)}
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("pretraining %s on %d classes of %s (%s)", type(model).__name__, classes.n_classes, args.dataset, config)
    validating = args.split != "all"

    def readout(m: torch.nn.Module) -> dict[str, float]:
        ways, shots = readout_cells(args.dataset, args.source)[0]
        sampler, _ = make_sampler(args.dataset, args.source, "validation", ways, shots, 5, args.seed + 2,
                                  training=False)
        return {f"validation_{ways}way{shots}shot": evaluate(m, sampler, 0.1, 0, 200, scope="head",
                                                             head_init="prototypes", device=args.device,
                                                             cache_frozen=is_layered(m)).mean}

    model, history = pretrain(model, classes, config, seed=args.seed, device=args.device,
                              checkpoint_dir=args.out / "checkpoint", checkpoint_every=args.checkpoint_every,
                              resume=args.resume, metrics_path=args.out / "metrics.jsonl", data=data,
                              progress=not args.no_progress, evaluate=readout if validating and args.eval_tasks > 0 else None,
                              evaluate_every=args.eval_every, timeout=args.rendezvous_timeout)
    world = distributed.world()
    distributed.leave()
    summary: dict[str, Any] = {"checkpoint": str(args.out / "checkpoint"), "steps": len(history),
                               **world.describe()}
    if not world.is_main:
        return summary
    if args.eval_tasks > 0 and validating:
        summary["validation_prototypes"] = prototype_readout(model, args.dataset, args.source, args.eval_tasks,
                                                             args.seed + 1, args.device)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _backbone(args: argparse.Namespace, classes: int) -> torch.nn.Module:
    """The backbone ``--model`` asks for, one output per class, starting from ``--weights`` when given."""
    settings = BackboneSettings(classes, args.hidden, args.activation, args.norm, args.feature_norm)
    model = build_default_model(args.dataset, settings, args.source, args.model)
    if args.weights is not None:
        kept = start_from(model, args.weights)
        log.info("started from %s%s", args.weights, f" (left as initialised: {', '.join(kept)})" if kept else "")
    return model


def readout_cells(dataset: str, data: DataSource | Path | None, queries: int = 5) -> list[tuple[int, int]]:
    """``READOUT_TASKS`` with ways no more than the validation classes large enough for them (a small folder has
    fewer than 20); ConfigError when not even 2-way 1-shot tasks can be drawn."""
    sizes = dataset_classes(dataset, data, "validation").class_sizes
    cells = []
    for ways, shots in READOUT_TASKS:
        large = sum(size >= shots + queries for size in sizes)
        if large >= 2:
            cells.append((min(ways, large), shots))
    if not cells:
        raise ConfigError(f"{dataset}'s validation classes are too few or too small for a readout of {queries} "
                          "queries per class (pass --eval-tasks 0 to skip it)")
    return list(dict.fromkeys(cells))


def prototype_readout(model: torch.nn.Module, dataset: str, data: DataSource | Path | None, tasks: int, seed: int,
                      device: str) -> dict[str, Any]:
    """0-step prototype-head accuracy on validation classes for each of ``READOUT_TASKS``; printed and returned."""
    results, encoded = {}, None
    for ways, shots in readout_cells(dataset, data):
        sampler, _ = make_sampler(dataset, data, "validation", ways, shots, 5, seed, training=False)
        readout = model
        if is_layered(model):  # each example's features once for every cell, not once per task
            if encoded is None:
                part, encoded = encoded_part(model, sampler.dataset, "head", device)
            readout, sampler = part, sampler.over(encoded)
        result = evaluate(readout, sampler, 0.1, 0, tasks, scope="head", head_init="prototypes", device=device)
        print(f"validation {ways}-way {shots}-shot, prototype head, no step: {result}")
        results[f"{ways}way{shots}shot"] = {"mean": result.mean, "ci95": result.ci95, "tasks": result.num_tasks}
    return results

