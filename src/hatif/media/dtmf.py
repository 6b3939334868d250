"""DTMF, sans-IO: RFC 4733 telephone-events out and in, and in-band tone detection as a fallback.

* `TelephoneEvent`: the 4-octet payload of RFC 4733 §2.3 (event, E bit, volume, duration).
* `DtmfReceiver`: turns a stream of event packets into digits, each reported once (§2.5.2): packets are
  grouped by RTP timestamp (§2.5.1.1), the redundant end packets of §2.5.1.4 add nothing, and a digit
  whose end packets were all lost is still reported when the next event starts or, failing that, when
  `poll` finds the stream silent for `timeout` seconds. Long events split into 0xFFFF-long segments
  (§2.5.1.3) count once.
* `DtmfSender`: the packets of one digit as §2.5.1 sends them: marker on the first, a duration update
  every 50 ms, three end packets carrying the final duration (§2.5.1.4), each with its sending offset.
* `GoertzelDetector`: the 8 DTMF frequencies (ITU-T Q.23) measured on 20 ms blocks of int16 samples, as
  one matrix product per batch; a digit needs both groups present, acceptable twist, most of the block's
  energy in the two tones (ITU-T Q.24 style checks), 40 ms on, and 40 ms of silence before the next.
* `dtmf_tone`: a generated digit, for tests and for in-band sending.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import MediaError
from .rtp import RtpPacket

__all__ = [
    "DIGITS",
    "DtmfDigit",
    "DtmfError",
    "DtmfReceiver",
    "DtmfSender",
    "GoertzelDetector",
    "ScheduledPacket",
    "TelephoneEvent",
    "dtmf_tone",
]

log = logging.getLogger(__name__)

DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 Table 3: event codes 0..15, in this order
LOW_GROUP = (697.0, 770.0, 852.0, 941.0)  # ITU-T Q.23 rows
HIGH_GROUP = (1209.0, 1336.0, 1477.0, 1633.0)  # ITU-T Q.23 columns
_KEYPAD = ("123A", "456B", "789C", "*0#D")  # Q.23 layout: row by low tone, column by high tone
_PAYLOAD = struct.Struct("!BBH")
MAX_DURATION = 0xFFFF


class DtmfError(MediaError, ValueError):
    """A telephone-event payload or a digit that RFC 4733 does not allow; the text says which."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The telephone-event payload (RFC 4733 §2.3). `duration` is in RTP timestamp units."""

    event: int
    end: bool = False
    volume: int = 10  # -dBm0, 0..63
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes | bytearray | memoryview) -> TelephoneEvent:
        if len(payload) < 4:
            raise DtmfError(f"telephone-event payload of {len(payload)} octets, at least 4 are needed")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF digit of events 0..15 (§3.2), None for other events."""
        return DIGITS[self.event] if self.event < 16 else None


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit received: `duration` in timestamp units, `ended` False when it was inferred (end lost)."""

    digit: str
    timestamp: int
    duration: int
    volume: int
    ended: bool


class _Event:
    __slots__ = ("base", "digit", "duration", "event", "last_seen", "last_sequence", "reported", "start",
                 "timestamp", "volume")

    def __init__(self, timestamp: int, ev: TelephoneEvent, sequence: int, now: float) -> None:
        self.start = timestamp  # of the event; `timestamp` is that of its current segment
        self.timestamp = timestamp
        self.event = ev.event
        self.digit = DIGITS[ev.event]
        self.volume = ev.volume
        self.base = 0  # duration of earlier 0xFFFF segments of a long event (§2.5.1.3)
        self.duration = ev.duration
        self.last_seen = now
        self.last_sequence = sequence
        self.reported = False

    def report(self, ended: bool) -> DtmfDigit:
        self.reported = True
        return DtmfDigit(self.digit, self.start, self.base + self.duration, self.volume, ended)


_NOTHING: tuple[DtmfDigit, ...] = ()


