"""Log-mel features (edgeadapt.runtime.audio) and the FSDD loader on synthetic recordings."""

import wave

import numpy as np
import pytest

from edgeadapt.runtime import InputError
from edgeadapt.runtime.audio import log_mel, mel_filters
from edgeadapt.sdk.datasets import DatasetError, load_fsdd


def tone(hz: float, seconds: float = 0.5, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_a_tone_lights_the_mel_band_of_its_frequency():
    filters = mel_filters(28, 256, 8000)
    low, high = log_mel(tone(300), 8000), log_mel(tone(2500), 8000)
    assert low.shape == (1, 28, 28) and low.dtype == np.float32 and 0.0 <= low.min() and low.max() == 1.0
    bins = np.linspace(0, 4000, 129)
    for image, hz in ((low, 300), (high, 2500)):
        band = 27 - int(image[0].mean(1).argmax())  # row 0 is the highest band
        assert filters[band, np.abs(bins - hz).argmin()] > 0  # the brightest band covers the tone's frequency
    np.testing.assert_array_equal(log_mel(tone(300), 8000), low)  # deterministic


def test_silence_around_a_clip_is_padded_and_long_clips_are_centred():
    short, padded = tone(500, 0.2), np.concatenate([np.zeros(2000, np.int16), tone(500, 0.2), np.zeros(2000, np.int16)])
    np.testing.assert_allclose(log_mel(short, 8000), log_mel(padded, 8000), atol=1e-5)
    assert log_mel(tone(500, 2.0), 8000).shape == (1, 28, 28)


@pytest.mark.parametrize("signal, message", [(np.zeros((2, 10)), "mono"), (np.zeros(0), "mono"),
                                             (np.array([0.0, np.nan]), "NaN")])
def test_bad_signals_are_refused(signal, message):
    with pytest.raises(InputError, match=message):
        log_mel(signal, 8000)


def _write(path, samples, rate=8000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def test_fsdd_loads_by_speaker_digit_and_take(tmp_path):
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for speaker in ("ann", "bob"):
        for digit in range(10):
            for take in range(2):
                _write(folder / f"{digit}_{speaker}_{take}.wav", tone(200 + 100 * digit + 50 * take))
    digits = load_fsdd(tmp_path)
    assert digits.speakers == ("ann", "bob") and digits.features.shape == (2, 10, 2, 1, 28, 28)
    np.testing.assert_array_equal(digits.features[1, 3, 1], log_mel(tone(550), 8000))
    classes = digits.classes(["bob"])
    assert classes.images.shape == (10, 2, 1, 28, 28) and classes.class_names[3] == "3"
    (folder / "9_bob_1.wav").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_fsdd(tmp_path)
    _write(folder / "9_bob_1.wav", tone(300), rate=16000)
    with pytest.raises(DatasetError, match="8 kHz mono"):
        load_fsdd(tmp_path)
    (folder / "9_bob_1.wav").write_bytes(b"RIFF....")
    with pytest.raises(DatasetError, match="not a readable WAV"):
        load_fsdd(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no FSDD recordings"):
        load_fsdd(tmp_path / "empty")
