"""The closed vocabularies shared by training, export, the manifest and the command line, typed once.

Each is a ``Literal`` type alias and the tuple of its values (``typing.get_args``), which ``argparse`` uses as
``choices`` and the manifest's schema checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

Scope = Literal["all", "last_block", "head"]  # what the inner loop adapts
HeadInit = Literal["learned", "zeros", "prototypes"]  # where each task's head starts
Loss = Literal["cross_entropy", "mse"]
Modality = Literal["image", "strokes", "audio_features", "vector"]  # what an input is
Polarity = Literal["ink_high", "ink_low"]  # strokes only: ink_high = strokes 1.0 on a 0.0 background
Resize = Literal["lanczos", "area"]  # how raw images are brought to the input size (training's filter)
Layout = Literal["CHW", "HWC", "C", "FT"]  # axes of one input: channels x height x width, features, frames
Fit = Literal["stretch", "crop"]  # pictures: resized to the input's shape as they are, or centre-cropped to its aspect first

SCOPES: tuple[str, ...] = get_args(Scope)
HEAD_INITS: tuple[str, ...] = get_args(HeadInit)
LOSSES: tuple[str, ...] = get_args(Loss)
MODALITIES: tuple[str, ...] = get_args(Modality)
POLARITIES: tuple[str, ...] = get_args(Polarity)
RESIZES: tuple[str, ...] = get_args(Resize)
LAYOUTS: tuple[str, ...] = get_args(Layout)
FITS: tuple[str, ...] = get_args(Fit)
