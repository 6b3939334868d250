"""Call recordings: a stereo WAV written as the call goes (SECURITY.md "Recordings").

The engine hands the recorder one G.711 payload per channel per 20 ms tick (or None for a gap, which
becomes silence so the file keeps time with the call). Payloads are kept as they came, and once a
second they are decoded with numpy in one go, interleaved (caller left, agent right) and written; the
RIFF sizes are patched and the file flushed each time, so a crash loses at most about a second and the
file on disk is always a valid WAV. Closing computes the SHA-256 of the finished file.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .g711 import alaw_decode, ulaw_decode

FRAME = 160  # samples per 20 ms at 8 kHz
SILENCE = {0: b"\xff" * FRAME, 8: b"\xd5" * FRAME}  # G.711 silence codes: PCMU 0xFF, PCMA 0xD5
FLUSH_FRAMES = 50  # one second


def wav_header(data_bytes: int, channels: int = 2, rate: int = 8000, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM WAV header."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


def _append(f: BinaryIO, written: int, raw: bytes, channels: int) -> int:
    """Write `raw` after the `written` bytes of audio, patch the RIFF sizes, flush: the file is valid as it
    stands. Returns the new count of audio bytes."""
    f.seek(44 + written)
    f.write(raw)
    written += len(raw)
    f.seek(0)
    f.write(wav_header(written, channels=channels))
    f.flush()
    return written


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StereoRecorder:
    """One call's recording: channel 0 (left) and channel 1 (right), each fed per tick."""

    __slots__ = ("_file", "_flush_phase", "_left", "_right", "_types", "data_bytes", "frames", "path", "sha256")

    def __init__(self, path: Path, left_type: int = 0, right_type: int = 0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO | None = path.open("wb")
        self._file.write(wav_header(0))
        self._left = bytearray()
        self._right = bytearray()
        self._types = [left_type, right_type]
        self.frames = 0
        self.data_bytes = 0
        self.sha256: str | None = None
        # Calls answered in the same tick would otherwise all flush in the same tick once a second
        # (a jitter spike measured by bench/rtp_relay.py): each recorder flushes at its own phase.
        self._flush_phase = random.randrange(FLUSH_FRAMES)

    def set_payload_types(self, left: int, right: int) -> None:
        self._types = [left, right]

    def add(self, left: bytes | None, right: bytes | None) -> None:
        """One 20 ms frame per channel (None: nothing arrived in time, recorded as silence)."""
        self._left += left if left is not None and len(left) == FRAME else SILENCE.get(self._types[0], SILENCE[0])
        self._right += right if right is not None and len(right) == FRAME else SILENCE.get(self._types[1], SILENCE[0])
        self.frames += 1
        if (self.frames + self._flush_phase) % FLUSH_FRAMES == 0:
            self.flush()

    def _decode(self, data: bytearray, payload_type: int) -> np.ndarray:
        return alaw_decode(data) if payload_type == 8 else ulaw_decode(data)

    def flush(self) -> None:
        """Decode what is pending, write it, and patch the RIFF sizes so the file is valid as it stands."""
        f = self._file
        if f is None or not self._left:
            return
        stereo = np.empty((len(self._left), 2), dtype="<i2")
        stereo[:, 0] = self._decode(self._left, self._types[0])
        stereo[:, 1] = self._decode(self._right, self._types[1])
        self.data_bytes = _append(f, self.data_bytes, stereo.tobytes(), 2)
        self._left.clear()
        self._right.clear()

    @property
    def duration(self) -> float:
        return self.frames * FRAME / 8000

    def close(self) -> str:
        """Write the rest, close the file and return its SHA-256 (hex)."""
        if self._file is None:
            return self.sha256 or ""
        self.flush()
        self._file.close()
        self._file = None
        self.sha256 = file_sha256(self.path)
        return self.sha256


class MonoRecorder:
    """What one leg says (voicemail, a caller's name): mono 8 kHz 16-bit WAV, written as it goes.

    Fed decoded frames once per tick; flushed once a second with valid RIFF sizes, like `StereoRecorder`.
    It keeps the level of each frame so that a caller's silence can end a recording.
    """

    __slots__ = ("_file", "_pending", "data_bytes", "frames", "path", "quiet_frames", "sha256", "voiced_frames")

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO | None = path.open("wb")
        self._file.write(wav_header(0, channels=1))
        self._pending: list[bytes] = []
        self.frames = 0
        self.data_bytes = 0
        self.quiet_frames = 0  # consecutive frames below the speech threshold, up to now
        self.voiced_frames = 0
        self.sha256: str | None = None

    def add(self, samples: np.ndarray | None) -> None:
        """One 20 ms frame of decoded samples (None: nothing arrived, recorded as silence)."""
        if samples is None or len(samples) != FRAME:
            samples = np.zeros(FRAME, dtype=np.int16)
        level = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        if level < 200.0:  # about -44 dBFS: line noise, not speech
            self.quiet_frames += 1
        else:
            self.quiet_frames = 0
            self.voiced_frames += 1
        self._pending.append(samples.astype("<i2").tobytes())
        self.frames += 1
        if self.frames % FLUSH_FRAMES == 0:
            self.flush()

    def flush(self) -> None:
        f = self._file
        if f is None or not self._pending:
            return
        raw = b"".join(self._pending)
        self._pending.clear()
        self.data_bytes = _append(f, self.data_bytes, raw, 1)

    @property
    def duration(self) -> float:
        return self.frames * FRAME / 8000

    def close(self) -> str:
        if self._file is None:
            return self.sha256 or ""
        self.flush()
        self._file.close()
        self._file = None
        self.sha256 = file_sha256(self.path)
        return self.sha256
