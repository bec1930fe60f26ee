"""Test-time mirroring on Caltech-101: does averaging each photo's features with its mirror image's help?

    python benchmarks/caltech101_mirroring.py [--checkpoint runs/caltech101-pretrain-train/checkpoint] [--tasks 1000]

The validation twin's frozen layers (``bash models/reproduce_caltech101_mobilenet.sh train``) encode every photo of
the 24 validation classes of ``caltech101.py``'s split as it is and mirrored left to right; each cell's tasks (the
same as ``caltech101.py``'s) are classified by the nearest normalised class mean, once on the photos' features and
once on the normalised mean of each photo's and its mirror's features (support and queries alike: no query sees
another). Mirroring doubles the embedding time on a device. Prints accuracy (mean, 95% CI) per cell and a JSON
line; models/README.md quotes it. Not a docs/benchmarks.md section: the shipped model does not mirror.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from caltech101 import CELLS, SPLIT, accuracies, data_folder, embedded, mean_ci, photos
from deployment import ROOT
from edgeadapt.sdk.checkpoint import load_checkpoint
from edgeadapt.sdk.datasets.base import ClassDataset
from edgeadapt.sdk.datasets.splits import split_classes
from edgeadapt.sdk.frozen_layers import encoded_part


def features(checkpoint: Path, classes: ClassDataset) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's frozen-layer features of ``classes``' photos, as they are and mirrored."""
    model, _ = load_checkpoint(checkpoint)
    mirrored = replace(classes, examples=classes.examples.flip(-1))
    return tuple(encoded_part(model.eval(), c, "head")[1].examples.numpy() for c in (classes, mirrored))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the data folder (default: EDGEADAPT_DATA, else ../shared/data)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "caltech101-pretrain-train" / "checkpoint")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per cell")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, validation = split_classes(photos(data_folder(args.data)), SPLIT)
    plain, mirror = features(args.checkpoint, validation)
    results = {}
    for name, values in (("plain", plain), ("mirror-averaged", plain + mirror)):
        classes = embedded(validation, values)  # nearest_mean normalises: the sum's direction is the mean's
        results[name] = {f"{w}w{s}s": mean_ci(accuracies(classes, w, s, args.tasks, None)) for w, s in CELLS}
        print(name, {cell: f"{m:.2f} ± {c:.2f}" for cell, (m, c) in results[name].items()}, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
