"""Prompts: WAV conversion to 8 kHz, speech in English, Arabic and Persian (espeak-ng), generated sounds,
framing and the Player. WAV fixtures are written with the stdlib `wave` and, as an independent writer,
with sox (float, WAVE_FORMAT_EXTENSIBLE, G.711, ADPCM files)."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.media.prompts import (
    FRAME,
    RATE,
    Player,
    PromptCache,
    PromptError,
    beep,
    frames,
    load_wav,
    music_on_hold,
    resample,
    silence,
    tone,
)

Samples = npt.NDArray[np.int16]

ENGLISH = "Welcome to Hatif. Your call is important to us, please hold."
ARABIC = "مرحبا بكم في هاتف"
PERSIAN = "به هاتف خوش آمدید"


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum (Hann window) and its frequencies at 8 kHz."""
    mags = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / RATE), mags


def level_db(x: np.ndarray, freq: float, width: float = 40.0) -> float:
    f, mags = spectrum(x)
    return float(20 * np.log10(max(float(mags[np.abs(f - freq) <= width].max()), 1e-12)))


def peak_hz(x: np.ndarray) -> float:
    f, mags = spectrum(x)
    return float(f[np.argmax(mags)])


def write_pcm(path: Path, signal: np.ndarray, rate: int, width: int) -> None:
    """Write a float signal in [-1, 1] (shape n or n × channels) as integer PCM with the stdlib `wave`."""
    frames_ = signal if signal.ndim == 2 else signal[:, None]
    full = float(1 << (8 * width - 1))
    ints = np.clip(np.rint(frames_ * full), -full, full - 1).astype(np.int64).ravel()
    if width == 1:
        data = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        data = (ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]).tobytes()
    else:
        data = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames_.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


def sox(path: Path, *args: str) -> Path:
    """A fixture made by sox (installed with the test setup): `sox -n <args before out> out synth ...`."""
    split = args.index("synth")
    subprocess.run(["sox", "-n", *args[:split], str(path), *args[split:]], check=True, timeout=10,
                   capture_output=True)
    return path


# -- speech ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> tuple[PromptCache, dict[str, Samples]]:
    cache = PromptCache(tmp_path_factory.mktemp("tts"))
    said = {"en": cache.speak(ENGLISH, "en"), "ar": cache.speak(ARABIC, "ar"), "fa": cache.speak(PERSIAN, "fa")}
    return cache, said


@pytest.mark.parametrize(("language", "words"), [("en", 11), ("ar", 4), ("fa", 4)])
def test_speech_is_audible_and_of_plausible_length(spoken: tuple[PromptCache, dict[str, Samples]],
                                                   language: str, words: int) -> None:
    samples = spoken[1][language]
    assert samples.dtype == np.int16 and samples.ndim == 1
    seconds = len(samples) / RATE
    # Speech runs at about 2 to 4 words a second (espeak-ng's default is 175 words a minute); allow half
    # that pace for long words, plus up to 1 s of pauses: between 0.15 and 1 s a word, plus 1 s.
    assert 0.15 * words <= seconds <= 1.0 * words + 1.0, seconds
    assert rms(samples) > 1000  # about -30 dBFS: speech, not silence or noise
    frame_rms = np.sqrt(np.mean(samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME).astype(float) ** 2, 1))
    assert np.mean(frame_rms > 300) > 0.5  # voiced most of the time, not one blip in silence
    f, mags = spectrum(samples)
    assert 150 < f[np.argmax(mags)] < 3400  # energy in the voice band


