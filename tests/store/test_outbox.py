"""The outbox on SQLite and PostgreSQL: an event is in the log before anyone sees it, numbered once in its stream,
delivered in order with no gap even when another process writes the same streams, and a consumer that was down
reads what it missed from the log. kill -9 loses no acknowledged event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from hatif.bus import Bus, Gap
from hatif.events import AgentStateChanged, CallOffered, Event, QueueEntered
from hatif.outbox import Outbox
from hatif.store import Store, StoreError
from hatif.store.eventlog import EventLog

SRC = Path(__file__).resolve().parents[2] / "src"


def offered(i: int, tenant: str = "acme") -> CallOffered:
    return CallOffered(tenant=tenant, at=1_780_000_000.0 + i, call_id=f"c{i}", caller="1001", called="600")


def state(agent: str, tenant: str = "acme") -> AgentStateChanged:
    return AgentStateChanged(tenant=tenant, at=1_780_000_000.0, agent=agent, state="not_ready", reason="lunch")


async def collect(bus: Bus, n: int) -> list[Event]:
    sub = bus.subscribe(limit=10_000)
    out: list[Event] = []
    async for e in sub:
        out.append(e)
        if len(out) == n:
            break
    return out


def test_emit_stores_numbers_and_then_delivers(store: Store) -> None:
    log = EventLog(store)

    async def run() -> tuple[list[Event], list[Event], list[Event]]:
        bus = Bus()
        outbox = Outbox(bus, log)
        await outbox.start()
        seen: list[Event] = []

        def check(e: Event) -> None:  # a listener runs when the bus delivers: the event is in the log by then
            assert [x.seq for x in log.since(e.STREAM, e.seq - 1, limit=1)] == [e.seq]
            seen.append(e)
        bus.listen(check)
        subscribed = asyncio.ensure_future(collect(bus, 30))
        await asyncio.sleep(0)
        futures = [outbox.emit(offered(i)) for i in range(20)]
        futures += [outbox.emit(state(f"a{i}")) for i in range(10)]
        acked = list(await asyncio.gather(*futures))
        await outbox.close()
        return acked, seen, await asyncio.wait_for(subscribed, 5)

    acked, seen, subscribed = asyncio.run(asyncio.wait_for(run(), 30))
    assert [e.seq for e in acked] == list(range(1, 21)) + list(range(1, 11))
    assert [e.call_id for e in acked[:20] if isinstance(e, CallOffered)] == [f"c{i}" for i in range(20)]
    assert seen == acked == subscribed
    assert log.last()["calls"] == 20 and log.last()["agents"] == 10
    assert log.since("calls", 0, limit=1000) == acked[:20]
    assert log.since("agents", 4, limit=3) == acked[24:27]
    assert log.since("calls", 0, tenant="other") == []


def test_a_restart_continues_the_numbers_and_a_late_consumer_reads_the_log(
        open_store: Callable[[], Store]) -> None:
    store = open_store()

    async def first() -> None:
        outbox = Outbox(Bus(), EventLog(store))
        await outbox.start()
        await asyncio.gather(*(outbox.emit(offered(i)) for i in range(50)))
        await outbox.close()

    async def second() -> tuple[Event, list[Event], list[Event]]:
        bus = Bus()
        outbox = Outbox(bus, EventLog(open_store()))
        await outbox.start()
        again = await outbox.emit(offered(50))
        with pytest.raises(Gap):  # the new process's memory starts at its start ...
            bus.since("calls", 10)
        missed = await outbox.since("calls", 10)  # ... so what a consumer missed comes from the log
        tenant_only = await outbox.since("calls", 45, tenant="acme")
        await outbox.close()
        return again, missed, tenant_only

    asyncio.run(asyncio.wait_for(first(), 30))
    again, missed, tenant_only = asyncio.run(asyncio.wait_for(second(), 30))
    assert again.seq == 51
    assert [e.seq for e in missed] == list(range(11, 52))
    assert [e.seq for e in tenant_only] == list(range(46, 52))


def test_two_writers_of_one_log_each_deliver_every_event_in_one_order(open_store: Callable[[], Store]) -> None:
    """Two processes' outboxes on one database (no broker between them): each one's bus still gets every event
    of the stream, numbered once, in order, with the other's read from the log where they fall between."""
    a_store, b_store = open_store(), open_store()

    async def run() -> tuple[list[Event], list[Event], list[Event]]:
        a_bus, b_bus = Bus(), Bus()
        a, b = Outbox(a_bus, EventLog(a_store)), Outbox(b_bus, EventLog(b_store))
        await a.start()
        await b.start()
        a_seen = asyncio.ensure_future(collect(a_bus, 60))
        await asyncio.sleep(0)
        acked: list[Event] = []
        for round_ in range(3):
            acked += await asyncio.gather(*(b.emit(offered(100 * round_ + i, "b")) for i in range(10)))
            acked += await asyncio.gather(*(a.emit(offered(100 * round_ + i, "a")) for i in range(10)))
        seen = await asyncio.wait_for(a_seen, 5)
        for _ in range(500):  # b reads the ten of a before each of its own writes from the log; bounded wait
            if b_bus.last("calls") == 50:
                break
            await asyncio.sleep(0.01)
        await a.close()
        await b.close()
        return acked, seen, list(b_bus.since("calls", 0))

    acked, a_seen, b_seen = asyncio.run(asyncio.wait_for(run(), 30))
    assert sorted(e.seq for e in acked) == list(range(1, 61))
    assert [e.seq for e in a_seen] == list(range(1, 61))
    assert {(e.tenant, e.seq) for e in a_seen} == {(e.tenant, e.seq) for e in acked}
    # b delivered what it wrote and, before each of its later writes, a's events numbered between them
    assert [e.seq for e in b_seen] == list(range(1, 51))


