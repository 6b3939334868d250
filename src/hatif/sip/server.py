"""The SIP server: transports, transaction layer, authentication, bans, registrar and dispatch.

This is the asyncio shell around the sans-IO cores, standing on the endpoint shell it shares with the
simulator's user agent (`hatif.sip.endpoint`: transports, transaction table, one deadline timer). Every
datagram or framed TCP message goes through `receive()`: bans, size and flood checks, parsing (a bad
request is answered `400` with the parser's reason when enough of it could be read, dropped otherwise),
transaction matching, and then the method's handler.

Who may do what (SECURITY.md): REGISTER and INVITE from users are always challenged, and a user who does
not exist gets the same challenge as one who does; only configured trusted endpoints (trunks, test tools)
are let in by their address. Failed authentications are logged with the source address and counted; past
the limit the address is silenced.

Bans stop attackers, not customers: only requests that prove nothing count toward the flood limit (parse
errors, out-of-dialog requests without valid credentials, in-dialog requests for no dialog), as Kamailio
places `pike` after its trusted-source check. A request that passes digest, a retransmission or a request
of a live dialog is never counted; an address that passed digest recently (an office behind one NAT, an
SBC) is not banned for the challenges its phones draw, and authenticated users have a generous rate limit
of their own, answered `503` with `Retry-After`, never a ban.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Literal, Protocol

from . import auth as digest
from .admission import Admission, AdmissionSettings, Refusal, Shedder
from .endpoint import ServerTx as ServerTx  # re-exported: what the B2BUA answers through
from .endpoint import SipEndpoint
from .endpoint import via_to_answer as via_to_answer
from .errors import ParseError
from .headers import Via
from .inspection import inspect_request
from .message import REASONS, Request, Response, make_response, parse_message
from .registrar import RegistrarPolicy, Registry
from .security import BanList, RateLimiter
from .transaction import ServerInviteTransaction, TableFull, Timers, new_branch
from .transport import Addr, Peer
from .uri import URI

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY"
# Methods answered outside a dialog (BYE, INFO, UPDATE and PRACK with a 481); others are 405 or 501.
OUT_OF_DIALOG = frozenset(("OPTIONS", "REGISTER", "INVITE", "BYE", "INFO", "UPDATE", "PRACK"))
MAGIC_COOKIE = "z9hG4bK"



class Directory(Protocol):
    """What the SIP server needs to know of tenants, users and endpoints (the dial plan is call control's)."""

    def tenant_for_host(self, host: str) -> str | None: ...
    def realm(self, tenant: str) -> str: ...
    def ha1(self, tenant: str, username: str, algorithm: str) -> str | None: ...
    def digest_algorithms(self, tenant: str, username: str | None) -> tuple[str, ...]: ...
    def has_user(self, tenant: str, username: str) -> bool: ...
    def display_name(self, tenant: str, username: str) -> str | None: ...
    def language(self, tenant: str, username: str) -> str: ...
    def trusted_peer(self, peer: Peer) -> tuple[str, str] | None: ...  # (tenant, endpoint name)


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
    proven_source_seconds: float = 60.0
    user_request_rate: float = 250.0
    user_request_burst: int = 500
    nonce_lifetime: float = 300.0
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, once accepted: an authenticated user or a trusted endpoint."""

    tenant: str
    kind: Literal["user", "endpoint"]
    name: str


class RequestHandler(Protocol):
    """The part above the server that takes calls (the B2BUA)."""

    def on_invite(self, request: Request, tx: ServerInviteTransaction, caller: Caller, peer: Peer) -> None: ...
    def on_in_dialog(self, request: Request, tx: ServerTx | None, peer: Peer) -> bool:
        """Handle a request of a dialog (or an ACK); False when it matches no dialog Hatif holds."""
        ...
    def on_cancel(self, invite_tx: ServerInviteTransaction) -> None: ...
    def on_stray_2xx(self, response: Response) -> None: ...


class SipServer(SipEndpoint):
    """The endpoint shell plus what a server adds: bans, admission, authentication, the registrar."""

    def __init__(self, directory: Directory, settings: SipSettings | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.directory = directory
        self.settings = settings or SipSettings()
        s = self.settings
        super().__init__(loop or asyncio.get_running_loop(), timers=s.timers, max_transactions=s.max_transactions,
                         signature=("Server", s.user_agent), max_message_size=s.max_message_size,
                         max_headers=s.max_headers, advertise=s.advertise)
        self.registry = Registry(self.settings.registrar)
        self.bans = BanList(failure_limit=s.auth_failure_limit, failure_window=s.auth_failure_window,
                            flood_limit=s.flood_limit, flood_window=s.flood_window, ban_time=s.ban_time,
                            proven_time=s.proven_source_seconds)
        self.rates = RateLimiter(s.user_request_rate, s.user_request_burst)
        self._digest: dict[str, digest.DigestServer] = {}
        self.handler: RequestHandler | None = None
        self.stats = {"received": 0, "parse_errors": 0, "dropped_banned": 0, "dropped_own": 0, "auth_failures": 0,
                      "bad_requests_answered": 0, "rate_limited": 0}
        self._own: set[tuple[str, int]] = set()  # our own listening addresses
        self.admission = Admission(self.settings.admission)
        self.shedder = Shedder(self.settings.admission.retry_after, window=64 * self.settings.timers.t1)
        self.transports.delay.shed = self._shed
        self._shed_logged = 0.0

    @property
    def draining(self) -> bool:
        """Set on SIGTERM: new calls, registrations and OPTIONS are answered 503 (SECURITY.md: draining)."""
        return self.admission.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.admission.draining = value

    # -- lifecycle ------------------------------------------------------------------------------------

    async def listen(self, transport: str, host: str, port: int) -> Addr:
        addr = await super().listen(transport, host, port)
        self._own.add((addr[0], addr[1]))
        if addr[0] in ("0.0.0.0", "::"):
            self._own.add(("127.0.0.1" if addr[0] == "0.0.0.0" else "::1", addr[1]))
        log.info("sip listening", extra={"fields": {"transport": transport, "address": f"{addr[0]}:{addr[1]}"}})
        return addr

    def contact_uri(self, transport: str, user: str | None = None) -> URI:
        host, port = self.local_host(transport)
        params: tuple[tuple[str, str | None], ...] = () if transport == "udp" else (("transport", transport),)
        return URI("sip", host, user, None, port, params)

    # -- sending --------------------------------------------------------------------------------------

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """An ACK for a 2xx is sent outside any transaction (RFC 3261 §13.2.2.4)."""
        if not ack.headers.get("Via"):
            host, port = self.local_host(peer.transport)
            ack.headers.add("Via", str(Via(peer.transport.upper(), host, port,
                                           (("branch", new_branch()), ("rport", None)))), first=True)
        self.transports.send(bytes(ack), peer)

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
            if trusted is None and self._unproven(peer, now):
                return
            self._answer_bad(e, peer)
            return
        if isinstance(msg, Response):
            self.receive_response(msg)
            return
        self._on_request(msg, peer, trusted, now)

    def _unproven(self, peer: Peer, now: float) -> bool:
        """Count a request that proved nothing (no valid credentials, no dialog) from an untrusted source
        toward the flood limit; True when the address is now silenced and nothing must be answered.

        An address that passed digest lately is not banned for volume: its phones' first requests draw
        challenges as a matter of course. Its unproven requests share the users' generous rate instead."""
        if self.bans.is_proven(peer.host, now) or self.directory.trusted_peer(peer) is not None:
            return False  # trusted endpoints are never banned (a mutated Via could otherwise ban the host)
        if self.bans.record_request(peer.host, now):
            log.warning("request flood: address silenced", extra={"fields": {"source": peer.host}})
            return True
        return False

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

    def on_stray(self, response: Response) -> None:
        # A 2xx retransmission after the transaction ended is the TU's (RFC 6026 §7.2); others are strays.
        if 200 <= response.status < 300 and self.handler is not None and response.cseq.method == "INVITE":
            self.handler.on_stray_2xx(response)

    def on_ack(self, request: Request, peer: Peer) -> None:
        if self.handler is not None:
            self.handler.on_in_dialog(request, None, peer)

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
        if self.receive_retransmission(req, now):
            return
        method = req.method
        if method == "ACK":
            matched = self.handler is not None and self.handler.on_in_dialog(req, None, peer)
            if not matched and trusted is None:
                self._unproven(peer, now)
            return
        if not req.to.tag and self._refused(req, peer, now):
            return
        try:
            stx = self.open_server(req, peer, now)
        except TableFull:
            self.respond_stateless(req, 503, peer, "Server Busy", extra=[("Retry-After", "5")])
            return
        try:
            self._dispatch(req, stx, peer, trusted, now)
        except ParseError as e:
            if self.answer_bad_header(req, stx, e):
                self.stats["bad_requests_answered"] += 1

    def _shed(self, data: bytes, peer: Peer, delay: float) -> bool:
        """Every UDP datagram, before parsing: the ACK of a raw refusal is dropped; while Hatif is behind
        (`sip.admission.max_queue_delay`) a new INVITE is refused from its raw bytes. True: nothing more
        to do with the datagram."""
        if data[:4] == b"ACK ":
            return self.shedder.drop_ack(data)
        if not self.admission.observe(delay, self.now()) or data[:7] != b"INVITE ":
            return False
        if self.directory.trusted_peer(peer) is None and self.bans.is_banned(peer.host, self.now()):
            return True
        verdict = self.shedder.shed(data, self.now(), self.transactions.has_server)
        if verdict is True or verdict is False:
            return verdict
        response, invite = verdict
        self.admission.stats["refused_late"] += 1
        self.transports.send(response, peer if invite.rport else Peer("udp", peer.host, invite.port))
        self._log_refusals("late", self.now())
        return True

    def _refused(self, req: Request, peer: Peer, now: float) -> bool:
        """Admission control for a request outside any dialog and transaction (`sip.admission`): a new
        INVITE that waited too long unread or finds too many calls being set up, or anything new while
        draining, gets 503 with Retry-After from a transaction of its own, before any call, dialog or media
        state is made for it."""
        refusal: Refusal | None
        if req.method == "INVITE":
            refusal = self.admission.invite(self.transports.delay.seconds, now)
        else:
            refusal = self.admission.other(req.method, now)
        if refusal is None and req.method == "INVITE" and self.shedder.refused_before(req.top_via.branch):
            refusal = Refusal(503, "Service Unavailable: overloaded", self.settings.admission.retry_after, "late")
        if refusal is None:
            return False
        extra = [("Retry-After", str(refusal.retry_after))]
        # A transaction of its own absorbs the INVITE's retransmissions and the ACK: a retransmission taken
        # for a new INVITE once the load fell would be answered, to a caller who already had its 503.
        try:
            stx = self.open_server(req, peer, now)
        except TableFull:
            self.respond_stateless(req, refusal.status, peer, refusal.reason, extra=extra)
        else:
            self.respond(stx, make_response(req, refusal.status, refusal.reason, to_tag=secrets.token_hex(6),
                                            extra=extra))
        self._log_refusals(refusal.cause, now)
        return True

    def _log_refusals(self, cause: str, now: float) -> None:
        if now - self._shed_logged < 5.0:
            return
        self._shed_logged = now
        since = self.admission.take_refusals_since()
        log.warning("new calls refused", extra={"fields": {
            "cause": cause, "since_s": round(now - since, 1) if since is not None else 0,
            "queue_delay_ms": round(self.admission.take_worst_delay() * 1000),
            "setups": self.admission.setups, **self.admission.stats,
            "acks_dropped": self.shedder.stats["acks_dropped"]}})

    def _dispatch(self, req: Request, stx: ServerTx, peer: Peer, trusted: tuple[str, str] | None,
                  now: float) -> None:
        method = req.method
        proven = trusted is not None
        if method == "CANCEL":
            proven = self._on_cancel(req, stx) or proven
        elif req.to.tag:
            if method == "OPTIONS" and self.handler is None:
                self._options(req, stx)
            elif self.handler is not None:
                proven = self.handler.on_in_dialog(req, stx, peer) or proven
            else:
                self.respond(stx, make_response(req, 481))
        elif (refusal := inspect_request(req, OUT_OF_DIALOG, ALLOW)) is not None:
            if not proven and self._unproven(peer, now):
                return  # silenced: not even the answer
            self.respond(stx, make_response(req, refusal.status, refusal.reason, to_tag=secrets.token_hex(6),
                                            extra=list(refusal.extra)))
            return
        elif method == "REGISTER":
            self._register(req, stx, peer, now)
            return  # authentication counts for itself
        elif method == "INVITE":
            assert isinstance(stx, ServerInviteTransaction)
            self._invite(req, stx, peer, trusted, now)
            return
        elif method == "OPTIONS":
            if not proven and self._unproven(peer, now):
                return  # silenced: not even the answer
            self._options(req, stx)
            return
        else:  # BYE, INFO, UPDATE, PRACK outside a dialog (inspect_request refused the rest)
            self.respond(stx, make_response(req, 481, to_tag=secrets.token_hex(6)))
        if not proven:
            self._unproven(peer, now)

    def _options(self, req: Request, tx: ServerTx) -> None:
        self.respond(tx, make_response(req, 200, to_tag=req.to.tag or secrets.token_hex(6), extra=[
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "replaces, timer")]))

    def _on_cancel(self, cancel: Request, tx: ServerTx) -> bool:
        """Answer a CANCEL; True when it matched an INVITE transaction (RFC 3261 §9.2)."""
        invite_tx = self.transactions.match_cancel(cancel)
        if invite_tx is None:
            self.respond(tx, make_response(cancel, 481))
            return False
        self.respond(tx, make_response(cancel, 200))
        if self.handler is not None:
            self.handler.on_cancel(invite_tx)
        return True

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
        """Check the request's credentials; answers the challenge (or the rate limit's 503) itself and returns
        None when not ok.

        The challenge offers the claimed user's algorithms (To for REGISTER, From otherwise), or the tenant's
        for a user that does not exist; credentials in an algorithm the user is not allowed fail like a wrong
        password."""
        tenant = self.tenant_of(req) or "default"
        d = self._digest_for(tenant)
        creds_header = "Proxy-Authorization" if proxy else "Authorization"
        challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        status = 407 if proxy else 401
        creds = req.headers.get(creds_header)
        stale = False
        directory = self.directory

        def secret(user: str, algorithm: str) -> str | None:
            allowed = directory.digest_algorithms(tenant, user if directory.has_user(tenant, user) else None)
            return directory.ha1(tenant, user, algorithm) if algorithm in allowed else None

        if creds is not None:
            result: digest.AuthResult | None
            try:
                result = d.verify(creds, req.method, now, secret)
                reason = result.reason or ""
            except digest.AuthError as e:
                result = None
                reason = str(e)
            if result is not None and result.ok:
                assert result.username is not None
                self.bans.record_success(peer.host, now)
                if not self.rates.allow((tenant, result.username), now):
                    self._rate_limited(req, tx, peer, result.username)
                    return None
                return Caller(tenant, "user", result.username)
            if result is not None and result.stale:
                stale = True
            else:
                self.stats["auth_failures"] += 1
                log.warning("authentication failed", extra={"fields": {
                    "source": f"{peer.host}:{peer.port}", "method": req.method, "reason": reason,
                    "user": _claimed_user(creds)}})
                trusted = self.directory.trusted_peer(peer) is not None
                if not trusted and (self.bans.record_failure(peer.host, now) or self._unproven(peer, now)):
                    return None  # now banned: no answer at all
        elif self.bans.is_proven(peer.host, now):
            if not self.rates.allow(peer.host, now):
                self._rate_limited(req, tx, peer, None)
                return None
        elif self._unproven(peer, now):
            return None
        uri = req.to.uri if req.method == "REGISTER" else req.from_.uri
        claimed = uri.user if uri is not None else None
        algorithms = directory.digest_algorithms(
            tenant, claimed if claimed is not None and directory.has_user(tenant, claimed) else None)
        extra = [(challenge_header, v) for v in d.challenge(now, stale=stale, algorithms=algorithms)]
        self.respond(tx, make_response(req, status, to_tag=secrets.token_hex(6), extra=extra))
        return None

    def _rate_limited(self, req: Request, tx: ServerTx, peer: Peer, user: str | None) -> None:
        """Over the generous rate of a user or of a proven address: `503` with Retry-After, never a ban."""
        self.stats["rate_limited"] += 1
        if self.stats["rate_limited"] % 100 == 1:
            log.warning("request rate limited", extra={"fields": {
                "source": f"{peer.host}:{peer.port}", "user": user or "", "method": req.method}})
        self.respond(tx, make_response(req, 503, "Service Unavailable: request rate", to_tag=secrets.token_hex(6),
                                       extra=[("Retry-After", "1")]))

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
