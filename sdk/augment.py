"""Random distortions for pretraining, chosen per modality and drawn from an explicit generator so runs resume
exactly.

What is right depends on what an input is: characters survive rotation and shear but not mirroring; photos
survive mirroring and zoom, and their border is picture, not blank paper; a spectrogram may move in time, never
in frequency. ``DEFAULT_AUGMENTATION`` picks one per modality (the 90-degree rotations that make new Omniglot
classes are a dataset recipe's choice, not an augmentation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgeadapt.runtime.format.inputs import InputSpec

AUGMENTATIONS = ("none", "shift", "affine", "photo", "time_shift")
MAX_SHIFT = 2  # pixels, "shift": a random translation of up to this many pixels each way
MAX_ROTATION = 15.0  # degrees, "affine": rotation, with scale 0.85..1.15, shear up to 0.15 and the shift
PHOTO_ZOOM = 0.8  # "photo": a random crop of 80..100 % of the side, anywhere, mirrored half of the time
MAX_TIME_SHIFT = 0.1  # "time_shift": of the frames, either way; frequencies stay where they are
DEFAULT_AUGMENTATION = {"strokes": "shift", "image": "photo", "audio_features": "time_shift", "vector": "none"}


def default_augmentation(spec: InputSpec) -> str:
    """The augmentation that suits inputs described by ``spec``."""
    return DEFAULT_AUGMENTATION.get(spec.modality, "none")


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """``images`` (n, C, H, W) distorted as ``kind`` says (see ``AUGMENTATIONS``): drawings and spectrograms are
    padded with 0 (blank paper, silence), photos with their own border (reflection)."""
    if kind == "none":
        return images
    n, _, height, width = images.shape
    uniform = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    theta = torch.zeros(n, 2, 3)
    if kind == "photo":
        theta = _photo(uniform, n)
    elif kind == "time_shift":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = uniform(n) * MAX_TIME_SHIFT * 2
    else:
        theta[:, :, 2] = uniform(n, 2) * MAX_SHIFT * 2 / torch.tensor([width, height])
        if kind == "shift":
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        else:
            theta[:, :, :2] = _rotation_scale_shear(uniform, n)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    padding = "reflection" if kind == "photo" else "zeros"
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _photo(uniform, n: int) -> torch.Tensor:
    """Crop a random square of ``PHOTO_ZOOM``..1 of the side anywhere in the picture, mirrored half of the time."""
    zoom = 1 - (1 - PHOTO_ZOOM) * (uniform(n) + 1) / 2
    mirror = torch.where(uniform(n) < 0, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = zoom * mirror, zoom
    theta[:, :, 2] = uniform(n, 2) * (1 - zoom)[:, None]
    return theta


def _rotation_scale_shear(uniform, n: int) -> torch.Tensor:
    angle = uniform(n) * math.radians(MAX_ROTATION)
    scale = 1 + 0.15 * uniform(n)
    shear = 0.15 * uniform(n)
    linear = torch.empty(n, 2, 2)
    linear[:, 0, 0] = torch.cos(angle) / scale
    linear[:, 0, 1] = -torch.sin(angle) / scale + shear
    linear[:, 1, 0] = torch.sin(angle) / scale
    linear[:, 1, 1] = torch.cos(angle) / scale
    return linear
