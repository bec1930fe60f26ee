"""What an app has to what an artifact expects (numpy only), by its input description
(:class:`~edgeadapt.runtime.format.inputs.InputSpec`, from the manifest).

Pictures: camera frames and files of any size, one or many (of different sizes), RGB, BGR (OpenCV),
RGBA / BGRA (a canvas's ``getImageData``; alpha is dropped) or grayscale, become the model's channels (Pillow's
luma for a 1-channel model, gray repeated for a 3-channel one), are centre-cropped to the input's aspect ratio when
the description's ``fit`` is ``crop`` (:func:`centre_box`, the box training cuts), resized, scaled to the value range
and normalised per channel. The resampling is training's (``lanczos``: Lanczos-3 with antialiasing, the filter of
PIL's ``Image.LANCZOS``, within 1/255 of it on 8-bit pictures). Only drawings (modality ``strokes``) have an ink:
the SDK's drawings hold strokes 1.0 on 0.0 (``ink_high``), while scans and PNGs are dark ink on white paper
(``ink="dark"``, the default for drawings). A photo (modality ``image``) is never inverted, and ``ink`` is refused
for it.

Sound: an ``audio_features`` model whose description carries ``audio`` settings takes raw clips and the rate they
were recorded at (:func:`prepare_audio`, which :func:`prepare` calls for such a model): each clip is resampled to
the model's rate and turned into its log-mel image (:func:`edgeadapt.runtime.audio.clip_features`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .audio import clip_features
from .errors import InputError, InputTypeError
from .format.inputs import RASTER, InputSpec

INKS = ("dark", "light")
CHANNEL_ORDERS = ("rgb", "bgr")
LUMA = (19595, 38470, 7471)  # Pillow's convert("L") weights of R, G, B, in 1/65536 (ITU-R 601-2 luma)


def prepare(images: Any, manifest: dict[str, Any], ink: str | None = None, *, channel_order: str = "rgb",
            sample_rate: int | None = None) -> np.ndarray:
    """``(n, *input_shape)`` float32 model inputs from what an app has: pictures, or clips for an audio model.

    Args:
        images: one picture ``(H, W)`` or ``(H, W, C)`` (C = 1, 3 or 4), a batch array ``(n, H, W)`` or
            ``(n, H, W, C)``, or a sequence of pictures of any sizes; uint8 (0..255), bool, or float in [0, 1]. A
            3-D array whose last axis is at most 4 long is one picture, any other 3-D array a batch of gray ones. For
            an audio model: one clip (1-D) or a sequence of clips (see :func:`prepare_audio`).
        manifest: ``learner.manifest`` (its input description says what the model takes).
        ink: drawings only: "dark" for dark strokes on light paper (scans, PNGs; the default), "light" for light
            strokes on a dark background.
        channel_order: "rgb" (Pillow, browsers' canvases) or "bgr" (OpenCV); a 4th channel is alpha, and dropped.
        sample_rate: audio models only: the rate (Hz) the clips were recorded at.
    """
    spec = InputSpec.from_manifest(manifest)
    if spec.modality == "audio_features" and spec.audio is not None:
        if ink is not None or channel_order != "rgb":
            raise InputError("ink and channel_order apply to pictures; this model takes audio clips")
        return prepare_audio(images, manifest, sample_rate)
    if sample_rate is not None:
        raise InputError(f"sample_rate applies to audio clips; this model takes {spec.modality} inputs: leave it out")
    if channel_order not in CHANNEL_ORDERS:
        raise InputError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    invert = _inverts(spec, ink)
    channels, height, width = _input_size(spec)
    pictures = _pictures(images)
    out = np.empty((len(pictures), channels, height, width), np.float32)
    for i, picture in enumerate(pictures):
        out[i] = _picture(picture, f"images[{i}]", spec, channel_order, invert)
    return _scaled(out, spec)


def prepare_audio(clips: Any, manifest: dict[str, Any], sample_rate: int | None) -> np.ndarray:
    """``(n, 1, n_mels, frames)`` float32 inputs of an audio model from raw clips recorded at ``sample_rate`` Hz.

    Args:
        clips: one mono clip (a 1-D array) or a sequence of clips of any lengths: int16 samples or floats in
            [-1, 1]. Each is resampled to the model's rate and centred in (cropped or zero-padded to) its duration.
        manifest: ``learner.manifest`` of a model whose input description carries ``audio`` settings.
        sample_rate: the rate the clips were recorded at, in Hz (required: a clip does not carry it).
    """
    spec = InputSpec.from_manifest(manifest)
    if spec.modality != "audio_features" or spec.audio is None:
        what = "pictures (prepare)" if spec.modality in RASTER else f"{spec.modality} inputs without audio settings"
        raise InputError(f"prepare_audio makes features of clips for audio models; this model takes {what}")
    if sample_rate is None:
        raise InputError(f"sample_rate is missing: pass the rate (Hz) the clips were recorded at; the model "
                         f"resamples them to {spec.audio.sample_rate} Hz")
    if isinstance(sample_rate, np.integer):
        sample_rate = int(sample_rate)
    features = [_clip_features(clip, f"clips[{i}]", sample_rate, spec) for i, clip in enumerate(_clips(clips))]
    return _scaled(np.stack(features), spec)


def centre_box(height: int, width: int, out_height: int, out_width: int) -> tuple[int, int, int, int]:
    """``(top, left, box_height, box_width)``: the largest box of ``out_height:out_width``'s aspect ratio centred in
    a ``height x width`` picture (``fit="crop"``), as training cuts it with ``Image.crop((left, top, left +
    box_width, top + box_height))`` before resizing; sides are rounded with Python's ``round`` and at least 1."""
    sizes = (height, width, out_height, out_width)
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in sizes):
        raise InputError(f"centre_box takes positive integer sizes, got {sizes}")
    box_width = max(1, min(width, round(height * out_width / out_height)))
    box_height = max(1, min(height, round(width * out_height / out_width)))
    return (height - box_height) // 2, (width - box_width) // 2, box_height, box_width


