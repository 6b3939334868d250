"""The SIP endpoint shell: transports, the transaction table and one deadline timer (RFC 3261 §17, §18).

Everything that talks SIP over sockets does the same few things around the sans-IO transaction machines:
a datagram or framed TCP message comes in, is parsed, matched to a transaction (RFC 3261 §17.1.3,
§17.2.3) or opens a new server transaction, and the transaction's actions are carried out (send this,
hand that response or ACK to the transaction user, forget me); one loop timer, re-armed at the table's
earliest deadline (`hatif.clock.DeadlineTimer`), fires every transaction's timers. `SipEndpoint` is that
shell, shared by the SIP server (`hatif.sip.server`, which adds bans, admission, authentication and the
registrar in front) and the simulator's user agent (`hatif.sim.ua`).

`receive` is the plain pipeline a user agent needs. The transaction user (TU) above it is reached through
three methods a subclass overrides: `on_request` (a new request, with its server transaction), `on_ack`
(an ACK outside any transaction, or one a server INVITE transaction in Accepted passes up, RFC 6026 §7.1)
and `on_stray` (a response no client transaction matches, such as a 2xx retransmitted after the INVITE
transaction ended, RFC 6026 §7.2). The server overrides `receive` too, and reuses the steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from ..clock import DeadlineTimer
from .errors import ParseError
from .headers import Via, parse_via
from .message import Request, Response, make_response, parse_message
from .transaction import (
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    DeliverAck,
    SendMessage,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TableFull,
    Terminated,
    Timers,
    TransactionTable,
    new_branch,
)
from .transport import Addr, Peer, TransportSet

log = logging.getLogger(__name__)

ClientTx = ClientInviteTransaction | ClientNonInviteTransaction
ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
EventCallback = Callable[[Action], None]
"""Gets what a client transaction passes up: responses, a timeout, a transport failure."""


class SipEndpoint:
    """Sockets, transactions and their timer; the transaction user overrides `on_request`, `on_ack`, `on_stray`.

    `signature` is the header put on every response sent through `respond` when it has none
    (`("Server", "Hatif")` for the server, `("User-Agent", ...)` for a user agent, RFC 3261 §20.35, §20.41);
    `advertise` replaces the listening address in Via headers and in `local_host`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, timers: Timers, max_transactions: int,
                 signature: tuple[str, str], max_message_size: int = 65535, max_headers: int = 128,
                 advertise: str | None = None) -> None:
        self.loop = loop
        self.timers = timers
        self.max_headers = max_headers
        self.advertise = advertise
        self.transports = TransportSet(loop, self.receive, max_message_size)
        self.transactions = TransactionTable(timers, max_transactions)
        self.timer = DeadlineTimer(loop, self.transactions.next_deadline, self._fire)
        self._signature_name, self._signature_value = signature
        self._callbacks: dict[int, EventCallback] = {}

    # -- lifecycle ------------------------------------------------------------------------------------

    async def listen(self, transport: str, host: str, port: int) -> Addr:
        """Start listening ("udp" or "tcp"); the bound address (port 0 picks a free port)."""
        return await self.transports.listen(transport, host, port)

    def close(self) -> None:
        """Stop the timer for good and close every socket."""
        self.timer.close()
        self.transports.close()

    def now(self) -> float:
        return self.loop.time()

    def local_address(self, transport: str = "udp") -> Addr:
        """The bound address of the socket that sends on `transport`, as the kernel reports it."""
        return self.transports.local_address(transport)

    def local_host(self, transport: str) -> tuple[str, int]:
        """Host and port for our Via and Contact headers: the advertised host, or the bound one (a wildcard
        address is not reachable: loopback then), IPv6 in brackets (RFC 3261 §25.1 `IPv6reference`)."""
        host, port = self.transports.local_address(transport)
        if self.advertise:
            host = self.advertise
        elif host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return host, port

    # -- sending --------------------------------------------------------------------------------------

    def send_request(self, request: Request, peer: Peer, on_event: EventCallback | None = None) -> ClientTx:
        """Send a request statefully to `peer`: a Via with a new branch is put on top, unless the request
        already has its Via (a CANCEL carries the INVITE's, RFC 3261 §9.1)."""
        if request.headers.get("Via") is None:
            host, port = self.local_host(peer.transport)
            request.headers.add("Via", str(Via(peer.transport.upper(), host, port,
                                               (("branch", new_branch()), ("rport", None)))), first=True)
        if "Max-Forwards" not in request.headers:
            request.headers.add("Max-Forwards", "70")
        reliable = peer.transport != "udp"
        tx: ClientTx
        if request.method == "INVITE":
            tx = ClientInviteTransaction(request, reliable, self.timers)
        else:
            tx = ClientNonInviteTransaction(request, reliable, self.timers)
        tx.user_data = peer
        if on_event is not None:
            self._callbacks[id(tx)] = on_event
        self._run(tx, self.transactions.add_client(tx, self.now()))
        self.timer.arm()
        return tx

    def send_stateless(self, message: Request | Response | bytes, peer: Peer) -> None:
        """Send outside any transaction: the ACK of a 2xx, a retransmitted 2xx (RFC 3261 §13.2.2.4, §13.3.1.4)."""
        self.transports.send(message if isinstance(message, bytes) else bytes(message), peer)

    def respond(self, tx: ServerTx, response: Response) -> None:
        """Send a response through its server transaction (which retransmits it as the RFC says)."""
        if self._signature_name not in response.headers:
            response.headers.add(self._signature_name, self._signature_value)
        self._run(tx, tx.respond(response, self.now()))
        self.timer.arm()

    def respond_stateless(self, request: Request, status: int, peer: Peer, reason: str | None = None,
                          extra: list[tuple[str, str]] | None = None) -> None:
        """Answer without a transaction (RFC 3261 §8.2.6, §18.2.2), to where the request's responses go."""
        resp = make_response(request, status, reason, to_tag=secrets.token_hex(6) if status > 100 else None,
                             extra=extra)
        self.transports.send(bytes(resp), self.response_peer(request, peer))

    def response_peer(self, request: Request, peer: Peer) -> Peer:
        """Where responses go (RFC 3261 §18.2.2, RFC 3581): the source address for rport or streams."""
        if peer.transport != "udp":
            return peer
        via = via_to_answer(request)
        if via is None:
            return peer
        if via.param("rport") is not None:
            return peer
        return Peer("udp", peer.host, via.port or 5060)

    def _run(self, tx: ClientTx | ServerTx, actions: list[Action]) -> None:
        """Carry out a transaction's actions: send to its peer, pass the rest up, forget it once terminated."""
        peer = tx.user_data
        assert isinstance(peer, Peer)
        for action in actions:
            if isinstance(action, SendMessage):
                self.transports.send(bytes(action.msg), peer)
            elif isinstance(action, Terminated):
                self._callbacks.pop(id(tx), None)
            elif isinstance(action, DeliverAck):
                self.on_ack(action.request, peer)
            else:
                cb = self._callbacks.get(id(tx))
                if cb is not None:
                    cb(action)
        if any(isinstance(a, Terminated) for a in actions):
            self._callbacks.pop(id(tx), None)

    def _fire(self, now: float) -> None:
        for tx, actions in self.transactions.fire_due(now):
            self._run(tx, actions)

    # -- receiving ------------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer) -> None:
        """Every message the transports read: keep-alives skipped, parsed, matched, passed up."""
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 §3.5.1)
        try:
            msg = parse_message(data, self.max_headers)
        except ParseError as e:
            # Nothing to match it to; the server answers what it can (`SipServer.receive`).
            log.debug("unparsable message", extra={"fields": {"source": f"{peer.host}:{peer.port}",
                                                              "error": e.reason}})
            return
        if isinstance(msg, Response):
            self.receive_response(msg)
            return
        now = self.now()
        if self.receive_retransmission(msg, now):
            return
        if msg.method == "ACK":
            self.on_ack(msg, peer)
            return
        try:
            stx = self.open_server(msg, peer, now)
        except TableFull:
            self.send_stateless(make_response(msg, 503, to_tag=secrets.token_hex(6)), peer)
            return
        try:
            self.on_request(msg, stx, peer)
        except ParseError as e:
            self.answer_bad_header(msg, stx, e)

    def receive_response(self, response: Response) -> None:
        """A response goes to its client transaction (RFC 3261 §17.1.3), or up as a stray."""
        tx = self.transactions.match_response(response)
        if tx is None:
            self.on_stray(response)
            return
        self._run(tx, tx.receive(response, self.now()))
        self.timer.arm()

    def receive_retransmission(self, request: Request, now: float) -> bool:
        """A request of a live server transaction (a retransmission, or the ACK of a non-2xx) goes to it
        (RFC 3261 §17.2.3); False when it matches none."""
        tx = self.transactions.match_request(request)
        if tx is None:
            return False
        self._run(tx, tx.receive(request, now))
        self.timer.arm()
        return True

    def open_server(self, request: Request, peer: Peer, now: float) -> ServerTx:
        """A new server transaction for `request` from `peer`, started; `TableFull` past `max_transactions`."""
        reliable = peer.transport != "udp"
        stx: ServerTx = (ServerInviteTransaction(request, reliable, self.timers) if request.method == "INVITE"
                         else ServerNonInviteTransaction(request, reliable, self.timers))
        stx.user_data = self.response_peer(request, peer)
        self._run(stx, self.transactions.add_server(stx, now))
        return stx

    def answer_bad_header(self, request: Request, tx: ServerTx, error: ParseError) -> bool:
        """A header read lazily (Max-Forwards, Expires, Contact ...) turned out malformed while the TU handled
        the request: 400 with the parser's reason, unless a final response went already. True when answered."""
        if tx.state not in ("trying", "proceeding"):
            return False
        reason = "Bad Request: " + "".join(c for c in error.reason if c.isprintable())[:100]
        self.respond(tx, make_response(request, 400, reason, to_tag=secrets.token_hex(6)))
        return True

    # -- the transaction user -------------------------------------------------------------------------

    def on_request(self, request: Request, tx: ServerTx, peer: Peer) -> None:
        """A new request outside any transaction (the method's handler); by default 501 (RFC 3261 §8.2.1)."""
        self.respond(tx, make_response(request, 501, to_tag=secrets.token_hex(6)))

    def on_ack(self, request: Request, peer: Peer) -> None:
        """An ACK for the dialog layer (of a 2xx, RFC 3261 §13.2.2.4; or passed up, RFC 6026 §7.1)."""

    def on_stray(self, response: Response) -> None:
        """A response no client transaction matches (a retransmitted 2xx, RFC 6026 §7.2)."""


def via_to_answer(request: Request) -> Via | None:
    """The top Via as far as a response needs it (RFC 3261 §18.2.2): parsed whole, or, when its parameters
    are broken (RFC 4475 §3.1.2.1 `;;,;,,`), its sent-protocol and sent-by alone. None: no answer possible."""
    text = request.headers.get("Via")
    if text is None:
        return None
    for candidate in (text, text.partition(";")[0]):  # whole, then without its parameters
        with contextlib.suppress(ParseError):
            return parse_via(candidate)
    return None
