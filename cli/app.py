"""The ``edgeadapt`` program: one parser whose subcommands each live in their own module, and ``main``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from typing import Sequence

from edgeadapt.runtime.errors import EdgeAdaptError
from edgeadapt.sdk.errors import SDKError

from .common import Parser, configure_logging, import_plugins
from .continual import add_continual_parser
from .evaluate import add_eval_parser
from .export import add_export_parser
from .import_weights import add_import_weights_parser
from .pretrain import add_pretrain_parser
from .train import add_train_parser

DESCRIPTION = "Meta-train few-shot models (train, eval) and export them for on-device adaptation (export)."
COMMANDS = (add_pretrain_parser, add_train_parser, add_eval_parser, add_export_parser, add_continual_parser,
            add_import_weights_parser)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one subcommand per module of this package."""
    parser = Parser(prog="edgeadapt", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: edgeadapt's debug messages; -vv: also those of torch, the ONNX exporter and "
                             "ExecuTorch (thousands of lines for an export)")
    parser.add_argument("--version", action="version", version=f"edgeadapt {importlib.metadata.version('edgeadapt')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a mistake or a failure is one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        import_plugins(argv)  # the user's models and datasets, before the parser lists them
    except (SDKError, EdgeAdaptError) as e:
        print(f"edgeadapt: error: {e}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        args.run(args)
    except (SDKError, EdgeAdaptError, OSError) as e:  # every SDK and runtime failure; a file that cannot be used
        print(f"edgeadapt {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
