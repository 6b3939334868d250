"""Prompts: WAV conversion to 8 kHz and speech in English, Arabic and Persian (espeak-ng)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from hatif.media.prompts import PromptCache, PromptError, beep, load_wav, music_on_hold

TEXTS = {
    "en": "Welcome to Hatif. Your call is important to us, please hold.",
    "ar": "مرحبا بكم في هاتف. مكالمتك مهمة لنا، يرجى الانتظار.",
    "fa": "به هاتف خوش آمدید. تماس شما برای ما مهم است، لطفا منتظر بمانید.",
}


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * 8000 / len(x))


@pytest.mark.parametrize("language", ["en", "ar", "fa"])
def test_speech_in_three_languages(tmp_path: Path, language: str) -> None:
    cache = PromptCache(tmp_path)
    samples = cache.speak(TEXTS[language], language)
    # About ten words: spoken at 80 to 250 words a minute that is 2.4 to 7.5 s; allow pauses around it.
    assert 2.0 < len(samples) / 8000 < 10.0
    assert rms(samples) > 500  # speech, not silence
    again = PromptCache(tmp_path).speak(TEXTS[language], language)  # a restart: from the disk cache
    assert np.array_equal(again, samples)
    assert cache.synthesized == 1
    cache.speak(TEXTS[language], language)
    assert cache.synthesized == 1  # the memory cache answered


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int, channels: int) -> None:
    full = float(1 << (8 * width - 1))
    x = np.repeat((samples * (full - 1)).astype(np.int64)[:, None], channels, axis=1).ravel()
    if width == 1:
        data = (x + 128).astype(np.uint8).tobytes()
    elif width == 3:
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in x)
    else:
        data = x.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


@pytest.mark.parametrize("rate,width,channels", [(44100, 2, 2), (48000, 3, 1), (16000, 1, 1), (8000, 4, 2)])
def test_wav_conversion(tmp_path: Path, rate: int, width: int, channels: int) -> None:
    n = np.arange(rate)  # one second
    signal = 0.4 * np.sin(2 * np.pi * 1000 * n / rate)
    if rate > 12000:
        signal = signal + 0.4 * np.sin(2 * np.pi * 6000 * n / rate)  # above 4 kHz: must be filtered out
    path = tmp_path / "in.wav"
    write_wav(path, signal, rate, width, channels)
    out = load_wav(path)
    assert abs(len(out) - 8000) <= 1
    assert abs(peak(out[400:-400]) - 1000) < 10
    spectrum = np.abs(np.fft.rfft(out[400:-400].astype(np.float64) * np.hanning(len(out) - 800)))
    freqs = np.fft.rfftfreq(len(out) - 800, 1 / 8000)
    near_1k = spectrum[np.abs(freqs - 1000) < 30].max()
    aliases = spectrum[np.abs(freqs - 2000) < 30].max()  # 6 kHz would fold to 2 kHz at 8 kHz
    assert 20 * np.log10(near_1k / max(aliases, 1e-9)) > 40


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    with pytest.raises(PromptError, match=r"bad\.wav"):
        load_wav(bad)
    with pytest.raises(PromptError, match=r"missing\.wav"):
        load_wav(tmp_path / "missing.wav")
    with pytest.raises(PromptError, match="no voice"):
        PromptCache(tmp_path).speak("hi", "xx")


def test_generated_sounds() -> None:
    assert abs(peak(beep()) - 1000) < 15 and len(beep()) == 3200
    moh = music_on_hold(8)
    assert len(moh) == 8 * 8000 and rms(moh) > 300
    assert abs(int(moh[0])) < 50 and abs(int(moh[-1])) < 50  # loops without a click
