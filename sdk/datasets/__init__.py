"""Few-shot datasets: Omniglot from its official files, embedded procedural glyphs, sine-wave regression, and MNIST
(for continual learning).

``base``: the class-indexed dataset tasks are drawn from; ``omniglot``, ``glyphs``, ``sine``, ``mnist``: one
dataset each; ``paths``: where the data folder is; ``cache``: decoded arrays on disk; ``download``: verified fetches.
"""

from ..errors import DatasetError
from .base import ClassDataset
from .download import download_file, download_omniglot
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
    "download_file",
    "download_omniglot",
    "find_data_dir",
    "glyph_splits",
    "load_mnist",
    "load_omniglot",
    "mnist_path",
    "make_glyphs",
    "omniglot_path",
    "omniglot_splits",
    "preprocess_omniglot",
]
