"""Bans: failed authentications and request floods counted per source address (SECURITY.md "Bans").

Sliding windows, time passed in, memory bounded. Defaults follow the rule book: 10 failed
authentications within 60 s, or more than 16 unproven requests within 2 s (Kamailio's pike), silence the
address for 300 s. Other addresses, even ones using the same account, are not affected; trusted trunks are
exempt because the caller does not count them, and so is an address that passed digest within the last
`proven_time` seconds (the caller asks `is_proven` before counting a request toward the flood limit).
Failed authentications count whatever the address did before.

`RateLimiter` is the other half: a token bucket per authenticated user (or proven address) whose excess is
answered `503` with `Retry-After` rather than banned.

Counters and bans live in two tables, each holding at most `max_tracked` addresses. Counters forget the
least recently seen address first, so an attacker rotating addresses cannot grow them; bans are kept
apart, in the order they end, so a flood of fresh addresses cannot push a live ban out early (only a
table full of live bans drops the one closest to its end).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Counts:
    """The recent events of one address: times of failures and of requests, oldest first."""

    failures: deque[float]
    requests: deque[float]
    proven_until: float = 0.0


def _slide(times: deque[float], now: float, window: float) -> int:
    """Append `now`, drop the times that left the window (now - window, now], return how many remain."""
    times.append(now)
    while times and times[0] <= now - window:
        times.popleft()
    return len(times)


class BanList:
    """Per-address failure and request counters, and the bans they cause."""

    def __init__(self, failure_limit: int = 10, failure_window: float = 60.0, flood_limit: int = 16,
                 flood_window: float = 2.0, ban_time: float = 300.0, max_tracked: int = 100_000,
                 proven_time: float = 60.0) -> None:
        if min(failure_limit, flood_limit, max_tracked) < 1 or min(failure_window, flood_window, ban_time) <= 0:
            raise ValueError("BanList limits, windows, ban_time and max_tracked must be positive")
        self.failure_limit = failure_limit
        self.failure_window = failure_window
        self.flood_limit = flood_limit
        self.flood_window = flood_window
        self.ban_time = ban_time
        self.max_tracked = max_tracked
        self.proven_time = proven_time
        self._counts: OrderedDict[str, _Counts] = OrderedDict()  # least recently seen first
        self._bans: OrderedDict[str, float] = OrderedDict()  # address -> end of ban, soonest end first

    def _counts_of(self, addr: str) -> _Counts:
        counts = self._counts.get(addr)
        if counts is None:
            # A window never needs more than limit + 1 entries to decide, so none grows past that.
            counts = _Counts(deque(maxlen=self.failure_limit), deque(maxlen=self.flood_limit + 1))
            self._counts[addr] = counts
            while len(self._counts) > self.max_tracked:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(addr)
        return counts

    def _expire(self, now: float) -> None:
        while self._bans:
            addr, until = next(iter(self._bans.items()))
            if until > now:
                return
            del self._bans[addr]

    def is_banned(self, addr: str, now: float) -> bool:
        until = self._bans.get(addr)
        return until is not None and until > now

    def _ban(self, addr: str, now: float, reason: str, count: int) -> bool:
        self._expire(now)
        self._bans.pop(addr, None)
        self._bans[addr] = now + self.ban_time
        while len(self._bans) > self.max_tracked:
            self._bans.popitem(last=False)
        self._counts.pop(addr, None)
        log.warning("address banned", extra={"fields": {
            "source": addr, "reason": reason, "count": count, "seconds": self.ban_time}})
        return True

    def record_failure(self, addr: str, now: float) -> bool:
        """Count a failed authentication from `addr`; True when this one caused a ban."""
        if self.is_banned(addr, now):
            return False
        counts = self._counts_of(addr)
        n = _slide(counts.failures, now, self.failure_window)
        if n >= self.failure_limit:
            return self._ban(addr, now, f"failed authentications within {self.failure_window:g} s", n)
        return False

    def record_success(self, addr: str, now: float) -> None:
        """A request from `addr` passed digest: its unproven requests stop counting toward the flood limit
        for `proven_time` seconds (failures still count)."""
        if not self.is_banned(addr, now):
            counts = self._counts_of(addr)
            counts.proven_until = now + self.proven_time
            counts.requests.clear()

    def is_proven(self, addr: str, now: float) -> bool:
        """Whether `addr` passed digest within the last `proven_time` seconds."""
        counts = self._counts.get(addr)
        return counts is not None and counts.proven_until > now

    def record_request(self, addr: str, now: float) -> bool:
        """Count an unproven request from `addr` (the caller skips trusted trunks and proven addresses); True
        when this one caused a ban."""
        if self.is_banned(addr, now):
            return False
        counts = self._counts_of(addr)
        n = _slide(counts.requests, now, self.flood_window)
        if n > self.flood_limit:
            return self._ban(addr, now, f"request flood within {self.flood_window:g} s", n)
        return False

    def banned(self, now: float) -> list[tuple[str, float]]:
        """The addresses banned at `now`, with the time each ban ends, soonest end first."""
        self._expire(now)
        return list(self._bans.items())

    def unban(self, addr: str) -> None:
        """Lift a ban by hand, and forget the address's counts."""
        self._bans.pop(addr, None)
        self._counts.pop(addr, None)

    def __len__(self) -> int:
        """How many addresses the counters track (bans are bounded apart)."""
        return len(self._counts)


class RateLimiter:
    """Token buckets, one per key (a user, or a proven address): `rate` per second on average, `burst` at once.

    Two floats per key; the least recently used key is forgotten first past `max_tracked`, which can only make
    a forgotten key's next request pass (a full bucket), never refuse one wrongly."""

    def __init__(self, rate: float, burst: int, max_tracked: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or max_tracked < 1:
            raise ValueError("RateLimiter rate, burst and max_tracked must be positive")
        self.rate = rate
        self.burst = float(burst)
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[object, list[float]] = OrderedDict()  # key -> [tokens, last time]

    def allow(self, key: object, now: float) -> bool:
        """Take one token for `key`; False when its bucket is empty (the request should get 503)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [self.burst, now]
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] < 1.0:
            return False
        bucket[0] -= 1.0
        return True

    def __len__(self) -> int:
        return len(self._buckets)
