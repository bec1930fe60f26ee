"""``edgeadapt export``: a checkpoint and its inner loop as an on-device artifact."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgeadapt.export import export_artifact
from edgeadapt.export.executorch_program import executorch_available
from edgeadapt.export.quantize import CALIBRATION_EXAMPLES, QUANTIZATIONS, calibration_sample
from edgeadapt.runtime.format.vocab import HEAD_INITS, SCOPES
from edgeadapt.sdk.checkpoint import checkpoint_input, load_checkpoint
from edgeadapt.sdk.errors import ConfigError
from edgeadapt.sdk.recipes import dataset_classes

from .common import add_command, add_source_arguments, data_source, int_at_least, positive_float, positive_int


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand to ``commands``."""
    ex = add_command(commands, "export", run_export, help="export a checkpoint as an on-device artifact (ONNX embed, adapt, predict)",
                             description="Write the ONNX embed (the frozen layers), adapt and predict graphs, their "
                                         "ORT-format copies, the ExecuTorch program and a hashed manifest.json.")
    ex.add_argument("checkpoint", type=Path, help="checkpoint folder")
    ex.add_argument("-o", "--out", type=Path, required=True, help="artifact folder to write")
    ex.add_argument("--max-ways", type=int_at_least(2), default=None,
                    help="largest number of classes per task (default: a meta-learned head's outputs, or 20)")
    ex.add_argument("--scope", choices=SCOPES, default=None, help="override the checkpoint's adaptation scope")
    ex.add_argument("--head-init", choices=HEAD_INITS, default=None,
                    help="override the checkpoint's head initialisation (prototypes or zeros: any --max-ways)")
    ex.add_argument("--head-scale", type=positive_float, default=None, help="override the prototype-head scale")
    ex.add_argument("--inner-steps", type=int_at_least(0), default=None, help="override the checkpoint's inner steps")
    ex.add_argument("--inner-lr", type=positive_float, default=None, help="override the checkpoint's inner lr")
    ex.add_argument("--max-shots", type=positive_int, default=None,
                    help="largest number of examples per class (default: 10)")
    ex.add_argument("--executorch", action=argparse.BooleanOptionalAction, default=None,
                    help="also write the ExecuTorch program model.pte (default: when executorch is installed)")
    ex.add_argument("--sign", type=Path, default=None, metavar="KEYFILE",
                    help="sign the manifest with this Ed25519 PEM private key (needs the sign extra; "
                         "see docs/deploy.md)")
    ex.add_argument("--replaces", type=Path, default=None, metavar="OLD_ARTIFACT",
                    help="an earlier export of this model: states saved with it restore in the new artifact (checked "
                         "to compute the same on its self-check task)")
    ex.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                    help="store the frozen layers in int8 (ONNX only), scales calibrated on "
                         f"{CALIBRATION_EXAMPLES} examples of the training classes of --data / --dataset below")
    ex.add_argument("--force", action="store_true", help="replace an artifact already at --out")
    add_source_arguments(ex.add_argument_group("calibration data (with --quantize): the model's training data"))


def run_export(args: argparse.Namespace) -> Path:
    print(f"exporting {args.checkpoint} to {args.out} (ONNX graphs take a minute or two) ...", flush=True)
    path = export_artifact(args.checkpoint, args.out, args.max_ways, args.max_shots, args.executorch,
                           sign_key=args.sign, overwrite=args.force, scope=args.scope, head_init=args.head_init,
                           head_scale=args.head_scale, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
                           replaces=args.replaces, quantize=args.quantize,
                           calibration=calibration(args) if args.quantize else None)
    skipped = ""
    if args.executorch is None and not executorch_available():
        skipped = " (model.pte skipped: the executorch package is not installed; pip install './[executorch]')"
    print(f"wrote {path}{' signed' if args.sign else ''}{skipped}")
    return path


def calibration(args: argparse.Namespace) -> np.ndarray:
    """A sample of the training classes of the data the arguments name, as the checkpoint's model reads them."""
    if args.data is None and args.dataset is None:
        raise ConfigError(f"--quantize {args.quantize} calibrates on the model's training data: give it with --data "
                          "(and --dataset for a named dataset)")
    source = data_source(args, checkpoint_input(load_checkpoint(args.checkpoint)[1]))
    return calibration_sample(dataset_classes(args.dataset, source, "train"))
