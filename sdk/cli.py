"""The ``edgeadapt`` command line: ``pretrain``, ``train``, ``eval``, ``export`` and ``continual`` (``edgeadapt COMMAND --help``).

This is the one SDK module that reaches into ``edgeadapt.export`` (imported only when exporting).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from edgeadapt.runtime.errors import EdgeAdaptError

from . import distributed
from .checkpoint import CheckpointError, initialise_from, load_checkpoint, load_lr_scales
from .continual.cli import add_continual_parser, run_continual
from .distributed import add_distributed_arguments
from .errors import ConfigError, SDKError
from .evaluation import EvalResult, evaluate
from .heads import HEAD_INITS, is_per_task
from .inner_loop import adaptation_settings, lr_scales_within
from .models import ACTIVATIONS, build_model, model_spec
from .preconditioner import adam_lr_scales, preconditioned_parameters
from .pretrain_cli import add_pretrain_parser, run_pretrain
from .recipes import DATASETS, SPLITS, build_default_model, make_sampler, recipe_defaults
from .sanity import describe, warn_if_chance, warn_if_trained_on
from .scopes import SCOPES
from .training import train_maml

log = logging.getLogger("edgeadapt")
INNER_RATES = ("uniform", "adam", "adam-tensor")
DESCRIPTION = "Meta-train few-shot models (train, eval) and export them for on-device adaptation (export)."
RUN_FILES = ("checkpoint", "metrics.jsonl", "summary.json")  # what marks a folder as a training run


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line on stderr (and exit status 2), not usage plus a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


_positive_int = _int_at_least(1)


def _device(text: str) -> str:
    """A torch device that exists on this machine."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA device (torch {torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported; use cpu or cuda")
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default="glyphs",
                   help="glyphs: built-in procedural characters (no files); omniglot: the Omniglot zip "
                        "or folder; sine: sine-wave regression (default: %(default)s)")
    p.add_argument("--data", type=Path, default=None,
                   help="Omniglot zip/folder, or a data folder holding omniglot/ (default: $EDGEADAPT_DATA)")
    p.add_argument("--ways", type=_positive_int, default=5, help="classes per task (default: %(default)s)")
    p.add_argument("--shots", type=_positive_int, default=1, help="support examples per class (default: %(default)s)")
    p.add_argument("--query-shots", type=_positive_int, default=5,
                   help="query examples per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and task sampling")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device, e.g. cpu or cuda (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgeadapt", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: edgeadapt's debug messages; -vv: also those of torch, the ONNX exporter and "
                             "ExecuTorch (thousands of lines for an export)")
    parser.add_argument("--version", action="version", version=f"edgeadapt {importlib.metadata.version('edgeadapt')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="meta-train a model, then evaluate it on held-out classes",
                                description="Meta-train with Reptile, FOMAML or MAML; checkpoints, metrics.jsonl "
                                            "and summary.json go to --out.")
    _add_data_arguments(train)
    train.add_argument("--min-ways", type=_positive_int, default=None,
                       help="train on tasks of --min-ways..--ways classes (padded, as deployed artifacts pad)")
    train.add_argument("--min-shots", type=_positive_int, default=None,
                       help="train on tasks of --min-shots..--shots examples per class")
    train.add_argument("--algorithm", choices=("reptile", "fomaml", "maml"), default="reptile")
    train.add_argument("--iterations", type=_positive_int, default=None, help="meta-iterations (default: per dataset)")
    train.add_argument("--meta-batch", type=_positive_int, default=5, help="tasks per meta-batch (default: %(default)s)")
    train.add_argument("--inner-steps", type=_positive_int, default=None, help="SGD steps on the support set")
    train.add_argument("--inner-lr", type=_positive_float, default=None, help="inner SGD learning rate")
    train.add_argument("--inner-batch", type=_positive_int, default=None,
                       help="support examples per inner SGD step while meta-training, drawn without replacement "
                            "(the Reptile paper's mini-batches; default: the whole support set, as deployed)")
    train.add_argument("--inner-rates", choices=INNER_RATES, default=None,
                       help="inner learning rate per parameter: uniform (inner-lr everywhere), or inner-lr times "
                            "Adam's frozen preconditioner from the --init pretraining run, per element or per tensor "
                            "(saved with the run and exported with it; default: the resumed run's, else uniform)")
    train.add_argument("--outer-lr", type=_positive_float, default=None,
                       help="Reptile's initial meta step size, or MAML/FOMAML's Adam learning rate")
    train.add_argument("--scope", choices=SCOPES, default="all",
                       help="what adapts in the inner loop: all parameters, the last block and the head, or the "
                            "head only (default: %(default)s)")
    train.add_argument("--head-init", choices=HEAD_INITS, default="learned",
                       help="where each task's head starts: the meta-learned head, zeros, or class prototypes "
                            "(W_k = 2 c_k, b_k = -|c_k|^2; any number of classes) (default: %(default)s)")
    train.add_argument("--head-scale", type=_positive_float, default=1.0,
                       help="inverse temperature of a prototype head's logits (default: %(default)s)")
    train.add_argument("--init", type=Path, default=None,
                       help="start from this checkpoint's weights (e.g. a pretrain run's checkpoint)")
    train.add_argument("--hidden", type=_positive_int, default=None, help="filters per conv layer / MLP width")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                       help="hidden activation; elu keeps device adaptation within float32 rounding of PyTorch's "
                            "(see docs/deploy.md) (default: %(default)s)")
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

    ev = commands.add_parser("eval", help="evaluate a checkpoint on held-out tasks",
                             description="N-way K-shot accuracy (mean and 95% CI) of a checkpoint, adapting with "
                                         "its own inner loop unless overridden.")
    ev.add_argument("checkpoint", type=Path, help="checkpoint folder (e.g. RUN/checkpoint)")
    _add_data_arguments(ev)
    ev.add_argument("--split", choices=SPLITS, default="validation",
                    help="classes to evaluate on (default: %(default)s)")
    ev.add_argument("--tasks", type=_positive_int, default=1000, help="number of tasks (default: %(default)s)")
    ev.add_argument("--inner-steps", type=_int_at_least(0), default=None, help="override the checkpoint's inner steps")
    ev.add_argument("--inner-lr", type=_positive_float, default=None, help="override the checkpoint's inner lr")
    ev.add_argument("--scope", choices=SCOPES, default=None, help="override the checkpoint's adaptation scope")
    ev.add_argument("--head-init", choices=HEAD_INITS, default=None,
                    help="override the checkpoint's head initialisation")
    ev.add_argument("--head-scale", type=_positive_float, default=None,
                    help="override the checkpoint's prototype-head scale")
    ev.add_argument("--within-alphabet", action="store_true",
                    help="draw each task's classes from one alphabet (Lake et al.'s protocol)")
    ev.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")

    add_pretrain_parser(commands)

    ex = commands.add_parser("export", help="export a checkpoint as an on-device artifact (ONNX adapt + predict)",
                             description="Write the ONNX adapt and predict graphs, their ORT-format copies, the "
                                         "ExecuTorch program and a hashed manifest.json.")
    ex.add_argument("checkpoint", type=Path, help="checkpoint folder")
    ex.add_argument("-o", "--out", type=Path, required=True, help="artifact folder to write")
    ex.add_argument("--max-ways", type=_int_at_least(2), default=None,
                    help="largest number of classes per task (default: a meta-learned head's outputs, or 20)")
    ex.add_argument("--scope", choices=SCOPES, default=None, help="override the checkpoint's adaptation scope")
    ex.add_argument("--head-init", choices=HEAD_INITS, default=None,
                    help="override the checkpoint's head initialisation (prototypes or zeros: any --max-ways)")
    ex.add_argument("--head-scale", type=_positive_float, default=None, help="override the prototype-head scale")
    ex.add_argument("--inner-steps", type=_int_at_least(0), default=None, help="override the checkpoint's inner steps")
    ex.add_argument("--inner-lr", type=_positive_float, default=None, help="override the checkpoint's inner lr")
    ex.add_argument("--max-shots", type=_positive_int, default=None,
                    help="largest number of examples per class (default: 10)")
    ex.add_argument("--executorch", action=argparse.BooleanOptionalAction, default=None,
                    help="also write the ExecuTorch program model.pte (default: when executorch is installed)")
    ex.add_argument("--sign", type=Path, default=None, metavar="KEYFILE",
                    help="sign the manifest with this Ed25519 PEM private key (needs the sign extra; "
                         "see docs/deploy.md)")
    ex.add_argument("--force", action="store_true", help="replace an artifact already at --out")

    add_continual_parser(commands)
    return parser


