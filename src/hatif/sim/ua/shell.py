"""The user agent's shell: the SIP endpoint (`hatif.sip.endpoint`) toward its one server, and the loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from ...sip.endpoint import ClientTx, EventCallback, ServerTx, SipEndpoint
from ...sip.headers import NameAddr
from ...sip.message import Request, Response
from ...sip.transaction import Timers
from ...sip.transport import Addr, Peer
from ...sip.uri import URI

USER_AGENT = "Hatif-sim"

RequestHandler = Callable[[Request, ServerTx | None, Peer], None]


class UaEndpoint(SipEndpoint):
    """The SIP endpoint shell (`hatif.sip.endpoint`) toward one server, with the user agent as its TU."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: Addr, timers: Timers, on_request: RequestHandler,
                 on_stray: Callable[[Response], None], max_transactions: int) -> None:
        super().__init__(loop, timers=timers, max_transactions=max_transactions, signature=("User-Agent", USER_AGENT))
        self.server = Peer("udp", server[0], server[1])
        self._on_request = on_request
        self._on_stray = on_stray
        self.local: Addr = ("", 0)

    async def open(self, host: str, port: int) -> None:
        """Bind the one UDP socket."""
        self.local = await self.listen("udp", host, port)

    def to_server(self, request: Request, on_event: EventCallback | None = None) -> ClientTx:
        """Send statefully to the server; a Via with a new branch is put on top unless there is one (CANCEL)."""
        return self.send_request(request, self.server, on_event)

    def send_raw(self, message: Request | Response | bytes, peer: Peer | None = None) -> None:
        """Send outside any transaction: the ACK of a 2xx, a retransmitted 2xx (RFC 3261 §13)."""
        self.send_stateless(message, peer or self.server)

    def on_request(self, request: Request, tx: ServerTx, peer: Peer) -> None:
        self._on_request(request, tx, peer)

    def on_ack(self, request: Request, peer: Peer) -> None:
        self._on_request(request, None, peer)

    def on_stray(self, response: Response) -> None:
        self._on_stray(response)


class AgentShell:
    """What every part of a user agent stands on: the event loop and the SIP endpoint, once open."""

    server: Addr
    user: str | None
    _loop: asyncio.AbstractEventLoop | None
    _ep: UaEndpoint | None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("user agent not open: use `async with UserAgent(...)` or `await ua.open()`")
        return self._loop

    @property
    def endpoint(self) -> UaEndpoint:
        if self._ep is None:
            raise RuntimeError("user agent not open: use `async with UserAgent(...)` or `await ua.open()`")
        return self._ep

    @property
    def address(self) -> Addr:
        """The local address of the SIP socket."""
        return self.endpoint.local

    def contact(self) -> NameAddr:
        host, port = self.endpoint.local
        return NameAddr(URI("sip", host, self.user or "sim", None, port))


def _route_to(host: str) -> str:
    """The local address this machine would send from to reach `host` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host.strip("[]"), 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
