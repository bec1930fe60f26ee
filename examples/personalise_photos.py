"""Personalise an exported photo model to a few of your own photos per class, then classify the others.

    python examples/personalise_photos.py ARTIFACT FOLDER [--shots 5] [--seed 0]

FOLDER holds one sub-folder of photos per class (JPEG, PNG or BMP, any size), e.g. classes the model never saw.
Each photo is opened as an app holds a camera frame, an H x W x 3 uint8 array of its own size, and
``edgeadapt.runtime.preprocess.prepare`` brings it to the model's input as training did (centre crop, Lanczos
resize). ``--shots`` photos of each class personalise the model (``adapt``); the rest are classified and scored.
Uses only the torch-free runtime (pip install './[runtime,images]': Pillow decodes the files).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

import edgeadapt.runtime as rt
from edgeadapt.runtime.errors import EdgeAdaptError
from edgeadapt.runtime.format.extras import require
from edgeadapt.runtime.preprocess import prepare

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def frame(path: Path) -> np.ndarray:
    """A photo file as a camera frame: H x W x 3 uint8, upright."""
    image = require("PIL.Image", "runtime,images", "decoding the photos")
    operations = require("PIL.ImageOps", "runtime,images", "decoding the photos")
    with image.open(path) as opened:
        return np.asarray(operations.exif_transpose(opened).convert("RGB"))


def photos(folder: Path) -> dict[str, list[Path]]:
    """The photo files of each class sub-folder of ``folder``."""
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES)
               for d in sorted(folder.iterdir()) if d.is_dir()}
    return {name: files for name, files in classes.items() if files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("folder", type=Path, help="one sub-folder of photos per class")
    parser.add_argument("--shots", type=int, default=5, help="photos per class to personalise with")
    parser.add_argument("--seed", type=int, default=0, help="which photos are the support set")
    args = parser.parse_args(argv)
    try:
        learner = rt.load(args.artifact)
        classes = photos(args.folder)
        picked = {name: random.Random(f"{args.seed}/{name}").sample(files, len(files)) for name, files in
                  classes.items() if len(files) > args.shots}
        if len(picked) < 2 or len(picked) > learner.max_ways or args.shots > learner.max_shots:
            raise EdgeAdaptError(f"need 2..{learner.max_ways} classes of more than --shots photos each (found "
                                 f"{len(picked)}), and --shots <= {learner.max_shots}")
        support = [(frame(p), name) for name, files in picked.items() for p in files[:args.shots]]
        queries = [(frame(p), name) for name, files in picked.items() for p in files[args.shots:]]
        personal = learner.adapt(prepare([f for f, _ in support], learner.manifest), [n for _, n in support])
        predicted = personal.predict(prepare([f for f, _ in queries], learner.manifest))
    except (EdgeAdaptError, OSError) as e:
        print(f"personalise_photos: {e}", file=sys.stderr)
        return 2
    correct = sum(p == name for p, (_, name) in zip(predicted, queries))
    print(f"{len(picked)} classes, {args.shots} photos each to adapt: {correct}/{len(queries)} of the other photos "
          f"right ({100 * correct / len(queries):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