def test_speech_is_cached_in_memory_and_on_disk(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    first = cache.speak(ARABIC, "ar")
    stored = list(tmp_path.glob("*.wav"))
    assert cache.synthesized == 1 and len(stored) == 1
    assert load_wav(stored[0]).tolist() == first.tolist()
    stamp = stored[0].stat().st_mtime_ns

    assert cache.speak(ARABIC, "ar") is first  # memory: the same array, no espeak-ng run
    assert cache.synthesized == 1

    restarted = PromptCache(tmp_path)  # a restart: from the disk cache, espeak-ng not run again
    again = restarted.speak(ARABIC, "ar")
    assert restarted.synthesized == 0
    assert np.array_equal(again, first)
    assert stored[0].stat().st_mtime_ns == stamp
    assert not again.flags.writeable  # shared by every caller: nobody may change it

    assert not np.array_equal(restarted.speak(ARABIC, "fa"), first)  # another language, another prompt
    restarted.speak(ARABIC, "ar", voice="ar")  # same voice as the default: same prompt
    assert restarted.synthesized == 1
    assert len(list(tmp_path.glob("*.wav"))) == 2


def test_speak_async_runs_in_a_worker_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PromptCache(tmp_path)
    threads: list[int] = []
    original = PromptCache.speak

    def spy(self: PromptCache, text: str, language: str, voice: str | None = None) -> Samples:
        threads.append(threading.get_ident())
        return original(self, text, language, voice)

    monkeypatch.setattr(PromptCache, "speak", spy)
    samples = asyncio.run(asyncio.wait_for(cache.speak_async(PERSIAN, "fa"), timeout=20))
    assert rms(samples) > 1000
    assert threads and threads[0] != threading.get_ident()


def fake_espeak(directory: Path, body: str) -> None:
    script = directory / "espeak-ng"
    script.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "fake espeak-ng 0"; exit 0; fi\n{body}\n')
    script.chmod(0o755)


def test_speech_errors_name_the_language_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PromptCache(tmp_path)
    with pytest.raises(PromptError, match="'de'"):
        cache.speak("Guten Tag", "de")
    with pytest.raises(PromptError, match="fa: the text is empty"):
        cache.speak("  ", "fa")
    with pytest.raises(PromptError, match="cannot speak ar with voice 'xyz': espeak-ng failed"):
        cache.speak(ARABIC, "ar", voice="xyz")
    with pytest.raises(PromptError, match="not an espeak-ng voice name"):
        cache.speak(ARABIC, "ar", voice="--stdout")

    sleep = shutil.which("sleep")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(PromptError, match="en: espeak-ng not found: install Debian package espeak-ng"):
        PromptCache(tmp_path).speak(ENGLISH, "en")

    fake_espeak(empty, 'echo "voice data missing" >&2; exit 3')
    with pytest.raises(PromptError, match=r"cannot speak fa .*voice data missing"):
        PromptCache(tmp_path).speak(PERSIAN, "fa")

    fake_espeak(empty, f"exec {sleep} 30")
    with pytest.raises(PromptError, match=r"cannot speak ar: espeak-ng took longer than 0\.5 s"):
        PromptCache(tmp_path, timeout=0.5).speak(ARABIC, "ar")


def test_damaged_disk_cache_is_synthesized_again(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    good = cache.speak(ENGLISH, "en")
    (stored,) = tmp_path.glob("*.wav")
    stored.write_bytes(stored.read_bytes()[:100])  # cut short, as by a full disk
    fresh = PromptCache(tmp_path)
    assert np.array_equal(fresh.speak(ENGLISH, "en"), good)
    assert fresh.synthesized == 1
    assert np.array_equal(load_wav(stored), good)  # and the file is whole again


# -- WAV conversion ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "width", "channels"), [
    (44100, 2, 2), (48000, 2, 1), (16000, 2, 1), (44100, 3, 1), (48000, 1, 2), (22050, 4, 1),
    (11025, 2, 1), (8000, 2, 2), (8000, 3, 1), (6000, 2, 1),
])
def test_wav_conversion_keeps_the_tone_and_removes_what_is_above_4khz(tmp_path: Path, rate: int, width: int,
                                                                      channels: int) -> None:
    seconds = 2
    t = np.arange(rate * seconds) / rate
    signal = 0.4 * np.sin(2 * np.pi * 1000 * t)
    if rate > 12000:
        signal = signal + 0.4 * np.sin(2 * np.pi * 6000 * t)  # must not fold back to 2 kHz
    path = tmp_path / "in.wav"
    write_pcm(path, np.repeat(signal[:, None], channels, axis=1), rate, width)
    out = load_wav(path)
    assert out.dtype == np.int16
    assert abs(len(out) - RATE * seconds) <= seconds  # within one sample per input second
    body = out[400:-400]
    assert abs(peak_hz(body) - 1000) <= 2  # bins are 0.56 Hz wide
    assert abs(rms(body) / (0.4 * 32768 / np.sqrt(2)) - 1) < 0.02  # level kept to 0.2 dB
    assert level_db(body, 1000) - level_db(body, 2000) > 40  # alias of 6 kHz (and 8-bit noise) far below
    assert level_db(body, 1000) - level_db(body, 3000) > 40


