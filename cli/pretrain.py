"""``edgeadapt pretrain``: supervised pretraining of a backbone over every training class, then a prototype readout."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from edgeadapt.sdk import distributed
from edgeadapt.sdk.augment import AUGMENTATIONS
from edgeadapt.sdk.evaluation import evaluate
from edgeadapt.sdk.models import ACTIVATIONS, NORMS, Conv4
from edgeadapt.sdk.pretraining import CLASSIFIERS, PretrainConfig, pretrain
from edgeadapt.sdk.recipes import DATASETS, SPLITS, dataset_classes, get_dataset, make_sampler
from edgeadapt.sdk.sanity import class_hashes

from .common import add_command, add_distributed_arguments

log = logging.getLogger("edgeadapt")

READOUT_TASKS = ((5, 1), (5, 5), (20, 1), (20, 5))  # (ways, shots) read out after pretraining


def add_pretrain_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand to ``commands``."""
    p = add_command(commands, "pretrain", run_pretrain, help="train a backbone as a classifier over all training classes",
                            description="Cross-entropy over every training class x 4 rotations (Adam, one-cycle "
                                        "schedule, augmentation); checkpoint, metrics.jsonl and summary.json go to "
                                        "--out. Then 0-step prototype-head accuracy on validation classes.")
    p.add_argument("--dataset", choices=sorted(n for n, r in DATASETS.items() if r.classes is not None),
                   default="glyphs", help="a registered dataset of classes (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None, help="Omniglot zip/folder or data folder (default: $EDGEADAPT_DATA)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="classes to train on: train (Omniglot: 24 background alphabets), or all")
    p.add_argument("--epochs", type=int, default=PretrainConfig.epochs, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size, help="(default: %(default)s)")
    p.add_argument("--max-lr", type=float, default=PretrainConfig.max_lr,
                   help="peak of the one-cycle schedule (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=PretrainConfig.weight_decay, help="(default: %(default)s)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS, default=PretrainConfig.augmentation,
                   help="random distortions: none, 2-pixel shifts, or affine (rotation, scale, shear, shift) "
                        "(default: %(default)s)")
    p.add_argument("--hidden", type=int, default=64, help="filters per conv layer (default: %(default)s)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="elu", help="(default: %(default)s)")
    p.add_argument("--norm", choices=sorted(NORMS), default="group",
                   help="normalisation layers: GroupNorm, or BatchNorm (its running statistics are used after "
                        "pretraining) (default: %(default)s)")
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
    unrotated = dataset_classes(args.dataset, args.data, args.split)
    classes = unrotated.with_rotations() if get_dataset(args.dataset).rotations else unrotated
    config = PretrainConfig(args.epochs, args.batch_size, args.max_lr, args.weight_decay, args.augmentation,
                            classifier=args.classifier, margin=args.margin)
    torch.manual_seed(args.seed)
    channels, size = unrotated.input_spec.shape[0], unrotated.input_spec.shape[-1]
    model = Conv4(ways=classes.n_classes, in_channels=channels, hidden=args.hidden, image_size=size,
                  activation=args.activation, feature_norm=args.feature_norm, norm=args.norm)
    data = {"dataset": args.dataset, "split": args.split, "classes": classes.n_classes, "rotations": 4 if classes is not unrotated else 1,
            "input": unrotated.input_spec.to_json(), "class_hashes": class_hashes(unrotated)}
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("pretraining Conv4 on %d classes of %s (%s)", classes.n_classes, args.dataset, config)
    validating = args.split != "all"

    def readout(m: torch.nn.Module) -> dict[str, float]:
        sampler, _ = make_sampler(args.dataset, args.data, "validation", 5, 1, 5, args.seed + 2, training=False)
        return {"validation_5way1shot": evaluate(m, sampler, 0.1, 0, 200, scope="head", head_init="prototypes",
                                                 device=args.device).mean}

    model, history = pretrain(model, classes, config, seed=args.seed, device=args.device,
                              checkpoint_dir=args.out / "checkpoint", checkpoint_every=args.checkpoint_every,
                              resume=args.resume, metrics_path=args.out / "metrics.jsonl", data=data,
                              progress=not args.no_progress, evaluate=readout if validating else None,
                              evaluate_every=args.eval_every, timeout=args.rendezvous_timeout)
    world = distributed.world()
    distributed.leave()
    summary: dict[str, Any] = {"checkpoint": str(args.out / "checkpoint"), "steps": len(history),
                               **world.describe()}
    if not world.is_main:
        return summary
    if args.eval_tasks > 0 and validating:
        summary["validation_prototypes"] = prototype_readout(model, args.dataset, args.data, args.eval_tasks,
                                                             args.seed + 1, args.device)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def prototype_readout(model: torch.nn.Module, dataset: str, data: Path | None, tasks: int, seed: int,
                      device: str) -> dict[str, Any]:
    """0-step prototype-head accuracy on validation classes for each of ``READOUT_TASKS``; printed and returned."""
    results = {}
    for ways, shots in READOUT_TASKS:
        sampler, _ = make_sampler(dataset, data, "validation", ways, shots, 5, seed, training=False)
        result = evaluate(model, sampler, 0.1, 0, tasks, scope="head", head_init="prototypes", device=device)
        print(f"validation {ways}-way {shots}-shot, prototype head, no step: {result}")
        results[f"{ways}way{shots}shot"] = {"mean": result.mean, "ci95": result.ci95, "tasks": result.num_tasks}
    return results

