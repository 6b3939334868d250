"""Prompts: what Hatif plays to callers, as 8 kHz 16-bit mono samples cut into 20 ms frames.

Three sources, one shape (``NDArray[int16]`` at 8 kHz, the G.711 rate of RFC 3551 §4.5.14):

* WAV files of any PCM width (8/16/24/32-bit integer), IEEE float, G.711 µ-law or A-law, any rate and
  channel count: mixed down to mono and resampled to 8 kHz by a Kaiser-windowed-sinc polyphase filter
  (passband to 85 % of the lower Nyquist frequency, 70 dB stopband from it), so content above 4 kHz is
  removed instead of folding back as noise. The stdlib `wave` reads plain PCM; the RIFF chunks are read
  here when it refuses (float, WAVE_FORMAT_EXTENSIBLE, G.711) or when the file is damaged, so the error
  names the file and what is wrong with it.
* Speech in English, Arabic and Persian from espeak-ng, run as a subprocess bounded in time.
* Generated sounds: tones, silence, the voicemail beep and a music-on-hold loop, so a fresh install
  plays something without shipping audio files.

`PromptCache` converts each file and each text once: in memory (least recently used first out) and,
for speech, on disk, so a restart does not synthesize again. Cached arrays are read-only, because every
caller shares them. `Player` hands the media engine one 160-sample frame per 20 ms tick, as views.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import wave
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import ceil, gcd, pi
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from ..errors import MediaError
from .g711 import alaw_decode, ulaw_decode

__all__ = [
    "FRAME",
    "LANGUAGES",
    "RATE",
    "Language",
    "Player",
    "PromptCache",
    "PromptError",
    "beep",
    "frames",
    "load_wav",
    "music_on_hold",
    "resample",
    "silence",
    "tone",
]

log = logging.getLogger(__name__)

RATE: Final = 8000
"""Samples per second of every prompt: G.711's clock rate (RFC 3551 §4.5.14)."""
FRAME: Final = 160
"""Samples per 20 ms packet, the default packetization for PCMU/PCMA (RFC 3551 §4.5, §4.5.14)."""

Samples = npt.NDArray[np.int16]
Signal = npt.NDArray[np.float64]
Language = Literal["en", "ar", "fa"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "ar", "fa")


class PromptError(MediaError, ValueError):
    """A prompt that cannot be read, spoken or made; the text names the file or language and the reason."""


# -- resampling --------------------------------------------------------------------------------------

_STOPBAND_DB: Final = 70.0  # G.711's own quantization noise is ~38 dB below the signal: far under it
_PASSBAND: Final = 0.85  # of the lower Nyquist frequency: 3.4 kHz at 8 kHz, the telephone band's top
_MAX_PHASES: Final = 1024  # filter-bank rows; past this, output instants are rounded to 1/1024 of a sample


@functools.lru_cache(maxsize=32)
def _polyphase(phases: int, rate_in: int, rate_out: int) -> tuple[Signal, int]:
    """The filter bank: row r holds the taps for an output instant r/phases of a sample past an input
    sample. A Kaiser-windowed sinc, with β and length from Kaiser's design formulas (Oppenheim & Schafer,
    Discrete-Time Signal Processing, §7.5.3), each row normalized to unit gain at DC. Returns the bank
    (phases × 2·half, read-only) and half its width in input samples."""
    nyquist = min(rate_in, rate_out) / 2
    f_pass, f_stop = _PASSBAND * nyquist, nyquist
    cutoff = (f_pass + f_stop) / 2 / rate_in  # cycles per input sample
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    length = (_STOPBAND_DB - 7.95) / (2.285 * 2 * pi * (f_stop - f_pass) / rate_in)  # in input samples
    half = max(2, ceil(length / 2))
    offsets = np.arange(phases, dtype=np.float64)[:, None] / phases - np.arange(-half + 1, half + 1, dtype=np.float64)
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (offsets / half) ** 2, 0.0, None))) / np.i0(beta)
    bank = 2 * cutoff * np.sinc(2 * cutoff * offsets) * window
    bank /= bank.sum(axis=1, keepdims=True)
    bank.flags.writeable = False
    return bank, half


