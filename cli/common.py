"""What every ``edgeadapt`` command shares: argument types, the data and distributed options, ``--import``
of user modules (and the ``edgeadapt.plugins`` entry points) that register datasets and models, and logging."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from edgeadapt.runtime.format.inputs import InputSpec
from edgeadapt.runtime.format.vocab import FITS
from edgeadapt.sdk.checkpoint import checkpoint_input, load_checkpoint
from edgeadapt.sdk.datasets.source import IMAGE_SIZE, DataSource
from edgeadapt.sdk.datasets.splits import SplitRule
from edgeadapt.sdk.distributed import DEFAULT_TIMEOUT
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.recipes import DATASETS

PLUGIN_GROUP = "edgeadapt.plugins"  # entry points whose modules register datasets and models when loaded


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are one line on stderr (and exit status 2), not usage plus a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int):
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


positive_int = int_at_least(1)


def device(text: str) -> str:
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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data`` and how a user's folder is read: picture size, channels and fit, and the split."""
    p.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                   help="; ".join(f"{name}: {recipe.help}" for name, recipe in sorted(DATASETS.items()))
                        + " (default: folder with --data, else glyphs; yours: register_dataset in a module given "
                          "to --import)")
    p.add_argument("--data", type=Path, default=None,
                   help="your folder (one sub-folder of pictures or WAV clips per class, optionally one group level "
                        "above) or .npz (arrays x, y); for a named dataset its files (Omniglot: its zip or folder)")
    p.add_argument("--data-name", default=None, metavar="NAME",
                   help="what your data is called, recorded in the checkpoint and the artifact's manifest (default: "
                        "the folder's name)")
    pictures = p.add_argument_group("pictures of a folder (default: what the checkpoint was trained on)")
    pictures.add_argument("--image-size", type=int_at_least(8), default=None,
                          help=f"side of the square inputs (default: {IMAGE_SIZE})")
    pictures.add_argument("--channels", type=int, choices=(1, 3), default=None, help="3: RGB, 1: grayscale (default: 3)")
    pictures.add_argument("--fit", choices=FITS, default=None,
                          help="crop: centre-crop to square, then resize; stretch: resize as is (default: crop)")
    pictures.add_argument("--value-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                          help="the values pixels 0 and 255 become (default: 0 1; an imported ImageNet MobileNet V1 "
                               "takes -1 0.9921875, as `edgeadapt import-weights` prints)")
    split = p.add_argument_group("which classes of a folder validate (class-disjoint; fixed by --split-seed)")
    split.add_argument("--val-fraction", type=float, default=SplitRule.validation,
                       help="fraction of classes (or groups) held out (default: %(default)s)")
    split.add_argument("--split-seed", type=int, default=SplitRule.seed, help="(default: %(default)s)")
    split.add_argument("--split-by", choices=("class", "group"), default=SplitRule.by,
                       help="hold out classes, or whole groups (the folder's group level) (default: %(default)s)")
    split.add_argument("--val-classes", type=Path, default=None, metavar="FILE",
                       help="a text file naming the validation classes (or groups), one per line")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--ways", type=positive_int, default=5, help="classes per task (default: %(default)s)")
    p.add_argument("--shots", type=positive_int, default=1, help="support examples per class (default: %(default)s)")
    p.add_argument("--query-shots", type=positive_int, default=5,
                   help="query examples per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and task sampling")
    p.add_argument("--device", type=device, default="cpu",
                   help="torch device, e.g. cpu or cuda (default: %(default)s)")


def trained_input(checkpoint: Path | None) -> InputSpec | None:
    """What the model of ``checkpoint`` takes (None without a checkpoint)."""
    if checkpoint is None:
        return None
    return checkpoint_input(load_checkpoint(checkpoint)[1])


def data_source(args: argparse.Namespace, like: InputSpec | None = None) -> DataSource:
    """Where the data is and how to read it; settles ``args.dataset`` (``folder`` when ``--data`` names no dataset).
    Picture settings not given default to those of ``like`` (what a checkpoint was trained on)."""
    if args.dataset is None:
        args.dataset = "folder" if args.data is not None else "glyphs"
    trained = like if like is not None and like.modality in ("image", "strokes") and like.layout == "CHW" else None
    return DataSource(
        args.data,
        image_size=args.image_size or (trained.shape[-1] if trained else IMAGE_SIZE),
        channels=args.channels or (trained.shape[0] if trained else 3),
        fit=args.fit or (trained.fit if trained and trained.fit else "crop"),
        value_range=tuple(args.value_range) if args.value_range else (trained.value_range if trained else (0.0, 1.0)),
        split=SplitRule(args.val_fraction, args.split_seed, args.split_by, args.val_classes),
        name=args.data_name,
    )


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of a run that ``torchrun`` may launch as several processes."""
    parser.add_argument("--rendezvous-timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="under torchrun: seconds for all processes to join before giving up with an error "
                             "(default: %(default)s)")


def add_command(commands: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], Any],
                **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that ``main`` runs with ``run(args)``; every command takes ``--import``."""
    parser = commands.add_parser(name, **kwargs)
    add_import_argument(parser)
    parser.set_defaults(run=run)
    return parser


def add_import_argument(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): a module of the user's, imported first, that registers models or datasets."""
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import this Python module first (e.g. one that registers your model with "
                             "@register_model); repeatable")


def import_plugins(argv: Sequence[str]) -> list[str]:
    """Import the modules named by ``--import`` anywhere in ``argv`` and those of the ``edgeadapt.plugins`` entry
    points, before the parser is built (so that their datasets and models are among its choices)."""
    modules = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--import"]
    modules += [w.split("=", 1)[1] for w in argv if w.startswith("--import=")]
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        entry.load()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--import {name}: {e}") from e
    return modules


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
