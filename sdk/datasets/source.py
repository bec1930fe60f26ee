"""Where a user's dataset comes from and how its inputs are made: a folder of pictures or WAV clips, or an ``.npz``
of arrays (``--data PATH``), with the input description and the split it is read with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgeadapt.runtime.format.inputs import AudioFeatures, InputSpec

from ..errors import DatasetError
from .arrays import load_arrays
from .base import ClassDataset
from .folders import folder_sample_rate, is_audio_folder, load_audio_folder, load_image_folder
from .splits import SplitRule

IMAGE_SIZE = 84  # the few-shot standard for photos (mini-ImageNet); --image-size to change it
# Clips: a second (Speech Commands' length), 40 mel bands x 40 frames of ~32 ms at the folder's own sample rate.
AUDIO = {"duration": 1.0, "n_mels": 40, "frames": 40, "frame_seconds": 0.032}


@dataclass(frozen=True)
class DataSource:
    """A user's data and how to read it.

    Args:
        path: a folder (``<class>/<file>`` or ``<group>/<class>/<file>``) of pictures or WAV clips, or an ``.npz``
            with arrays ``x`` and ``y``.
        image_size: pictures: the side of the square inputs they are brought to.
        channels: pictures: 3 (RGB) or 1 (grayscale); pictures of the other kind are converted.
        fit: pictures: ``crop`` (centre-crop to square, then resize; the default) or ``stretch``.
        value_range: pictures: the values pixels 0 and 255 become (``(0, 1)``; an imported ImageNet network takes
            what its file says, e.g. ``(-1, 127/128)``).
        split: which classes train and which validate (:class:`SplitRule`).
        cache_dir: where decoded folders are cached (default ``$EDGEADAPT_CACHE`` or ``~/.cache/edgeadapt``).
        name: what the data is called, recorded in checkpoints and artifacts' manifests (default: the folder's or
            file's name; see :meth:`title`).
    """

    path: Path | None = None
    image_size: int = IMAGE_SIZE
    channels: int = 3
    fit: str = "crop"
    value_range: tuple[float, float] = (0.0, 1.0)
    split: SplitRule = field(default_factory=SplitRule)
    cache_dir: Path | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path).expanduser())
        if self.channels not in (1, 3) or self.image_size < 8:
            raise DatasetError(f"pictures need 1 or 3 channels and a side of at least 8 pixels, got "
                               f"{self.channels} and {self.image_size}")
        low, high = self.value_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise DatasetError(f"the value range must be two finite numbers, low < high, got {self.value_range}")

    def title(self) -> str | None:
        """What the data is called: ``name``, else the folder's or file's name (None without a path)."""
        return self.name or (self.path.name if self.path is not None else None)

    def picture_spec(self) -> InputSpec:
        """What one picture becomes: ``(channels, image_size, image_size)`` in ``value_range``, Lanczos, fit as set."""
        return InputSpec((self.channels, self.image_size, self.image_size), modality="image", resize="lanczos",
                         fit=self.fit, value_range=tuple(self.value_range))


def load_source(source: DataSource) -> ClassDataset:
    """Every class of ``source`` (before splitting); DatasetError for a missing or unreadable path."""
    path = source.path
    if path is None or not path.exists():
        raise DatasetError(f"no data at {path}: give --data a folder (one sub-folder per class) or an .npz file")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"{path} is a file but not an .npz of arrays; give a folder or an .npz")
        return load_arrays(path)
    if is_audio_folder(path):
        return load_audio_folder(path, audio_spec(folder_sample_rate(path)), source.cache_dir)
    return load_image_folder(path, source.picture_spec(), source.cache_dir)


def audio_spec(sample_rate: int) -> InputSpec:
    """The log-mel input of clips recorded at ``sample_rate`` Hz (settings in ``AUDIO``)."""
    n_fft = 1 << max(int(round(AUDIO["frame_seconds"] * sample_rate)) - 1, 1).bit_length()
    features = AudioFeatures(sample_rate=sample_rate, n_mels=AUDIO["n_mels"], frames=AUDIO["frames"],
                             duration=AUDIO["duration"], n_fft=n_fft)
    return InputSpec(features.shape, modality="audio_features", audio=features)
