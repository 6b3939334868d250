"""The back-to-back user agent: every call is two dialogs that Hatif joins (RFC 3261 §6 "B2BUA", RFC 7092).

The caller's leg (A) ends at Hatif and Hatif places a new call (leg B) with a fresh Call-ID, tags and
CSeq toward the callee, so that nothing of one side leaks to the other and Hatif stays in the middle of
every call for the media engine, recording and the ACD to come. What happens on B is mapped to A:

- provisional responses pass on (180, and 183 with its SDP); the SDP passes through unchanged for now;
- a 2xx on B is ACKed by Hatif and answered to A with a 2xx of its own, retransmitted until A's ACK
  (RFC 3261 §13.3.1.4);
- a final failure on B (486 busy, 408/480 unreachable, 603 ...) is passed to A; B's authentication
  challenges are not (A gets 480);
- A's CANCEL is answered 487 at once and mapped to a CANCEL on B (sent only once B has answered
  provisionally, RFC 3261 §9.1); no answer within the ring timeout does the same and tells A `480 No Answer`;
- BYE from either side is answered and sent to the other; in-dialog requests (re-INVITE, UPDATE, INFO)
  are relayed with their bodies and their final responses relayed back.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .dialog import Dialog, make_cancel, new_tag
from .errors import ParseError
from .headers import Headers, NameAddr
from .message import Request, Response, make_response
from .server import Caller, SipServer, Target
from .transaction import (
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    DeliverResponse,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimedOut,
)
from .transport import Peer
from .uri import URI

log = logging.getLogger(__name__)


class MediaAnchor(Protocol):
    """What the B2BUA asks of the media layer at each SDP it passes on (implemented in `hatif.calls`).

    Sides are "a" (the caller's leg) and "b" (the callee's). Each method returns the body to send on.
    """

    def offer(self, call_id: str, from_side: str, body: bytes) -> bytes: ...
    def answer(self, call_id: str, from_side: str, body: bytes) -> bytes: ...
    def answer_locally(self, call_id: str, offer_body: bytes) -> bytes: ...
    def run_app(self, call_id: str, app: str, language: str, hang_up: Callable[[], None]) -> None: ...
    def end(self, call_id: str) -> None: ...


class CallState(enum.Enum):
    ROUTING = "routing"  # B leg sent, nothing heard yet
    RINGING = "ringing"  # a provisional response came back
    ANSWERED = "answered"
    ENDING = "ending"  # a final failure, CANCEL or BYE is on its way
    ENDED = "ended"


@dataclass(eq=False, slots=True)
class B2BCall:
    """One call through Hatif: leg A (caller to Hatif) and leg B (Hatif to callee)."""

    id: str
    tenant: str
    caller: Caller
    target: Target
    a_invite: Request
    a_tx: ServerInviteTransaction
    a_peer: Peer
    a_tag: str
    b_peer: Peer | None
    b_invite: Request | None
    started: float
    state: CallState = CallState.ROUTING
    b_tx: ClientInviteTransaction | None = None
    a_dialog: Dialog | None = None
    b_dialog: Dialog | None = None
    a_final: bool = False
    b_provisional: bool = False
    cancel_pending: bool = False
    b_cancelled: bool = False
    b_ack: bytes | None = None
    a_2xx: bytes | None = None
    a_acked: bool = False
    answered_at: float | None = None
    pending_byes: int = 0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    retransmit_interval: float = 0.5
    retransmit_until: float = 0.0


class B2BUA:
    """Takes the INVITEs the SIP server accepted and joins caller and callee."""

    def __init__(self, server: SipServer, anchor: MediaAnchor | None = None) -> None:
        self.server = server
        self.anchor = anchor
        self.calls: dict[str, B2BCall] = {}
        self._by_leg: dict[tuple[str, str], tuple[B2BCall, str]] = {}  # (Call-ID, our tag) -> call, "a"|"b"
        self._by_a_tx: dict[int, B2BCall] = {}
        self._by_b_call_id: dict[str, B2BCall] = {}
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "cancelled": 0, "no_answer": 0}
        server.handler = self

    # -- new calls ------------------------------------------------------------------------------------

    def on_invite(self, request: Request, tx: ServerInviteTransaction, caller: Caller, peer: Peer) -> None:
        srv = self.server
        a_tag = new_tag()
        srv.respond(tx, make_response(request, 100))
        if len(self.calls) >= srv.settings.max_dialogs:
            srv.respond(tx, make_response(request, 503, "Too Many Calls", to_tag=a_tag, extra=[("Retry-After", "5")]))
            return
        number = request.uri.user
        target = srv.directory.route(caller.tenant, number) if number else None
        if target is None:
            srv.respond(tx, make_response(request, 404, to_tag=a_tag))
            return
        now = srv.now()
        call_id = secrets.token_hex(8)
        if target.kind == "app":
            self._answer_locally(call_id, request, tx, caller, target, peer, a_tag, now)
            return
        if target.kind == "user":
            bindings = srv.registry.lookup((target.tenant, target.name), now)
            if not bindings:
                srv.respond(tx, make_response(request, 480, "Temporarily Unavailable: not registered", to_tag=a_tag))
                return
            b = bindings[0]
            b_peer = Peer(b.source[0], b.source[1], b.source[2])
            ruri = b.uri
            to_uri = URI("sip", srv.local_host(b_peer.transport)[0], target.name)
        else:
            assert target.peer is not None
            b_peer = target.peer
            ruri = URI("sip", b_peer.host, target.number, None, b_peer.port,
                       () if b_peer.transport == "udp" else (("transport", b_peer.transport),))
            to_uri = ruri
        body = request.body
        if self.anchor is not None and body:
            try:
                body = self.anchor.offer(call_id, "a", body)
            except (ValueError, RuntimeError) as e:
                self._refuse_media(call_id, request, tx, a_tag, e)
                return
        b_invite = self._b_invite(request, caller, ruri, to_uri, b_peer, body)
        call = B2BCall(call_id, caller.tenant, caller, target, request, tx, peer, a_tag, b_peer,
                       b_invite, now, retransmit_interval=srv.settings.timers.t1)
        self._track(call)
        b_call_id = b_invite.call_id
        self._by_leg[(b_call_id, b_invite.from_.tag or "")] = (call, "b")
        self._by_b_call_id[b_call_id] = call
        log.debug("call routing", extra={"fields": {"call": call.id, "from": caller.name, "to": number,
                                                    "target": f"{target.kind}:{target.name}"}})
        tx_b = srv.send_request(b_invite, b_peer, lambda action: self._on_b_invite_event(call, action))
        assert isinstance(tx_b, ClientInviteTransaction)
        call.b_tx = tx_b
        call.timers.append(srv.loop.call_later(srv.settings.ring_timeout, self._ring_timeout, call))

    def _refuse_media(self, call_id: str, request: Request, tx: ServerInviteTransaction, a_tag: str,
                      error: Exception) -> None:
        """An SDP we cannot use is 488 (RFC 3264 §6); no RTP port left is 503, worth a retry later."""
        assert self.anchor is not None
        self.anchor.end(call_id)
        if isinstance(error, ValueError):
            resp = make_response(request, 488, f"Not Acceptable Here: {error}"[:120], to_tag=a_tag)
        else:
            log.warning("media unavailable", extra={"fields": {"error": str(error)}})
            resp = make_response(request, 503, "Service Unavailable: no media port", to_tag=a_tag,
                                 extra=[("Retry-After", "5")])
        self.server.respond(tx, resp)

    def _track(self, call: B2BCall) -> None:
        self.calls[call.id] = call
        self._by_a_tx[id(call.a_tx)] = call
        self._by_leg[(call.a_invite.call_id, call.a_tag)] = (call, "a")
        self.stats["calls"] += 1

    def _answer_locally(self, call_id: str, request: Request, tx: ServerInviteTransaction, caller: Caller,
                        target: Target, peer: Peer, a_tag: str, now: float) -> None:
        """A number served by Hatif itself (echo test, greeting): answer with our own SDP, run the app."""
        srv = self.server
        if self.anchor is None or not request.body:
            srv.respond(tx, make_response(request, 488, "Not Acceptable Here: no media", to_tag=a_tag))
            return
        try:
            body = self.anchor.answer_locally(call_id, request.body)
        except (ValueError, RuntimeError) as e:
            self._refuse_media(call_id, request, tx, a_tag, e)
            return
        call = B2BCall(call_id, caller.tenant, caller, target, request, tx, peer, a_tag, None, None, now,
                       retransmit_interval=srv.settings.timers.t1)
        self._track(call)
        self._answer_a(call, body, "application/sdp")
        language = srv.directory.language(caller.tenant, caller.name) if caller.kind == "user" else "en"
        self.anchor.run_app(call_id, target.name, language, lambda: self._hang_up(call))

    def _hang_up(self, call: B2BCall) -> None:
        if call.state is CallState.ANSWERED:
            self._send_bye(call, "a")
            self._send_bye(call, "b")

    def _b_invite(self, a: Request, caller: Caller, ruri: URI, to_uri: URI, b_peer: Peer, body: bytes) -> Request:
        srv = self.server
        a_from = a.from_
        host = srv.local_host(b_peer.transport)[0]
        if caller.kind == "user":
            display = srv.directory.display_name(caller.tenant, caller.name) or a_from.display
            from_uri = URI("sip", host, caller.name)
        else:
            display = a_from.display
            from_uri = URI("sip", host, a_from.uri.user if a_from.uri is not None else None)
        mf = a.header_int("Max-Forwards")
        h = Headers([
            ("From", str(NameAddr(from_uri, display, (("tag", new_tag()),)))),
            ("To", str(NameAddr(to_uri))),
            ("Call-ID", f"{secrets.token_hex(12)}@hatif"),
            ("CSeq", "1 INVITE"),
            ("Contact", str(NameAddr(srv.contact_uri(b_peer.transport, "hatif")))),
            ("Max-Forwards", str((mf if mf is not None else 70) - 1)),
            ("User-Agent", srv.settings.user_agent),
        ])
        for name in ("Content-Type", "Allow"):
            v = a.headers.get(name)
            if v is not None:
                h.add(name, v)
        return Request(h, body, "INVITE", ruri)

    # -- what happens on leg B ------------------------------------------------------------------------

    def _on_b_invite_event(self, call: B2BCall, action: Action) -> None:
        if isinstance(action, TimedOut):
            self._fail_a(call, 408, "Request Timeout")
            self._end(call)
            return
        if not isinstance(action, DeliverResponse):
            return
        resp = action.response
        status = resp.status
        if status == 100:
            return
        if status < 200:
            call.b_provisional = True
            if call.cancel_pending:
                self._cancel_b(call)
                return
            if call.a_final or call.state not in (CallState.ROUTING, CallState.RINGING):
                return
            call.state = CallState.RINGING
            extra = [("Contact", str(NameAddr(self.server.contact_uri(call.a_peer.transport, "hatif"))))]
            ctype = resp.headers.get("Content-Type")
            body = b""
            if resp.body and ctype:
                body = self._media(call, "answer", "b", resp.body)
                if body:
                    extra.append(("Content-Type", ctype))
            self.server.respond(call.a_tx, make_response(call.a_invite, status, resp.reason, call.a_tag, body, extra))
            return
        if status < 300:
            self._b_answered(call, resp)
            return
        # A final failure on B; the client transaction has ACKed it already.
        if status in (401, 407):
            self._fail_a(call, 480, "Temporarily Unavailable")
        elif not call.a_final:
            self._fail_a(call, status, resp.reason)
        self._end(call)

    def _media(self, call: B2BCall, kind: str, from_side: str, body: bytes) -> bytes:
        """Pass an SDP body through the media anchor (unchanged without one; empty if it is unusable)."""
        if self.anchor is None or not body:
            return body
        try:
            if kind == "offer":
                return self.anchor.offer(call.id, from_side, body)
            return self.anchor.answer(call.id, from_side, body)
        except (ValueError, RuntimeError) as e:
            log.info("unusable SDP", extra={"fields": {"call": call.id, "side": from_side, "error": str(e)}})
            return b""

    def _b_answered(self, call: B2BCall, resp: Response) -> None:
        srv = self.server
        assert call.b_invite is not None and call.b_peer is not None
        if call.b_dialog is None:
            try:
                dialog = Dialog.uac(call.b_invite, resp)
            except ParseError as e:
                log.info("bad 2xx on leg B", extra={"fields": {"call": call.id, "error": e.reason}})
                return
            call.b_dialog = dialog
            ack = dialog.create_ack(call.b_invite)
            srv.send_ack(ack, call.b_peer)
            call.b_ack = bytes(ack)
        elif call.b_ack is not None:
            srv.transports.send(call.b_ack, call.b_peer)  # a retransmitted 2xx: ACK again
            return
        if call.a_final or call.state in (CallState.ENDING, CallState.ENDED):
            # Answered after the caller gave up: hang the callee up (RFC 3261 §9.1, race with CANCEL).
            self._send_bye(call, "b")
            return
        body = self._media(call, "answer", "b", resp.body)
        self._answer_a(call, body, resp.headers.get("Content-Type") if body else None)

    def _answer_a(self, call: B2BCall, body: bytes, ctype: str | None) -> None:
        """Answer the caller with our own 200 (our tag, our Contact), retransmitted until the ACK."""
        srv = self.server
        call.state = CallState.ANSWERED
        call.answered_at = srv.now()
        self.stats["answered"] += 1
        extra = [("Contact", str(NameAddr(srv.contact_uri(call.a_peer.transport, "hatif"))))]
        if ctype:
            extra.append(("Content-Type", ctype))
        ok = make_response(call.a_invite, 200, "OK", call.a_tag, body, extra)
        call.a_final = True
        call.a_dialog = Dialog.uas(call.a_invite, call.a_tag)
        srv.respond(call.a_tx, ok)
        call.a_2xx = bytes(ok)
        call.retransmit_until = srv.now() + 64 * srv.settings.timers.t1
        self._cancel_timers(call)
        call.timers.append(srv.loop.call_later(call.retransmit_interval, self._retransmit_2xx, call))

    def _retransmit_2xx(self, call: B2BCall) -> None:
        """RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx until the ACK comes, then gives up."""
        if call.a_acked or call.state is not CallState.ANSWERED or call.a_2xx is None:
            return
        srv = self.server
        if srv.now() >= call.retransmit_until:
            log.info("no ACK for 2xx: ending call", extra={"fields": {"call": call.id}})
            self._send_bye(call, "a")
            self._send_bye(call, "b")
            return
        srv.transports.send(call.a_2xx, call.a_tx.user_data if isinstance(call.a_tx.user_data, Peer)
                            else call.a_peer)
        call.retransmit_interval = min(call.retransmit_interval * 2, srv.settings.timers.t2)
        call.timers.append(srv.loop.call_later(call.retransmit_interval, self._retransmit_2xx, call))

    def _fail_a(self, call: B2BCall, status: int, reason: str) -> None:
        if call.a_final:
            return
        call.a_final = True
        call.state = CallState.ENDING
        self.stats["failed"] += 1
        self.server.respond(call.a_tx, make_response(call.a_invite, status, reason, call.a_tag))

    def _cancel_b(self, call: B2BCall) -> None:
        if call.b_cancelled or call.b_dialog is not None or call.b_invite is None or call.b_peer is None:
            return
        if not call.b_provisional:
            call.cancel_pending = True  # RFC 3261 §9.1: no CANCEL before a provisional response
            return
        call.b_cancelled = True
        call.cancel_pending = False
        self.server.send_request(make_cancel(call.b_invite), call.b_peer)
        # RFC 3261 §9.1: a client INVITE in Proceeding has no Timer B; if no final response follows the
        # CANCEL within 64*T1, the transaction is given up.
        call.timers.append(self.server.loop.call_later(64 * self.server.settings.timers.t1, self._give_up_b, call))

    def _give_up_b(self, call: B2BCall) -> None:
        if call.b_tx is not None and call.b_dialog is None:
            self.server.transactions.remove(call.b_tx)
        self._end(call)

    def _ring_timeout(self, call: B2BCall) -> None:
        if call.state not in (CallState.ROUTING, CallState.RINGING) or call.a_final:
            return
        self.stats["no_answer"] += 1
        self._fail_a(call, 480, "No Answer")
        self.stats["failed"] -= 1
        self._cancel_b(call)

    # -- CANCEL from A --------------------------------------------------------------------------------

    def on_cancel(self, invite_tx: ServerInviteTransaction) -> None:
        call = self._by_a_tx.get(id(invite_tx))
        if call is None:
            if invite_tx.state in ("trying", "proceeding"):
                self.server.respond(invite_tx, make_response(invite_tx.request, 487, to_tag=new_tag()))
            return
        if call.a_final:
            return
        call.a_final = True
        call.state = CallState.ENDING
        self.stats["cancelled"] += 1
        self.server.respond(call.a_tx, make_response(call.a_invite, 487, to_tag=call.a_tag))
        self._cancel_b(call)

    # -- in-dialog requests ---------------------------------------------------------------------------

    def on_in_dialog(self, request: Request, tx: ServerInviteTransaction | ServerNonInviteTransaction | None,
                     peer: Peer) -> None:
        srv = self.server
        to_tag = request.to.tag
        found = self._by_leg.get((request.call_id, to_tag or ""))
        if found is None:
            if tx is not None:
                srv.respond(tx, make_response(request, 481))
            return
        call, side = found
        if request.method == "ACK":
            if side == "a":
                call.a_acked = True
            return
        if tx is None:
            return
        dialog = call.a_dialog if side == "a" else call.b_dialog
        if dialog is None:
            srv.respond(tx, make_response(request, 481))
            return
        error = dialog.receive_request(request)
        if error is not None:
            srv.respond(tx, error)
            return
        if request.method == "BYE":
            srv.respond(tx, make_response(request, 200))
            if side == "a":
                call.a_dialog = None
            else:
                call.b_dialog = None
            call.state = CallState.ENDING
            other = "b" if side == "a" else "a"
            if not self._send_bye(call, other):
                self._end(call)
            return
        self._relay(call, side, request, tx)

    def _send_bye(self, call: B2BCall, side: str) -> bool:
        """Send BYE on a leg; the call ends when every BYE sent is answered. False when no dialog is left."""
        dialog = call.a_dialog if side == "a" else call.b_dialog
        if dialog is None:
            return False
        peer = call.a_peer if side == "a" else call.b_peer
        assert peer is not None
        bye = dialog.create_request("BYE")
        if side == "a":
            call.a_dialog = None
        else:
            call.b_dialog = None
        call.state = CallState.ENDING
        call.pending_byes += 1

        def done(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            call.pending_byes -= 1
            if call.pending_byes <= 0:
                self._end(call)

        self.server.send_request(bye, peer, done)
        return True

    def _relay(self, call: B2BCall, side: str, request: Request,
               tx: ServerInviteTransaction | ServerNonInviteTransaction) -> None:
        """Pass an in-dialog request (re-INVITE, UPDATE, INFO ...) to the other leg, and its answer back."""
        srv = self.server
        other_dialog = call.b_dialog if side == "a" else call.a_dialog
        other_peer = call.b_peer if side == "a" else call.a_peer
        if other_dialog is None or other_peer is None:
            srv.respond(tx, make_response(request, 481))
            return
        extra = []
        ctype = request.headers.get("Content-Type")
        body = request.body
        if ctype and ctype.lower().startswith("application/sdp") and body:
            body = self._media(call, "offer", side, body)
        if ctype and body:
            extra.append(("Content-Type", ctype))
        out = other_dialog.create_request(request.method, body, extra)
        if out.method == "INVITE":
            out.headers.add("Contact", str(NameAddr(srv.contact_uri(other_peer.transport, "hatif"))))
        this_dialog = call.a_dialog if side == "a" else call.b_dialog

        def answered(action: Action) -> None:
            if isinstance(action, TimedOut):
                srv.respond(tx, make_response(request, 408))
                return
            if not isinstance(action, DeliverResponse):
                return
            resp = action.response
            if resp.status < 200:
                return
            if out.method == "INVITE" and resp.status < 300:
                srv.send_ack(other_dialog.create_ack(out), other_peer)
            reply_extra = []
            rtype = resp.headers.get("Content-Type")
            reply_body = resp.body
            if rtype and rtype.lower().startswith("application/sdp") and reply_body and resp.status < 300:
                reply_body = self._media(call, "answer", "b" if side == "a" else "a", reply_body)
            if rtype and reply_body:
                reply_extra.append(("Content-Type", rtype))
            if request.method == "INVITE":
                reply_extra.append(("Contact", str(NameAddr(srv.contact_uri(tx.user_data.transport
                                                                             if isinstance(tx.user_data, Peer)
                                                                             else "udp", "hatif")))))
            local_tag = this_dialog.local_tag if this_dialog is not None else None
            srv.respond(tx, make_response(request, resp.status, resp.reason, local_tag, reply_body, reply_extra))

        sent = srv.send_request(out, other_peer, answered)
        assert isinstance(sent, ClientInviteTransaction | ClientNonInviteTransaction)

    def on_stray_2xx(self, response: Response) -> None:
        call = self._by_b_call_id.get(response.call_id)
        if call is not None and call.b_ack is not None and call.b_peer is not None:
            self.server.transports.send(call.b_ack, call.b_peer)

    # -- the end --------------------------------------------------------------------------------------

    def _cancel_timers(self, call: B2BCall) -> None:
        for t in call.timers:
            t.cancel()
        call.timers.clear()

    def _end(self, call: B2BCall) -> None:
        if call.state is CallState.ENDED:
            return
        if call.b_dialog is not None and call.state is not CallState.ENDING:
            self._send_bye(call, "b")
            return
        call.state = CallState.ENDED
        self._cancel_timers(call)
        self.calls.pop(call.id, None)
        self._by_a_tx.pop(id(call.a_tx), None)
        self._by_leg.pop((call.a_invite.call_id, call.a_tag), None)
        if call.b_invite is not None:
            b_call_id = call.b_invite.call_id
            self._by_leg.pop((b_call_id, call.b_invite.from_.tag or ""), None)
            self._by_b_call_id.pop(b_call_id, None)
        if self.anchor is not None:
            self.anchor.end(call.id)
        log.debug("call ended", extra={"fields": {"call": call.id}})

    def dialog_count(self) -> int:
        """Dialogs still held (two per answered call at most): for tests and stats."""
        return sum((c.a_dialog is not None) + (c.b_dialog is not None) for c in self.calls.values())