def test_an_event_the_store_refuses_is_not_acknowledged_and_nobody_sees_it(store: Store) -> None:
    async def run() -> tuple[BaseException | None, list[Event]]:
        bus = Bus()
        outbox = Outbox(bus, EventLog(store))
        await outbox.start()
        seen: list[Event] = []
        bus.listen(seen.append)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE event_log")
        future = outbox.emit(offered(1))
        await asyncio.wait([future], timeout=10)
        await outbox.close()
        return future.exception(), seen

    error, seen = asyncio.run(asyncio.wait_for(run(), 30))
    assert isinstance(error, StoreError) and "write events to" in str(error)
    assert seen == []


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from hatif.bus import Bus
    from hatif.events import CallOffered
    from hatif.outbox import Outbox
    from hatif.store import Store
    from hatif.store.eventlog import EventLog

    async def main() -> None:
        outbox = Outbox(Bus(), EventLog(Store(sys.argv[1])))
        await outbox.start()
        for i in range(100_000):
            futures = [outbox.emit(CallOffered(tenant="acme", at=float(i), call_id=f"k{i}-{j}"))
                       for j in range(5)]
            for f in futures:
                e = await f
                sys.stdout.write(f"{e.seq} {e.call_id}\\n")
            sys.stdout.flush()

    asyncio.run(main())
""")


def test_kill_9_loses_no_acknowledged_event(store: Store, db_url: str) -> None:
    """A process emitting as fast as it can is killed with SIGKILL after a few hundred acknowledgements: every
    event it printed as acknowledged is in the log, with its number and body."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, db_url], stdout=subprocess.PIPE, env=env, text=True)
    acked: list[tuple[int, str]] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seq, call_id = line.split()
            acked.append((int(seq), call_id))
            if len(acked) >= 300:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(acked) >= 300
    stored = {(e.seq, e.call_id) for e in EventLog(store).since("calls", 0, limit=100_000)
              if isinstance(e, CallOffered)}
    assert set(acked) <= stored
    assert sorted(s for s, _ in stored) == list(range(1, len(stored) + 1))  # numbered once, no hole


def test_unknown_stream_is_refused_by_name(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown event stream 'calendar'"):
        EventLog(store).since("calendar", 0)


def test_queue_and_call_streams_count_apart(store: Store) -> None:
    log = EventLog(store)
    stored = log.append([offered(1), QueueEntered(tenant="acme", at=1.0, call_id="c1", queue="sales"),
                         offered(2)])
    assert [(e.STREAM, e.seq) for e in stored] == [("calls", 1), ("queues", 1), ("calls", 2)]
    assert log.count("calls") == 2 and log.count("queues") == 1


def test_catch_up_reads_what_another_writer_committed(open_store: Callable[[], Store]) -> None:
    """What a node does when its broker connection comes back: the events it did not hear of come from the log."""
    a_store, b_store = open_store(), open_store()

    async def run() -> list[int]:
        b_bus = Bus()
        a = Outbox(Bus(), EventLog(a_store))
        b = Outbox(b_bus, EventLog(b_store), limit=3)  # pages of 3: catching up takes several reads
        await a.start()
        await b.start()
        await asyncio.gather(*(a.emit(state(f"x{i}")) for i in range(7)))
        assert b_bus.last("agents") == 0  # no broker: b has heard nothing yet
        await b.catch_up()
        await a.close()
        await b.close()
        return [e.seq for e in b_bus.since("agents", 0)]

    assert asyncio.run(asyncio.wait_for(run(), 30)) == list(range(1, 8))