def test_resampler_rejects_the_stopband_and_passes_the_telephone_band() -> None:
    t = np.arange(48000) / 48000
    for freq in (300, 3300):
        out = resample(np.sin(2 * np.pi * freq * t), 48000)
        assert abs(rms(out[400:-400]) * np.sqrt(2) - 1) < 0.01  # ±0.1 dB
    for freq in (4100, 6000, 9000, 15000):
        out = resample(np.sin(2 * np.pi * freq * t), 48000)
        assert 20 * np.log10(rms(out[400:-400]) * np.sqrt(2)) < -60


@pytest.mark.parametrize("rate", [44101, 8001, 7999])
def test_odd_sample_rates_are_resampled_without_drift(rate: int) -> None:
    # 8000/44101 has no small terms: each output instant is rounded to 1/1024 of an input sample.
    t = np.arange(rate) / rate
    out = resample(np.sin(2 * np.pi * 1000 * t), rate)
    assert len(out) == -(-rate * RATE // rate) == RATE
    reference = np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE)
    error = np.abs(out[400:-400] - reference[400:-400])
    assert error.max() < 0.003  # every sample within -50 dB: in phase to the end, no drift, no slips


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([1000, 6000, 11025, 16000, 22050, 44100, 44101, 48000, 96000]), st.integers(0, 3000))
def test_resampled_length_is_the_input_duration(rate: int, n: int) -> None:
    out = resample(np.ones(n), rate)
    assert len(out) == -(-n * RATE // rate)
    if len(out) > 800:
        assert np.allclose(out[400:-400], 1.0)  # unit gain at DC


def test_downmix_averages_the_channels(tmp_path: Path) -> None:
    n = np.arange(RATE)
    left = 0.6 * np.sin(2 * np.pi * 1000 * n / RATE)
    path = tmp_path / "stereo.wav"
    write_pcm(path, np.stack([left, np.zeros(RATE)], axis=1), RATE, 2)
    assert abs(rms(load_wav(path)) / (0.3 * 32768 / np.sqrt(2)) - 1) < 0.01


@pytest.mark.parametrize(("name", "args", "extensible"), [
    ("float32.wav", ("-r", "48000", "-e", "floating-point", "-b", "32"), False),
    ("float64.wav", ("-r", "16000", "-e", "floating-point", "-b", "64"), False),
    ("pcm24.wav", ("-r", "44100", "-b", "24", "-c", "2"), True),
    ("three-channels.wav", ("-r", "16000", "-b", "16", "-c", "3"), True),
    ("ulaw.wav", ("-r", "8000", "-e", "u-law"), False),
    ("alaw.wav", ("-r", "8000", "-e", "a-law"), False),
])
def test_files_written_by_sox(tmp_path: Path, name: str, args: tuple[str, ...], extensible: bool) -> None:
    path = sox(tmp_path / name, *args, "synth", "1", "sine", "1000", "vol", "0.5")
    assert (path.read_bytes()[20:22] == b"\xfe\xff") == extensible  # the header kind this case is about
    out = load_wav(path)
    assert abs(len(out) - RATE) <= 1
    assert abs(peak_hz(out[400:-400]) - 1000) <= 2
    assert abs(rms(out[400:-400]) / (0.5 * 32768 / np.sqrt(2)) - 1) < 0.05  # G.711 is within 0.5 dB


def test_load_wav_of_8khz_pcm16_is_exact(tmp_path: Path) -> None:
    samples = (np.arange(-4000, 4000) * 8).astype(np.int16)
    path = tmp_path / "exact.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    assert np.array_equal(load_wav(path), samples)


def riff(*chunks: tuple[bytes, bytes], size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
                              for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def fmt(tag: int, channels: int = 1, rate: int = 8000, bits: int = 16, extra: bytes = b"") -> bytes:
    align = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra


def extensible(sub_tag: int, bits: int, guid_tail: bytes = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71",
               rate: int = 8000) -> bytes:
    return fmt(0xFFFE, 1, rate, bits, struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", sub_tag) + guid_tail)


def test_hand_made_extensible_float_and_streamed_sizes(tmp_path: Path) -> None:
    x = (0.25 * np.sin(2 * np.pi * 500 * np.arange(800) / RATE)).astype("<f4")
    path = tmp_path / "ext-float.wav"
    path.write_bytes(riff((b"fmt ", extensible(3, 32)), (b"LIST", b"odd"), (b"data", x.tobytes())))
    assert np.array_equal(load_wav(path), np.rint(x.astype(np.float64) * 32768).astype(np.int16))

    streamed = tmp_path / "streamed.wav"  # a writer that could not seek back leaves placeholder sizes
    pcm = (np.arange(800) * 10).astype("<i2").tobytes()
    head = riff((b"fmt ", fmt(1)), size=0xFFFFFFFF) + b"data" + struct.pack("<I", 0xFFFFFFFF)
    streamed.write_bytes(head + pcm)
    assert np.array_equal(load_wav(streamed), np.arange(800) * 10)


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "truncated: 0 bytes"),
    (b"ID3\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "not a WAV file"),
    (b"RIFF\x00\x00\x00\x00AVI LIST", "not WAVE"),
    (riff((b"fmt ", fmt(1)), (b"data", b"\0" * 100))[:60], "truncated: the data chunk declares 100 bytes"),
    (riff((b"fmt ", fmt(1)))[:30], "truncated inside the fmt chunk"),
    (riff((b"fmt ", fmt(1))), "no data chunk"),
    (riff((b"data", b"\0" * 10)), "no fmt chunk"),
    (riff((b"fmt ", fmt(0x55, bits=0)), (b"data", b"\0" * 10)), "unsupported compression: .*MPEG layer 3"),
    (riff((b"fmt ", fmt(0x1234)), (b"data", b"\0" * 10)), "unsupported compression: format tag 0x1234"),
    (riff((b"fmt ", extensible(1, 16, guid_tail=b"\x01" * 14)), (b"data", b"\0" * 10)), "EXTENSIBLE sub-format"),
    (riff((b"fmt ", fmt(3, bits=16)), (b"data", b"\0" * 10)), "16 bits for format tag 0x0003"),
    (riff((b"fmt ", fmt(1, channels=0)), (b"data", b"\0" * 10)), "0 channels"),
    (riff((b"fmt ", fmt(1, rate=100)), (b"data", b"\0" * 10)), "sample rate 100 Hz"),
    (riff((b"fmt ", b"\x01\x00\x01\x00"), (b"data", b"\0" * 10)), "fmt chunk of 4 bytes"),
])
def test_bad_files_raise_errors_naming_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad-prompt.wav"
    path.write_bytes(content)
    with pytest.raises(PromptError, match=rf"bad-prompt\.wav: .*{reason}"):
        load_wav(path)


def test_adpcm_written_by_sox_is_refused(tmp_path: Path) -> None:
    path = sox(tmp_path / "adpcm.wav", "-r", "8000", "-e", "ms-adpcm", "synth", "0.2", "sine", "1000")
    with pytest.raises(PromptError, match=r"adpcm\.wav: unsupported compression: .*Microsoft ADPCM"):
        load_wav(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match=r"missing\.wav: cannot read"):
        load_wav(tmp_path / "missing.wav")
    with pytest.raises(PromptError, match=r"missing\.wav: cannot read"):
        PromptCache(tmp_path).wav(tmp_path / "missing.wav")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([1, 3, 6, 7, 0xFFFE, 2]), st.integers(0, 4), st.integers(0, 40))
