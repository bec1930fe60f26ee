"""A spoken clip to what an audio artifact takes (numpy only): a (1, n_mels, frames) log-mel spectrogram in [0, 1].

The clip is centred in (cropped or zero-padded to) ``duration`` seconds, cut into ``frames`` Hann-windowed frames,
mapped to ``n_mels`` triangular mel bands, and its log energy clipped to the top ``dynamic_range_db`` and scaled so
that the loudest band is 1.0 and anything ``dynamic_range_db`` quieter is 0.0. Training and the device compute the
same function.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


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


def log_mel(signal: np.ndarray, sample_rate: int, n_mels: int = 28, frames: int = 28, duration: float = 0.75,
            n_fft: int = 256, dynamic_range_db: float = 60.0) -> np.ndarray:
    """The (1, n_mels, frames) float32 log-mel image of a mono clip (int16 samples or floats in [-1, 1])."""
    signal = np.asarray(signal)
    if signal.ndim != 1 or signal.size == 0:
        raise InputError(f"signal must be a non-empty mono (1-D) array, got shape {signal.shape}")
    samples = signal.astype(np.float32) / (32768.0 if signal.dtype == np.int16 else 1.0)
    if not np.isfinite(samples).all():
        raise InputError("signal contains NaN or infinite values")
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
