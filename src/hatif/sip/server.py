"""The SIP server: transports, transaction layer, authentication, bans, registrar and dispatch.

This is the asyncio shell around the sans-IO cores. Every datagram or framed TCP message goes through
`receive()`: bans, size and flood checks, parsing (a bad request is answered `400` with the parser's
reason when enough of it could be read, dropped otherwise), transaction matching, and then the method's
handler. One timer, re-armed at the earliest transaction deadline, drives every transaction's timers.

Who may do what (SECURITY.md): REGISTER and INVITE from users are always challenged, and a user who does
not exist gets the same challenge as one who does; only configured trusted endpoints (trunks, test tools)
are let in by their address. Failed authentications are logged with the source address and counted; past
the limit the address is silenced.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from . import auth as digest
from .errors import ParseError
from .headers import Via, parse_via
from .inspection import inspect_request
from .message import REASONS, Request, Response, make_response, parse_message
from .registrar import RegistrarPolicy, Registry
from .security import BanList
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
from .transport import Peer, TransportSet
from .uri import URI

log = logging.getLogger(__name__)

ClientTx = ClientInviteTransaction | ClientNonInviteTransaction
ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY"
# Methods answered outside a dialog (BYE, INFO, UPDATE and PRACK with a 481); others are 405 or 501.
OUT_OF_DIALOG = frozenset(("OPTIONS", "REGISTER", "INVITE", "BYE", "INFO", "UPDATE", "PRACK"))
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a dialed number goes, as the dial plan says."""

    kind: Literal["user", "endpoint", "app"]
    tenant: str
    name: str
    number: str
    peer: Peer | None = None


class Directory(Protocol):
    """What the SIP server needs to know of tenants, users, endpoints and the dial plan."""

    def tenant_for_host(self, host: str) -> str | None: ...
    def realm(self, tenant: str) -> str: ...
    def password(self, tenant: str, username: str) -> str | None: ...
    def display_name(self, tenant: str, username: str) -> str | None: ...
    def language(self, tenant: str, username: str) -> str: ...
    def trusted_peer(self, peer: Peer) -> tuple[str, str] | None: ...  # (tenant, endpoint name)
    def route(self, tenant: str, number: str) -> Target | None: ...