def test_any_damaged_file_gives_a_prompt_error_or_samples(tail: bytes, tag: int, channels: int, cut: int) -> None:
    content = riff((b"fmt ", fmt(tag, channels=channels, bits=8 if tag in (6, 7) else 16)), (b"data", tail))
    content = content[: len(content) - cut]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzzed.wav"
        path.write_bytes(content)
        try:
            out = load_wav(path)
        except PromptError as e:
            assert str(e).startswith(f"{path}: ")
        else:
            assert out.dtype == np.int16 and out.ndim == 1


# -- the cache of files -----------------------------------------------------------------------------------------


def test_wav_cache_converts_once_and_notices_changes(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    write_pcm(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000, 2)
    cache = PromptCache(tmp_path / "cache")
    first = cache.wav(path)
    assert cache.wav(path) is first and cache.converted == 1
    assert cache.wav(str(path)) is first  # a str names the same file
    write_pcm(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000), 16000, 2)  # a new, shorter file
    second = cache.wav(path)
    assert cache.converted == 2 and len(second) == len(first) // 2
    assert asyncio.run(asyncio.wait_for(cache.wav_async(path), timeout=10)) is second


def test_memory_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.wav")
        write_pcm(paths[-1], np.full(800, 0.01 * (i + 1)), RATE, 2)
    cache = PromptCache(tmp_path, max_items=2)
    cache.wav(paths[0])
    cache.wav(paths[1])
    cache.wav(paths[0])  # p0 is now the most recently used
    cache.wav(paths[2])  # evicts p1
    assert cache.items == 2 and cache.converted == 3
    cache.wav(paths[0])
    assert cache.converted == 3
    cache.wav(paths[1])
    assert cache.converted == 4


