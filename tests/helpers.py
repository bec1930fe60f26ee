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



def reference_probabilities(model: torch.nn.Module, support_x, labels, n_classes: int, queries,
                            inner_lr: float = 0.5, inner_steps: int = 2):
    """PyTorch's probabilities (numpy) for ``queries`` after adapting ``model`` to ``support_x`` labelled by class
    indices ``labels``: an ``n_classes``-way task on the model's head, as the tests' artifact computes it."""
    from edgeadapt.sdk import InnerLoop

    inner = InnerLoop(model, inner_lr, inner_steps)
    class_mask = (torch.arange(model.head.out_features) < n_classes).float()
    probabilities = inner.probabilities(torch.as_tensor(support_x), torch.as_tensor(labels), torch.as_tensor(queries),
                                        class_mask)
    return probabilities[:, :n_classes].numpy()
