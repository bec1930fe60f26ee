"""A spoken clip to what an audio artifact takes (numpy only): a (1, n_mels, frames) log-mel spectrogram in [0, 1].

The clip is centred in (cropped or zero-padded to) ``duration`` seconds, cut into ``frames`` Hann-windowed frames,
mapped to ``n_mels`` triangular mel bands, and its log energy clipped to the top ``dynamic_range_db`` and scaled so
that the loudest band is 1.0 and anything ``dynamic_range_db`` quieter is 0.0. Training and the device compute the
same function.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, InputTypeError
from .format.inputs import AudioFeatures


def mel_filters(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the mel scale from 0 Hz to Nyquist."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges = 700.0 * (10 ** (np.linspace(0.0, mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - low) / np.maximum(centre - low, 1e-9)
    falling = (high - bins) / np.maximum(high - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def clip_features(signal: np.ndarray, sample_rate: int, audio: AudioFeatures) -> np.ndarray:
    """The ``audio.shape`` input a model described by ``audio`` takes for a mono clip recorded at ``sample_rate`` Hz
    (int16 samples or floats in [-1, 1]): resampled to ``audio.sample_rate``, then :func:`log_mel`."""
    if type(sample_rate) is not int or sample_rate < 1:
        raise InputError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    samples = _mono_floats(signal)
    return log_mel(resample(samples, sample_rate, audio.sample_rate), audio.sample_rate, n_mels=audio.n_mels,
                   frames=audio.frames, duration=audio.duration, n_fft=audio.n_fft,
                   dynamic_range_db=audio.dynamic_range_db)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Float samples at ``rate`` Hz resampled to ``target`` Hz (band-limited: the spectrum truncated or zero-padded)."""
    if rate == target:
        return samples
    n_out = max(int(round(len(samples) * target / rate)), 1)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    kept = np.zeros(n_out // 2 + 1, complex)
    keep = min(len(spectrum), len(kept))
    kept[:keep] = spectrum[:keep]
    return (np.fft.irfft(kept, n_out) * (n_out / len(samples))).astype(np.float32)


def _mono_floats(signal: np.ndarray) -> np.ndarray:
    """A mono clip as float32 in [-1, 1] (int16 samples are divided by 32768); InputError if it is not one."""
    signal = np.asarray(signal)
    if signal.ndim != 1 or signal.size == 0:
        raise InputError(f"signal must be a non-empty mono (1-D) array of samples, got shape {signal.shape} (a "
                         "picture is not a clip)")
    if signal.dtype != np.int16 and signal.dtype.kind != "f":
        raise InputTypeError(f"signal must hold int16 samples or floats in [-1, 1], got {signal.dtype}")
    samples = signal.astype(np.float32) / (32768.0 if signal.dtype == np.int16 else 1.0)
    if not np.isfinite(samples).all():
        raise InputError("signal contains NaN or infinite values")
    return samples


def log_mel(signal: np.ndarray, sample_rate: int, n_mels: int = 28, frames: int = 28, duration: float = 0.75,
            n_fft: int = 256, dynamic_range_db: float = 60.0) -> np.ndarray:
    """The (1, n_mels, frames) float32 log-mel image of a mono clip (int16 samples or floats in [-1, 1])."""
    samples = _mono_floats(signal)
    length = int(round(duration * sample_rate))
    start = max((len(samples) - length) // 2, 0)
    clip = samples[start: start + length]
    pad = length - len(clip)
    clip = np.pad(clip, (pad // 2, pad - pad // 2))
    hop = (length - n_fft) / max(frames - 1, 1)
    starts = np.round(np.arange(frames) * hop).astype(int)
    windows = clip[starts[:, None] + np.arange(n_fft)] * np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    energy = 10.0 * np.log10(np.maximum(mel_filters(n_mels, n_fft, sample_rate) @ power.T, 1e-10))
    image = np.clip((energy - energy.max()) / dynamic_range_db + 1.0, 0.0, 1.0)
    return image[None, ::-1].astype(np.float32)  # low frequencies at the bottom, as a spectrogram is drawn
