"""Calls of the simulator's user agent: what they are (`OutgoingCall`, `IncomingCall`, `CallResult`) and how
they go, per RFC 3261.

* placed: INVITE with a G.711 SDP offer, digest on 401/407, ACK of the 2xx (§13.2.2.4), CANCEL when the
  caller's patience runs out before the answer (§9.1), BYE after a talk time or wait for the other side's.
  With `wait_for_connect`, a call answered at SIP level (an IVR or a queue playing music) still counts as
  waiting until `OutgoingCall.connect()` says a person took it; patience running out then ends it with BYE.
* received: answered by a policy (`Answer`): ring for a while then answer, hang up after a while or wait
  for BYE, or reject (486 Busy Here); 2xx retransmitted until the ACK (§13.3.1.4); CANCEL answered 200 and
  the INVITE 487 (§9.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import SimError
from ...sip.dialog import Dialog, DialogTable, make_cancel, new_tag
from ...sip.endpoint import ServerTx
from ...sip.errors import ParseError
from ...sip.headers import Headers, NameAddr
from ...sip.message import Request, Response, make_response
from ...sip.sdp import SdpError, SessionDescription, make_answer, make_offer, negotiated
from ...sip.transaction import (
    Action,
    DeliverResponse,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimedOut,
    Timers,
    TransportFailed,
)
from ...sip.transport import Peer
from ...sip.uri import URI
from .media import CODECS, CallMedia, Stream
from .register import Registering
from .shell import USER_AGENT

log = logging.getLogger(__name__)


class CallOutcome(enum.Enum):
    """How a call ended, from the side that holds it."""

    ANSWERED = "answered"  # answered (and, with wait_for_connect, connected to a person)
    ABANDONED = "abandoned"  # the caller gave up first: CANCEL, or BYE before being connected
    REJECTED = "rejected"  # a final failure response: 486, 480, 404, 403 ...
    FAILED = "failed"  # no final response in time, no ACK, ended before connecting, or closed


@dataclass(frozen=True, slots=True)
class CallResult:
    """What happened to one call. Times are the event loop's clock (seconds, monotonic), None when not reached.

    `status` is the final response to the INVITE (200, 486, 487 ...; 408 when none came); `ended_by`
    says who hung up an answered call ("local" or "remote"). `connected` equals `answered` unless the
    call waited to be connected (`wait_for_connect`).
    """

    number: str
    call_id: str
    outcome: CallOutcome
    status: int
    reason: str
    invite_sent: float
    ringing: float | None
    answered: float | None
    connected: float | None
    ended: float
    ended_by: str | None
    rtp_sent: int = 0
    rtp_received: int = 0

    @property
    def wait(self) -> float | None:
        """Seconds from the INVITE to being connected, None when never connected."""
        return None if self.connected is None else self.connected - self.invite_sent


@dataclass(frozen=True, slots=True)
class Answer:
    """How to treat one incoming call: ring `after` seconds then answer, and hang up `hang_up_after`
    seconds later (None: wait for the other side's BYE); or `reject` with that status instead."""

    after: float = 0.0
    hang_up_after: float | None = None
    reject: int | None = None

    def __post_init__(self) -> None:
        if self.after < 0 or (self.hang_up_after is not None and self.hang_up_after < 0):
            raise ValueError(f"answer times must not be negative: after={self.after}, "
                             f"hang_up_after={self.hang_up_after}")
        if self.reject is not None and not 300 <= self.reject <= 699:
            raise ValueError(f"reject status {self.reject} is not a final failure (300-699)")


AnswerPolicy = Answer | Callable[["IncomingCall"], Answer]
CallHook = Callable[["IncomingCall"], None]


class SipCallError(SimError, RuntimeError):
    """A call could not be placed (too many calls, user agent closed); the text says which."""


class OutgoingCall:
    """A call this user agent placed. `await wait()` gives its `CallResult`."""

    def __init__(self, ua: Calling, number: str, invite: Request, patience: float | None,
                 talk: float | None, wait_for_connect: bool) -> None:
        self.ua = ua
        self.number = number
        self.invite = invite
        self.call_id = invite.call_id
        self.patience = patience
        self.talk = talk
        self.wait_for_connect = wait_for_connect
        self.invite_sent = ua.loop.time()
        self.ringing: float | None = None
        self.answered: float | None = None
        self.connected: float | None = None
        self.gave_up: float | None = None
        self.provisional = False
        self.cancel_pending = False
        self.cancelled = False
        self.auth_attempts = 0
        self.dialog: Dialog | None = None
        self.ack: bytes | None = None
        self.stream: Stream | None = None
        self.bye_sent = False
        self.timers: list[asyncio.TimerHandle] = []
        self.done: asyncio.Future[CallResult] = ua.loop.create_future()

    @property
    def finished(self) -> bool:
        return self.done.done()

    def connect(self) -> None:
        """A person took the call (an agent answered it behind the IVR or queue): patience stops here."""
        self.ua._connect(self)

    def hang_up(self) -> None:
        """End the call now: CANCEL before the answer, BYE after it."""
        self.ua._give_up(self, by_patience=False)

    async def wait(self) -> CallResult:
        return await asyncio.shield(self.done)


class IncomingCall:
    """A call the user agent received; the policy decides what to do with it."""

    def __init__(self, ua: Calling, request: Request, tx: ServerInviteTransaction, peer: Peer) -> None:
        self.ua = ua
        self.request = request
        self.tx = tx
        self.peer = peer
        self.call_id = request.call_id
        self.local_tag = new_tag()
        self.offered = ua.loop.time()
        self.ringing: float | None = None
        self.answered: float | None = None
        self.ended: float | None = None
        self.outcome: CallOutcome | None = None
        self.status: int | None = None
        self.ended_by: str | None = None
        self.acked = False
        self.dialog: Dialog | None = None
        self.ok: bytes | None = None
        self.stream: Stream | None = None
        self.timers: list[asyncio.TimerHandle] = []
        self.policy = Answer()
        self.user_data: object = None  # for the owner of the user agent (a virtual agent keeps its record here)

    @property
    def caller(self) -> str:
        """The user part of the From header: who the server says is calling."""
        frm = self.request.from_
        return (frm.uri.user if frm.uri is not None else None) or ""

    @property
    def caller_display(self) -> str | None:
        """The display name of the From header, if any."""
        return self.request.from_.display

    def hang_up(self) -> None:
        """BYE when answered; `480` while still ringing."""
        self.ua._hang_up_incoming(self)


class Calling(Registering):
    """Calls placed and received (RFC 3261 §13-§15): the call half of a user agent."""

    timers: Timers
    answer: AnswerPolicy
    on_incoming: CallHook | None
    on_answered: CallHook | None
    on_ended: CallHook | None
    max_calls: int
    max_duration: float
    _media: CallMedia | None
    outgoing: dict[str, OutgoingCall]
    incoming: dict[str, IncomingCall]
    dialogs: DialogTable
    notifications: deque[Request]

    # -- outgoing calls -------------------------------------------------------------------------------

    def place(self, number: str, *, patience: float | None = None, talk: float | None = None,
              wait_for_connect: bool = False, from_user: str | None = None,
              display: str | None = None) -> OutgoingCall:
        """Send an INVITE to `number` at the server; the call goes on by itself (see `OutgoingCall`).

        `patience`: seconds the caller waits to be answered (or connected) before hanging up. `talk`:
        seconds after which the caller hangs up an answered call; None waits for the other side's BYE
        (at most `max_duration`). `from_user` and `display` set the From header (a server that
        authenticates users wants the From user to be the authenticated one; a trusted endpoint may
        send any caller ID).
        """
        if self.closed:
            raise SipCallError("user agent closed")
        if len(self.outgoing) + len(self.incoming) >= self.max_calls:
            raise SipCallError(f"{self.max_calls} calls in progress already (max_calls)")
        ep = self.endpoint
        assert self._media is not None
        offer = make_offer(ep.local[0], self._media.port, secrets.randbelow(2**62) + 1, 1, CODECS)
        target = URI("sip", self.domain, number)
        me = URI("sip", self.domain, from_user or self.user or "sim")
        headers = Headers([
            ("From", str(NameAddr(me, display, (("tag", new_tag()),)))),
            ("To", str(NameAddr(target))),
            ("Call-ID", f"{secrets.token_hex(12)}@sim"),
            ("CSeq", "1 INVITE"),
            ("Contact", str(self.contact())),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
            ("User-Agent", USER_AGENT),
            ("Content-Type", "application/sdp"),
        ])
        invite = Request(headers, offer.serialize(), "INVITE", target)
        self._authorize(invite)
        call = OutgoingCall(self, number, invite, patience, talk, wait_for_connect)
        self.outgoing[call.call_id] = call
        self._send_invite(call)
        if patience is not None:
            call.timers.append(self.loop.call_later(patience, self._give_up, call, True))
        call.timers.append(self.loop.call_later(self.max_duration, self._give_up, call, False))
        return call

    async def call(self, number: str, *, patience: float | None = None, talk: float | None = None,
                   wait_for_connect: bool = False, from_user: str | None = None) -> CallResult:
        """Place a call and wait for its end: `await ua.call("1002", patience=20, talk=5)`."""
        return await self.place(number, patience=patience, talk=talk, wait_for_connect=wait_for_connect,
                                from_user=from_user).wait()

    def _send_invite(self, call: OutgoingCall) -> None:
        invite = call.invite
        self.endpoint.to_server(invite, lambda action: self._on_invite_event(call, invite, action))

    def _on_invite_event(self, call: OutgoingCall, invite: Request, action: Action) -> None:
        if call.finished:
            if isinstance(action, DeliverResponse) and 200 <= action.response.status < 300:
                if call.ack is not None:
                    self.endpoint.send_raw(call.ack)  # a 2xx retransmitted after the end: ACK it again
                else:
                    self._ack_and_bye(call, invite, action.response)
            return
        if isinstance(action, TimedOut | TransportFailed):
            if invite is call.invite:
                outcome = CallOutcome.ABANDONED if call.gave_up is not None else CallOutcome.FAILED
                self._finish_out(call, outcome, 408, "Request Timeout")
            return
        if not isinstance(action, DeliverResponse):
            return
        response = action.response
        status = response.status
        if status < 200:
            call.provisional = True
            if status in (180, 183) and call.ringing is None:
                call.ringing = self.loop.time()
            if call.cancel_pending:
                self._send_cancel(call)
            return
        if status < 300:
            self._answered(call, invite, response)
            return
        if invite is not call.invite:
            return
        if (status in (401, 407) and call.auth_attempts < 2 and call.gave_up is None and self.password is not None
                and (call.auth_attempts == 0 or self._stale(response)) and self._learn_challenge(response, "INVITE")):
            call.auth_attempts += 1
            self._reinvite_with_credentials(call)
            return
        outcome = CallOutcome.ABANDONED if call.gave_up is not None else CallOutcome.REJECTED
        self._finish_out(call, outcome, status, response.reason)

    def _reinvite_with_credentials(self, call: OutgoingCall) -> None:
        """The same INVITE, next CSeq, new branch, with credentials (RFC 3261 §22.2)."""
        invite = call.invite.copy()
        invite.headers.remove("Via")
        cseq = invite.cseq.seq + 1
        invite.headers.set("CSeq", f"{cseq} INVITE")
        self._authorize(invite)
        call.invite = invite
        call.provisional = False
        self._send_invite(call)

    def _answered(self, call: OutgoingCall, invite: Request, response: Response) -> None:
        if call.dialog is not None:
            if call.ack is not None:
                self.endpoint.send_raw(call.ack)  # a retransmitted 2xx: the ACK was lost
            return
        try:
            dialog = Dialog.uac(invite, response)
        except ParseError as e:
            log.info("bad 2xx", extra={"fields": {"call": call.call_id, "error": e.reason}})
            return
        dialog.local_contact = self.contact()
        dialog.user_data = call
        call.dialog = dialog
        ack = dialog.create_ack(invite)
        call.ack = bytes(ack)
        self.endpoint.send_raw(call.ack)
        with contextlib.suppress(ValueError):
            self.dialogs.add(dialog)
        now = self.loop.time()
        call.answered = now
        if call.gave_up is not None:
            self._send_bye(call)  # answered while our CANCEL was on its way (RFC 3261 §9.1)
            return
        call.stream = self._start_media(response.body)
        if not call.wait_for_connect:
            self._connect(call)
        else:
            self._start_talk(call)

    def _ack_and_bye(self, call: OutgoingCall, invite: Request, response: Response) -> None:
        """A 2xx after the call was given up for lost (§9.1's 64*T1 passed): accept it and end it at once."""
        try:
            dialog = Dialog.uac(invite, response)
        except ParseError:
            return
        call.ack = bytes(dialog.create_ack(invite))
        self.endpoint.send_raw(call.ack)
        self.endpoint.to_server(dialog.create_request("BYE", headers=[("User-Agent", USER_AGENT)]))

    def _connect(self, call: OutgoingCall) -> None:
        if call.connected is not None or call.finished or call.gave_up is not None:
            return
        call.connected = self.loop.time()
        self._start_talk(call)

    def _start_talk(self, call: OutgoingCall) -> None:
        """The talk time runs once the call is both answered at SIP level and connected, in either order."""
        if call.talk is not None and call.connected is not None and call.answered is not None:
            call.timers.append(self.loop.call_later(call.talk, self._give_up, call, False))

    def _give_up(self, call: OutgoingCall, by_patience: bool) -> None:
        """Patience ran out, the talk time is over, or the owner hangs up."""
        if call.finished:
            return
        if by_patience and call.connected is not None:
            return  # patience ends once connected
        if call.dialog is not None:
            if call.connected is None and call.gave_up is None:
                call.gave_up = self.loop.time()
            self._send_bye(call)
            return
        if call.gave_up is None:
            call.gave_up = self.loop.time()
        if call.provisional:
            self._send_cancel(call)
        else:
            call.cancel_pending = True  # RFC 3261 §9.1: no CANCEL before a provisional response
        # §9.1: with no final response within 64*T1 of giving up, the INVITE transaction is abandoned.
        call.timers.append(self.loop.call_later(self.timers.timeout, self._abandon_invite, call))

    def _abandon_invite(self, call: OutgoingCall) -> None:
        if not call.finished and call.dialog is None:
            self._finish_out(call, CallOutcome.ABANDONED, 408, "Request Timeout (no answer to CANCEL)")

    def _send_cancel(self, call: OutgoingCall) -> None:
        if call.cancelled or call.dialog is not None:
            return
        call.cancelled = True
        call.cancel_pending = False
        self.endpoint.to_server(make_cancel(call.invite))

    def _send_bye(self, call: OutgoingCall) -> None:
        dialog = call.dialog
        if dialog is None or call.bye_sent:
            return
        call.bye_sent = True
        bye = dialog.create_request("BYE", headers=[("User-Agent", USER_AGENT)])

        def done(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            if isinstance(action, DeliverResponse | TimedOut | TransportFailed):
                self._finish_out(call, self._answered_outcome(call), 200, "OK", "local")

        self.endpoint.to_server(bye, done)

    @staticmethod
    def _answered_outcome(call: OutgoingCall) -> CallOutcome:
        if call.connected is not None:
            return CallOutcome.ANSWERED
        return CallOutcome.ABANDONED if call.gave_up is not None else CallOutcome.FAILED

    def _finish_out(self, call: OutgoingCall, outcome: CallOutcome, status: int, reason: str,
                    ended_by: str | None = None) -> None:
        if call.finished:
            return
        for timer in call.timers:
            timer.cancel()
        call.timers.clear()
        if self.outgoing.get(call.call_id) is call:
            del self.outgoing[call.call_id]
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
            status = 200
        sent, received = self._stop_media(call.stream)
        call.done.set_result(CallResult(
            call.number, call.call_id, outcome, status, reason, call.invite_sent, call.ringing,
            call.answered, call.connected, self.loop.time(), ended_by, sent, received))

    # -- incoming requests ----------------------------------------------------------------------------

    def _on_request(self, request: Request, tx: ServerTx | None, peer: Peer) -> None:
        method = request.method
        if method == "CANCEL":
            assert isinstance(tx, ServerNonInviteTransaction)
            self._on_cancel(request, tx)
            return
        if request.to.tag:
            self._in_dialog(request, tx)
            return
        if tx is None:
            return
        if method == "INVITE":
            assert isinstance(tx, ServerInviteTransaction)
            self._on_invite(request, tx, peer)
        elif method == "OPTIONS":
            self.endpoint.respond(tx, make_response(request, 200, to_tag=new_tag(),
                                                    extra=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]))
        elif method == "NOTIFY" and (request.headers.get("Event") or "").lower() == "message-summary":
            # Message waiting (RFC 3842), sent unsolicited by Hatif's voicemail: kept for whoever reads it.
            self.notifications.append(request)
            self.endpoint.respond(tx, make_response(request, 200, to_tag=new_tag()))
        else:
            self.endpoint.respond(tx, make_response(request, 405, to_tag=new_tag(),
                                                    extra=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]))

    def _on_stray(self, response: Response) -> None:
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            call = self.outgoing.get(response.call_id)
            if call is not None and call.ack is not None:
                self.endpoint.send_raw(call.ack)

    def _on_invite(self, request: Request, tx: ServerInviteTransaction, peer: Peer) -> None:
        ep = self.endpoint
        ep.respond(tx, make_response(request, 100))
        if self.closed or len(self.outgoing) + len(self.incoming) >= self.max_calls:
            ep.respond(tx, make_response(request, 486, to_tag=new_tag()))
            return
        call = IncomingCall(self, request, tx, peer)
        self.incoming[call.call_id] = call
        self._hook(self.on_incoming, call)
        try:
            policy = self.answer(call) if callable(self.answer) else self.answer
        except Exception:
            log.exception("answer policy failed", extra={"fields": {"call": call.call_id}})
            policy = Answer(reject=500)
        call.policy = policy
        if policy.reject is not None:
            ep.respond(tx, make_response(request, policy.reject, to_tag=call.local_tag))
            self._finish_in(call, CallOutcome.REJECTED, policy.reject, None)
            return
        if policy.after > 0:
            ep.respond(tx, make_response(request, 180, to_tag=call.local_tag,
                                         extra=[("Contact", str(self.contact()))]))
            call.ringing = self.loop.time()
            call.timers.append(self.loop.call_later(policy.after, self._answer_incoming, call))
        else:
            self._answer_incoming(call)
        call.timers.append(self.loop.call_later(self.max_duration, self._hang_up_incoming, call))

    def _answer_incoming(self, call: IncomingCall) -> None:
        if call.ended is not None:
            return
        assert self._media is not None
        host = self.endpoint.local[0]
        sid = secrets.randbelow(2**62) + 1
        body = b""
        try:
            if call.request.body:
                body = make_answer(SessionDescription.parse(call.request.body), host, self._media.port, sid, 1,
                                   CODECS).serialize()
            else:
                body = make_offer(host, self._media.port, sid, 1, CODECS).serialize()
        except (SdpError, ValueError) as e:
            self.endpoint.respond(call.tx, make_response(call.request, 488, f"Not Acceptable Here: {e}"[:120],
                                                         to_tag=call.local_tag))
            self._finish_in(call, CallOutcome.REJECTED, 488, None)
            return
        ok = make_response(call.request, 200, to_tag=call.local_tag, body=body,
                           extra=[("Contact", str(self.contact())), ("Content-Type", "application/sdp")])
        dialog = Dialog.uas(call.request, call.local_tag)
        dialog.local_contact = self.contact()
        dialog.user_data = call
        dialog.response_sent(ok)
        call.dialog = dialog
        with contextlib.suppress(ValueError):
            self.dialogs.add(dialog)
        self.endpoint.respond(call.tx, ok)
        call.ok = bytes(ok)
        call.answered = self.loop.time()
        call.status = 200
        if call.request.body:
            call.stream = self._start_media(call.request.body)
        call.timers.append(self.loop.call_later(self.timers.t1, self._retransmit_ok, call, self.timers.t1,
                                                call.answered + self.timers.timeout))
        if call.policy.hang_up_after is not None:
            call.timers.append(self.loop.call_later(call.policy.hang_up_after, self._hang_up_incoming, call))
        self._hook(self.on_answered, call)

    def _retransmit_ok(self, call: IncomingCall, interval: float, until: float) -> None:
        """RFC 3261 §13.3.1.4: the 2xx again, T1 doubling up to T2, until the ACK or 64*T1 (then BYE)."""
        if call.acked or call.ended is not None or call.ok is None:
            return
        if self.loop.time() >= until:
            log.info("no ACK for 2xx", extra={"fields": {"call": call.call_id}})
            self._send_bye_incoming(call, CallOutcome.FAILED)
            return
        self.endpoint.send_raw(call.ok, call.peer)
        interval = min(2 * interval, self.timers.t2)
        call.timers.append(self.loop.call_later(interval, self._retransmit_ok, call, interval, until))

    def _hang_up_incoming(self, call: IncomingCall) -> None:
        if call.ended is not None:
            return
        if call.dialog is None:
            self.endpoint.respond(call.tx, make_response(call.request, 480, to_tag=call.local_tag))
            self._finish_in(call, CallOutcome.REJECTED, 480, "local")
            return
        self._send_bye_incoming(call, CallOutcome.ANSWERED)

    def _send_bye_incoming(self, call: IncomingCall, outcome: CallOutcome) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        call.dialog = None
        self.dialogs.remove(dialog)
        bye = dialog.create_request("BYE", headers=[("User-Agent", USER_AGENT)])

        def done(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            if isinstance(action, DeliverResponse | TimedOut | TransportFailed):
                self._finish_in(call, outcome, 200, "local")

        self.endpoint.to_server(bye, done)

    def _on_cancel(self, cancel: Request, tx: ServerNonInviteTransaction) -> None:
        ep = self.endpoint
        invite_tx = ep.transactions.match_cancel(cancel)
        if invite_tx is None:
            ep.respond(tx, make_response(cancel, 481))
            return
        ep.respond(tx, make_response(cancel, 200))
        call = self.incoming.get(cancel.call_id)
        if call is not None and call.tx is invite_tx and call.dialog is None and call.ended is None:
            ep.respond(invite_tx, make_response(call.request, 487, to_tag=call.local_tag))
            self._finish_in(call, CallOutcome.ABANDONED, 487, "remote")

    def _in_dialog(self, request: Request, tx: ServerTx | None) -> None:
        dialog = self.dialogs.match_request(request)
        if dialog is None:
            if tx is not None:
                self.endpoint.respond(tx, make_response(request, 481))
            return
        if request.method == "ACK":
            if isinstance(dialog.user_data, IncomingCall):
                dialog.user_data.acked = True
            return
        if tx is None:
            return
        error = dialog.receive_request(request)
        if error is not None:
            self.endpoint.respond(tx, error)
            return
        owner = dialog.user_data
        if request.method == "BYE":
            self.endpoint.respond(tx, make_response(request, 200))
            self.dialogs.remove(dialog)
            if isinstance(owner, OutgoingCall):
                owner.dialog = None
                self._finish_out(owner, self._answered_outcome(owner), 200, "OK", "remote")
            elif isinstance(owner, IncomingCall):
                owner.dialog = None
                self._finish_in(owner, CallOutcome.ANSWERED, 200, "remote")
            return
        extra = [("Contact", str(self.contact()))]
        body = b""
        if request.method == "INVITE" and request.body:
            assert self._media is not None
            try:
                offer = SessionDescription.parse(request.body)
                body = make_answer(offer, self.endpoint.local[0], self._media.port, secrets.randbelow(2**62) + 1,
                                   1, CODECS).serialize()
                extra.append(("Content-Type", "application/sdp"))
            except (SdpError, ValueError):
                self.endpoint.respond(tx, make_response(request, 488))
                return
        self.endpoint.respond(tx, make_response(request, 200, body=body, extra=extra))

    def _finish_in(self, call: IncomingCall, outcome: CallOutcome, status: int, ended_by: str | None) -> None:
        if call.ended is not None:
            return
        for timer in call.timers:
            timer.cancel()
        call.timers.clear()
        call.ended = self.loop.time()
        call.outcome = outcome
        call.status = status
        call.ended_by = ended_by
        if call.dialog is not None:
            self.dialogs.remove(call.dialog)
            call.dialog = None
        self._stop_media(call.stream)
        if self.incoming.get(call.call_id) is call:
            del self.incoming[call.call_id]
        self._hook(self.on_ended, call)

    @staticmethod
    def _hook(hook: CallHook | None, call: IncomingCall) -> None:
        if hook is None:
            return
        try:
            hook(call)
        except Exception:
            log.exception("call hook failed", extra={"fields": {"call": call.call_id}})

    # -- media ----------------------------------------------------------------------------------------

    def _start_media(self, remote_sdp: bytes) -> Stream | None:
        if self._media is None or not remote_sdp:
            return None
        try:
            n = negotiated(SessionDescription.parse(remote_sdp))
        except (SdpError, ValueError):
            return None
        if n.port == 0 or n.address in ("0.0.0.0", "::"):
            return None
        return self._media.start((n.address, n.port), n.payload_type)

    def _stop_media(self, stream: Stream | None) -> tuple[int, int]:
        if stream is None or self._media is None:
            return 0, 0
        self._media.stop(stream)
        return stream.sent, stream.received
