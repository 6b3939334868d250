"""Bans: failed authentications and request floods counted per source address (SECURITY.md "Bans").

Sliding windows, time passed in, memory bounded: past `max_tracked` addresses the least recently seen
ones are forgotten (an attacker rotating addresses cannot grow the table without bound). Defaults follow
the rule book: 10 failures a minute, or more than 16 requests in 2 s (Kamailio's pike), silence the
address for 300 s. Other addresses, even using the same account, are not affected.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Track:
    failures: deque[float] = field(default_factory=deque)
    requests: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0


class BanList:
    """Per-address counters and bans."""

    def __init__(self, failure_limit: int = 10, failure_window: float = 60.0, flood_limit: int = 16,
                 flood_window: float = 2.0, ban_time: float = 300.0, max_tracked: int = 100_000) -> None:
        self.failure_limit = failure_limit
        self.failure_window = failure_window
        self.flood_limit = flood_limit
        self.flood_window = flood_window
        self.ban_time = ban_time
        self.max_tracked = max_tracked
        self._tracks: OrderedDict[str, _Track] = OrderedDict()

    def _track(self, addr: str) -> _Track:
        t = self._tracks.get(addr)
        if t is None:
            t = _Track()
            self._tracks[addr] = t
            while len(self._tracks) > self.max_tracked:
                self._tracks.popitem(last=False)
        else:
            self._tracks.move_to_end(addr)
        return t

    def is_banned(self, addr: str, now: float) -> bool:
        t = self._tracks.get(addr)
        return t is not None and t.banned_until > now

    def _ban(self, addr: str, t: _Track, now: float, why: str) -> bool:
        if t.banned_until > now:
            return False
        t.banned_until = now + self.ban_time
        t.failures.clear()
        t.requests.clear()
        log.warning("address banned", extra={"fields": {"source": addr, "reason": why, "seconds": self.ban_time}})
        return True

    def record_failure(self, addr: str, now: float) -> bool:
        """Count a failed authentication; True when this one caused a ban."""
        t = self._track(addr)
        q = t.failures
        q.append(now)
        while q and q[0] <= now - self.failure_window:
            q.popleft()
        if len(q) >= self.failure_limit:
            return self._ban(addr, t, now, f"{len(q)} failed authentications in {self.failure_window:g} s")
        return False

    def record_request(self, addr: str, now: float) -> bool:
        """Count a request (trusted endpoints are not counted by the caller); True when it caused a ban."""
        t = self._track(addr)
        q = t.requests
        q.append(now)
        while q and q[0] <= now - self.flood_window:
            q.popleft()
        if len(q) > self.flood_limit:
            return self._ban(addr, t, now, f"more than {self.flood_limit} requests in {self.flood_window:g} s")
        return False

    def banned(self, now: float) -> list[tuple[str, float]]:
        return [(a, t.banned_until) for a, t in self._tracks.items() if t.banned_until > now]

    def unban(self, addr: str) -> None:
        t = self._tracks.get(addr)
        if t is not None:
            t.banned_until = 0.0

    def __len__(self) -> int:
        return len(self._tracks)
