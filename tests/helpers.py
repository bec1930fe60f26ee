"""Shared test helpers (torch): tiny class datasets whose pixels identify their class."""

from __future__ import annotations

import torch

from edgeadapt.sdk.datasets.base import ClassDataset


def labelled_dataset(n_classes: int = 12, n_drawings: int = 20, size: int = 28, offset: int = 0) -> ClassDataset:
    """Class c's images are filled with (offset + c) + drawing / 100, so any image names its class and drawing."""
    values = torch.arange(offset, offset + n_classes, dtype=torch.float32)[:, None] + torch.arange(n_drawings) / 100
    images = values[:, :, None, None, None].expand(n_classes, n_drawings, 1, size, size).contiguous()
    names = tuple(f"class{offset + c}" for c in range(n_classes))
    return ClassDataset(images, names, tuple("alpha" if c % 2 else "beta" for c in range(n_classes)))

