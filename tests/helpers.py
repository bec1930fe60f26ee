"""Shared test helpers (torch): tiny class datasets whose pixels identify their class, and small folders of
pictures and WAV clips as users have them."""

from __future__ import annotations

import numpy as np
import soundfile
import torch
from PIL import Image

from edgeadapt.sdk.datasets.base import ClassDataset


def labelled_dataset(n_classes: int = 12, n_drawings: int = 20, size: int = 28, offset: int = 0) -> ClassDataset:
    """Class c's images are filled with (offset + c) + drawing / 100, so any image names its class and drawing."""
    values = torch.arange(offset, offset + n_classes, dtype=torch.float32)[:, None] + torch.arange(n_drawings) / 100
    images = values[:, :, None, None, None].expand(n_classes, n_drawings, 1, size, size).contiguous()
    names = tuple(f"class{offset + c}" for c in range(n_classes))
    return ClassDataset.dense(images, names, tuple("alpha" if c % 2 else "beta" for c in range(n_classes)))



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


RNG = np.random.default_rng(0)  # pictures of the folders below


def picture(path, size, mode="RGB", value=None):
    pixels = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if value is None else \
        np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def photo_folder(root, sizes=(3, 5, 2, 7), grouped=False):
    """Classes of ``sizes`` pictures each: JPEG / PNG / BMP, RGB / L / P, of different sizes; one brightness per
    class so classes are told apart."""
    for c, count in enumerate(sizes):
        folder = root / (f"session{c % 2}" if grouped else "") / f"kind{c}"
        folder.mkdir(parents=True)
        for i in range(count):
            suffix, mode = [(".jpg", "RGB"), (".png", "L"), (".bmp", "RGB"), (".png", "P")][i % 4]
            picture(folder / f"{i}{suffix.upper() if i == 2 else suffix}", (30 + 7 * i, 20 + 5 * c), mode,
                     value=None if i % 2 else (40 * c) % 256)
    return root


def wav_folder(root, rate=8000, classes=3, clips=3):
    for c in range(classes):
        (root / f"word{c}").mkdir(parents=True)
        for i in range(clips):
            t = np.arange(int(rate * (0.5 + 0.1 * i))) / rate
            soundfile.write(root / f"word{c}" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (300 + 200 * c) * t), rate,
                            subtype="PCM_16")
    return root