# -- generated sounds -------------------------------------------------------------------------------------------


def test_tone_silence_and_beep() -> None:
    t = tone(440, 250, 0.5)
    assert len(t) == 2000 and abs(peak_hz(t) - 440) <= 4
    assert abs(int(np.abs(t).max()) - 16384) < 200
    assert abs(int(t[0])) < 100 and abs(int(t[-1])) < 100  # ramps: no click at either end
    assert len(silence(20)) == FRAME and not silence(20).any()
    b = beep()
    assert 3000 <= len(b) <= 3600 and abs(peak_hz(b) - 1000) <= 4 and rms(b) > 5000
    for freq, ms, amplitude in ((4000, 10, 0.3), (0, 10, 0.3), (440, -1, 0.3), (440, 10, 1.5)):
        with pytest.raises(PromptError, match="tone: "):
            tone(freq, ms, amplitude)


def test_music_on_hold_is_a_soft_seamless_loop() -> None:
    moh = music_on_hold(30)
    assert len(moh) == 30 * RATE and moh.dtype == np.int16
    assert music_on_hold(30) is moh and not moh.flags.writeable  # generated once, shared
    assert 1000 < rms(moh) and np.abs(moh).max() <= 0.3 * 32768  # audible but soft
    f, mags = spectrum(moh)
    assert mags[f > 3400].sum() < 0.001 * mags.sum()  # all in the telephone band
    second = moh.astype(np.float64)
    steps = np.abs(np.diff(second))
    seam = abs(second[0] - second[-1])
    assert seam <= np.percentile(steps, 99.9)  # the loop point is no bigger a step than the music makes
    # Played in a loop the samples repeat with period len(moh), which is what the FFT of one loop assumes.
    # Above 3 kHz the music holds nothing but int16 rounding noise (under one step); a discontinuity at the
    # loop point would put broadband energy there, around sample 0.
    highs = np.fft.rfft(second)
    highs[np.fft.rfftfreq(len(second), 1 / RATE) < 3000] = 0
    hiss = np.abs(np.fft.irfft(highs, len(second)))
    assert np.concatenate([hiss[:80], hiss[-80:]]).max() < 1.0
    quarter = len(moh) // 4
    assert min(rms(moh[i * quarter : (i + 1) * quarter]) for i in range(4)) > 500  # no gap anywhere
    assert len(music_on_hold(7.99)) % FRAME == 0
    with pytest.raises(PromptError, match="music_on_hold"):
        music_on_hold(0)