class DtmfReceiver:
    """Digits out of RFC 4733 event packets of one stream, each reported exactly once (§2.5.2)."""

    __slots__ = ("_current", "_finished", "duplicates", "malformed", "timeout")

    def __init__(self, timeout: float = 0.3) -> None:
        self.timeout = timeout  # silence after which an event without an end packet is taken as over
        self._current: _Event | None = None
        self._finished: deque[int] = deque(maxlen=16)  # timestamps of events already over
        self.duplicates = 0
        self.malformed = 0

    def receive(self, sequence: int, timestamp: int, marker: bool, payload: bytes | bytearray | memoryview,
                now: float) -> tuple[DtmfDigit, ...]:
        """One telephone-event packet in; the digits it completes out (none, one, or rarely two)."""
        try:
            ev = TelephoneEvent.parse(payload)
        except DtmfError:
            self.malformed += 1
            return _NOTHING
        if ev.event >= 16:
            log.debug("ignoring telephone-event %d: not a DTMF digit", ev.event)
            return _NOTHING
        cur = self._current
        if cur is not None and timestamp == cur.timestamp:
            if sequence == cur.last_sequence:
                self.duplicates += 1
                return _NOTHING
            return self._update(cur, ev, sequence, now)
        if timestamp in self._finished:
            return _NOTHING  # a late or repeated packet of an event already over
        if cur is None:
            return self._start(timestamp, ev, sequence, now)
        if (timestamp - cur.timestamp) & 0xFFFFFFFF >= 0x80000000:
            # Older than the current event and never seen: its packets came late; it is over already.
            self._finished.append(timestamp)
            return (_Event(timestamp, ev, sequence, now).report(ev.end),)
        if (not marker and not cur.reported and ev.event == cur.event and cur.duration == MAX_DURATION
                and timestamp == (cur.timestamp + MAX_DURATION) & 0xFFFFFFFF):
            self._finished.append(cur.timestamp)  # the next segment of a long event (§2.5.1.3)
            cur.base += MAX_DURATION
            cur.duration = 0
            cur.timestamp = timestamp
            return self._update(cur, ev, sequence, now)
        earlier = _NOTHING if cur.reported else (cur.report(False),)
        self._finished.append(cur.timestamp)
        return earlier + self._start(timestamp, ev, sequence, now)

    def _start(self, timestamp: int, ev: TelephoneEvent, sequence: int, now: float) -> tuple[DtmfDigit, ...]:
        cur = self._current = _Event(timestamp, ev, sequence, now)
        return (cur.report(True),) if ev.end else _NOTHING

    def _update(self, cur: _Event, ev: TelephoneEvent, sequence: int, now: float) -> tuple[DtmfDigit, ...]:
        cur.duration = max(cur.duration, ev.duration)
        cur.last_seen = now
        cur.last_sequence = sequence
        if ev.end and not cur.reported:
            return (cur.report(True),)
        return _NOTHING

    def next_deadline(self) -> float | None:
        """When `poll` may have something to report, for the shell's timer."""
        cur = self._current
        return None if cur is None or cur.reported else cur.last_seen + self.timeout

    def poll(self, now: float) -> tuple[DtmfDigit, ...]:
        """Report an event whose packets stopped `timeout` seconds ago without an end packet."""
        cur = self._current
        if cur is not None and not cur.reported and now - cur.last_seen >= self.timeout:
            return (cur.report(False),)
        return _NOTHING


@dataclass(frozen=True, slots=True)
class ScheduledPacket:
    """A packet to send `at` seconds after the digit starts."""

    at: float
    packet: RtpPacket


@dataclass(frozen=True, slots=True)
class DtmfSender:
    """The event packets of a digit (RFC 4733 §2.5.1) for one RTP stream."""

    ssrc: int
    payload_type: int = 101
    clock_rate: int = 8000
    volume: int = 10
    update_interval: float = 0.05  # §2.5.1.2: a new packet every 50 ms while the event lasts
    packet_time: float = 0.02  # the stream's ptime: the first report, and the spacing of end packets

    def packets(self, digit: str, duration_ms: int, timestamp: int, sequence: int) -> list[ScheduledPacket]:
        """All packets of `digit` lasting `duration_ms`, starting at the stream's `timestamp`/`sequence`.

        Every packet carries the event's start `timestamp` (§2.5.1.1); sequence numbers follow on from
        `sequence`, so the next audio packet uses `sequence + len(result)`.
        """
        if len(digit) != 1 or digit.upper() not in DIGITS:
            raise DtmfError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")
        event = DIGITS.index(digit.upper())
        total = duration_ms * self.clock_rate // 1000
        if not 0 < total <= MAX_DURATION:
            raise DtmfError(f"a DTMF duration of {duration_ms} ms does not fit one event (1..{MAX_DURATION} units)")
        first = min(total, round(self.packet_time * self.clock_rate))
        step = round(self.update_interval * self.clock_rate)
        reports = [(0.0, first)]
        reports += [(d / self.clock_rate, d) for d in range(step, total, step)]
        end_at = total / self.clock_rate
        out: list[ScheduledPacket] = []
        for i, (at, duration) in enumerate(reports):
            payload = TelephoneEvent(event, False, self.volume, duration).serialize()
            out.append(ScheduledPacket(at, RtpPacket(self.payload_type, (sequence + i) & 0xFFFF, timestamp,
                                                     self.ssrc, payload, marker=i == 0)))
        end = TelephoneEvent(event, True, self.volume, total).serialize()
        for k in range(3):  # §2.5.1.4: the end packet three times, same duration, new sequence numbers
            out.append(ScheduledPacket(end_at + k * self.packet_time,
                                       RtpPacket(self.payload_type, (sequence + len(out)) & 0xFFFF, timestamp,
                                                 self.ssrc, end)))
        return out


# -- in-band detection ----------------------------------------------------------------------------------


