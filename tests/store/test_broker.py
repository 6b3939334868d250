"""Two Hatif processes' buses joined by the real NATS JetStream at 127.0.0.1:4222 and one store: an event emitted
through one reaches the other's bus within 100 ms, both see every stream in one order, and JetStream keeps one
copy of each event. Skipped, with the reason, only when no NATS server answers there."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from hatif.broker import BrokerError, NatsRelay, stream_name, subject
from hatif.bus import Bus
from hatif.events import AgentStateChanged, CallOffered, Event
from hatif.outbox import Outbox
from hatif.store import Store
from hatif.store.eventlog import EventLog

NATS_URL = "nats://127.0.0.1:4222"


def _nats_absent() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=2):
            return None
    except OSError as e:
        return f"no NATS server at {NATS_URL}: {e}"


pytestmark = pytest.mark.skipif(_nats_absent() is not None, reason=_nats_absent() or "")


@pytest.fixture
def space() -> Iterator[str]:
    """A broker space of this test alone (its JetStream stream is deleted afterwards): the store of each test
    starts its numbers at 1, and JetStream would take a second `calls:1` for a duplicate."""
    import nats

    name = f"t{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(stream_name(name))
        except Exception:
            pass  # never created (the test failed before)
        finally:
            await nc.close()
    asyncio.run(asyncio.wait_for(drop(), 10))


class Node:
    """What one `hatif serve` process holds of the event layer: bus, outbox on its own store connection, relay."""

    def __init__(self, store: Store, space: str) -> None:
        self.bus = Bus()
        self.outbox = Outbox(self.bus, EventLog(store))
        self.relay = NatsRelay(NATS_URL, self.outbox.arrive, on_reconnect=self.outbox.catch_up, space=space)
        self.outbox.relay = self.relay

    async def start(self) -> None:
        await self.outbox.start()
        await self.relay.start()

    async def close(self) -> None:
        await self.outbox.close()
        await self.relay.close()


def test_an_agent_state_set_on_one_node_reaches_the_other_within_100_ms(open_store: Callable[[], Store],
                                                                         space: str) -> None:
    async def run() -> list[float]:
        a, b = Node(open_store(), space), Node(open_store(), space)
        await a.start()
        await b.start()
        try:
            delays: list[float] = []
            sub = b.bus.subscribe()
            for i in range(20):
                sent = time.perf_counter()
                await a.outbox.emit(AgentStateChanged(tenant="acme", at=time.time(), agent=f"a{i}",
                                                      state="not_ready", reason="lunch"))
                got = await asyncio.wait_for(sub.__anext__(), 2)
                delays.append(time.perf_counter() - sent)
                assert isinstance(got, AgentStateChanged) and got.agent == f"a{i}" and got.reason == "lunch"
            return delays
        finally:
            await a.close()
            await b.close()

    delays = asyncio.run(asyncio.wait_for(run(), 60))
    assert max(delays) < 0.1, delays


def test_two_nodes_writing_at_once_see_one_order(open_store: Callable[[], Store], space: str) -> None:
    async def run() -> tuple[list[Event], list[Event], list[Event]]:
        a, b = Node(open_store(), space), Node(open_store(), space)
        await a.start()
        await b.start()
        try:
            futures = []
            for i in range(200):
                futures.append(a.outbox.emit(CallOffered(tenant="a", at=float(i), call_id=f"a{i}")))
                futures.append(b.outbox.emit(CallOffered(tenant="b", at=float(i), call_id=f"b{i}")))
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            acked = list(await asyncio.gather(*futures))
            for _ in range(500):  # bounded: 5 s for the last events to cross
                if a.bus.last("calls") == b.bus.last("calls") == 400:
                    break
                await asyncio.sleep(0.01)
            return acked, a.bus.since("calls", 0), b.bus.since("calls", 0)
        finally:
            await a.close()
            await b.close()

    acked, a_seen, b_seen = asyncio.run(asyncio.wait_for(run(), 60))
    assert sorted(e.seq for e in acked) == list(range(1, 401))
    assert [e.seq for e in a_seen] == [e.seq for e in b_seen] == list(range(1, 401))
    assert [(e.tenant, getattr(e, "call_id", "")) for e in a_seen] == \
        [(e.tenant, getattr(e, "call_id", "")) for e in b_seen]


def test_jetstream_keeps_one_copy_of_each_event(store: Store, space: str) -> None:
    import nats

    async def run() -> tuple[int, int]:
        node = Node(store, space)
        await node.start()
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        try:
            tenant = "acme"
            first = await node.outbox.emit(CallOffered(tenant=tenant, at=1.0, call_id="x"))
            node.relay.publish(first)  # sent twice: JetStream's Nats-Msg-Id drops the second
            await node.relay.flush()
            await asyncio.sleep(0.2)
            info = await js.stream_info(stream_name(space), subjects_filter=subject(first, space))
            msg = await js.get_last_msg(stream_name(space), subject(first, space))
            assert json.loads(msg.data)["call_id"] == "x"
            return (info.state.subjects or {}).get(subject(first, space), 0), first.seq
        finally:
            await nc.close()
            await node.close()

    copies, seq = asyncio.run(asyncio.wait_for(run(), 30))
    assert copies == 1 and seq == 1


def test_an_unreachable_broker_is_named() -> None:
    async def run() -> None:
        relay = NatsRelay("nats://127.0.0.1:9", lambda e: None)
        await relay.start()

    with pytest.raises(BrokerError, match=r"cannot reach NATS at nats://127\.0\.0\.1:9"):
        asyncio.run(asyncio.wait_for(run(), 30))
