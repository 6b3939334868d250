"""The simulator's user agent: the shell, registration and calls put together, with its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque

from ...sip.dialog import DialogTable, new_tag
from ...sip.message import Request
from ...sip.transaction import Timers
from ...sip.transport import Addr
from .calls import Answer, AnswerPolicy, CallHook, Calling, CallOutcome, IncomingCall, OutgoingCall
from .media import CallMedia
from .register import RegisterOutcome
from .shell import UaEndpoint, _route_to


class UserAgent(Calling):
    """A SIP user agent talking to one server over UDP. Use `async with UserAgent(...) as ua:`."""

    def __init__(self, server: Addr, *, user: str | None = None, password: str | None = None,
                 domain: str | None = None, local_host: str | None = None, local_port: int = 0,
                 timers: Timers | None = None, answer: AnswerPolicy = Answer(),  # noqa: B008 (frozen)
                 on_incoming: CallHook | None = None, on_answered: CallHook | None = None,
                 on_ended: CallHook | None = None, rtp: bool = False, tone_hz: float | None = None,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), max_calls: int = 1000,
                 max_duration: float = 3600.0) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.domain = domain or server[0]
        self.local_host = local_host
        self.local_port = local_port
        self.timers = timers or Timers()
        self.answer = answer
        self.on_incoming = on_incoming
        self.on_answered = on_answered
        self.on_ended = on_ended
        self.rtp = rtp
        self.tone_hz = tone_hz
        self.algorithms = tuple(a.upper() for a in algorithms)
        self.max_calls = max_calls
        self.max_duration = max_duration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ep: UaEndpoint | None = None
        self._media: CallMedia | None = None
        self.outgoing: dict[str, OutgoingCall] = {}
        self.incoming: dict[str, IncomingCall] = {}
        self.dialogs = DialogTable(max_calls)
        # (method, credentials header) -> (challenge, last nonce-count): REGISTER and INVITE apart, since a
        # server may challenge them differently (401 from the registrar, 407 from the proxy).
        self._challenges: dict[tuple[str, str], tuple[str, int]] = {}
        self._reg_call_id = f"{secrets.token_hex(10)}@sim"
        self._reg_tag = new_tag()
        self._reg_cseq = 0
        self.registration: RegisterOutcome | None = None
        self.notifications: deque[Request] = deque(maxlen=100)  # message-waiting NOTIFYs received
        self._refresh: asyncio.Task[None] | None = None
        self.closed = False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> UserAgent:
        self._loop = asyncio.get_running_loop()
        host = self.local_host or _route_to(self.server[0])
        self._ep = UaEndpoint(self._loop, self.server, self.timers, self._on_request, self._on_stray,
                             max_transactions=max(64, 8 * self.max_calls))
        await self._ep.open(host, self.local_port)
        self._media = CallMedia(self._loop, host, self.rtp, self.tone_hz)
        return self

    async def __aenter__(self) -> UserAgent:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float | None = None) -> None:
        """Hang up every call, unregister, wait (bounded) for the last answers, then close the sockets."""
        if self.closed or self._ep is None:
            self.closed = True
            return
        limit = timeout if timeout is not None else 2 * self.timers.timeout
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        for out in list(self.outgoing.values()):
            self._give_up(out, by_patience=False)
        for inc in list(self.incoming.values()):
            self._hang_up_incoming(inc)
        pending = [c.done for c in self.outgoing.values()]
        if pending:
            await asyncio.wait(pending, timeout=limit)
        if self.registration is not None and self.registration.ok:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.unregister(), limit)
        for out in list(self.outgoing.values()):
            self._finish_out(out, CallOutcome.FAILED, 408, "User Agent Closed")
        for inc in list(self.incoming.values()):
            self._finish_in(inc, CallOutcome.FAILED, inc.status or 408, "local")
        self.closed = True
        self._ep.close()
        if self._media is not None:
            self._media.close()