@dataclass(slots=True)
class SipSettings:
    """Plain settings of the SIP layer (filled from the configuration by `hatif.app`)."""

    user_agent: str = "Hatif"
    advertise: str | None = None
    ring_timeout: float = 30.0
    timers: Timers = field(default_factory=Timers)
    registrar: RegistrarPolicy = field(default_factory=RegistrarPolicy)
    max_message_size: int = 65535
    max_headers: int = 128
    max_transactions: int = 100_000
    max_dialogs: int = 50_000
    auth_failure_limit: int = 10
    auth_failure_window: float = 60.0
    flood_limit: int = 16
    flood_window: float = 2.0
    ban_time: float = 300.0
    nonce_lifetime: float = 300.0
    md5_only_user_agents: tuple[str, ...] = ("baresip v0.", "baresip v1.0.")
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, once accepted: an authenticated user or a trusted endpoint."""

    tenant: str
    kind: Literal["user", "endpoint"]
    name: str


class RequestHandler(Protocol):
    """The part above the server that takes calls (the B2BUA)."""

    def on_invite(self, request: Request, tx: ServerInviteTransaction, caller: Caller, peer: Peer) -> None: ...
    def on_in_dialog(self, request: Request, tx: ServerTx | None, peer: Peer) -> None: ...
    def on_cancel(self, invite_tx: ServerInviteTransaction) -> None: ...
    def on_stray_2xx(self, response: Response) -> None: ...


class SipServer:
    """Owns the sockets, the transaction table, the registrar and the authenticator."""

    def __init__(self, directory: Directory, settings: SipSettings | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.directory = directory
        self.settings = settings or SipSettings()
        self.loop = loop or asyncio.get_running_loop()
        self.transports = TransportSet(self.loop, self.receive, self.settings.max_message_size)
        self.transactions = TransactionTable(self.settings.timers, self.settings.max_transactions)
        self.registry = Registry(self.settings.registrar)
        s = self.settings
        self.bans = BanList(failure_limit=s.auth_failure_limit, failure_window=s.auth_failure_window,
                            flood_limit=s.flood_limit, flood_window=s.flood_window, ban_time=s.ban_time)
        self._digest: dict[str, digest.DigestServer] = {}
        self.handler: RequestHandler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._callbacks: dict[int, Callable[[Action], None]] = {}
        self.stats = {"received": 0, "parse_errors": 0, "dropped_banned": 0, "dropped_own": 0, "auth_failures": 0,
                      "bad_requests_answered": 0}
        self._own: set[tuple[str, int]] = set()  # our own listening addresses
        self.draining = False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        addr = await self.transports.listen(transport, host, port)
        self._own.add((addr[0], addr[1]))
        if addr[0] in ("0.0.0.0", "::"):
            self._own.add(("127.0.0.1" if addr[0] == "0.0.0.0" else "::1", addr[1]))
        log.info("sip listening", extra={"fields": {"transport": transport, "address": f"{addr[0]}:{addr[1]}"}})
        return addr

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transports.close()

    def now(self) -> float:
        return self.loop.time()

    def local_host(self, transport: str) -> tuple[str, int]:
        host, port = self.transports.local_address(transport)
        if self.settings.advertise:
            host = self.settings.advertise
        elif host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return host, port

    def contact_uri(self, transport: str, user: str | None = None) -> URI:
        host, port = self.local_host(transport)
        params: tuple[tuple[str, str | None], ...] = () if transport == "udp" else (("transport", transport),)
        return URI("sip", host, user, None, port, params)

    # -- timers ---------------------------------------------------------------------------------------

    def _arm(self) -> None:
        deadline = self.transactions.next_deadline()
        if deadline is None:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.now()
        for tx, actions in self.transactions.fire_due(now):
            self._run(tx, actions)
        self._arm()

    # -- sending --------------------------------------------------------------------------------------

    def _run(self, tx: ClientTx | ServerTx, actions: list[Action]) -> None:
        peer = tx.user_data
        assert isinstance(peer, Peer)
        for action in actions:
            if isinstance(action, SendMessage):
                self.transports.send(bytes(action.msg), peer)
            elif isinstance(action, Terminated):
                self._callbacks.pop(id(tx), None)
            elif isinstance(action, DeliverAck):
                if self.handler is not None:
                    self.handler.on_in_dialog(action.request, None, peer)
            else:
                cb = self._callbacks.get(id(tx))
                if cb is not None:
                    cb(action)
        if any(isinstance(a, Terminated) for a in actions):
            self._callbacks.pop(id(tx), None)

    def send_request(self, request: Request, peer: Peer, on_event: Callable[[Action], None] | None = None,
                     ) -> ClientTx:
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
            tx = ClientInviteTransaction(request, reliable, self.settings.timers)
        else:
            tx = ClientNonInviteTransaction(request, reliable, self.settings.timers)
        tx.user_data = peer
        if on_event is not None:
            self._callbacks[id(tx)] = on_event
        self._run(tx, self.transactions.add_client(tx, self.now()))
        self._arm()
        return tx

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """An ACK for a 2xx is sent outside any transaction (RFC 3261 §13.2.2.4)."""
        if not ack.headers.get("Via"):
            host, port = self.local_host(peer.transport)
            ack.headers.add("Via", str(Via(peer.transport.upper(), host, port,
                                           (("branch", new_branch()), ("rport", None)))), first=True)
        self.transports.send(bytes(ack), peer)

    def respond(self, tx: ServerTx, response: Response) -> None:
        if "Server" not in response.headers:
            response.headers.add("Server", self.settings.user_agent)
        self._run(tx, tx.respond(response, self.now()))
        self._arm()

    def respond_stateless(self, request: Request, status: int, peer: Peer, reason: str | None = None,
                          extra: list[tuple[str, str]] | None = None) -> None:
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

    # -- receiving ------------------------------------------------------------------------------------

    def receive(self, data: bytes, peer: Peer) -> None:
        """Entry point for every message the transports read."""
        self.stats["received"] += 1
        now = self.now()
        trusted = self.directory.trusted_peer(peer)
        if trusted is None:
            if self.bans.is_banned(peer.host, now):
                self.stats["dropped_banned"] += 1
                return
            if peer.addr in self._own:
                self.stats["dropped_own"] += 1  # a Via that named us made us answer ourselves: a loop
                return
        if len(data) > self.settings.max_message_size:
            return
        if data.strip(b"\r\n") == b"":
            return  # keep-alive (RFC 5626 §3.5.1)
        try:
            msg = parse_message(data, self.settings.max_headers)
        except ParseError as e:
            self.stats["parse_errors"] += 1
            if trusted is None:
                self.bans.record_request(peer.host, now)
            self._answer_bad(e, peer)
            return
        if isinstance(msg, Response):
            self._on_response(msg)
            return
        if trusted is None and self.bans.record_request(peer.host, now):
            log.warning("request flood: address silenced", extra={"fields": {"source": peer.host}})
            return
        self._on_request(msg, peer, trusted, now)

    def _answer_bad(self, error: ParseError, peer: Peer) -> None:
        """A request the parser refused is answered (400, or 505 for another SIP-Version) when its top Via
        names where the answer goes; with no readable Via there is nowhere to answer, and it is dropped."""
        partial = error.partial
        log.info("bad message", extra={"fields": {"source": f"{peer.host}:{peer.port}", "error": error.reason}})
        if not isinstance(partial, Request) or partial.method == "ACK":
            return
        if via_to_answer(partial) is None:
            return
        status = error.status
        reason = f"{REASONS.get(status, 'Bad Request')}: " + "".join(c for c in error.reason if c.isprintable())[:100]
        self.stats["bad_requests_answered"] += 1
        self.respond_stateless(partial, status, peer, reason)

    def _on_response(self, response: Response) -> None:
        tx = self.transactions.match_response(response)
        if tx is None:
            # A 2xx retransmission after the transaction ended is the TU's (RFC 6026 §7.2); others are strays.
            if 200 <= response.status < 300 and self.handler is not None and response.cseq.method == "INVITE":
                self.handler.on_stray_2xx(response)
            return
        self._run(tx, tx.receive(response, self.now()))
        self._arm()

    def _on_request(self, req: Request, peer: Peer, trusted: tuple[str, str] | None, now: float) -> None:
        via = req.top_via
        if via.branch == MAGIC_COOKIE:
            # The magic cookie with no identifier after it: no transaction can be told apart by it. RFC 4475
            # §3.2.1 prefers a stateless 400 (the peer's other requests will carry the same branch).
            if req.method != "ACK":
                self.stats["bad_requests_answered"] += 1
                self.respond_stateless(req, 400, peer, "Bad Request: Via branch is z9hG4bK with no identifier")
            return
        # RFC 3581: note where the request really came from, for the responses and for NAT.
        if via.param("rport") is not None or via.host != peer.host:
            params: list[tuple[str, str | None]] = []
            for k, v in via.params:
                if k.lower() == "rport":
                    params.append((k, str(peer.port)))
                elif k.lower() != "received":
                    params.append((k, v))
            params.append(("received", peer.host))
            req.headers.replace_first("Via", str(Via(via.transport, via.host, via.port, tuple(params))))
        tx = self.transactions.match_request(req)
        if tx is not None:
            self._run(tx, tx.receive(req, now))
            self._arm()
            return
        method = req.method
        if method == "ACK":
            if self.handler is not None:
                self.handler.on_in_dialog(req, None, peer)
            return
        if self.draining and method in ("INVITE", "REGISTER") and not req.to.tag:
            self.respond_stateless(req, 503, peer, extra=[("Retry-After", "30")])
            return
        try:
            stx: ServerTx = (ServerInviteTransaction(req, peer.transport != "udp", self.settings.timers)
                             if method == "INVITE"
                             else ServerNonInviteTransaction(req, peer.transport != "udp", self.settings.timers))
            stx.user_data = self.response_peer(req, peer)
            self._run(stx, self.transactions.add_server(stx, now))
        except TableFull:
            self.respond_stateless(req, 503, peer, "Server Busy", extra=[("Retry-After", "5")])
            return
        try:
            self._dispatch(req, stx, peer, trusted, now)
        except ParseError as e:
            # A header read lazily (Max-Forwards, Expires, Contact ...) turned out malformed.
            if stx.state in ("trying", "proceeding"):
                reason = "Bad Request: " + "".join(c for c in e.reason if c.isprintable())[:100]
                self.stats["bad_requests_answered"] += 1
                self.respond(stx, make_response(req, 400, reason, to_tag=secrets.token_hex(6)))

    def _dispatch(self, req: Request, stx: ServerTx, peer: Peer, trusted: tuple[str, str] | None,
                  now: float) -> None:
        method = req.method
        if method == "CANCEL":
            self._on_cancel(req, stx)
            return
        if req.to.tag:
            if method == "OPTIONS" and self.handler is None:
                self._options(req, stx)
                return
            if self.handler is not None:
                self.handler.on_in_dialog(req, stx, peer)
            else:
                self.respond(stx, make_response(req, 481))
            return
        refusal = inspect_request(req, OUT_OF_DIALOG, ALLOW)
        if refusal is not None:
            self.respond(stx, make_response(req, refusal.status, refusal.reason, to_tag=secrets.token_hex(6),
                                            extra=list(refusal.extra)))
            return
        if method == "OPTIONS":
            self._options(req, stx)
        elif method == "REGISTER":
            self._register(req, stx, peer, now)
        elif method == "INVITE":
            assert isinstance(stx, ServerInviteTransaction)
            self._invite(req, stx, peer, trusted, now)
        else:  # BYE, INFO, UPDATE, PRACK outside a dialog (inspect_request refused the rest)
            self.respond(stx, make_response(req, 481, to_tag=secrets.token_hex(6)))

    def _options(self, req: Request, tx: ServerTx) -> None:
        self.respond(tx, make_response(req, 200, to_tag=req.to.tag or secrets.token_hex(6), extra=[
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "replaces, timer")]))

    def _on_cancel(self, cancel: Request, tx: ServerTx) -> None:
        invite_tx = self.transactions.match_cancel(cancel)
        if invite_tx is None:
            self.respond(tx, make_response(cancel, 481))
            return
        self.respond(tx, make_response(cancel, 200))
        if self.handler is not None:
            self.handler.on_cancel(invite_tx)

    # -- authentication -------------------------------------------------------------------------------

    def tenant_of(self, req: Request) -> str | None:
        uri = req.uri if req.method == "REGISTER" else req.from_.uri
        host = uri.host if uri is not None else ""
        return self.directory.tenant_for_host(host)

    def _digest_for(self, tenant: str) -> digest.DigestServer:
        d = self._digest.get(tenant)
        if d is None:
            d = digest.DigestServer(self.directory.realm(tenant), self.settings.secret,
                                    nonce_lifetime=self.settings.nonce_lifetime)
            self._digest[tenant] = d
        return d

    def authenticate(self, req: Request, tx: ServerTx, peer: Peer, now: float, proxy: bool) -> Caller | None:
        """Check the request's credentials; answers the challenge itself and returns None when not ok."""
        tenant = self.tenant_of(req) or "default"
        d = self._digest_for(tenant)
        creds_header = "Proxy-Authorization" if proxy else "Authorization"
        challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        status = 407 if proxy else 401
        creds = req.headers.get(creds_header)
        stale = False
        if creds is not None:
            result: digest.AuthResult | None
            try:
                result = d.verify(creds, req.method, now, lambda user: self.directory.password(tenant, user))
                reason = result.reason or ""
            except digest.AuthError as e:
                result = None
                reason = str(e)
            if result is not None and result.ok:
                assert result.username is not None
                return Caller(tenant, "user", result.username)
            if result is not None and result.stale:
                stale = True
            else:
                self.stats["auth_failures"] += 1
                log.warning("authentication failed", extra={"fields": {
                    "source": f"{peer.host}:{peer.port}", "method": req.method, "reason": reason,
                    "user": _claimed_user(creds)}})
                if self.bans.record_failure(peer.host, now):
                    return None  # now banned: no answer at all
        agent = req.headers.get("User-Agent") or ""
        md5_only = any(agent.startswith(prefix) for prefix in self.settings.md5_only_user_agents)
        algorithms = ("MD5",) if md5_only else ("SHA-256", "MD5")
        extra = [(challenge_header, v) for v in d.challenge(now, stale=stale, algorithms=algorithms)]
        self.respond(tx, make_response(req, status, to_tag=secrets.token_hex(6), extra=extra))
        return None

    # -- REGISTER -------------------------------------------------------------------------------------

    def _register(self, req: Request, tx: ServerTx, peer: Peer, now: float) -> None:
        caller = self.authenticate(req, tx, peer, now, proxy=False)
        if caller is None:
            return
        to_uri = req.to.uri
        if to_uri is None or to_uri.user != caller.name:
            # A user registers only their own address of record (SECURITY.md: no claiming another identity).
            self.respond(tx, make_response(req, 403, "Forbidden: To is not your address of record",
                                           to_tag=secrets.token_hex(6)))
            return
        source = (peer.transport, peer.host, peer.port)
        try:
            result = self.registry.register((caller.tenant, caller.name), req, source, now)
        except ParseError as e:
            self.respond(tx, make_response(req, 400, f"Bad Request: {e.reason}", to_tag=secrets.token_hex(6)))
            return
        extra: list[tuple[str, str]] = []
        if result.min_expires is not None:
            extra.append(("Min-Expires", str(result.min_expires)))
        for b in result.bindings:
            extra.append(("Contact", str(b.contact.with_param("expires", str(b.expires_in(now))))))
        self.respond(tx, make_response(req, result.status, result.reason, to_tag=secrets.token_hex(6), extra=extra))
        if result.changed:
            log.info("registration", extra={"fields": {
                "tenant": caller.tenant, "user": caller.name, "contacts": len(result.bindings),
                "source": f"{peer.host}:{peer.port}"}})

    # -- INVITE ---------------------------------------------------------------------------------------

    def _invite(self, req: Request, tx: ServerInviteTransaction, peer: Peer, trusted: tuple[str, str] | None,
                now: float) -> None:
        mf = req.header_int("Max-Forwards")
        if mf is not None and mf <= 0:
            self.respond(tx, make_response(req, 483, to_tag=secrets.token_hex(6)))
            return
        caller: Caller | None
        if trusted is not None:
            caller = Caller(trusted[0], "endpoint", trusted[1])
        else:
            caller = self.authenticate(req, tx, peer, now, proxy=True)
            if caller is None:
                return
            from_uri = req.from_.uri
            if from_uri is None or from_uri.user != caller.name:
                self.respond(tx, make_response(req, 403, "Forbidden: From is not your identity",
                                               to_tag=secrets.token_hex(6)))
                return
        if self.handler is None:
            self.respond(tx, make_response(req, 480, to_tag=secrets.token_hex(6)))
            return
        self.handler.on_invite(req, tx, caller, peer)


def _claimed_user(creds: str) -> str:
    try:
        return str(digest.parse_credentials(creds).get("username", ""))
    except digest.AuthError:
        return ""


def via_to_answer(request: Request) -> Via | None:
    """The top Via as far as a response needs it (RFC 3261 §18.2.2): parsed whole, or, when its parameters
    are broken (RFC 4475 §3.1.2.1 `;;,;,,`), its sent-protocol and sent-by alone. None: no answer possible."""
    text = request.headers.get("Via")
    if text is None:
        return None
    try:
        return parse_via(text)
    except ParseError:
        pass
    try:
        return parse_via(text.partition(";")[0])
    except ParseError:
        return None
