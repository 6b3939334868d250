"""The live event feed: a WebSocket at `/api/v1/events` sending a client its tenant's events as they happen.

    ws://HOST/api/v1/events?streams=calls,queues&after=calls:120,queues:7
    Authorization: Bearer <token>            (or the session cookie of a page of this site)

Each message is a JSON array of one or more events (`Event.to_dict()`: name, schema, seq, tenant, at,
fields), each stream in order: one event when the feed is quiet, those that waited together when it is busy
(up to `BATCH`): a busy feed costs a frame per batch, not per event. `after` resumes: the events of a stream
numbered above the given number come first (from the bus's history, else the store's log), so a client that
reconnects with the last numbers it saw misses nothing.
`streams` narrows the feed (default: every stream).

A client that does not keep up (`limit` events waiting for it) is closed with code 4008 and the reason
(`slow consumer: ...`); it reconnects from its last numbers. Its slowness stays in its own task: the bus hands
it events without waiting, so a call never waits for a browser. Without a valid token or session the socket is
closed with code 4401; without the scope `events:read` (agents, for now), or with a session cookie sent by a
page of another site (`Origin`: a browser cannot add a CSRF header to a WebSocket), with 4403; a bad `streams`
or `after` with code 4400 and what is wrong. A holder sees all of its tenant's events; a platform owner names
the tenant with `?tenant=`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from typing import Protocol

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..bus import Bus, Dropped, accepting
from ..errors import WebError
from ..events import STREAMS, Event
from ..people.model import PLATFORM, Scope
from .auth import authenticate, same_origin

log = logging.getLogger(__name__)

router = APIRouter()
CATCH_UP_PAGES = 1000  # bounded: at most this many pages of 1,000 events per stream when resuming
SEND_TIMEOUT = 10.0  # seconds one message may wait for a client that reads nothing before it is given up
BATCH = 100  # events at most in one message


class EventSource(Protocol):
    """What the feed needs of the event layer (`hatif.outbox.Outbox`)."""

    bus: Bus

    async def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]:
        ...


class BadRequest(WebError, ValueError):
    """A `streams` or `after` the feed cannot take; its message says what is wrong."""


def parse_streams(text: str | None) -> tuple[str, ...]:
    if not text:
        return tuple(STREAMS)
    wanted = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in wanted if s not in STREAMS]
    if unknown or not wanted:
        raise BadRequest(f"streams: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(STREAMS)}")
    return wanted


def parse_after(text: str | None) -> dict[str, int]:
    """`calls:120,queues:7` -> {"calls": 120, "queues": 7}."""
    after: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        stream, sep, number = part.strip().partition(":")
        if not sep or stream not in STREAMS or not number.isdigit():
            raise BadRequest(f"after: {part.strip()!r} is not STREAM:NUMBER with a stream of {', '.join(STREAMS)}")
        after[stream] = int(number)
    return after


@router.websocket("/api/v1/events")
async def events(ws: WebSocket) -> None:
    source: EventSource | None = ws.app.state.hatif_events
    limit: int = ws.app.state.hatif_live_limit
    await ws.accept()
    who = await authenticate(ws)
    if who is None:
        await ws.close(code=4401, reason="a valid bearer token is required")
        return
    if who.via == "session" and not same_origin(ws):
        await ws.close(code=4403, reason="a session's feed is opened by a page of this site only")
        return
    if Scope.EVENTS_READ not in who.scopes:
        await ws.close(code=4403, reason=f"this needs the scope {Scope.EVENTS_READ.value}")
        return
    tenant = (ws.query_params.get("tenant") or PLATFORM) if who.owner else who.tenant
    if source is None:
        await ws.close(code=1013, reason="this server has no event feed")
        return
    try:
        streams = parse_streams(ws.query_params.get("streams"))
        after = parse_after(ws.query_params.get("after"))
    except BadRequest as e:
        await ws.close(code=4400, reason=str(e)[:120])
        return
    sub = source.bus.subscribe(accepting(streams, tenant), limit=limit)  # live from now, queued while we catch up
    sent = dict.fromkeys(streams, 0)
    try:
        for stream, seq in after.items():
            if stream not in sent:
                continue
            sent[stream] = seq
            for _ in range(CATCH_UP_PAGES):
                missed = await source.since(stream, sent[stream], limit=1000, tenant=tenant)
                for i in range(0, len(missed), BATCH):
                    await _send(ws, missed[i:i + BATCH], sent)
                if len(missed) < 1000:
                    break
        async for event in sub:
            await _send(ws, [event, *sub.take(BATCH - 1)], sent)
    except Dropped as e:
        log.info("event feed client dropped", extra={"fields": {"tenant": tenant, "reason": str(e)}})
        if ws.application_state is WebSocketState.CONNECTED:
            await ws.close(code=4008, reason=str(e)[:120])
    except (WebSocketDisconnect, TimeoutError):
        pass  # gone, or reading nothing at all: the connection closes as the handler returns
    finally:
        sub.drop("client gone")


class _Texts:
    """Each event's JSON, made once for all the clients it goes to (a thousand clients of a tenant get the same
    event object from the bus, and the same text), for the last `size` events. Keyed by the object: the cache
    holds it, so its id is not reused while the entry lives."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._texts: OrderedDict[int, tuple[Event, str]] = OrderedDict()

    def of(self, event: Event) -> str:
        kept = self._texts.get(id(event))
        if kept is not None and kept[0] is event:
            return kept[1]
        text = json.dumps(event.to_dict(), ensure_ascii=False)
        self._texts[id(event)] = (event, text)
        if len(self._texts) > self.size:
            self._texts.popitem(last=False)
        return text


_texts = _Texts()


async def _send(ws: WebSocket, events: list[Event], sent: dict[str, int]) -> None:
    fresh = [e for e in events if e.seq > sent.get(e.STREAM, 0)]  # not those already sent while catching up
    if not fresh:
        return
    async with asyncio.timeout(SEND_TIMEOUT):  # no task per message, unlike wait_for
        await ws.send_text(f"[{','.join(_texts.of(e) for e in fresh)}]")
    for e in fresh:
        sent[e.STREAM] = e.seq
