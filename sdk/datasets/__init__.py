"""Few-shot datasets: a user's own data and the built-in ones.

``base``: the ragged, class-indexed dataset tasks are drawn from; ``folders``: a folder of pictures or WAV clips,
one sub-folder per class; ``arrays``: examples and labels; ``source``: where a user's data is and how it is read
(``DataSource``); ``splits``: class-disjoint train / validation splits; ``omniglot``, ``glyphs``, ``sine``,
``mnist``, ``fsdd``: one built-in dataset each; ``paths``: where the data folder is; ``cache``: decoded arrays on
disk; ``download``: verified fetches.
"""

from ..errors import DatasetError
from .arrays import from_arrays, load_arrays
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
from .source import DataSource, load_source
from .splits import SplitRule, split_classes

__all__ = [
    "ClassDataset",
    "DataSource",
    "SplitRule",
    "DatasetError",
    "OMNIGLOT_VALIDATION_ALPHABETS",
    "SineTaskSampler",
    "SpokenDigits",
    "download_file",
    "download_omniglot",
    "find_data_dir",
    "from_arrays",
    "load_arrays",
    "load_source",
    "split_classes",
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
