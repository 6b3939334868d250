"""One asyncio timer at the next deadline of a sans-IO core: the shell every core's timers share.

A sans-IO core (the SIP transaction table, the ACD router, ...) keeps its timers as deadlines and says
when the earliest is (`next_deadline()`); its shell runs what is due (`fire(now)`) when the loop reaches it.
`DeadlineTimer` holds the one loop timer that does this. The shell calls `arm()` after every call into the
core that may have set an earlier deadline; `arm()` moves the loop timer only when the core's next
deadline is earlier than the one already armed, so a deadline that moved later (a cancelled timer) costs
one early wake-up that finds nothing due and re-arms, not a cancel and a new handle on every message.

Layer L0: imports nothing of Hatif.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """Arms one loop timer at `next_deadline()` and, when it is reached, calls `fire(now)` and re-arms.

    `next_deadline` returns a time on the loop's clock (`loop.time()`), or None when nothing is due; `fire`
    gets the loop's time when the timer ran. The SIP server arms this per message, so `arm()` allocates
    nothing unless it must move the loop timer.
    """

    __slots__ = ("_at", "_fire", "_handle", "_loop", "_next_deadline", "_on_time")

    def __init__(self, loop: asyncio.AbstractEventLoop, next_deadline: Callable[[], float | None],
                 fire: Callable[[float], object]) -> None:
        self._loop = loop
        self._next_deadline = next_deadline
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None
        self._on_time = self._run  # bound once: arming does not make a new bound method each time

    @property
    def armed_at(self) -> float | None:
        """The loop time the timer is armed for, None when it is not armed."""
        return self._at

    def arm(self) -> None:
        """Make sure the loop timer runs by the core's next deadline (call after anything that may set one)."""
        deadline = self._next_deadline()
        if deadline is None or (self._at is not None and self._at <= deadline):
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self._loop.call_at(deadline, self._on_time)

    def close(self) -> None:
        """Disarm for good (the shell is closing): later `arm()` calls do nothing, so no timer of the core
        runs on a closed socket."""
        self._next_deadline = _never
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None

    def _run(self) -> None:
        self._handle = None
        self._at = None
        self._fire(self._loop.time())
        self.arm()


def _never() -> None:
    return None
