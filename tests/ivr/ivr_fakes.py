"""Test doubles for IVR tests: a scripted caller (`FakeChannel`), a `FakeRouter`, a stub HTTP server.

The caller's script is a list of what they type, in order: a string is typed when the flow next collects
keys (`"1234#"`; `""` is silence until the timeout), a `Barge("1")` is a key pressed during the next
prompt that may be interrupted. When the script runs out and the flow waits for keys again, the caller
hangs up (the channel raises `Hangup`), which ends every scripted call.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from hatif.calls.api import Hangup, Outcome, Recorded, Samples


@dataclass(frozen=True)
class Barge:
    key: str


@dataclass
class FakeChannel:
    """A caller following a script; everything the flow did is in `events` (and `said`, `connects`)."""

    script: list[str | Barge] = field(default_factory=list)
    language: str = "en"
    caller_number: str = "+966501234567"
    caller_name: str | None = "Amira"
    called_number: str = "700"
    call_id: str = "call-1"
    tenant: str = "default"
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    events: list[tuple[object, ...]] = field(default_factory=list)
    said: list[tuple[str, str]] = field(default_factory=list)
    connects: list[tuple[str, float | None]] = field(default_factory=list)
    answered: bool = False
    hangup_cause: str | None = None
    _inputs: deque[str | Barge] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._inputs = deque(self.script)

    @property
    def ended(self) -> bool:
        return self.hangup_cause is not None

    def _alive(self) -> None:
        if self.ended:
            raise Hangup()

    def _barge(self, interrupt: bool) -> str | None:
        if interrupt and self._inputs and isinstance(self._inputs[0], Barge):
            item = self._inputs.popleft()
            assert isinstance(item, Barge)
            return item.key
        return None

    async def answer(self) -> None:
        self._alive()
        self.answered = True

    async def play(self, audio: Samples | Path, *, interrupt: bool = False) -> str | None:
        self._alive()
        assert isinstance(audio, Path)
        if not audio.exists():
            raise FileNotFoundError(2, "No such file", str(audio))
        self.events.append(("play", str(audio), interrupt))
        return self._barge(interrupt)

    async def say(self, text: str, *, language: str | None = None, interrupt: bool = False) -> str | None:
        self._alive()
        lang = language or self.language
        self.said.append((text, lang))
        self.events.append(("say", text, lang, interrupt))
        return self._barge(interrupt)

    async def collect(self, *, max_digits: int = 1, timeout: float = 5.0, inter_digit: float = 3.0,
                      terminators: str = "#") -> str:
        self._alive()
        self.events.append(("collect", max_digits, timeout, inter_digit, terminators))
        if not self._inputs:
            self.hangup_cause = "caller"
            raise Hangup()
        item = self._inputs.popleft()
        assert isinstance(item, str), f"the script has {item!r} where the flow collects keys"
        out = ""
        for key in item:
            if key in terminators:
                break
            out += key
            if len(out) == max_digits:
                break
        return out

    async def record(self, path: Path, *, max_seconds: float = 120.0, terminators: str = "#",
                     beep: bool = True, silence_seconds: float | None = None) -> Recorded:
        raise NotImplementedError

    async def hangup(self, cause: str = "normal") -> None:
        self.events.append(("hangup", cause))
        if self.hangup_cause is None:
            self.hangup_cause = cause

    async def connect(self, target: str, *, timeout: float | None = None, caller_id: str | None = None,
                      music: bool = False) -> Outcome:
        self._alive()
        self.connects.append((target, timeout))
        self.events.append(("connect", target))
        return self.outcomes.get(target, "answered")


@dataclass
class FakeRouter:
    """Queues answer per `queues` (default `answered`); voicemail records the mailbox."""

    queues: dict[str, Outcome] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)
    voicemails: list[str] = field(default_factory=list)

    async def queue(self, channel: FakeChannel, name: str) -> Outcome:
        self.queued.append(name)
        return self.queues.get(name, "answered")

    async def voicemail(self, channel: FakeChannel, mailbox: str) -> None:
        self.voicemails.append(mailbox)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    content_type: str = "application/json"


class StubHttp:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) answering each path with a scripted `Reply`.

    Requests are kept in `requests` as (method, target, body). Unknown paths get 404. Handlers still
    waiting (a delayed reply) are cancelled when the server is stopped.
    """

    def __init__(self, routes: dict[str, Reply]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[object]] = set()

    async def __aenter__(self) -> StubHttp:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await asyncio.wait_for(reader.readexactly(length), timeout=5) if length else b""
            self.requests.append((method, target, body))
            reply = self.routes.get(target.split("?", 1)[0], Reply(404, json.dumps({"error": "no"}).encode()))
            if reply.delay:
                await asyncio.sleep(reply.delay)
            writer.write(f"HTTP/1.1 {reply.status} X\r\nContent-Type: {reply.content_type}\r\n"
                         f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n".encode() + reply.body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)
