"""``edgeadapt eval``: N-way K-shot accuracy of a checkpoint, adapting with its own inner loop unless overridden."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from edgeadapt.runtime.format.vocab import HEAD_INITS, SCOPES
from edgeadapt.sdk.checkpoint import checkpoint_input, load_checkpoint, load_lr_scales
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.evaluation import evaluate
from edgeadapt.sdk.heads import is_per_task
from edgeadapt.sdk.inner_loop import adaptation_settings, lr_scales_within
from edgeadapt.sdk.recipes import SPLITS, make_sampler
from edgeadapt.sdk.sanity import warn_if_chance, warn_if_trained_on

from .common import add_command, add_data_arguments, data_source, int_at_least, positive_float, positive_int

log = logging.getLogger("edgeadapt")


def add_eval_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand to ``commands``."""
    ev = add_command(commands, "eval", run_eval, help="evaluate a checkpoint on held-out tasks",
                             description="N-way K-shot accuracy (mean and 95% CI) of a checkpoint, adapting with "
                                         "its own inner loop unless overridden.")
    ev.add_argument("checkpoint", type=Path, help="checkpoint folder (e.g. RUN/checkpoint)")
    add_data_arguments(ev)
    ev.add_argument("--split", choices=SPLITS, default="validation",
                    help="classes to evaluate on (default: %(default)s)")
    ev.add_argument("--tasks", type=positive_int, default=1000, help="number of tasks (default: %(default)s)")
    ev.add_argument("--inner-steps", type=int_at_least(0), default=None, help="override the checkpoint's inner steps")
    ev.add_argument("--inner-lr", type=positive_float, default=None, help="override the checkpoint's inner lr")
    ev.add_argument("--scope", choices=SCOPES, default=None, help="override the checkpoint's adaptation scope")
    ev.add_argument("--head-init", choices=HEAD_INITS, default=None,
                    help="override the checkpoint's head initialisation")
    ev.add_argument("--head-scale", type=positive_float, default=None,
                    help="override the checkpoint's prototype-head scale")
    ev.add_argument("--within-alphabet", action="store_true",
                    help="draw each task's classes from one group, e.g. an alphabet (Lake et al.'s protocol)")
    ev.add_argument("--cache-frozen", action="store_true",
                    help="compute the layers the scope freezes once per example instead of once per task (the same "
                         "scores, much faster for a large frozen backbone; needs --scope last_block or head)")
    ev.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    model, config = load_checkpoint(args.checkpoint, device=args.device)
    source = data_source(args, checkpoint_input(config))
    training = config.get("training", {})
    settings = adaptation_settings(training, inner_steps=args.inner_steps, inner_lr=args.inner_lr, scope=args.scope,
                                   head_init=args.head_init, head_scale=args.head_scale)
    if not training:
        log.info("%s has no inner loop of its own (a pretraining run): adapting as its readout, a prototype head "
                 "with %s steps (override with --inner-steps, --inner-lr, --scope, --head-init, --head-scale)",
                 args.checkpoint, settings["inner_steps"])
    outputs = getattr(getattr(model, "head", None), "out_features", None)
    if not is_per_task(settings["head_init"]) and outputs is not None and args.ways > outputs:
        raise ConfigError(f"--ways {args.ways} exceeds the {outputs} outputs of {args.checkpoint}'s meta-learned head "
                         "(a prototype or zeros head, --head-init, serves any number)")
    sampler, data = make_sampler(args.dataset, source, args.split, args.ways, args.shots,
                                 args.query_shots, args.seed, training=False, within_alphabet=args.within_alphabet)
    warn_if_trained_on(config.get("data", {}), data)
    lr_scales = lr_scales_within(model, settings["scope"], load_lr_scales(args.checkpoint))  # the run's own rates
    result = evaluate(model, sampler, settings["inner_lr"], settings["inner_steps"], args.tasks,
                      scope=settings["scope"], head_init=settings["head_init"], head_scale=settings["head_scale"],
                      lr_scales=lr_scales, device=args.device, cache_frozen=args.cache_frozen)
    print(f"{args.ways}-way {args.shots}-shot {args.dataset} {args.split}: {result}")
    warn_if_chance(result, args.ways)
    data.pop("class_hashes", None)
    out = {"checkpoint": str(args.checkpoint), "data": data,
           **{k: settings[k] for k in ("inner_steps", "inner_lr", "scope", "head_init", "head_scale")},
           "metric": result.metric, "mean": result.mean, "ci95": result.ci95, "tasks": result.num_tasks}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out
