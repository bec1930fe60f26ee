"""``edgeadapt import-weights``: a TFLite MobileNet V1's weights as a ``.safetensors`` state dict of the backbone
``mobilenet_v1_imagenet``, which ``edgeadapt pretrain --weights`` starts from."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeadapt.sdk.importers import BACKBONE, read_tflite, save_imported

from .common import add_command


def add_import_weights_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``import-weights`` subcommand to ``commands``."""
    p = add_command(commands, "import-weights", run_import_weights,
                    help="read a TFLite MobileNet V1 (int8/uint8 or float) into a .safetensors state dict",
                    description=f"Dequantise the weights of a TFLite MobileNet V1 (width 1.0; e.g. the ImageNet "
                                f"embedding extractor of Coral's imprinting) into the backbone {BACKBONE}, and "
                                f"print the input value range it takes. Then: edgeadapt pretrain --model "
                                f"{BACKBONE} --weights OUT ... (needs the import extra: the tflite package).")
    p.add_argument("model", type=Path, metavar="FILE.tflite", help="the TFLite model to read")
    p.add_argument("-o", "--out", type=Path, required=True, metavar="WEIGHTS.safetensors",
                   help="the state dict to write (atomically; replaces a file already there)")


def run_import_weights(args: argparse.Namespace) -> Path:
    """Read ``args.model``, write ``args.out``, print the backbone to build and the pixel range it takes."""
    imported = read_tflite(args.model)
    path = save_imported(args.out, imported.state_dict)
    print(f"wrote {path}: {len(imported.state_dict)} tensors of the backbone {BACKBONE} (--model {BACKBONE})")
    if imported.value_range is None:
        print("input: float32 pixels; the file does not state their range (MobileNet's is usually [-1, 1])")
    else:
        low, high = imported.value_range
        scale = (high - low) / 255
        print(f"input: {imported.input_shape[0]}x{imported.input_shape[1]} RGB; value_range ({low!r}, {high!r}): "
              f"pixels p (0..255) are read as (p - {-low / scale:g}) * {scale!r}; read a folder for it with "
              f"--value-range {low!r} {high!r}")
    return path
