"""The live event feed over a real uvicorn server and a real WebSocket client (the `websockets` library): a
tenant's client sees its events in order and none of another tenant's, resumes from its last numbers without a
gap, a client that reads nothing is dropped with the reason while the publisher never waits, and a missing
token or a bad query is refused with the reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hatif.bus import Bus
from hatif.events import AgentStateChanged, CallOffered
from hatif.outbox import Outbox
from hatif.store import Store
from hatif.store.eventlog import EventLog
from hatif.web import create_api, serve_api

ACME, GLOBEX = "acme-live-token-51c0", "globex-live-token-9e2d"
TOKENS = {ACME: "acme", GLOBEX: "globex"}


def offered(tenant: str, i: int) -> CallOffered:
    return CallOffered(tenant=tenant, at=1_780_000_000.0 + i, call_id=f"{tenant}-{i}", caller="1001", called="600")


Scenario = Callable[[Outbox, Callable[..., Any]], Awaitable[Any]]


def run(store: Store, scenario: Scenario, live_limit: int = 1000) -> Any:
    async def main() -> Any:
        outbox = Outbox(Bus(), EventLog(store))
        await outbox.start()
        api = await serve_api(create_api(store, TOKENS, events=outbox, live_limit=live_limit), "127.0.0.1", 0)

        def client(token: str | None = ACME, query: str = "") -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return connect(f"ws://127.0.0.1:{api.port}/api/v1/events{query}", additional_headers=headers,
                           open_timeout=5, close_timeout=2)
        try:
            return await scenario(outbox, client)
        finally:
            await outbox.close()
            await api.stop()
    return asyncio.run(asyncio.wait_for(main(), 60))


async def receive(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    """The next `n` events, from as many messages (each an array of events) as they come in."""
    events: list[dict[str, Any]] = []
    while len(events) < n:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(message, list) and message, message
        events.extend(message)
    assert len(events) == n, f"{len(events) - n} more events than expected"
    return events


async def settled(outbox: Outbox, futures: list[asyncio.Future[Any]]) -> None:
    await asyncio.gather(*futures)
    await asyncio.sleep(0.05)


def test_a_tenant_sees_its_events_in_order_and_none_of_another(store: Store) -> None:
    async def scenario(outbox: Outbox, client: Callable[..., Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        async with client(ACME) as acme, client(GLOBEX, "?streams=agents") as globex:
            await asyncio.sleep(0.1)  # both subscribed
            futures = []
            for i in range(30):
                futures.append(outbox.emit(offered("acme", i)))
                futures.append(outbox.emit(offered("globex", i)))
            futures.append(outbox.emit(AgentStateChanged(tenant="globex", at=1.0, agent="g1", state="available")))
            await settled(outbox, futures)
            got = await receive(acme, 30)
            theirs = await receive(globex, 1)
            with pytest.raises(TimeoutError):  # nothing more for acme: globex's 30 calls never came
                await asyncio.wait_for(acme.recv(), 0.3)
            return got, theirs

    got, theirs = run(store, scenario)
    assert [e["call_id"] for e in got] == [f"acme-{i}" for i in range(30)]
    assert all(e["tenant"] == "acme" and e["event"] == "call.offered" for e in got)
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    assert [(t["event"], t["agent"]) for t in theirs] == [("agent.state", "g1")]


def test_events_that_wait_together_go_in_one_message_in_order(store: Store) -> None:
    async def scenario(outbox: Outbox, client: Callable[..., Any]) -> list[list[dict[str, Any]]]:
        async with client(ACME, "?streams=calls") as ws:
            await asyncio.sleep(0.1)
            await settled(outbox, [outbox.emit(offered("acme", i)) for i in range(250)])  # one burst
            messages: list[list[dict[str, Any]]] = []
            while sum(len(m) for m in messages) < 250:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            return messages

    messages = run(store, scenario)
    events = [e for m in messages for e in m]
    assert [e["call_id"] for e in events] == [f"acme-{i}" for i in range(250)]
    assert len(messages) < 250 and max(len(m) for m in messages) <= 100  # batched, at most BATCH a message


def test_a_client_that_reconnects_with_its_last_number_misses_nothing(store: Store) -> None:
    async def scenario(outbox: Outbox, client: Callable[..., Any]) -> tuple[list[int], list[int], list[int]]:
        async with client(ACME, "?streams=calls") as ws:
            await asyncio.sleep(0.1)
            await settled(outbox, [outbox.emit(offered("acme", i)) for i in range(10)])
            first = [e["seq"] for e in await receive(ws, 10)]
        # while it is away: 15 more (and the bus's memory is not what it relies on: the log answers too)
        await settled(outbox, [outbox.emit(offered("acme", i)) for i in range(10, 25)])
        async with client(ACME, f"?streams=calls&after=calls:{first[-1]}") as ws:
            missed = [e["seq"] for e in await receive(ws, 15)]
            await settled(outbox, [outbox.emit(offered("acme", 25))])
            live = [e["seq"] for e in await receive(ws, 1)]
        return first, missed, live

    first, missed, live = run(store, scenario)
    assert first == list(range(1, 11))
    assert missed == list(range(11, 26))
    assert live == [26]


def test_a_client_that_reads_nothing_is_dropped_and_the_publisher_never_waits(store: Store) -> None:
    async def scenario(outbox: Outbox, client: Callable[..., Any]) -> tuple[int, int, str | None]:
        async with client(ACME, "?streams=calls") as ws:
            await asyncio.sleep(0.1)
            bus = outbox.bus
            for i in range(5000):  # published straight on the bus, the way the call path hands events over
                bus.publish(offered("acme", i))  # synchronous: it cannot wait for the client
                if i % 500 == 0:
                    await asyncio.sleep(0)  # let the feed's task run (and fall behind)
            got, reason = 0, None
            try:
                for _ in range(6000):  # bounded: at most every event published, then the close
                    await asyncio.wait_for(ws.recv(), 5)
                    got += 1
            except ConnectionClosed as closed:
                reason = f"{closed.rcvd.code} {closed.rcvd.reason}" if closed.rcvd else None
            return bus.last("calls"), got, reason

    published, got, reason = run(store, scenario, live_limit=100)
    assert reason is not None and reason.startswith("4008 slow consumer: 100 events waiting"), reason
    assert published == 5000 and got < 5000


@pytest.mark.parametrize(("token", "query", "code", "reason"), [
    (None, "", 4401, "a valid bearer token is required"),
    ("not-a-token-at-all", "", 4401, "a valid bearer token is required"),
    (ACME, "?streams=calls,calendar", 4400, "streams: unknown calendar"),
    (ACME, "?after=calls:x", 4400, "after: 'calls:x' is not STREAM:NUMBER"),
])
def test_refused_clients_are_told_why(store: Store, token: str | None, query: str, code: int, reason: str) -> None:
    async def scenario(outbox: Outbox, client: Callable[..., Any]) -> tuple[int, str]:
        async with client(token, query) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code, closed.value.rcvd.reason

    got_code, got_reason = run(store, scenario)
    assert got_code == code and got_reason.startswith(reason), (got_code, got_reason)


def test_an_events_text_is_made_once_and_never_given_to_another_event() -> None:
    from hatif.events import QueueEntered
    from hatif.web.live import _Texts

    texts = _Texts(size=2)
    a = QueueEntered(tenant="acme", at=1.0, queue="sales", call_id="c-1", seq=1)
    b = QueueEntered(tenant="acme", at=2.0, queue="sales", call_id="c-2", seq=1)  # same number, another bus
    first = texts.of(a)
    assert texts.of(a) is first and '"c-1"' in first
    assert '"c-2"' in texts.of(b)
    texts.of(QueueEntered(tenant="acme", at=3.0, queue="sales", call_id="c-3", seq=2))
    assert texts.of(a) == first  # fell out of the cache: made again, the same