def luma(rgb: np.ndarray) -> np.ndarray:
    """``(H, W)`` gray of an ``(H, W, 3)`` RGB picture, as Pillow's ``convert("L")``: uint8 exactly,
    ``(R*19595 + G*38470 + B*7471 + 0x8000) >> 16``; floats by the same weights, unrounded."""
    if rgb.dtype == np.uint8:
        total = sum(rgb[:, :, i].astype(np.uint32) * np.uint32(weight) for i, weight in enumerate(LUMA))
        return ((total + 0x8000) >> 16).astype(np.uint8)
    return rgb @ (np.array(LUMA, np.float64) / 65536.0)


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


def _input_size(spec: InputSpec) -> tuple[int, int, int]:
    if spec.modality not in RASTER or spec.layout != "CHW":
        raise InputError(f"prepare makes pictures (channels, height, width) and, for audio models with audio "
                         f"settings, features of clips; this model takes {spec.modality} inputs of shape "
                         f"{spec.shape} (spoken clips without settings: edgeadapt.runtime.audio.log_mel)")
    return spec.shape[0], spec.shape[1], spec.shape[2]


def _pictures(images: Any) -> list[Any]:
    """``images`` as a non-empty list of single pictures (a batch array split, one picture wrapped)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[2] <= 4):
            return [images]
        if images.ndim not in (3, 4):
            hint = " (a 1-D array is an audio clip)" if images.ndim == 1 else ""
            raise InputError(f"images of shape {images.shape} are neither a picture (H, W) / (H, W, C) nor a batch "
                             f"(n, H, W) / (n, H, W, C){hint}")
        images = list(images)
    elif isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        images = None
    if not images:
        raise InputTypeError("images must be a non-empty sequence of (H, W) or (H, W, C) arrays, one such array, or "
                             "one array (n, H, W) / (n, H, W, C)")
    return list(images)


def _picture(picture: Any, name: str, spec: InputSpec, channel_order: str, invert: bool) -> np.ndarray:
    """One picture as the model's ``(channels, height, width)``, in [0, 1] (before the value range)."""
    pixels, eight_bit = _pixels(picture, name)
    planes = _channels(pixels, spec.channels, channel_order, name)
    height, width = spec.shape[1], spec.shape[2]
    if spec.crops:
        top, left, box_height, box_width = centre_box(planes.shape[1], planes.shape[2], height, width)
        planes = planes[:, top: top + box_height, left: left + box_width]
    return np.stack([resize(_unit(plane, invert), height, width, eight_bit) for plane in planes])


def _unit(plane: np.ndarray, invert: bool) -> np.ndarray:
    """One channel in [0, 1] (uint8 divided by 255), inverted for drawings whose ink is the other way."""
    unit = plane / 255.0 if plane.dtype == np.uint8 else plane
    return 1.0 - unit if invert else unit


