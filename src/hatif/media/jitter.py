"""A small fixed-depth jitter buffer for recording and mixing, sans-IO (RFC 3550 §5.1, Appendix A.1).

The media engine pushes packets as they arrive and pops one per 20 ms tick. Playout starts once
`depth_packets` are held, then follows sequence numbers: each tick returns the next packet's payload, or
None when it is missing (concealment is the consumer's choice). Packets that arrive after their turn
are late and dropped; copies of a held packet are duplicates and dropped. When the buffer runs dry the
buffer waits again for `depth_packets` (a talkspurt after silence, a stalled sender) without skipping
ahead, and resumes at the oldest packet held. It never holds more than `max_packets`: the oldest go.

Sequence numbers are extended past 65535 (RFC 3550 §5.1 wrap-around) relative to the highest one seen.
A jump of `MAX_DROPOUT` ahead or `MAX_MISORDER` behind is taken for a sender that restarted its
numbering only when the next packet follows it, as Appendix A.1 does; a new SSRC starts afresh.
"""

from __future__ import annotations

from .rtp import MAX_DROPOUT, MAX_MISORDER

__all__ = ["JitterBuffer"]


class JitterBuffer:
    """Reorders one RTP stream within `depth_packets` and plays it out one packet per tick."""

    __slots__ = ("_bad_seq", "_highest", "_next", "_packets", "_playing", "_ssrc", "_started", "depth_packets",
                 "duplicates", "gaps", "last_timestamp", "late", "max_packets", "overflow", "resets", "strays",
                 "underruns")

    def __init__(self, depth_packets: int = 3, max_packets: int = 50) -> None:
        if not 1 <= depth_packets <= max_packets:
            raise ValueError(f"depth_packets={depth_packets} must be between 1 and max_packets={max_packets}")
        self.depth_packets = depth_packets
        self.max_packets = max_packets
        self._packets: dict[int, tuple[int, bytes]] = {}  # extended sequence → (timestamp, payload)
        self._ssrc: int | None = None
        self._highest = 0  # highest extended sequence number accepted: the anchor of the extension
        self._next = 0  # next extended sequence to play, once playout has `_started`
        self._started = False
        self._playing = False  # False while (re)filling to `depth_packets`
        self._bad_seq = -1
        self.last_timestamp: int | None = None  # RTP timestamp of the payload `pop` returned last
        self.late = 0
        self.duplicates = 0
        self.overflow = 0
        self.strays = 0  # packets far off the sequence, dropped while they are not confirmed as a restart
        self.resets = 0
        self.gaps = 0  # ticks that returned None for a missing packet while later ones were held
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._packets)

    def _restart(self, ssrc: int, sequence: int) -> None:
        self._packets.clear()
        self._ssrc = ssrc
        self._highest = sequence
        self._next = 0
        self._started = False
        self._playing = False
        self._bad_seq = -1

    def push(self, sequence: int, timestamp: int, payload: bytes, ssrc: int = 0) -> bool:
        """Hold one packet; False when it is dropped (late, duplicate, or a stray far off the sequence)."""
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self.resets += 1
            self._restart(ssrc, sequence)
        ext = self._highest + (((sequence - self._highest) + 0x8000) & 0xFFFF) - 0x8000
        if ext - self._highest >= MAX_DROPOUT or self._highest - ext > MAX_MISORDER:
            if sequence != self._bad_seq:
                self._bad_seq = (sequence + 1) & 0xFFFF
                self.strays += 1
                return False
            self.resets += 1  # two in sequence: the sender restarted its numbering (RFC 3550 A.1)
            self._restart(ssrc, sequence)
            ext = sequence
        if self._started and ext < self._next:
            self.late += 1
            return False
        if ext in self._packets:
            self.duplicates += 1
            return False
        self._packets[ext] = (timestamp, payload)
        self._highest = max(self._highest, ext)
        if len(self._packets) > self.max_packets:
            oldest = min(self._packets)
            del self._packets[oldest]
            self.overflow += 1
            if self._started and self._next <= oldest:
                self._next = oldest + 1
        return True

    def pop(self) -> bytes | None:
        """The payload for this tick, or None: still buffering, a packet missing, or the buffer ran dry."""
        if not self._playing:
            if len(self._packets) < self.depth_packets:
                return None
            self._playing = self._started = True
            self._next = min(self._packets)
        item = self._packets.pop(self._next, None)
        if item is not None:
            self._next += 1
            self.last_timestamp = item[0]
            return item[1]
        if self._packets:
            self._next += 1
            self.gaps += 1
        else:
            self._playing = False
            self.underruns += 1
        return None
