"""Event delivery between two Hatif nodes sharing PostgreSQL (127.0.0.1:5432) and NATS (127.0.0.1:4222).

Figure: the time from `Outbox.emit` on node A to the event on node B's bus (committed to the store, then
relayed), median and p99 over sequential events, beside the peer's figure in the same run: a bare NATS
publish -> subscriber round trip between two connections (what the relay alone costs). Cleans up its schema
and JetStream stream.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import nats
import psycopg

from hatif.broker import NatsRelay, stream_name
from hatif.bus import Bus
from hatif.events import AgentStateChanged
from hatif.outbox import Outbox
from hatif.store import Store
from hatif.store.eventlog import EventLog

PG = "postgresql://127.0.0.1:5432/test"
NATS = "nats://127.0.0.1:4222"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def hatif(url: str, n: int) -> list[float]:
    space = "bench" + uuid.uuid4().hex[:8]
    stores = [Store(url), Store(url)]
    stores[0].migrate()
    nodes: list[tuple[Bus, Outbox, NatsRelay]] = []
    try:
        for store in stores:
            bus = Bus()
            outbox = Outbox(bus, EventLog(store))
            relay = NatsRelay(NATS, outbox.arrive, space=space)
            outbox.relay = relay
            await outbox.start()
            await relay.start()
            nodes.append((bus, outbox, relay))
        sub = nodes[1][0].subscribe(limit=n + 1)
        delays = []
        for i in range(n):
            sent = time.perf_counter()
            nodes[0][1].emit(AgentStateChanged(tenant="acme", at=time.time(), agent=f"a{i}", state="available"))
            await asyncio.wait_for(sub.__anext__(), 5)
            delays.append((time.perf_counter() - sent) * 1000)
        return delays
    finally:
        for _, outbox, relay in nodes:
            await outbox.close()
            await relay.close()
        nc = await nats.connect(NATS)
        try:
            await nc.jetstream().delete_stream(stream_name(space))
        finally:
            await nc.close()
        for store in stores:
            store.close()


async def bare_nats(n: int) -> list[float]:
    a, b = await nats.connect(NATS), await nats.connect(NATS)
    subject = "bench." + uuid.uuid4().hex
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def cb(msg: nats.aio.msg.Msg) -> None:
        await got.put(msg.data)
    await b.subscribe(subject, cb=cb)
    await b.flush()
    delays = []
    try:
        for i in range(n):
            sent = time.perf_counter()
            await a.publish(subject, str(i).encode())
            await asyncio.wait_for(got.get(), 5)
            delays.append((time.perf_counter() - sent) * 1000)
    finally:
        await a.close()
        await b.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    args = parser.parse_args()
    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = f"postgresql+psycopg://127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
        ours = asyncio.run(hatif(url, args.events))
        peer = asyncio.run(bare_nats(args.events))
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"events_nodes: emit -> other node's bus median {statistics.median(ours):.2f} ms, "
          f"p99 {pct(ours, 0.99):.2f} ms ({args.events} events, PostgreSQL commit included)")
    print(f"events_nodes_peer: bare NATS publish -> subscriber median {statistics.median(peer):.2f} ms, "
          f"p99 {pct(peer, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