def resample(x: Signal, rate_in: int, rate_out: int = RATE) -> Signal:
    """Band-limited resampling of a mono float signal from `rate_in` to `rate_out`.

    Output n lies at input instant n·rate_in/rate_out; the output has ceil(len·rate_out/rate_in) samples,
    aligned with the input. With rate_out/rate_in = up/down in lowest terms (up = 80 for 44.1 kHz, 1 for
    48 kHz), all outputs with the same n mod up use the same row of taps on input windows that advance by
    `down`: one strided view and one matrix-vector product per row, no per-sample Python. For an odd rate
    (up > 1024) each output instant is computed exactly and rounded to the nearest of 1024 rows, a timing
    error under 1/2048 of an input sample that never accumulates."""
    if rate_in <= 0 or rate_out <= 0:
        raise PromptError(f"cannot resample from {rate_in} Hz to {rate_out} Hz")
    if rate_in == rate_out or len(x) == 0:
        return x
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    n_out = -(-len(x) * up // down)
    bank, half = _polyphase(min(up, _MAX_PHASES), rate_in, rate_out)
    padded = np.concatenate([np.zeros(half - 1), x, np.zeros(half + down + 1)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half)  # row k: the taps around x[k]
    y = np.empty(n_out)
    if up <= _MAX_PHASES:
        for first in range(min(up, n_out)):
            start, phase = divmod(first * down, up)
            count = len(range(first, n_out, up))
            y[first::up] = windows[start::down][:count] @ bank[phase]
        return y
    instants = np.arange(n_out, dtype=np.int64) * down  # in units of 1/up input sample, exact
    starts = instants // up
    phases = (instants % up * _MAX_PHASES + up // 2) // up
    starts += phases // _MAX_PHASES  # rounded up to the next input sample
    phases %= _MAX_PHASES
    order = np.argsort(phases, kind="stable")
    bounds = np.searchsorted(phases[order], np.arange(_MAX_PHASES + 1))
    for phase in range(_MAX_PHASES):
        outputs = order[bounds[phase] : bounds[phase + 1]]
        if len(outputs):
            y[outputs] = windows[starts[outputs]] @ bank[phase]
    return y


# -- WAV files -----------------------------------------------------------------------------------------

_PCM, _IEEE_FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_*
_STREAMED: Final = 0x7FFFF000  # data sizes from here up are placeholders of writers that could not seek back
_CODEC_NAMES: Final = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG audio",
    0x0055: "MPEG layer 3",
    0x0064: "G.726 ADPCM",
}
_WIDTHS: Final = {_PCM: (8, 16, 24, 32), _IEEE_FLOAT: (32, 64), _ALAW: (8,), _ULAW: (8,)}


@dataclass(frozen=True, slots=True)
class _Layout:
    """What a WAV file holds: the format tag (RIFF WAVE fmt chunk), its shape and the sample bytes."""

    tag: int
    channels: int
    rate: int
    bits: int
    data: bytes | memoryview


def _with_wave(raw: bytes) -> _Layout | None:
    """Plain PCM through the stdlib; None when `wave` refuses the file or its data is shorter than said."""
    try:
        with wave.open(io.BytesIO(raw), "rb") as w:
            channels, width, rate, count = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(count)
    except (wave.Error, EOFError, struct.error):
        return None
    if len(data) < count * channels * width:
        return None
    return _Layout(_PCM, channels, rate, 8 * width, data)


def _with_riff(path: Path, raw: bytes) -> _Layout:
    """Walk the RIFF chunks (fmt and data, any order, others skipped) and say precisely what is wrong.

    Layout from Microsoft's RIFF specification (Multimedia Programming Interface and Data Specifications
    1.0, 1991) and its WAVE_FORMAT_EXTENSIBLE addendum, whose sub-format GUIDs carry the old format tag in
    their first two bytes; the tags themselves are listed in RFC 2361 (WAVE and AVI Codec Registries)."""
    if len(raw) < 12:
        raise PromptError(f"{path}: truncated: {len(raw)} bytes, shorter than a RIFF header")
    if raw[:4] != b"RIFF":
        raise PromptError(f"{path}: not a WAV file (starts with {raw[:4]!r}, not b'RIFF')")
    if raw[8:12] != b"WAVE":
        raise PromptError(f"{path}: a RIFF file of form {raw[8:12]!r}, not WAVE")
    view = memoryview(raw)
    fmt: memoryview | None = None
    data: memoryview | None = None
    pos = 12
    while pos + 8 <= len(raw) and (fmt is None or data is None):
        chunk, size = raw[pos : pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = pos + 8
        if chunk == b"data":
            if size >= _STREAMED:
                size = len(raw) - body
            elif body + size > len(raw):
                raise PromptError(f"{path}: truncated: the data chunk declares {size} bytes, "
                                  f"the file holds {len(raw) - body}")
            data = view[body : body + size]
        elif chunk == b"fmt ":
            if body + size > len(raw):
                raise PromptError(f"{path}: truncated inside the fmt chunk")
            fmt = view[body : body + size]
        pos = body + size + (size & 1)
    if fmt is None:
        raise PromptError(f"{path}: truncated or damaged: no fmt chunk")
    if data is None:
        raise PromptError(f"{path}: truncated or damaged: no data chunk")
    if len(fmt) < 16:
        raise PromptError(f"{path}: fmt chunk of {len(fmt)} bytes, shorter than the 16 of PCMWAVEFORMAT")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or bytes(fmt[26:40]) != _GUID_TAIL:
            raise PromptError(f"{path}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format")
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag not in _WIDTHS:
        name = _CODEC_NAMES.get(tag, "unknown codec")
        raise PromptError(f"{path}: unsupported compression: format tag 0x{tag:04x} ({name}); "
                          "use PCM, IEEE float, µ-law or A-law")
    if bits not in _WIDTHS[tag]:
        raise PromptError(f"{path}: unsupported sample width: {bits} bits for format tag 0x{tag:04x}")
    if channels < 1 or block_align != channels * bits // 8:
        raise PromptError(f"{path}: inconsistent fmt chunk: {channels} channels, {bits} bits, "
                          f"{block_align} bytes per frame")
    return _Layout(tag, channels, rate, bits, data)


def _decode(layout: _Layout) -> Signal:
    """Interleaved sample bytes → mono float signal in [-1, 1] (channels averaged)."""
    width = layout.bits // 8
    usable = len(layout.data) // (width * layout.channels) * width * layout.channels
    raw = layout.data[:usable]
    x: Signal
    if layout.tag == _ULAW:
        x = ulaw_decode(raw) / 32768.0
    elif layout.tag == _ALAW:
        x = alaw_decode(raw) / 32768.0
    elif layout.tag == _IEEE_FLOAT:
        floats = np.frombuffer(raw, dtype=f"<f{width}").astype(np.float64)
        x = np.clip(np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    elif width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:
        quads = np.zeros((usable // 3, 4), dtype=np.uint8)
        quads[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        x = (quads.view("<i4").ravel() >> 8) / float(1 << 23)
    else:
        x = np.frombuffer(raw, dtype=f"<i{width}") / float(1 << (8 * width - 1))
    if layout.channels > 1:
        x = x.reshape(-1, layout.channels).mean(axis=1)
    return x


def _to_int16(x: Signal) -> Samples:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)


def load_wav(path: Path | str) -> Samples:
    """A WAV file as 8 kHz mono int16 samples (see the module docstring for what is accepted).

    Raises PromptError naming the file: unreadable, not RIFF/WAVE, truncated, unsupported compression.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PromptError(f"{path}: cannot read: {e.strerror or e}") from None
    layout = _with_wave(raw) or _with_riff(path, raw)
    if not 1000 <= layout.rate <= 768_000:
        raise PromptError(f"{path}: unsupported sample rate {layout.rate} Hz")
    x = _decode(layout)
    return _to_int16(resample(x, layout.rate))


def _write_wav(path: Path, samples: Samples) -> None:
    """8 kHz 16-bit mono WAV, written whole to a temporary name then renamed (a crash leaves no half file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- generated sounds ------------------------------------------------------------------------------------


def _count(ms: float, what: str) -> int:
    if not 0 <= ms <= 3_600_000:
        raise PromptError(f"{what}: duration {ms} ms is out of range (0 to one hour)")
    return round(ms * RATE / 1000)


def tone(freq_hz: float, ms: float, amplitude: float = 0.3) -> Samples:
    """A sine of `freq_hz` for `ms` milliseconds at `amplitude` of full scale, with 5 ms raised-cosine
    ramps at both ends so it starts and stops without a click."""
    if not 0 < freq_hz < RATE / 2:
        raise PromptError(f"tone: frequency {freq_hz} Hz is outside 0 to {RATE // 2} Hz (8 kHz sampling)")
    if not 0 <= amplitude <= 1:
        raise PromptError(f"tone: amplitude {amplitude} is outside 0 to 1 (fraction of full scale)")
    n = _count(ms, "tone")
    t = np.arange(n)
    x = amplitude * np.sin(2 * pi * freq_hz * t / RATE)
    ramp = min(RATE * 5 // 1000, n // 2)
    if ramp:
        rise = 0.5 - 0.5 * np.cos(pi * (np.arange(ramp) + 0.5) / ramp)
        x[:ramp] *= rise
        x[n - ramp :] *= rise[::-1]
    return np.clip(np.rint(x * 32767.0), -32767, 32767).astype(np.int16)


def silence(ms: float) -> Samples:
    """`ms` milliseconds of digital silence."""
    return np.zeros(_count(ms, "silence"), dtype=np.int16)


def beep() -> Samples:
    """The voicemail beep: 1 kHz for 400 ms."""
    return tone(1000.0, 400.0, 0.3)


_PROGRESSION: Final = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))  # C, Am, F, G (MIDI notes)
_ARPEGGIO: Final = (0, 1, 2, 1, 0, 1, 2, 1)  # chord-tone index of each of eight notes per chord


def _hz(note: float) -> float:
    return 440.0 * float(2.0 ** ((note - 69) / 12))


def _envelope(n: int, attack: int, release: int) -> Signal:
    """1 in the middle, raised-cosine rise over `attack` and fall over `release` samples, 0 at both ends."""
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    env[:attack] = 0.5 - 0.5 * np.cos(pi * np.arange(attack) / attack)
    env[n - release :] = 0.5 + 0.5 * np.cos(pi * (np.arange(release) + 1) / release)
    return env


def _partials(freq: float, n: int, weights: tuple[float, ...], detune: float = 0.0) -> Signal:
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for k, weight in enumerate(weights, start=1):
        out += weight * np.sin(2 * pi * freq * k * t)
        if detune:
            out += weight * np.sin(2 * pi * freq * k * (1 + detune) * t + 1.0)
    return out


def _add_circular(loop: Signal, start: int, sound: Signal) -> None:
    """Mix `sound` into `loop` from `start`, wrapping past the end: the loop point is then seamless."""
    pos, offset = start % len(loop), 0
    while offset < len(sound):
        take = min(len(loop) - pos, len(sound) - offset)
        loop[pos : pos + take] += sound[offset : offset + take]
        offset += take
        pos = 0


@functools.lru_cache(maxsize=4)
def _music_on_hold(samples: int) -> Samples:
    loop = np.zeros(samples)
    chords = 4 * max(1, round(samples / RATE / 12))  # a chord about every three seconds
    span = samples / chords
    for i in range(chords):
        notes = _PROGRESSION[i % len(_PROGRESSION)]
        start = round(i * span)
        length = round(span) + RATE // 2  # the pad rings half a second into the next chord
        env = _envelope(length, int(0.4 * RATE), int(0.6 * RATE))
        env *= np.exp(-np.arange(length) / (3.0 * RATE)) * 0.5 + 0.5
        for note in notes:
            _add_circular(loop, start, 0.18 * env * _partials(_hz(note), length, (1.0, 0.3, 0.1), detune=0.002))
        bass = _partials(_hz(notes[0] - 12), length, (0.8, 0.6, 0.3))  # harmonics make it heard above 300 Hz
        _add_circular(loop, start, 0.35 * bass * _envelope(length, RATE // 50, int(0.6 * RATE))
                      * np.exp(-np.arange(length) / (1.5 * RATE)))
        step = span / len(_ARPEGGIO)
        ring = round(step) + int(0.6 * RATE)
        pluck_env = _envelope(ring, RATE // 200, RATE // 20) * np.exp(-np.arange(ring) / (0.35 * RATE))
        for j, index in enumerate(_ARPEGGIO):
            pluck = _partials(_hz(notes[index] + 12), ring, (1.0, 0.25, 0.05)) * pluck_env
            _add_circular(loop, start + round(j * step), 0.3 * pluck)
    loop *= 0.25 / max(float(np.abs(loop).max()), 1e-9)  # peaks at -12 dBFS: soft, clear of G.711 clipping
    out = _to_int16(loop)
    out.flags.writeable = False
    return out


def music_on_hold(seconds: float = 30.0) -> Samples:
    """A gentle generated loop (C-Am-F-G pads, a soft bass and a plucked arpeggio) for callers on hold.

    Every note is mixed in circularly, so the last sample flows into the first: played with
    `Player(..., loop=True)` there is no click and no gap at the loop point. The length is rounded to whole
    20 ms frames. The result is shared (cached, read-only)."""
    if not 1 <= seconds <= 600:
        raise PromptError(f"music_on_hold: {seconds} s is outside 1 to 600 s")
    return _music_on_hold(max(FRAME, round(seconds * RATE / FRAME) * FRAME))


# -- framing and playback ------------------------------------------------------------------------------------


def frames(samples: Samples) -> Iterator[Samples]:
    """The samples as 160-sample (20 ms) frames: views into the array, the last one padded with silence."""
    whole = len(samples) // FRAME * FRAME
    for start in range(0, whole, FRAME):
        yield samples[start : start + FRAME]
    if whole < len(samples):
        last = np.zeros(FRAME, dtype=np.int16)
        last[: len(samples) - whole] = samples[whole:]
        yield last


class Player:
    """Plays samples to one leg, a frame per tick of the engine's 20 ms clock (sans-IO: no clock inside).

    `next_frame()` returns a 160-sample view into the samples, or None once done. A looped player wraps
    seamlessly (the frame that crosses the end continues from the start, no padding); a one-shot player pads
    its last frame with silence. No allocation per frame: a looped prompt whose length is not a whole
    number of frames is extended once by 159 samples so that wrapping frames are views too."""

    __slots__ = ("_last", "_length", "_pos", "_source", "_stopped", "loop")

    def __init__(self, samples: Samples, loop: bool = False) -> None:
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise PromptError(f"Player needs one-dimensional int16 samples, got {samples.dtype} of shape "
                              f"{samples.shape}")
        self.loop = loop
        self._length = len(samples)
        self._pos = 0
        self._stopped = False
        self._source = samples
        self._last: Samples | None = None
        partial = self._length % FRAME
        if loop and partial:
            self._source = np.resize(samples, self._length + FRAME - 1)  # repeats the samples as needed
        elif partial:
            self._last = np.zeros(FRAME, dtype=np.int16)
            self._last[:partial] = samples[self._length - partial :]

    @property
    def done(self) -> bool:
        """True once the last frame was given (never for a non-empty loop), or after `stop()`."""
        return self._stopped or self._length == 0 or (not self.loop and self._pos >= self._length)

    @property
    def position_ms(self) -> float:
        """Where the play head is in the samples (back at 0 each time a loop wraps)."""
        return self._pos * 1000 / RATE

    @property
    def duration_ms(self) -> float:
        return self._length * 1000 / RATE

    def next_frame(self) -> Samples | None:
        """The next 20 ms of audio, or None when done."""
        if self.done:
            return None
        start, end = self._pos, self._pos + FRAME
        if self.loop:
            self._pos = end % self._length
            return self._source[start:end]
        self._pos = min(end, self._length)
        if end > self._length and self._last is not None:
            return self._last
        return self._source[start:end]

    def stop(self) -> None:
        """End playback now: `next_frame()` returns None from here on."""
        self._stopped = True


# -- the cache and text to speech -------------------------------------------------------------------------

_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+/-]*")  # espeak-ng voice names: "ar", "en-us", "en+f3", "mb/mb-ar1"


class PromptCache:
    """WAV files converted once and speech synthesized once, kept in memory (bounded, least recently used
    first out) and, for speech, on disk under `cache_dir` as 8 kHz WAV named by a SHA-256 of the text,
    language, voice and espeak-ng version (a new espeak-ng invalidates the old recordings).

    `speak` and `wav` block: espeak-ng takes tens to hundreds of milliseconds and a long WAV takes time to
    convert. The media engine calls them off the event loop with `asyncio.to_thread`, which is what
    `speak_async` and `wav_async` do. They are safe to call from several threads at once; two calls for the
    same prompt wait for one conversion. The counters `synthesized` (espeak-ng runs) and `converted` (WAV
    files read) are for statistics and tests."""

    def __init__(self, cache_dir: Path | str, max_items: int = 1000, timeout: float = 20.0) -> None:
        if max_items < 1:
            raise PromptError(f"PromptCache: max_items must be at least 1, not {max_items}")
        self.cache_dir = Path(cache_dir)
        self.max_items = max_items
        self.timeout = timeout
        self.synthesized = 0
        self.converted = 0
        self._memory: OrderedDict[str, Samples] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}
        self._espeak: tuple[str, str] | None = None  # (executable, version line)

    @property
    def items(self) -> int:
        """How many prompts are held in memory."""
        return len(self._memory)

    def _cached(self, key: str, make: Callable[[], Samples]) -> Samples:
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                hit = self._memory.get(key)
            if hit is not None:
                return hit
            try:
                samples = make()
                samples.flags.writeable = False
                with self._lock:
                    self._memory[key] = samples
                    while len(self._memory) > self.max_items:
                        self._memory.popitem(last=False)
            finally:
                with self._lock:
                    self._making.pop(key, None)
            return samples

    def wav(self, path: Path | str) -> Samples:
        """The file as 8 kHz mono int16, converted once; a file changed on disk (mtime or size) is read again."""
        file = Path(path).absolute()
        try:
            st = file.stat()
        except OSError as e:
            raise PromptError(f"{file}: cannot read: {e.strerror or e}") from None

        def convert() -> Samples:
            samples = load_wav(file)
            self.converted += 1
            return samples

        return self._cached(f"wav\0{file}\0{st.st_mtime_ns}\0{st.st_size}", convert)

    async def wav_async(self, path: Path | str) -> Samples:
        """`wav` in a worker thread, for the event loop."""
        return await asyncio.to_thread(self.wav, path)

    def _espeak_ng(self, language: str) -> tuple[str, str]:
        if self._espeak is None:
            exe = shutil.which("espeak-ng")
            if exe is None:
                raise PromptError(f"cannot speak {language}: espeak-ng not found: install Debian package espeak-ng")
            try:
                done = subprocess.run([exe, "--version"], capture_output=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise PromptError(f"cannot speak {language}: espeak-ng --version failed: {e}") from None
            version = done.stdout.decode("utf-8", "replace").strip().splitlines()
            if done.returncode != 0 or not version:
                raise PromptError(f"cannot speak {language}: espeak-ng --version exited {done.returncode}")
            self._espeak = (exe, version[0])
        return self._espeak

    def speak(self, text: str, language: Language | str, voice: str | None = None) -> Samples:
        """`text` spoken in `language` ("en", "ar" or "fa") by espeak-ng, as 8 kHz mono int16.

        Synchronous and blocking (a subprocess bounded by `timeout`): from the event loop use `speak_async`,
        which runs this in a thread with `asyncio.to_thread`. `voice` picks another espeak-ng voice
        (`espeak-ng --voices=ar` lists them); by default the voice named by the language code is used.
        The text goes to espeak-ng on stdin as UTF-8, never on a command line."""
        if language not in LANGUAGES:
            raise PromptError(f"cannot speak language {language!r}: Hatif speaks {', '.join(LANGUAGES)}")
        if not text.strip():
            raise PromptError(f"cannot speak {language}: the text is empty")
        voice_name = voice or language
        if not _VOICE.fullmatch(voice_name):
            raise PromptError(f"cannot speak {language}: {voice_name!r} is not an espeak-ng voice name")
        exe, version = self._espeak_ng(language)
        digest = hashlib.sha256(json.dumps([text, language, voice_name, version]).encode()).hexdigest()

        def make() -> Samples:
            stored = self.cache_dir / f"{digest}.wav"
            if stored.exists():
                try:
                    return load_wav(stored)
                except PromptError as e:
                    log.warning("damaged speech cache file, synthesizing again", extra={"fields": {"error": str(e)}})
            samples = self._synthesize(exe, text, language, voice_name)
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                _write_wav(stored, samples)
            except OSError as e:
                log.warning("cannot store speech on disk", extra={"fields": {"path": str(stored), "error": str(e)}})
            return samples

        return self._cached(f"speech\0{digest}", make)

    def _synthesize(self, exe: str, text: str, language: str, voice: str) -> Samples:
        with tempfile.TemporaryDirectory(prefix="hatif-tts-") as tmp:
            out = Path(tmp) / "speech.wav"
            command = [exe, "-b", "1", "-v", voice, "-w", str(out), "--stdin"]
            try:
                done = subprocess.run(command, input=text.encode("utf-8"), capture_output=True,
                                      timeout=self.timeout, check=False)
            except subprocess.TimeoutExpired:
                raise PromptError(f"cannot speak {language}: espeak-ng took longer than {self.timeout:g} s") from None
            except OSError as e:
                raise PromptError(f"cannot speak {language}: espeak-ng did not start: {e}") from None
            if done.returncode != 0:
                why = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
                raise PromptError(f"cannot speak {language} with voice {voice!r}: espeak-ng failed: {why}")
            if not out.exists():
                raise PromptError(f"cannot speak {language} with voice {voice!r}: espeak-ng wrote no audio")
            try:
                samples = load_wav(out)
            except PromptError as e:
                raise PromptError(f"cannot speak {language}: espeak-ng's output is unreadable: {e}") from None
        self.synthesized += 1
        log.info("speech synthesized", extra={"fields": {"language": language, "voice": voice,
                                                         "seconds": round(len(samples) / RATE, 2)}})
        return samples

    async def speak_async(self, text: str, language: Language | str, voice: str | None = None) -> Samples:
        """`speak` in a worker thread (`asyncio.to_thread`), so espeak-ng never blocks the event loop."""
        return await asyncio.to_thread(self.speak, text, language, voice)