def dtmf_tone(digit: str, ms: int, rate: int = 8000, amplitude: int = 8000) -> npt.NDArray[np.int16]:
    """The two tones of `digit` (ITU-T Q.23), `amplitude` each, for `ms` milliseconds."""
    for row, keys in enumerate(_KEYPAD):
        column = keys.find(digit.upper())
        if len(digit) == 1 and column >= 0:
            t = np.arange(ms * rate // 1000) / rate
            tone = np.sin(2 * np.pi * LOW_GROUP[row] * t) + np.sin(2 * np.pi * HIGH_GROUP[column] * t)
            samples: npt.NDArray[np.int16] = np.round(amplitude * tone).astype(np.int16)
            return samples
    raise DtmfError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")


class GoertzelDetector:
    """In-band DTMF detection over int16 audio, for peers that send no telephone-events.

    Each 20 ms block is tested at the 8 Q.23 frequencies (Goertzel, i.e. one DFT term per frequency, here
    computed for all blocks of a batch as one matrix product). A block holds a digit when the strongest
    tone of each group stands clear of the others in its group, the twist is within limits (high group
    at most 8 dB below or 4 dB above the low group), the level is above `min_rms`, and the two tones
    carry most of the block's energy (which rejects speech, music and noise). A digit is reported once,
    after `min_on_blocks` blocks in a row, and the next one only after `min_off_blocks` silent blocks.
    """

    __slots__ = ("_basis", "_held", "_off", "_pending", "_run", "_run_digit", "block", "min_off_blocks",
                 "min_on_blocks", "min_rms", "sample_rate")

    NORMAL_TWIST = 10 ** (8 / 10)  # low group may exceed the high group by 8 dB (power ratio)
    REVERSE_TWIST = 10 ** (4 / 10)  # high group may exceed the low group by 4 dB
    GROUP_MARGIN = 10 ** (8 / 10)  # the chosen tone must beat the others of its group by 8 dB
    TONE_SHARE = 0.6  # the two tones must carry this share of the block energy

    def __init__(self, sample_rate: int = 8000, min_rms: float = 100.0, min_on_blocks: int = 2,
                 min_off_blocks: int = 2) -> None:
        self.sample_rate = sample_rate
        self.block = sample_rate // 50  # 20 ms
        self.min_rms = min_rms
        self.min_on_blocks = min_on_blocks
        self.min_off_blocks = min_off_blocks
        n = np.arange(self.block)
        freqs = np.array(LOW_GROUP + HIGH_GROUP)
        self._basis = np.exp(-2j * np.pi * np.outer(n, freqs) / sample_rate)  # block × 8
        self._pending = np.zeros(0, dtype=np.int16)
        self._held: str | None = None  # the digit reported and not yet released by silence
        self._off = 0
        self._run_digit: str | None = None
        self._run = 0

    def feed(self, samples: npt.NDArray[np.int16]) -> list[str]:
        """Audio in (any length); the digits whose presses were recognised out, in order."""
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % self.block
        self._pending = samples[whole:].copy()
        if not whole:
            return []
        blocks = samples[:whole].reshape(-1, self.block).astype(np.float64)
        out: list[str] = []
        for digit in self._classify(blocks):
            self._step(digit, out)
        return out

    def _classify(self, blocks: npt.NDArray[np.float64]) -> list[str | None]:
        power = np.abs(blocks @ self._basis) ** 2  # blocks × 8
        energy = np.einsum("ij,ij->i", blocks, blocks)
        # A full-scale sinusoid of energy E concentrated at one frequency gives |X|^2 = N E / 2.
        share = 2 * power / (self.block * np.maximum(energy, 1e-9))[:, None]
        low, high = share[:, :4], share[:, 4:]
        row, column = low.argmax(axis=1), high.argmax(axis=1)
        idx = np.arange(len(blocks))
        low_peak, high_peak = low[idx, row], high[idx, column]
        low_rest = np.sort(low, axis=1)[:, -2]
        high_rest = np.sort(high, axis=1)[:, -2]
        ok = (
            (energy / self.block >= self.min_rms**2)
            & (low_peak + high_peak >= self.TONE_SHARE)
            & (low_peak >= self.GROUP_MARGIN * low_rest)
            & (high_peak >= self.GROUP_MARGIN * high_rest)
            & (low_peak <= self.NORMAL_TWIST * high_peak)
            & (high_peak <= self.REVERSE_TWIST * low_peak)
        )
        return [_KEYPAD[r][c] if good else None for r, c, good in zip(row.tolist(), column.tolist(), ok.tolist(),
                                                                          strict=True)]

    def _step(self, digit: str | None, out: list[str]) -> None:
        """One block's verdict through the press logic: on for `min_on_blocks`, off for `min_off_blocks`."""
        if digit is not None and digit == self._run_digit:
            self._run += 1
        else:
            self._run_digit, self._run = digit, (1 if digit is not None else 0)
        if digit is None:
            self._off += 1
            if self._off >= self.min_off_blocks:
                self._held = None
        else:
            self._off = 0
        if self._held is None and digit is not None and self._run >= self.min_on_blocks:
            self._held = digit
            out.append(digit)
