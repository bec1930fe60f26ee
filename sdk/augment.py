"""Random image distortions for pretraining, drawn from an explicit generator so runs resume exactly."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "shift", "affine")
MAX_SHIFT = 2  # pixels, "shift": a random translation of up to this many pixels each way
MAX_ROTATION = 15.0  # degrees, "affine": rotation, with scale 0.85..1.15, shear up to 0.15 and the shift


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """``images`` (n, C, H, W) distorted as ``kind`` says: "none", "shift" or "affine"; background stays 0."""
    if kind == "none":
        return images
    n, _, height, width = images.shape
    uniform = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    shift = uniform(n, 2) * MAX_SHIFT * 2 / torch.tensor([width, height])
    theta = torch.zeros(n, 2, 3)
    theta[:, :, 2] = shift
    if kind == "shift":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    else:
        angle = uniform(n) * math.radians(MAX_ROTATION)
        scale = 1 + 0.15 * uniform(n)
        shear = 0.15 * uniform(n)
        theta[:, 0, 0] = torch.cos(angle) / scale
        theta[:, 0, 1] = -torch.sin(angle) / scale + shear
        theta[:, 1, 0] = torch.sin(angle) / scale
        theta[:, 1, 1] = torch.cos(angle) / scale
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
