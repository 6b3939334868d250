"""Prompts: WAV files and synthesized speech at 8 kHz, 16-bit mono, converted once and cached.

Every sound Hatif plays to a caller goes through here. A WAV of any PCM width, rate and channel count is
read with the standard `wave` module (32-bit float by hand), mixed down, and resampled to 8 kHz with a
windowed-sinc low-pass (numpy), so content above 4 kHz does not fold back as noise. Speech in English,
Arabic and Persian comes from espeak-ng, cached in memory and on disk by the text, language, voice and
espeak-ng's version, so a restart does not synthesize again. espeak-ng runs as a bounded subprocess;
from the event loop call `speak_async`, which runs it in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import struct
import subprocess
import tempfile
import wave
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

RATE = 8000
Samples = npt.NDArray[np.int16]
Language = Literal["en", "ar", "fa"]
VOICES: dict[str, str] = {"en": "en", "ar": "ar", "fa": "fa"}


class PromptError(ValueError):
    """A prompt that cannot be read or spoken; the text names the file or language and why."""


def resample(x: npt.NDArray[np.float64], rate: int, to: int = RATE) -> npt.NDArray[np.float64]:
    """Band-limited resampling by a windowed-sinc interpolator (cut-off at the lower Nyquist)."""
    if rate == to or len(x) == 0:
        return x
    n_out = round(len(x) * to / rate)
    cutoff = min(rate, to) / 2 * 0.92  # a little below Nyquist for the transition band
    half = 24  # taps on each side, in input samples scaled by the ratio
    scale = max(1.0, rate / to)
    width = int(np.ceil(half * scale))
    t = np.arange(n_out) * (rate / to)  # output instants in input-sample units
    base = np.floor(t).astype(np.int64)
    out = np.zeros(n_out)
    padded = np.concatenate([np.zeros(width + 1), x, np.zeros(width + 1)])
    for k in range(-width, width + 1):
        idx = base + k
        d = t - idx  # distance in input samples
        window = 0.5 + 0.5 * np.cos(np.pi * np.clip(d / (width + 1), -1, 1))  # Hann
        w = 2 * cutoff / rate * np.sinc(2 * cutoff / rate * d) * window
        out += w * padded[idx + width + 1]
    return out


def _float_wav(path: Path, raw: bytes) -> tuple[npt.NDArray[np.float64], int]:
    """IEEE float and WAVE_FORMAT_EXTENSIBLE files, which `wave` refuses: read the chunks by hand."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise PromptError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None or len(fmt) < 16:
        raise PromptError(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag == 3 and bits in (32, 64):
        x = np.frombuffer(data[: len(data) // (bits // 8) * (bits // 8)], dtype=f"<f{bits // 8}").astype(np.float64)
    elif tag == 1 and bits in (8, 16, 24, 32):
        return _pcm(path, data, channels, bits // 8, rate)
    else:
        raise PromptError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    if channels < 1:
        raise PromptError(f"{path}: no channels")
    x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return x, rate


def _pcm(path: Path, frames: bytes, channels: int, width: int, rate: int) -> tuple[npt.NDArray[np.float64], int]:
    if channels < 1 or width not in (1, 2, 3, 4) or rate <= 0:
        raise PromptError(f"{path}: unsupported WAV layout ({channels} channels, {8 * width} bits, {rate} Hz)")
    usable = len(frames) // (width * channels) * width * channels
    b = np.frombuffer(frames[:usable], dtype=np.uint8)
    if width == 1:
        x = b.astype(np.float64) - 128.0
        full = 128.0
    elif width == 3:
        trip = b.reshape(-1, 3).astype(np.int32)
        v = trip[:, 0] | (trip[:, 1] << 8) | (trip[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64)
        full = float(1 << 23)
    else:
        x = np.frombuffer(frames[:usable], dtype=f"<i{width}").astype(np.float64)
        full = float(1 << (8 * width - 1))
    x = x.reshape(-1, channels).mean(axis=1) / full * 32768.0
    return x, rate


def load_wav(path: Path | str) -> Samples:
    """Any PCM or float WAV as 8 kHz mono int16."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PromptError(f"{path}: cannot read ({e.strerror})") from None
    try:
        with wave.open(str(path)) as w:
            x, rate = _pcm(path, w.readframes(w.getnframes()), w.getnchannels(), w.getsampwidth(), w.getframerate())
    except (wave.Error, EOFError):
        x, rate = _float_wav(path, raw)
    if rate != RATE:
        x = resample(x / 32768.0, rate) * 32768.0
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def tone(freq_hz: float, ms: int, amplitude: float = 0.3) -> Samples:
    n = np.arange(RATE * ms // 1000)
    fade = np.minimum(1.0, np.minimum(n, n[::-1]) / 40.0)  # 5 ms ramps: no clicks
    return (amplitude * 32767 * np.sin(2 * np.pi * freq_hz * n / RATE) * fade).astype(np.int16)


def silence(ms: int) -> Samples:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def beep() -> Samples:
    """The voicemail beep: 1 kHz for 400 ms."""
    return tone(1000.0, 400, 0.35)


def music_on_hold(seconds: int = 30) -> Samples:
    """A soft loop of four chords with slow envelopes, generated (no file to ship); seamless at the loop."""
    chords = [(261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63), (196.00, 246.94, 293.66)]
    per = seconds * RATE // len(chords)
    n = np.arange(per)
    env = np.sin(np.pi * n / per) ** 2  # zero at both ends of each chord: no click anywhere
    out = []
    for chord in chords:
        wave_ = sum(np.sin(2 * np.pi * f * n / RATE) + 0.3 * np.sin(4 * np.pi * f * n / RATE) for f in chord)
        out.append(0.12 * 32767 * env * wave_ / (len(chord) * 1.3))
    return np.concatenate(out).astype(np.int16)


class PromptCache:
    """Converted WAVs and synthesized speech, in memory (bounded, least recently used first out) and,
    for speech, on disk under `cache_dir`."""

    def __init__(self, cache_dir: Path, max_items: int = 1000, timeout: float = 20.0) -> None:
        self.cache_dir = Path(cache_dir)
        self.max_items = max_items
        self.timeout = timeout
        self._memory: OrderedDict[str, Samples] = OrderedDict()
        self._version: str | None = None
        self.synthesized = 0  # espeak-ng runs, for tests and stats

    def _remember(self, key: str, samples: Samples) -> Samples:
        self._memory[key] = samples
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)
        return samples

    def wav(self, path: Path | str) -> Samples:
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as e:
            raise PromptError(f"{p}: cannot read ({e.strerror})") from None
        key = f"wav:{p}:{st.st_mtime_ns}:{st.st_size}"
        hit = self._memory.get(key)
        if hit is not None:
            self._memory.move_to_end(key)
            return hit
        return self._remember(key, load_wav(p))

    def _espeak(self) -> str:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise PromptError("espeak-ng not found: install Debian package espeak-ng")
        return exe

    def _espeak_version(self) -> str:
        if self._version is None:
            out = subprocess.run([self._espeak(), "--version"], capture_output=True, timeout=self.timeout, check=False)
            self._version = out.stdout.decode(errors="replace").strip()
        return self._version

    def speak(self, text: str, language: Language | str, voice: str | None = None) -> Samples:
        """`text` spoken in `language` (en, ar, fa), 8 kHz; synthesized once, then from the caches."""
        if language not in VOICES:
            raise PromptError(f"no voice for language {language!r} (have {', '.join(VOICES)})")
        voice = voice or VOICES[language]
        digest = hashlib.sha256(f"{self._espeak_version()}\0{language}\0{voice}\0{text}".encode()).hexdigest()
        key = f"tts:{digest}"
        hit = self._memory.get(key)
        if hit is not None:
            self._memory.move_to_end(key)
            return hit
        cached = self.cache_dir / f"{digest}.wav"
        if cached.exists():
            return self._remember(key, load_wav(cached))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.cache_dir, suffix=".tmp", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            try:
                proc = subprocess.run([self._espeak(), "-v", voice, "-w", str(tmp_path), "--stdin"],
                                      input=text.encode(), capture_output=True, timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired:
                raise PromptError(f"espeak-ng took longer than {self.timeout:g} s for language {language}") from None
            if proc.returncode != 0 or not tmp_path.exists() or tmp_path.stat().st_size <= 44:
                why = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
                raise PromptError(f"espeak-ng failed for language {language} (voice {voice}): {why}")
            samples = load_wav(tmp_path)
            self.synthesized += 1
            tmp_path.replace(cached)  # atomic: a crash never leaves half a prompt in the cache
        finally:
            tmp_path.unlink(missing_ok=True)
        return self._remember(key, samples)

    async def speak_async(self, text: str, language: Language | str, voice: str | None = None) -> Samples:
        """`speak` off the event loop (espeak-ng takes tens to hundreds of milliseconds)."""
        return await asyncio.to_thread(self.speak, text, language, voice)
