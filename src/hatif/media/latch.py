"""Which source address a leg accepts RTP from: latching by the rules, sans-IO (SECURITY.md "RTP").

A leg learns where its party is from the SDP (`arm`). Symmetric RTP (for phones behind NAT, which send
from an address their SDP does not name) lets a leg *latch* onto the address the party really sends
from; done carelessly it lets a stranger take the stream over ("RTP bleed": Asterisk AST-2017-005 and
AST-2017-008, rtpengine CVE-2025-53399). The rules here follow those fixes:

1. Before the first packet, a packet from the SDP's own address and port is accepted at once (it is
   where the signalling said the party is). With `symmetric` on, another source may be latched instead,
   but only within `window` seconds of the arming (or of the answer, `open_window`) and only after it
   has sent `packets` consecutive in-sequence packets over at least `silence` seconds during which the
   SDP's address said nothing: a stranger racing the first packet loses to the party itself.
2. Once latched, the source moves only when the latched source has been silent for `silence` seconds
   AND the new source has then sent `packets` consecutive in-sequence packets (a NAT rebinding recovers
   within `silence` plus a few packets). A packet from the SDP's own address may take the stream back
   from a learned source after `packets` in-sequence packets, silent or not.
3. Without `symmetric`, only the SDP's address and port is ever accepted (a trunk that sends from where
   it says).
4. A new description (`arm` with another address: re-INVITE, UPDATE) starts over from rule 1.

`packet` is only called for a packet that does not come from `source`; the caller's hot path compares
the address itself and stamps `seen`. Time is passed in (seconds, any monotonic clock).
"""

from __future__ import annotations

Addr = tuple[str, int]

ACCEPTED, DROPPED, LATCHED, MOVED = 0, 1, 2, 3
"""What `packet` decided: keep it, drop it, keep it as the first source latched, keep it as the new source."""

_NEVER = float("-inf")


class Latch:
    """The accepted source of one leg's RTP, and the candidate that may replace it."""

    __slots__ = ("_cand", "_cand_count", "_cand_seq", "_cand_since", "_last", "armed_at", "expected", "moves",
                 "packets", "previous", "seen", "silence", "source", "symmetric", "window")

    def __init__(self, *, packets: int = 4, silence: float = 0.5, window: float = 5.0, symmetric: bool = True) -> None:
        if packets < 1:
            raise ValueError(f"latching needs at least 1 in-sequence packet, not {packets}")
        self.packets = packets
        self.silence = silence
        self.window = window
        self.symmetric = symmetric
        self.expected: Addr | None = None  # where the SDP says the party is
        self.source: Addr | None = None  # the one address accepted right now (None: not latched yet)
        self.previous: Addr | None = None  # the source latched before the last latch or move, for the event
        self._last: Addr | None = None
        self.seen = _NEVER  # when `source` last sent
        self.armed_at = _NEVER
        self.moves = 0  # times the source became an address other than the one before (or than the SDP's)
        self._cand: Addr | None = None
        self._cand_seq = -1
        self._cand_count = 0
        self._cand_since = _NEVER

    def __repr__(self) -> str:
        return f"<Latch {self.source} (SDP {self.expected}, symmetric={self.symmetric})>"

    def arm(self, expected: Addr, now: float) -> None:
        """The party's description names `expected`; a new address forgets the latched source (rule 4)."""
        if expected == self.expected and self.source is not None:
            return  # the same address again (hold, resume, codec change): the latch stands
        self.expected = expected
        self.source = None
        self.seen = _NEVER
        self.armed_at = now
        self._cand = None

    def open_window(self, now: float) -> None:
        """The call was answered: a party behind NAT starts sending now, so its learning window starts now."""
        if self.source is None:
            self.armed_at = now

    def packet(self, addr: Addr, seq: int, now: float) -> int:
        """Decide on a packet from `addr` (not the current source) with RTP sequence number `seq` at `now`."""
        source = self.source
        if source is None:
            if addr == self.expected:
                return self._take(addr, now, LATCHED)
            if not self.symmetric or now - self.armed_at > self.window:
                return DROPPED
            if self._count(addr, seq, now) and now - self._cand_since >= self.silence:
                return self._take(addr, now, LATCHED)
            return DROPPED
        if addr == self.expected:
            if self._count(addr, seq, now):
                return self._take(addr, now, MOVED)  # the SDP's own address takes its stream back
            return DROPPED
        if not self.symmetric:
            return DROPPED
        if now - self.seen < self.silence:
            self._cand = None  # the source still talks: nothing counts toward replacing it
            return DROPPED
        if self._count(addr, seq, now):
            return self._take(addr, now, MOVED)
        return DROPPED

    def _count(self, addr: Addr, seq: int, now: float) -> bool:
        """Count an in-sequence packet of the candidate `addr`; True when it has sent enough."""
        if addr == self._cand and seq == (self._cand_seq + 1) & 0xFFFF:
            self._cand_count += 1
        else:
            self._cand, self._cand_count, self._cand_since = addr, 1, now
        self._cand_seq = seq
        return self._cand_count >= self.packets

    def _take(self, addr: Addr, now: float, verdict: int) -> int:
        self.previous = self._last
        self._last = addr
        if addr != (self.source if self.source is not None else self.expected):
            self.moves += 1
        self.source = addr
        self.seen = now
        self._cand = None
        return verdict
