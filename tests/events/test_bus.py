"""The in-process bus: sequence numbers per stream, inline listeners, bounded subscriptions, catching up."""

from __future__ import annotations

import asyncio

import pytest

from hatif.bus import Bus, Dropped, Gap, accepting
from hatif.events import AgentStateChanged, CallEnded, CallOffered, Event, QueueEntered


def _call(tenant: str, n: int) -> CallOffered:
    return CallOffered(tenant=tenant, at=float(n), call_id=f"c{n}", caller="1001", called="600")


def test_each_stream_numbers_its_own_events_from_one() -> None:
    bus = Bus()
    first = bus.publish(_call("a", 1))
    agent = bus.publish(AgentStateChanged(tenant="a", at=1.0, agent="1001"))
    second = bus.publish(_call("b", 2))
    assert (first.seq, agent.seq, second.seq) == (1, 1, 2)
    assert (bus.last("calls"), bus.last("agents"), bus.last("queues")) == (2, 1, 0)


def test_a_listener_runs_inline_with_its_filter_and_a_failing_one_harms_nobody() -> None:
    bus = Bus()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("projection bug")

    bus.listen(broken)
    stop = bus.listen(seen.append, accepting(streams=["calls"], tenant="a"))
    bus.publish(_call("a", 1))
    bus.publish(_call("b", 2))
    bus.publish(QueueEntered(tenant="a", at=3.0, queue="sales", call_id="c1"))
    assert [e.seq for e in seen] == [1]
    stop()
    bus.publish(_call("a", 4))
    assert len(seen) == 1


def test_a_filter_with_an_unknown_stream_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown event streams: cals"):
        accepting(streams=["cals"])


def test_a_subscriber_reads_its_tenants_events_in_order() -> None:
    async def run() -> list[tuple[str, int]]:
        bus = Bus()
        sub = bus.subscribe(accepting(tenant="a"))
        for n in range(1, 7):
            bus.publish(_call("a" if n % 2 else "b", n))
        bus.close()
        return [(e.tenant, e.seq) async for e in sub]
    assert asyncio.run(asyncio.wait_for(run(), 5)) == [("a", 1), ("a", 3), ("a", 5)]


def test_a_slow_subscriber_is_dropped_with_a_reason_and_the_publisher_never_waits() -> None:
    async def run() -> None:
        bus = Bus()
        slow = bus.subscribe(limit=10)
        fast = bus.subscribe(limit=100)
        for n in range(50):
            bus.publish(_call("a", n))  # no await: publishing never yields to a consumer
        assert slow.reason == "slow consumer: 10 events waiting" and slow.pending == 0
        with pytest.raises(Dropped, match="slow consumer"):
            await slow.__anext__()
        assert fast.pending == 50
        bus.publish(_call("a", 99))
        assert fast.pending == 51
    asyncio.run(asyncio.wait_for(run(), 5))


def test_a_reconnecting_subscriber_gets_what_it_missed_first_then_what_comes() -> None:
    async def run() -> list[int]:
        bus = Bus()
        for n in range(1, 6):
            bus.publish(_call("a", n))
        sub = bus.subscribe(after={"calls": 3})
        bus.publish(_call("a", 6))
        bus.close()
        return [e.seq async for e in sub]
    assert asyncio.run(asyncio.wait_for(run(), 5)) == [4, 5, 6]


def test_asking_for_events_older_than_the_history_is_a_gap_not_a_silent_loss() -> None:
    bus = Bus(history=3)
    for n in range(1, 8):
        bus.publish(CallEnded(tenant="a", at=float(n), call_id=f"c{n}"))
    assert [e.seq for e in bus.since("calls", 4)] == [5, 6, 7]
    with pytest.raises(Gap, match="calls: events 3-4 are no longer kept"):
        bus.since("calls", 2)
    assert bus.since("queues", 0) == []
