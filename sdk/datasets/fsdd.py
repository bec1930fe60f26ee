"""The Free Spoken Digit Dataset (``$EDGEADAPT_DATA/fsdd/recordings/<digit>_<speaker>_<take>.wav``, 8 kHz mono
16-bit) as log-mel images (:func:`edgeadapt.runtime.audio.log_mel`), by speaker, digit and take."""

from __future__ import annotations

import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeadapt.runtime.audio import log_mel
from edgeadapt.runtime.format.inputs import InputSpec

from .base import ClassDataset
from ..errors import DatasetError
from .paths import find_data_dir

NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
SAMPLE_RATE = 8000


@dataclass(frozen=True)
class SpokenDigits:
    """``features[s, d, t]``: take ``t`` of digit ``d`` by speaker ``speakers[s]``, a (1, 28, 28) log-mel image."""

    features: np.ndarray
    speakers: tuple[str, ...]

    def classes(self, speakers: list[str]) -> ClassDataset:
        """The ten digits as classes, each holding every take of ``speakers`` (for pretraining)."""
        rows = [self.speakers.index(s) for s in speakers]
        images = np.concatenate([self.features[r] for r in rows], axis=1)  # (10, takes * speakers, 1, 28, 28)
        return ClassDataset.dense(torch.from_numpy(np.ascontiguousarray(images)), tuple(map(str, range(10))),
                            ("digits",) * 10, InputSpec(images.shape[2:], modality="audio_features"))


def fsdd_path(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir/fsdd/recordings`` (``data_dir`` defaults to ``$EDGEADAPT_DATA`` or ``../shared/data``)."""
    return find_data_dir(data_dir) / "fsdd" / "recordings"


def load_fsdd(data_dir: str | os.PathLike | None = None) -> SpokenDigits:
    """Every recording as a log-mel image; DatasetError for a missing folder, an unreadable or non-8 kHz-mono
    file, or speakers without the same takes of every digit."""
    folder = fsdd_path(data_dir)
    if not folder.is_dir():
        raise DatasetError(f"no FSDD recordings at {folder} (expected <digit>_<speaker>_<take>.wav files)")
    clips: dict[tuple[str, int, int], np.ndarray] = {}
    for path in sorted(folder.iterdir()):
        match = NAME.fullmatch(path.name)
        if match:
            clips[(match[2], int(match[1]), int(match[3]))] = log_mel(_samples(path), SAMPLE_RATE)
    speakers = tuple(sorted({s for s, _, _ in clips}))
    takes = sorted({t for _, _, t in clips})
    missing = [(s, d, t) for s in speakers for d in range(10) for t in takes if (s, d, t) not in clips]
    if not speakers or missing:
        raise DatasetError(f"{folder}: expected takes {takes[:1]}..{takes[-1:]} of digits 0-9 for every speaker; "
                           f"missing {missing[:5]}")
    features = np.stack([np.stack([np.stack([clips[(s, d, t)] for t in takes]) for d in range(10)])
                         for s in speakers])
    return SpokenDigits(features, speakers)


def _samples(path: Path) -> np.ndarray:
    try:
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
                raise DatasetError(f"{path}: expected 8 kHz mono 16-bit, got {w.getframerate()} Hz, "
                                   f"{w.getnchannels()} channels, {8 * w.getsampwidth()} bits")
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")
    except (wave.Error, EOFError, OSError) as e:
        raise DatasetError(f"{path} is not a readable WAV file: {e}") from e
