"""Raw pictures to what an artifact expects (numpy only), by its input description
(:class:`~edgeadapt.runtime.format.inputs.InputSpec`, from the manifest): size, channels, value range,
per-channel normalisation, and for drawings the ink polarity.

The resampling is training's (``lanczos``: Lanczos-3 with antialiasing, the filter of PIL's ``Image.LANCZOS``).
Only drawings (modality ``strokes``) have an ink: the SDK's drawings hold strokes 1.0 on 0.0 (``ink_high``),
while scans and PNGs are dark ink on white paper (``ink="dark"``, the default for drawings). A photo (modality
``image``) is never inverted, and ``ink`` is refused for it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import InputError, InputTypeError
from .format.inputs import RASTER, InputSpec

INKS = ("dark", "light")


def prepare(images: np.ndarray | Sequence[np.ndarray], manifest: dict[str, Any], ink: str | None = None) -> np.ndarray:
    """``(n, *input_shape)`` float32 model inputs from raw pictures.

    Args:
        images: one array ``(n, H, W)`` or ``(n, H, W, C)``, or a sequence of ``(H, W)`` / ``(H, W, C)`` arrays of
            any size; uint8 (0..255), bool, or float in [0, 1].
        manifest: ``learner.manifest`` (its input description says what the model takes).
        ink: drawings only: "dark" for dark strokes on light paper (scans, PNGs; the default), "light" for light
            strokes on a dark background.
    """
    spec = InputSpec.from_manifest(manifest)
    invert = _inverts(spec, ink)
    channels, height, width = _input_size(spec)
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        images = list(images)
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence) or len(images) == 0:
        raise InputTypeError("images must be a non-empty sequence of (H, W) or (H, W, C) arrays, or one array "
                             "(n, H, W) / (n, H, W, C)")
    out = np.empty((len(images), channels, height, width), np.float32)
    for i, image in enumerate(images):
        unit, eight_bit = _unit_range(image, f"images[{i}]", channels)
        out[i] = [resize(plane, height, width, eight_bit) for plane in (1.0 - unit if invert else unit)]
    low, high = spec.value_range
    out = low + out * (high - low)
    if spec.mean is not None:
        out = (out - np.reshape(spec.mean, (-1, 1, 1))) / np.reshape(spec.std, (-1, 1, 1))
    return out.astype(np.float32)


def _inverts(spec: InputSpec, ink: str | None) -> bool:
    """Whether raw pictures of this ``ink`` are inverted for the model: only drawings whose ink is the other way."""
    if spec.modality != "strokes":
        if ink is not None:
            raise InputError(f"ink applies to drawings; this model takes {spec.modality} inputs, which are never "
                             "inverted: leave ink out")
        return False
    if (ink or "dark") not in INKS:
        raise InputError(f"ink must be one of {INKS}, got {ink!r}")
    return ((ink or "dark") == "dark") == (spec.polarity != "ink_low")


def resize(image: np.ndarray, height: int, width: int, eight_bit: bool = False) -> np.ndarray:
    """A 2-D image in [0, 1] resampled to ``(height, width)`` with antialiased Lanczos-3, rows first, clipped to
    [0, 1] after each pass; ``eight_bit`` also rounds to steps of 1/255 after each, as PIL's ``Image.LANCZOS`` does
    for 8-bit images (then it matches PIL within 1/255)."""
    def settle(values: np.ndarray) -> np.ndarray:
        values = np.clip(values, 0.0, 1.0)
        return np.round(values * 255.0) / 255.0 if eight_bit else values

    rows = settle(image.astype(np.float64) @ _weights(width, image.shape[1]).T)
    return settle(_weights(height, image.shape[0]) @ rows)


def _weights(out_size: int, in_size: int) -> np.ndarray:
    """The (out_size, in_size) resampling matrix: PIL's support and centring, Lanczos-3 stretched when shrinking."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centres - 3.0 * stretch + 0.5).astype(int), 0)
    last = np.minimum((centres + 3.0 * stretch + 0.5).astype(int), in_size)
    taps = np.arange(in_size)
    distance = (taps[None, :] - centres[:, None] + 0.5) / stretch
    weights = np.where((taps >= first[:, None]) & (taps < last[:, None]) & (np.abs(distance) < 3.0),
                       np.sinc(distance) * np.sinc(distance / 3.0), 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def _input_size(spec: InputSpec) -> tuple[int, int, int]:
    if spec.modality not in RASTER or spec.layout != "CHW":
        raise InputError(f"prepare makes pictures (channels, height, width); this model takes {spec.modality} "
                         f"inputs of shape {spec.shape} (spoken clips: edgeadapt.runtime.audio.log_mel)")
    return spec.shape[0], spec.shape[1], spec.shape[2]


def _unit_range(image: Any, name: str, channels: int) -> tuple[np.ndarray, bool]:
    """``image`` as float64 (channels, H, W) in [0, 1], and whether it came in 8 bits (uint8 or bool)."""
    if not isinstance(image, np.ndarray) or isinstance(image, np.ma.MaskedArray):
        raise InputTypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, channels) or min(image.shape[:2]) < 1:
        raise InputError(f"{name} must have shape (H, W) or (H, W, {channels}), got {image.shape}")
    if image.dtype == np.bool_:
        unit = image.astype(np.float64)
    elif image.dtype == np.uint8:
        unit = image / 255.0
    elif image.dtype.kind == "f":
        unit = image.astype(np.float64)
        if not np.isfinite(unit).all() or unit.min() < 0.0 or unit.max() > 1.0:
            raise InputError(f"{name}: float images must hold finite values in [0, 1]")
    else:
        raise InputTypeError(f"{name} must be uint8, bool or float, got {image.dtype}")
    return np.broadcast_to(unit, (*unit.shape[:2], channels)).transpose(2, 0, 1), image.dtype.kind in "bu"
