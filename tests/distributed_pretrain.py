"""The Python API under torchrun: ``pretrain`` a tiny Conv4 on a tiny labelled dataset into the folder ``argv[1]``.

Run directly it is one process; under ``torchrun --nproc-per-node N`` the N processes share every batch.
"""

import sys

import torch

from edgeadapt.sdk.models import Conv4
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain

from helpers import labelled_dataset


def main(out: str) -> None:
    """Pretrain for one epoch of uneven batches (240 images, batches of 70), checkpointing into ``out``."""
    torch.manual_seed(0)
    classes = labelled_dataset()
    model = Conv4(ways=classes.n_classes, hidden=4)
    pretrain(model, classes, PretrainConfig(epochs=2, batch_size=70, augmentation="shift"), seed=1,
             checkpoint_dir=out, checkpoint_every=3, metrics_path=f"{out}.metrics.jsonl", progress=False)


if __name__ == "__main__":
    main(sys.argv[1])
