"""The outbox: an event is written to the durable log before any consumer sees it, and every process sharing the
log sees each stream in one order, with no gap.

`emit(event)` queues the event; a writer stores everything queued since its last write in one transaction (group
commit, as `store.batch` does for CDRs) and only then delivers the events, numbered by the log, to the local
bus and hands them to the relay (NATS), which carries them to the other processes. The future `emit` returns is
done, with the numbered event, once the event is committed and delivered here: what was acknowledged survives
a kill -9.

Order: the log gives a stream's next number only after every lower number committed (see
`store.eventlog`), so an event that arrives with a number above the next one expected proves the ones between
are in the log already. They are read from it (after `fill_after`, in case the relay is only a little behind)
and delivered first. A process that was down, or a relay that lost messages, costs a read, never an event; a
consumer that was down reads `since(stream, last_seen)`, from the bus's history or else from the log.

This layer knows the log and the relay only by the two small protocols below; the composition root passes
`store.eventlog.EventLog` and `broker.NatsRelay`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from .bus import Bus, Gap
from .events import STREAMS, Event

log = logging.getLogger(__name__)


class Log(Protocol):
    def append(self, events: Sequence[Event]) -> list[Event]: ...
    def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]: ...
    def last(self) -> dict[str, int]: ...


class Relay(Protocol):
    def publish(self, event: Event) -> None:
        """Hand a committed event to the other processes; must not block or raise."""


class Outbox:
    """`emit` -> durable log -> local bus (+ relay); `arrive` takes events other processes committed."""

    def __init__(self, bus: Bus, log_: Log, *, relay: Relay | None = None, limit: int = 500,
                 linger: float = 0.002, fill_after: float = 0.02) -> None:
        self.bus = bus
        self.log = log_
        self.relay = relay
        self.limit = limit  # events per transaction
        self.linger = linger  # seconds a first event waits for others to share its transaction
        self.fill_after = fill_after  # seconds an out-of-order arrival waits before the log is read
        self._pending: list[tuple[Event, asyncio.Future[Event]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._delivered = dict.fromkeys(STREAMS, 0)
        self._held: dict[str, dict[int, Event]] = {s: {} for s in STREAMS}
        self._fills: dict[str, asyncio.Task[None]] = {}
        self.written = 0
        self.failed = 0
        self.filled = 0
        self._closed = False

    async def start(self) -> None:
        """Continue every stream after what the log holds (events committed before now are history)."""
        last = await asyncio.to_thread(self.log.last)
        for stream, seq in last.items():
            if stream in self._delivered:
                self._delivered[stream] = max(self._delivered[stream], seq)
        self.bus.start_at(self._delivered)

    # -- writing ---------------------------------------------------------------------------------------------

    def emit(self, event: Event) -> asyncio.Future[Event]:
        """Queue `event`; the future is done with the numbered event once it is committed (its exception,
        StoreError: it was not stored, and nobody saw it). The bus has it by then, or, when other processes
        numbered events of its stream in between, as soon as those are read from the log."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Event] = loop.create_future()
        self._pending.append((event, done))
        if self._writer is None:
            self._writer = loop.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        try:
            if len(self._pending) < self.limit:
                await asyncio.sleep(self.linger)
            while self._pending:
                batch, self._pending = self._pending[:self.limit], self._pending[self.limit:]
                try:
                    numbered = await asyncio.to_thread(self.log.append, [e for e, _ in batch])
                except Exception as e:
                    self.failed += len(batch)
                    log.error("events not stored", extra={"fields": {"events": len(batch), "error": str(e)}})
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                            done.exception()  # retrieved: whoever waits decides; nobody waiting is fine too
                    continue
                self.written += len(numbered)
                for stored in numbered:
                    self.arrive(stored, local=True)
                    if self.relay is not None:
                        self.relay.publish(stored)
                for (_, done), stored in zip(batch, numbered, strict=True):
                    if not done.done():
                        done.set_result(stored)
        finally:
            self._writer = None

    def committed(self, events: Sequence[Event]) -> None:
        """Events numbered and committed by someone else's transaction (`append_in` beside the rows they are
        about, as a configuration change is): delivered here and handed to the relay as `emit`'s are."""
        for stored in events:
            self.arrive(stored, local=True)
            if self.relay is not None:
                self.relay.publish(stored)

    # -- ordered delivery ----------------------------------------------------------------------------------

    def arrive(self, event: Event, local: bool = False) -> None:
        """An event committed to the log, by this process (`local`) or another: delivered once, in its stream's
        order. A gap before a local event is read from the log at once: the log numbered this process's event
        after the ones missing here committed."""
        stream = event.STREAM
        if stream not in self._delivered or event.seq <= self._delivered[stream]:
            return  # seen already (or the relay echoed it)
        if event.seq == self._delivered[stream] + 1:
            self._deliver(event)
            held = self._held[stream]
            while held and self._delivered[stream] + 1 in held:
                self._deliver(held.pop(self._delivered[stream] + 1))
            return
        self._held[stream][event.seq] = event
        if stream not in self._fills:
            self._fills[stream] = asyncio.get_running_loop().create_task(
                self._fill(stream, 0.0 if local else None))

    def _deliver(self, event: Event) -> None:
        self._delivered[event.STREAM] = event.seq
        self.bus.deliver(event)

    async def _fill(self, stream: str, wait: float | None = None) -> None:
        """Reads from the log the events of `stream` that were committed but have not arrived."""
        failed = False
        try:
            await asyncio.sleep(self.fill_after if wait is None else wait)
            for _ in range(10_000):  # bounded: at most 10,000 reads of `limit` events per gap
                held = self._held[stream]
                if not held:
                    return
                if not await self._pull(stream):  # cannot happen while the log numbers as it does: never wait
                    log.error("event log has a gap", extra={"fields": {
                        "stream": stream, "after": self._delivered[stream], "next": min(held)}})
                    self._delivered[stream] = min(held) - 1
                    self.arrive(held.pop(min(held)))
        except Exception:
            failed = True
            log.exception("reading missed events from the log failed", extra={"fields": {"stream": stream}})
        finally:
            self._fills.pop(stream, None)
            if self._held[stream] and not self._closed:  # arrived meanwhile, or the store failed: again
                self._fills[stream] = asyncio.get_running_loop().create_task(
                    self._fill(stream, 1.0 if failed else None))

    async def _pull(self, stream: str) -> int:
        """Reads the next page of `stream` after what was delivered from the log and delivers it; how many."""
        events = await asyncio.to_thread(self.log.since, stream, self._delivered[stream], limit=self.limit)
        self.filled += len(events)
        for e in events:
            self.arrive(e)
        return len(events)

    async def catch_up(self) -> None:
        """Reads what the log holds beyond what was delivered in every stream (after the relay reconnects)."""
        last = await asyncio.to_thread(self.log.last)
        for stream, seq in last.items():
            for _ in range(10_000):  # bounded: at most 10,000 pages of `limit` events per stream
                if stream not in self._delivered or self._delivered[stream] >= seq or not await self._pull(stream):
                    break

    # -- reading -----------------------------------------------------------------------------------------

    async def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]:
        """Events of `stream` after `seq` (of `tenant`, when given): from the bus's history while it still holds
        them, else from the log."""
        try:
            kept = [e for e in self.bus.since(stream, seq) if tenant is None or e.tenant == tenant]
            return kept[:limit]
        except Gap:
            return await asyncio.to_thread(self.log.since, stream, seq, limit=limit, tenant=tenant)

    def last(self, stream: str) -> int:
        return self._delivered[stream]

    async def close(self, timeout: float = 10.0) -> None:
        """Waits for what was emitted to be committed; stops reading missed events."""
        self._closed = True
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=timeout)
        for task in tuple(self._fills.values()):
            task.cancel()
        self._fills.clear()
