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


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=sorted(DATASETS), default="glyphs",
                   help="; ".join(f"{name}: {recipe.help}" for name, recipe in sorted(DATASETS.items()))
                        + " (default: %(default)s; yours: register_dataset in a module given to --import)")
    p.add_argument("--data", type=Path, default=None,
                   help="the files the dataset is read from (Omniglot: its zip or folder, or a data folder holding "
                        "omniglot/) (default: $EDGEADAPT_DATA)")
    p.add_argument("--ways", type=positive_int, default=5, help="classes per task (default: %(default)s)")
    p.add_argument("--shots", type=positive_int, default=1, help="support examples per class (default: %(default)s)")
    p.add_argument("--query-shots", type=positive_int, default=5,
                   help="query examples per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and task sampling")
    p.add_argument("--device", type=device, default="cpu",
                   help="torch device, e.g. cpu or cuda (default: %(default)s)")


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
