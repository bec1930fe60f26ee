"""Few-shot datasets: Omniglot from its official files, embedded procedural glyphs, sine-wave regression, MNIST
(for continual learning) and spoken digits (FSDD, as log-mel images).

``base``: the class-indexed dataset tasks are drawn from; ``omniglot``, ``glyphs``, ``sine``, ``mnist``, ``fsdd``: one
dataset each; ``paths``: where the data folder is; ``cache``: decoded arrays on disk; ``download``: verified fetches.
"""

from ..errors import DatasetError
from .base import ClassDataset
from .download import download_file, download_omniglot
from .fsdd import SpokenDigits, fsdd_path, load_fsdd
from .glyphs import glyph_splits, make_glyphs
from .mnist import load_mnist, mnist_path
from .omniglot import (
    OMNIGLOT_VALIDATION_ALPHABETS,
    load_omniglot,
    omniglot_path,
    omniglot_splits,
    preprocess_omniglot,
)
from .paths import find_data_dir
from .sine import SineTaskSampler

__all__ = [
    "ClassDataset",
    "DatasetError",
    "OMNIGLOT_VALIDATION_ALPHABETS",
    "SineTaskSampler",
    "SpokenDigits",
    "download_file",
    "download_omniglot",
    "find_data_dir",
    "fsdd_path",
    "glyph_splits",
    "load_fsdd",
    "load_mnist",
    "load_omniglot",
    "mnist_path",
    "make_glyphs",
    "omniglot_path",
    "omniglot_splits",
    "preprocess_omniglot",
]
