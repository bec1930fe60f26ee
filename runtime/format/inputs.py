"""What one model input is, described once by the dataset and carried to the device.

The dataset makes an :class:`InputSpec`; training stores it in the checkpoint (``data["input"]``), export copies
it into the manifest (``input_shape``, ``input_dtype`` and the ``input`` object), and the runtime prepares raw
inputs by it (:func:`edgeadapt.runtime.preprocess.prepare`) and checks what it is given against it. Nothing is
assumed: a photo is never inverted, and ink polarity exists only for strokes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .errors import InputError
from .vocab import FITS, LAYOUTS, MODALITIES, POLARITIES, RESIZES

LEGACY = {"modality": "strokes", "layout": "CHW", "polarity": "ink_high", "resize": "lanczos"}  # format-3 artifacts
RASTER = ("image", "strokes")  # modalities that are pictures: resized, and (strokes) with an ink polarity


@dataclass(frozen=True)
class AudioFeatures:
    """How a raw clip becomes an ``audio_features`` input (:func:`edgeadapt.runtime.audio.log_mel`'s settings).

    Clips are resampled to ``sample_rate`` Hz, centred in (cropped or zero-padded to) ``duration`` seconds and turned
    into a ``(1, n_mels, frames)`` log-mel image of ``n_fft``-sample frames, its top ``dynamic_range_db`` scaled to
    [0, 1].
    """

    sample_rate: int = 16000
    n_mels: int = 40
    frames: int = 40
    duration: float = 1.0
    n_fft: int = 512
    dynamic_range_db: float = 60.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "frames", "n_fft"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise InputError(f"audio features: {name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("duration", "dynamic_range_db"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                                     and value > 0):
                raise InputError(f"audio features: {name} must be a positive number, got {value!r}")
        if self.n_fft > round(self.duration * self.sample_rate):
            raise InputError(f"audio features: a {self.n_fft}-sample frame is longer than the {self.duration} s clip")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the input it makes: ``(1, n_mels, frames)``."""
        return 1, self.n_mels, self.frames


@dataclass(frozen=True)
class InputSpec:
    """One input of a model.

    Args:
        shape: the shape of one input, e.g. ``(3, 84, 84)`` (no batch dimension).
        modality: ``image`` (photos), ``strokes`` (drawings, handwriting), ``audio_features`` (e.g. log-mel
            frames) or ``vector``.
        layout: the axes of ``shape``: ``CHW`` for pictures and spectrograms, ``C`` for vectors.
        dtype: the element type the model takes (``float32``).
        value_range: ``(low, high)`` of prepared inputs before normalisation (pixels scaled to ``[0, 1]``).
        mean, std: per-channel normalisation applied last, ``(x - mean) / std`` (both or neither).
        polarity: strokes only: ``ink_high`` (strokes at ``high`` on a ``low`` background) or ``ink_low``.
        resize: pictures only: the filter raw pictures are resized with (training's).
        fit: pictures only: ``stretch`` (the whole picture resized to the input's height and width; the default) or
            ``crop`` (the largest centred box of the input's aspect ratio cut out first, then resized).
        audio: ``audio_features`` inputs made from raw clips: how (:class:`AudioFeatures`; its shape is ``shape``).
    """

    shape: tuple[int, ...]
    modality: str = "image"
    layout: str = "CHW"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    polarity: str | None = None
    resize: str | None = None
    fit: str | None = None
    audio: AudioFeatures | None = None

    def __post_init__(self) -> None:
        if isinstance(self.audio, dict):
            object.__setattr__(self, "audio", _audio_features(self.audio))
        for name, value in (("shape", self.shape), ("value_range", self.value_range), ("mean", self.mean),
                            ("std", self.std)):
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        _check(self)

    @property
    def channels(self) -> int:
        """Channels of a ``CHW`` input (the normalisation's length); 1 otherwise."""
        return self.shape[0] if self.layout == "CHW" else 1

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest value a prepared (normalised) input can hold, over all channels."""
        low, high = self.value_range
        if self.mean is None:
            return low, high
        ends = [(v - m) / s for m, s in zip(self.mean, self.std) for v in (low, high)]
        return min(ends), max(ends)

    @property
    def crops(self) -> bool:
        """Whether raw pictures are centre-cropped to the input's aspect ratio before they are resized."""
        return self.fit == "crop"

    def to_json(self) -> dict[str, Any]:
        """A JSON object (lists for tuples, an object for ``audio``; ``None`` fields left out)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> InputSpec:
        """The inverse of :meth:`to_json`; InputError naming what is wrong."""
        unknown = set(document) - set(cls.__dataclass_fields__)
        if unknown or "shape" not in document:
            raise InputError(f"an input description needs 'shape' and only {sorted(cls.__dataclass_fields__)}; "
                             f"got {sorted(document)}")
        try:
            return cls(**document)
        except TypeError as e:
            raise InputError(f"not an input description: {e}") from None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputSpec:
        """The input of an artifact: ``input_shape``, ``input_dtype`` and the ``input`` object (an artifact written
        before input descriptions holds strokes, ink high, resized with Lanczos)."""
        described = dict(manifest["input"])
        if "modality" not in described:
            described = {**LEGACY, **described}
        described["value_range"] = described.pop("range")
        return cls(shape=tuple(manifest["input_shape"]), dtype=manifest.get("input_dtype", "float32"), **described)

    def manifest_entry(self) -> dict[str, Any]:
        """The manifest's ``input`` object (``shape`` and ``dtype`` are its ``input_shape`` / ``input_dtype``)."""
        entry = {k: v for k, v in self.to_json().items() if k not in ("shape", "dtype", "value_range")}
        return {"range": list(self.value_range), **entry}


def _check(spec: InputSpec) -> None:
    """InputError unless ``spec`` is coherent."""
    def fail(what: str) -> None:
        raise InputError(f"input description: {what}")

    if not spec.shape or any(type(n) is not int or n < 1 for n in spec.shape):
        fail(f"shape must be positive integers, got {spec.shape}")
    for name, value, allowed in (("modality", spec.modality, MODALITIES), ("layout", spec.layout, LAYOUTS)):
        if value not in allowed:
            fail(f"{name} must be one of {allowed}, got {value!r}")
    if spec.dtype != "float32":
        fail(f"dtype must be 'float32', got {spec.dtype!r}")
    if len(spec.shape) != {"CHW": 3, "HWC": 3, "C": 1, "FT": 2}[spec.layout]:
        fail(f"layout {spec.layout} does not fit shape {spec.shape}")
    low, high = spec.value_range if len(spec.value_range) == 2 else (math.nan, math.nan)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        fail(f"value_range must be two finite numbers, low < high, got {spec.value_range}")
    if (spec.mean is None) != (spec.std is None):
        fail("mean and std come together")
    if spec.mean is not None and (len(spec.mean) != spec.channels or len(spec.std) != spec.channels
                                  or not all(math.isfinite(m) for m in spec.mean)
                                  or not all(math.isfinite(s) and s > 0 for s in spec.std)):
        fail(f"mean and std need {spec.channels} finite values each (std > 0)")
    if spec.polarity is not None and (spec.modality != "strokes" or spec.polarity not in POLARITIES):
        fail(f"polarity is for strokes only, one of {POLARITIES}; got {spec.polarity!r} for {spec.modality}")
    if spec.resize is not None and (spec.modality not in RASTER or spec.resize not in RESIZES):
        fail(f"resize is for images and strokes only, one of {RESIZES}; got {spec.resize!r} for {spec.modality}")
    if spec.fit is not None and (spec.modality not in RASTER or spec.fit not in FITS):
        fail(f"fit is for images and strokes only, one of {FITS}; got {spec.fit!r} for {spec.modality}")
    if spec.audio is not None and (spec.modality != "audio_features" or spec.audio.shape != spec.shape):
        fail(f"audio settings are for audio_features inputs of their shape {spec.audio.shape}; got "
             f"{spec.modality} of shape {spec.shape}")


def _audio_features(document: dict[str, Any]) -> AudioFeatures:
    """:class:`AudioFeatures` from its JSON object; InputError naming what is wrong."""
    unknown = set(document) - set(AudioFeatures.__dataclass_fields__)
    if unknown:
        raise InputError(f"audio features take only {sorted(AudioFeatures.__dataclass_fields__)}; got {sorted(unknown)}")
    return AudioFeatures(**document)
