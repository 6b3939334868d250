"""The NATS JetStream relay: carries committed events between Hatif processes that share one store.

Each event the outbox committed is published on `<space>.ev.<stream>.<tenant>` as the JSON of
`Event.to_dict()`, with `Nats-Msg-Id: <stream>:<seq>` so that JetStream keeps it once however often it is
sent. `space` (default `hatif`) is the installation's name on the broker: two centers sharing one NATS server
use two. The JetStream stream `<SPACE>_EVENTS` holds them for other consumers (webhook workers, reporting) to
replay; Hatif processes themselves take the live messages and hand them to their outbox, which puts each
stream in order and reads anything missing from the store (the store, not the broker, is the source of truth).
The connection is made with `no_echo`, so a process does not receive its own events back.

Publishing never waits on the broker: `publish` queues, a task sends. A queue that fills (the broker is away
for long) drops the oldest waiting message with a warning; the other processes read those events from the store
at the next event they receive, and `on_reconnect` asks them to at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from .errors import BusError
from .events import Event, EventError, from_dict

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


class BrokerError(BusError):
    """The broker cannot be reached or refused the stream Hatif needs."""


def stream_name(space: str) -> str:
    """The JetStream stream of an installation: `HATIF_EVENTS` for the default space `hatif`."""
    return f"{_TOKEN.sub('_', space).upper()}_EVENTS"


def subject(event: Event, space: str = "hatif") -> str:
    """`<space>.ev.<stream>.<tenant>`, the tenant reduced to characters a NATS subject token may hold."""
    return f"{space}.ev.{event.STREAM}.{_TOKEN.sub('_', event.tenant) or '_'}"


class NatsRelay:
    """One NATS connection: `publish` committed events, `arrive(event)` called for every other process's."""

    def __init__(self, url: str, arrive: Callable[[Event], None], *, queue: int = 100_000,
                 on_reconnect: Callable[[], Awaitable[None]] | None = None, max_age: float = 7 * 86400,
                 space: str = "hatif") -> None:
        if not space or _TOKEN.search(space):
            raise BrokerError(f"broker space {space!r}: use letters, digits, '_' or '-'")
        self.url = url
        self.space = space
        self.stream = stream_name(space)
        self.arrive = arrive
        self.on_reconnect = on_reconnect
        self.max_age = max_age
        self.origin = uuid.uuid4().hex
        self._queue: deque[Event] = deque(maxlen=queue)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing waits to be sent
        self._drained.set()
        self._nc: Client | None = None
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.refused = 0

    async def start(self) -> None:
        """Connect, make sure the JetStream stream exists, and start taking other processes' events."""
        try:
            self._nc = await nats.connect(self.url, name=f"hatif-{self.origin[:8]}", no_echo=True,
                                          connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=2,
                                          reconnect_time_wait=0.5, reconnected_cb=self._reconnected,
                                          error_cb=self._error)
        except Exception as e:
            raise BrokerError(f"cannot reach NATS at {self.url}: {e or type(e).__name__}") from None
        # A broker that is away at start is an error to report; one that goes away later is waited for without
        # end (nats-py applies one limit to both; -1 from the first attempt would make a wrong URL hang).
        self._nc.options["max_reconnect_attempts"] = -1
        js = self._nc.jetstream()
        try:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(name=self.stream, subjects=[f"{self.space}.ev.>"], max_age=self.max_age,
                                    duplicate_window=120.0)
        except Exception as e:
            await self._nc.close()
            raise BrokerError(f"NATS at {self.url}: cannot use JetStream stream {self.stream}: {e}") from None
        await self._nc.subscribe(f"{self.space}.ev.>", cb=self._received)
        self._sender = asyncio.get_running_loop().create_task(self._send())

    def publish(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("broker queue full: oldest events go by the store only",
                            extra={"fields": {"dropped": self.dropped}})
        self._queue.append(event)
        self._drained.clear()
        self._wake.set()

    async def _send(self) -> None:
        assert self._nc is not None
        while True:
            while not self._queue:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
            event = self._queue.popleft()
            headers = {"Nats-Msg-Id": f"{event.STREAM}:{event.seq}", "Hatif-Origin": self.origin}
            try:
                body = json.dumps(event.to_dict()).encode()
                await self._nc.publish(subject(event, self.space), body, headers=headers)
                self.sent += 1
            except Exception as e:  # the connection is closed for good: the store still has the event
                log.error("event not relayed", extra={"fields": {"event": event.NAME, "error": str(e)}})

    async def _received(self, msg: Msg) -> None:
        try:
            event = from_dict(json.loads(msg.data))
        except (ValueError, EventError) as e:
            self.refused += 1
            log.warning("broker message refused", extra={"fields": {"subject": msg.subject, "error": str(e)}})
            return
        if not event.seq:
            self.refused += 1
            return
        self.received += 1
        self.arrive(event)

    async def _reconnected(self) -> None:
        log.info("broker reconnected", extra={"fields": {"url": self.url}})
        if self.on_reconnect is not None:
            await self.on_reconnect()

    async def _error(self, e: Exception) -> None:
        if self._nc is not None:  # before the first connection, the failure is raised as BrokerError instead
            log.warning("broker connection", extra={"fields": {"url": self.url, "error": str(e) or type(e).__name__}})

    async def flush(self, timeout: float = 5.0) -> None:
        """Returns once every queued event was handed to the server."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), timeout)
        if self._nc is not None and self._nc.is_connected:
            await self._nc.flush(timeout=max(1, round(deadline - loop.time())))

    async def close(self) -> None:
        if self._sender is not None:
            await self.flush(timeout=2.0)
            self._sender.cancel()
            self._sender = None
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
