"""The in-process event bus: `publish(event)`, and consumers that either listen inline or subscribe.

`publish` gives the event its stream's next sequence number, keeps it in a bounded history per stream (so a
consumer that reconnects with the last number it saw gets what it missed, as long as the history still has
it), and hands it to every consumer whose filter takes it:

- `listen(handler)`: the handler runs inline, in the publisher's turn of the loop. For projections that are
  cheap and must not miss an event (the CDR and queue-log writers); an exception is logged, never raised
  into the publisher.
- `subscribe()`: a bounded queue read with `async for`. A subscriber that falls `limit` events behind is
  dropped with a reason (`Dropped`), never allowed to slow the publisher (the call path): the WebSocket
  feed and other clients.

An external broker (NATS JetStream) comes behind the same two calls. This layer imports nothing of Hatif
but the event model.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

from .errors import BusError
from .events import STREAMS, Event

log = logging.getLogger(__name__)

Filter = Callable[[Event], bool]


class Dropped(BusError):
    """A subscription ended by the bus, with the reason (it fell behind, or the bus closed)."""


class Gap(BusError, LookupError):
    """The history no longer holds the events after the sequence number asked for."""


class Subscription:
    """Events for one consumer, in order, at most `limit` waiting; iterate with `async for`."""

    def __init__(self, bus: Bus, accept: Filter, limit: int) -> None:
        self._bus = bus
        self._accept = accept
        self._limit = limit
        self._waiting: deque[Event] = deque()
        self._ready = asyncio.Event()
        self.reason: str | None = None

    def offer(self, event: Event) -> None:
        if self.reason is not None or not self._accept(event):
            return
        if len(self._waiting) >= self._limit:
            self.drop(f"slow consumer: {self._limit} events waiting")
            return
        self._waiting.append(event)
        self._ready.set()

    def drop(self, reason: str) -> None:
        """Ends the subscription; what was waiting is gone (the consumer reconnects from its last number)."""
        self._end(reason)
        self._waiting.clear()

    def close(self) -> None:
        """Ends the subscription once what is waiting has been read."""
        self._end("closed")

    def _end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._bus.unsubscribe(self)
            self._ready.set()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def take(self, most: int) -> list[Event]:
        """Up to `most` more of the events already waiting, without waiting for any (a consumer that sends in
        batches takes the next one with `async for`, then what came with it)."""
        return [self._waiting.popleft() for _ in range(min(most, len(self._waiting)))]

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._waiting:
            if self.reason == "closed":
                raise StopAsyncIteration
            if self.reason is not None:
                raise Dropped(self.reason)
            self._ready.clear()
            await self._ready.wait()
        return self._waiting.popleft()


def accepting(streams: Iterable[str] | None = None, tenant: str | None = None,
              types: tuple[type[Event], ...] | None = None) -> Filter:
    """A filter: events of these streams, of this tenant, of these classes (each None: any)."""
    wanted = frozenset(streams) if streams is not None else None
    unknown = (wanted or frozenset()) - STREAMS.keys()
    if unknown:
        raise ValueError(f"unknown event streams: {', '.join(sorted(unknown))} (known: {', '.join(STREAMS)})")

    def accept(event: Event) -> bool:
        return ((wanted is None or event.STREAM in wanted) and (tenant is None or event.tenant == tenant)
                and (types is None or isinstance(event, types)))
    return accept


class Bus:
    """One process's event stream; `history` events are kept per stream for consumers catching up."""

    def __init__(self, history: int = 10_000) -> None:
        self._seq = dict.fromkeys(STREAMS, 0)
        self._history: dict[str, deque[Event]] = {s: deque(maxlen=history) for s in STREAMS}
        self._listeners: list[tuple[Filter, Callable[[Event], None]]] = []
        self._subscriptions: list[Subscription] = []

    def publish(self, event: Event) -> Event:
        """Numbers `event` in its stream, keeps it and delivers it; returns the numbered event."""
        event = event.numbered(self._seq[event.STREAM] + 1)
        self.deliver(event)
        return event

    def start_at(self, last: dict[str, int]) -> None:
        """Numbering and history continue after `last` (stream -> number): what the durable log already holds."""
        for stream, seq in last.items():
            if stream in self._seq and not self._history[stream]:
                self._seq[stream] = max(self._seq[stream], seq)

    def deliver(self, event: Event) -> None:
        """Keeps and delivers an event numbered elsewhere (by the durable log), which must come next: the outbox
        hands events over in order, each stream's numbers one after the other."""
        stream = event.STREAM
        if event.seq <= self._seq[stream]:
            raise ValueError(f"{stream}: event {event.seq} delivered after {self._seq[stream]}")
        self._seq[stream] = event.seq
        self._history[stream].append(event)
        for accept, handler in self._listeners:
            if accept(event):
                try:
                    handler(event)
                except Exception:
                    log.exception("event listener failed", extra={"fields": {"event": event.NAME}})
        for sub in tuple(self._subscriptions):
            sub.offer(event)

    def listen(self, handler: Callable[[Event], None], accept: Filter | None = None) -> Callable[[], None]:
        """Runs `handler` inline for each event `accept` takes; returns the function that stops it."""
        entry = (accept or accepting(), handler)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def subscribe(self, accept: Filter | None = None, after: dict[str, int] | None = None,
                  limit: int = 1000) -> Subscription:
        """A subscription starting now, or after the sequence numbers in `after` (stream -> last seen), with the
        events it missed queued first; `Gap` when the history no longer has them."""
        sub = Subscription(self, accept or accepting(), limit)
        for stream, seq in (after or {}).items():
            for event in self.since(stream, seq):
                sub.offer(event)
        self._subscriptions.append(sub)
        return sub

    def since(self, stream: str, seq: int) -> list[Event]:
        """The kept events of `stream` numbered above `seq`."""
        if stream not in self._history:
            raise ValueError(f"unknown event stream {stream!r}")
        kept = self._history[stream]
        first = kept[0].seq if kept else self._seq[stream] + 1
        if seq + 1 < first:
            raise Gap(f"{stream}: events {seq + 1}-{first - 1} are no longer kept")
        return [e for e in kept if e.seq > seq]

    def last(self, stream: str) -> int:
        """The sequence number of the last event published in `stream` (0 before the first)."""
        return self._seq[stream]

    def close(self) -> None:
        for sub in tuple(self._subscriptions):
            sub.close()

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