def run_export(args: argparse.Namespace) -> Path:
    from edgeadapt.export import export_artifact
    from edgeadapt.export.executorch_program import executorch_available

    print(f"exporting {args.checkpoint} to {args.out} (ONNX graphs take a minute or two) ...", flush=True)
    path = export_artifact(args.checkpoint, args.out, args.max_ways, args.max_shots, args.executorch,
                           sign_key=args.sign, overwrite=args.force, scope=args.scope, head_init=args.head_init,
                           head_scale=args.head_scale, inner_steps=args.inner_steps, inner_lr=args.inner_lr)
    skipped = ""
    if args.executorch is None and not executorch_available():
        skipped = " (model.pte skipped: the executorch package is not installed; pip install './[executorch]')"
    print(f"wrote {path}{' signed' if args.sign else ''}{skipped}")
    return path


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
    train_sampler, data = make_sampler(args.dataset, args.data, args.split, args.ways, args.shots,
                                       args.query_shots, args.seed, training=True, min_ways=args.min_ways,
                                       min_shots=args.min_shots)
    if model is None:
        model = _initial_model(args, pick["hidden"])
    args.out.mkdir(parents=True, exist_ok=True)
    log.info("training %s with %s on %s (%s)", type(model).__name__, args.algorithm, args.dataset, describe(data))
    lr_scales = _inner_rates(args, model)
    model, history = train_maml(
        model, train_sampler, pick["inner_lr"], pick["outer_lr"], pick["inner_steps"], args.algorithm,
        args.meta_batch, pick["iterations"], scope=args.scope, head_init=args.head_init, head_scale=args.head_scale,
        inner_batch=args.inner_batch, lr_scales=lr_scales, device=args.device,
        checkpoint_dir=args.out / "checkpoint", checkpoint_every=args.checkpoint_every, resume=args.resume,
        metrics_path=args.out / "metrics.jsonl", data=data, seed=args.seed, progress=not args.no_progress,
        timeout=args.rendezvous_timeout,
    )
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
        return build_default_model(args.dataset, args.ways, hidden, args.activation)
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
        sampler, _ = make_sampler(args.dataset, args.data, "validation", args.ways, args.shots,
                                  args.query_shots, args.seed + 1, training=False)
        return evaluate(m, sampler, pick["inner_lr"], steps, args.eval_tasks, scope=args.scope,
                        head_init=args.head_init, head_scale=args.head_scale, lr_scales=rates, device=args.device)

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


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    model, config = load_checkpoint(args.checkpoint, device=args.device)
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
    sampler, data = make_sampler(args.dataset, args.data, args.split, args.ways, args.shots,
                                 args.query_shots, args.seed, training=False, within_alphabet=args.within_alphabet)
    warn_if_trained_on(config.get("data", {}), data)
    lr_scales = lr_scales_within(model, settings["scope"], load_lr_scales(args.checkpoint))  # the run's own rates
    result = evaluate(model, sampler, settings["inner_lr"], settings["inner_steps"], args.tasks,
                      scope=settings["scope"], head_init=settings["head_init"], head_scale=settings["head_scale"],
                      lr_scales=lr_scales, device=args.device)
    print(f"{args.ways}-way {args.shots}-shot {args.dataset} {args.split}: {result}")
    warn_if_chance(result, args.ways)
    data.pop("class_hashes", None)
    out = {"checkpoint": str(args.checkpoint), "data": data,
           **{k: settings[k] for k in ("inner_steps", "inner_lr", "scope", "head_init", "head_scale")},
           "metric": result.metric, "mean": result.mean, "ci95": result.ci95, "tasks": result.num_tasks}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


def configure_logging(verbosity: int) -> None:
    """INFO from edgeadapt; ``-v`` its DEBUG; ``-vv`` everyone's DEBUG. Other libraries' INFO and DEBUG messages
    (the ONNX exporter's, torch's) and torch's deprecation notices stay out of the output below ``-vv``."""
    everyone = logging.DEBUG if verbosity >= 2 else logging.WARNING
    logging.basicConfig(level=everyone, format="%(levelname)s %(message)s")
    logging.getLogger("edgeadapt").setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    if verbosity < 2:
        for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "torch._dynamo", "torch._export"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        {"pretrain": run_pretrain, "train": run_train, "eval": run_eval, "export": run_export,
         "continual": run_continual}[args.command](args)
    except (SDKError, EdgeAdaptError, OSError) as e:  # every SDK and runtime failure; a file that cannot be used
        print(f"edgeadapt {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
