"""The one timer shell of the sans-IO cores (`hatif.clock.DeadlineTimer`): a fake loop, then a real one."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, cast

from hatif.clock import DeadlineTimer


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two methods of a loop the timer uses, and a clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[FakeHandle] = []
        self._heap: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        return handle

    def advance(self, to: float) -> None:
        while self._heap and self._heap[0][0] <= to:
            when, _, handle = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not handle.cancelled:
                handle.callback()
        self.now = to


class Core:
    """A sans-IO core with a list of deadlines: fire() runs the due ones, as TransactionTable.fire_due does."""

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.fired: list[tuple[float, float]] = []  # (deadline, now)

    def next_deadline(self) -> float | None:
        return min(self.deadlines, default=None)

    def fire(self, now: float) -> None:
        for d in sorted(d for d in self.deadlines if d <= now):
            self.deadlines.remove(d)
            self.fired.append((d, now))


def make() -> tuple[FakeLoop, Core, DeadlineTimer]:
    loop = FakeLoop()
    core = Core()
    return loop, core, DeadlineTimer(cast(asyncio.AbstractEventLoop, cast(Any, loop)), core.next_deadline, core.fire)


def test_nothing_due_arms_nothing() -> None:
    loop, _, timer = make()
    timer.arm()
    assert loop.handles == [] and timer.armed_at is None


def test_fires_at_the_deadline_and_rearms_for_the_next() -> None:
    loop, core, timer = make()
    core.deadlines = [1.0, 3.0]
    timer.arm()
    assert timer.armed_at == 1.0
    loop.advance(0.5)
    assert core.fired == []
    loop.advance(1.0)
    assert core.fired == [(1.0, 1.0)] and timer.armed_at == 3.0
    loop.advance(10.0)
    assert core.fired == [(1.0, 1.0), (3.0, 3.0)] and timer.armed_at is None


def test_a_later_deadline_keeps_the_armed_timer_an_earlier_one_moves_it() -> None:
    loop, core, timer = make()
    core.deadlines = [2.0]
    timer.arm()
    core.deadlines.append(5.0)
    timer.arm()  # later: the armed timer stays, no new handle (the hot path of the SIP server)
    timer.arm()
    assert len(loop.handles) == 1 and timer.armed_at == 2.0
    core.deadlines.append(1.0)
    timer.arm()  # earlier: the old handle is cancelled, a new one armed
    assert len(loop.handles) == 2 and loop.handles[0].cancelled and timer.armed_at == 1.0
    loop.advance(6.0)
    assert [d for d, _ in core.fired] == [1.0, 2.0, 5.0]


def test_a_cancelled_deadline_costs_one_early_wakeup() -> None:
    loop, core, timer = make()
    core.deadlines = [1.0]
    timer.arm()
    core.deadlines = [4.0]  # the core's timer moved later (cancelled and re-set)
    timer.arm()
    assert timer.armed_at == 1.0
    loop.advance(1.0)  # wakes, finds nothing due, re-arms at the real deadline
    assert core.fired == [] and timer.armed_at == 4.0
    loop.advance(4.0)
    assert core.fired == [(4.0, 4.0)]


def test_fire_gets_the_loop_time_of_the_wakeup() -> None:
    loop, core, timer = make()
    core.deadlines = [1.0, 1.5]
    timer.arm()
    loop.now = 2.0  # the loop ran late: both deadlines are due in one wake-up
    loop.advance(2.0)
    assert core.fired == [(1.0, 2.0), (1.5, 2.0)]


def test_close_disarms_for_good() -> None:
    loop, core, timer = make()
    core.deadlines = [1.0]
    timer.arm()
    timer.close()
    assert loop.handles[0].cancelled and timer.armed_at is None
    core.deadlines.append(0.5)
    timer.arm()
    loop.advance(5.0)
    assert core.fired == [] and len(loop.handles) == 1


def test_fire_may_set_new_deadlines_and_they_are_armed() -> None:
    loop = FakeLoop()
    seen: list[float] = []
    deadlines = [1.0]

    def fire(now: float) -> None:
        deadlines.remove(deadlines[0])
        seen.append(now)
        if len(seen) < 3:
            deadlines.append(now + 1.0)

    timer = DeadlineTimer(cast(asyncio.AbstractEventLoop, cast(Any, loop)),
                          lambda: min(deadlines, default=None), fire)
    timer.arm()
    loop.advance(10.0)
    assert seen == [1.0, 2.0, 3.0] and timer.armed_at is None


def test_on_a_real_loop_with_tiny_deadlines() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        core = Core()
        core.deadlines = [t0 + 0.02, t0 + 0.01, t0 + 0.03]
        timer = DeadlineTimer(loop, core.next_deadline, core.fire)
        timer.arm()
        for _ in range(100):
            if len(core.fired) == 3:
                break
            await asyncio.sleep(0.01)
        timer.close()
        assert all(now >= deadline for deadline, now in core.fired)
        return [d - t0 for d, _ in core.fired]

    fired = asyncio.run(asyncio.wait_for(main(), 5.0))
    assert [round(d, 2) for d in fired] == [0.01, 0.02, 0.03]