def _pixels(image: Any, name: str) -> tuple[np.ndarray, bool]:
    """``image`` as ``(H, W, C)`` uint8 (uint8 and bool pictures) or float64 in [0, 1], and whether it was 8-bit."""
    if not isinstance(image, np.ndarray) or isinstance(image, np.ma.MaskedArray):
        raise InputTypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        hint = ": a 1-D array is an audio clip, and this model takes pictures" if image.ndim == 1 else ""
        raise InputError(f"{name} must have shape (H, W) or (H, W, C), got {image.shape}{hint}")
    if image.size == 0:
        raise InputError(f"{name} is empty: shape {image.shape}")
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255), True
    if image.dtype == np.uint8:
        return image, True
    if image.dtype.kind != "f":
        raise InputTypeError(f"{name} must be uint8, bool or float, got {image.dtype}")
    unit = image.astype(np.float64)
    if not np.isfinite(unit).all():
        raise InputError(f"{name} holds NaN or infinite values")
    if unit.min() < 0.0 or unit.max() > 1.0:
        raise InputError(f"{name}: float images must hold values in [0, 1], got {unit.min():g}..{unit.max():g}")
    return unit, False


def _channels(pixels: np.ndarray, channels: int, channel_order: str, name: str) -> np.ndarray:
    """``(H, W, C)`` pixels as the model's ``(channels, H, W)``: alpha dropped, BGR reordered, RGB to Pillow's
    luma for a 1-channel model, gray repeated for a multi-channel one."""
    have = pixels.shape[2]
    if have == 4 and channels != 4:
        pixels, have = pixels[:, :, :3], 3
    if channel_order == "bgr" and have in (3, 4):
        pixels = pixels[:, :, [2, 1, 0, 3][:have]]
    if have == channels:
        return pixels.transpose(2, 0, 1)
    if have == 1:
        return np.broadcast_to(pixels, (*pixels.shape[:2], channels)).transpose(2, 0, 1)
    if have == 3 and channels == 1:
        return luma(pixels)[None]
    raise InputError(f"{name} has {pixels.shape[2]} channels; a {channels}-channel model takes pictures of 1 (gray), "
                     f"3 (RGB / BGR) or 4 (RGBA / BGRA) channels")


def _clips(clips: Any) -> list[Any]:
    """``clips`` as a non-empty list of single clips."""
    if isinstance(clips, np.ndarray):
        if clips.ndim != 1:
            raise InputError(f"clips of shape {clips.shape}: an audio model takes one mono clip (a 1-D array) or a "
                             "list of clips, not a picture or a 2-D array (pass a list of its rows)")
        return [clips]
    if isinstance(clips, (str, bytes)) or not isinstance(clips, Sequence) or len(clips) == 0:
        raise InputTypeError("clips must be a 1-D numpy array (one clip) or a non-empty sequence of them")
    return list(clips)


def _clip_features(clip: Any, name: str, sample_rate: int, spec: InputSpec) -> np.ndarray:
    """The log-mel input of one clip; the error of :func:`clip_features` named after the clip."""
    if not isinstance(clip, np.ndarray) or isinstance(clip, np.ma.MaskedArray):
        raise InputTypeError(f"{name} must be a numpy array, got {type(clip).__name__}")
    try:
        return clip_features(clip, sample_rate, spec.audio)
    except (InputError, InputTypeError) as e:
        raise type(e)(f"{name}: {e}") from None


def _scaled(unit: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Inputs in [0, 1] scaled to the description's value range, then normalised by its mean / std."""
    low, high = spec.value_range
    out = low + unit * (high - low)
    if spec.mean is not None:
        out = (out - np.reshape(spec.mean, (-1, 1, 1))) / np.reshape(spec.std, (-1, 1, 1))
    return out.astype(np.float32)


def resize(image: np.ndarray, height: int, width: int, eight_bit: bool = False) -> np.ndarray:
    """A 2-D image in [0, 1] resampled to ``(height, width)`` with antialiased Lanczos-3, rows first, clipped to
    [0, 1] after each pass; ``eight_bit`` also rounds to steps of 1/255 after each, as PIL's ``Image.LANCZOS`` does
    for 8-bit images (then it matches PIL within 1/255). A pass whose size does not change is skipped, as PIL does."""
    def settle(values: np.ndarray) -> np.ndarray:
        values = np.clip(values, 0.0, 1.0)
        return np.round(values * 255.0) / 255.0 if eight_bit else values

    rows = image.astype(np.float64)
    if width != rows.shape[1]:
        rows = settle(rows @ _weights(width, rows.shape[1]).T)
    return rows if height == rows.shape[0] else settle(_weights(height, rows.shape[0]) @ rows)


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