# -- framing and the player -----------------------------------------------------------------------------------------


def test_frames_are_views_with_the_last_padded() -> None:
    samples = np.arange(1, 401, dtype=np.int16)
    cut = list(frames(samples))
    assert [len(f) for f in cut] == [FRAME, FRAME, FRAME]
    assert np.shares_memory(cut[0], samples) and np.shares_memory(cut[1], samples)
    assert cut[2][:80].tolist() == list(range(321, 401)) and not cut[2][80:].any()
    assert np.array_equal(np.concatenate(cut)[:400], samples)
    assert list(frames(np.zeros(0, dtype=np.int16))) == []
    assert len(list(frames(np.zeros(320, dtype=np.int16)))) == 2


def test_player_plays_once_then_is_done() -> None:
    samples = np.arange(1, 351, dtype=np.int16)
    player = Player(samples)
    assert not player.done and player.position_ms == 0 and player.duration_ms == 43.75
    got = [player.next_frame(), player.next_frame()]
    assert player.position_ms == 40 and not player.done
    got.append(player.next_frame())
    assert player.done and player.position_ms == 43.75
    assert player.next_frame() is None and player.next_frame() is None
    assert all(f is not None and len(f) == FRAME for f in got)
    played = np.concatenate([f for f in got if f is not None])
    assert np.array_equal(played[:350], samples) and not played[350:].any()
    assert got[0] is not None and np.shares_memory(got[0], samples)


def test_player_loops_seamlessly_without_copies_per_frame() -> None:
    samples = np.arange(1, 251, dtype=np.int16)  # not a whole number of frames: frames straddle the seam
    player = Player(samples, loop=True)
    out = [player.next_frame() for _ in range(20)]
    assert not player.done
    assert np.array_equal(np.concatenate([f for f in out if f is not None]), np.resize(samples, 20 * FRAME))
    assert player.position_ms == (20 * FRAME % 250) / 8
    kept = out[-1]
    assert kept is not None and all(f is not None and f.base is kept.base for f in out)  # views of one buffer
    player.stop()
    assert player.done and player.next_frame() is None


def test_player_loops_a_prompt_shorter_than_a_frame_and_refuses_bad_input() -> None:
    short = np.array([1, 2, 3], dtype=np.int16)
    frame = Player(short, loop=True).next_frame()
    assert frame is not None and frame.tolist() == [1, 2, 3] * 53 + [1]
    assert Player(np.zeros(0, dtype=np.int16), loop=True).next_frame() is None
    aligned = np.arange(320, dtype=np.int16)
    player = Player(aligned, loop=True)
    assert [np.shares_memory(player.next_frame(), aligned) for _ in range(3)] == [True] * 3
    with pytest.raises(PromptError, match="int16"):
        Player(np.zeros(10, dtype=np.float32))
    with pytest.raises(PromptError, match="one-dimensional"):
        Player(np.zeros((10, 2), dtype=np.int16))
