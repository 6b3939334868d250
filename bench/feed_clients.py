"""The live event feed under many clients: N WebSocket clients on /api/v1/events, events published at R/s.

Figure: p50/p99 of the delay from publishing an event on the bus to a client reading it, over every event every
client read after a warm-up, and how many clients were dropped as slow; beside it, in the same run and with the
same clients, the peer: a bare `websockets` server broadcasting the same JSON to the same number of clients
(`websockets.broadcast`, no framework, no per-client filtering), which is the floor of fan-out in Python.

    python bench/feed_clients.py --clients 1000 --rates 50,100,500 --seconds 8

The server runs in a process of its own (uvloop), the clients in another; both on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import broadcast, serve

from hatif.bus import Bus
from hatif.events import Event, QueueEntered
from hatif.store import Store
from hatif.web import create_api
from hatif.web.server import ApiServer

TOKEN = "bench-feed-token-0123456789"
WARMUP = 1.0  # seconds of publishing before delays count


def _event(i: int) -> QueueEntered:
    return QueueEntered(tenant="acme", at=time.time(), queue="sales", call_id=f"c-{i}", position=1 + i % 20)


class _Source:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]:
        return self.bus.since(stream, seq)[:limit]


async def _publish(rate: float, seconds: float, send: Any) -> None:
    """`send(i)` at `rate` per second for `seconds`, in 5 ms ticks (as the outbox's group commits deliver)."""
    loop = asyncio.get_running_loop()
    start, i = loop.time(), 0
    while (now := loop.time()) - start < seconds:
        due = int((now - start) * rate)
        while i < due:
            send(i)
            i += 1
        await asyncio.sleep(0.005)


def _hatif_server(port_q: Any, go: Any, rate: float, seconds: float, clients: int) -> None:
    async def main() -> None:
        bus = Bus(history=100_000)
        with Store(path=Path(tempfile.mkdtemp()) / "hatif.db") as store:
            store.migrate()
            app = create_api(store, {TOKEN: "acme"}, events=_Source(bus), live_limit=10_000)
            server = ApiServer(app, "127.0.0.1", 0)
            await server.start()
            port_q.put(server.port)
            await asyncio.get_running_loop().run_in_executor(None, go.wait)
            await _publish(rate, seconds, lambda i: bus.publish(_event(i)))
            await asyncio.sleep(1.0)
            bus.close()
            await server.stop()
    uvloop.run(main())


def _peer_server(port_q: Any, go: Any, rate: float, seconds: float, clients: int) -> None:
    async def main() -> None:
        seq = [0]
        connected: set[Any] = set()

        async def handler(ws: Any) -> None:
            connected.add(ws)
            try:
                await ws.wait_closed()
            finally:
                connected.discard(ws)

        async with serve(handler, "127.0.0.1", 0, max_queue=None) as server:
            port_q.put(server.sockets[0].getsockname()[1])
            await asyncio.get_running_loop().run_in_executor(None, go.wait)

            def send(i: int) -> None:
                seq[0] += 1
                event = _event(i)
                text = json.dumps({**event.to_dict(), "seq": seq[0]}, ensure_ascii=False)
                broadcast(connected, text)

            await _publish(rate, seconds, send)
            await asyncio.sleep(1.0)
    uvloop.run(main())


def _clients(url: str, n: int, headers: dict[str, str], ready: Any, go: Any, out: Any, seconds: float) -> None:
    async def main() -> None:
        delays: list[float] = []
        dropped = [0]
        counted_from = [0.0]

        async def one(ws: Any) -> None:
            try:
                async for text in ws:
                    now = time.time()
                    message = json.loads(text)  # Hatif: an array of events; the peer: one event
                    for event in message if isinstance(message, list) else [message]:
                        if event["at"] >= counted_from[0]:
                            delays.append(now - event["at"])
            except websockets.ConnectionClosed as e:
                if e.rcvd is not None and e.rcvd.code == 4008:
                    dropped[0] += 1

        sockets = []
        for _ in range(n):
            sockets.append(await connect(url, additional_headers=headers, max_queue=None, open_timeout=30))
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        counted_from[0] = time.time() + WARMUP
        tasks = [asyncio.create_task(one(ws)) for ws in sockets]
        await asyncio.sleep(seconds + 1.5)
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put((delays, dropped[0]))
    uvloop.run(main())


def run(kind: str, clients: int, rate: float, seconds: float) -> str:
    ctx = mp.get_context("spawn")
    port_q, out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
    target = _hatif_server if kind == "hatif" else _peer_server
    server = ctx.Process(target=target, args=(port_q, go, rate, seconds, clients))
    server.start()
    port = port_q.get(timeout=30)
    if kind == "hatif":
        url, headers = f"ws://127.0.0.1:{port}/api/v1/events?streams=queues", {"Authorization": f"Bearer {TOKEN}"}
    else:
        url, headers = f"ws://127.0.0.1:{port}/", {}
    client = ctx.Process(target=_clients, args=(url, clients, headers, ready, go, out, seconds))
    client.start()
    ready.wait(120)
    go.set()
    delays, dropped = out.get(timeout=seconds + 120)
    client.join(30)
    server.join(30)
    for p in (client, server):
        if p.is_alive():
            p.kill()
    expected = clients * rate * (seconds - WARMUP)
    if not delays:
        return f"{kind:6} {clients} clients at {rate:.0f} events/s: nothing delivered, {dropped} dropped"
    delays.sort()
    p50, p99 = statistics.median(delays), delays[int(len(delays) * 0.99)]
    return (f"{kind:6} {clients} clients at {rate:.0f} events/s: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
            f"{len(delays) / expected:.0%} of events delivered, {dropped} clients dropped as slow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rates", default="50,100,500")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    for rate in (float(r) for r in args.rates.split(",")):
        print(run("hatif", args.clients, rate, args.seconds), flush=True)
        print(run("peer", args.clients, rate, args.seconds), flush=True)


if __name__ == "__main__":
    main()
