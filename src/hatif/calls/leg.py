"""One SIP leg of a call: a dialog between Hatif and one party, with an RTP leg of Hatif's own.

Every leg ends at Hatif, in signalling and in media: Hatif answers the caller's offer with its own SDP and
offers its own SDP to everyone it calls, so any leg can be bridged to any other, played to, recorded, held or
put in a conference, whatever happened to it before. An inbound leg is the caller's INVITE (Hatif is the UAS);
an outbound leg is an INVITE Hatif sent (Hatif is the UAC).

`SipLeg` is a thin shell over two sans-IO pieces: the SIP ones (`Dialog`, the transactions the server runs)
and the leg's state machine (`calls.state.LegMachine`), which decides everything: which state the leg is in,
what a late CANCEL or a 200 after Hatif gave up gets, 491 to a re-INVITE crossing ours. The shell feeds the
machine what arrives (responses, requests, timers) and executes the commands it returns, in `_run`'s one
`match`: build and send the SIP message, arm the timer, tell the call. A leg is given what it needs when it is
made (a `LegContext`: its transport, its loop as clock and timer, the SIP timers, the acknowledgement gate)
and reports to its `LegListener` (its call), never to call control.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..media.dtmf import DtmfDigit
from ..media.engine import Leg as MediaLeg
from ..media.srtp import Srtp, new_key
from ..sip.dialog import Dialog, make_cancel
from ..sip.errors import ParseError
from ..sip.headers import NameAddr
from ..sip.message import Request, Response, make_response
from ..sip.sdp import (
    SUPPORTED,
    Media,
    SdpError,
    SessionDescription,
    chosen_crypto,
    make_answer,
    make_offer,
    negotiated,
)
from ..sip.session_timer import SessionTimer, TooSmall, refreshed, session_expires_of, uac_timer
from ..sip.transaction import (
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    DeliverResponse,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimedOut,
    TransactionTable,
)
from ..sip.transport import Peer
from ..sip.uri import URI
from .state import (
    Answered,
    CancelTimer,
    Emit,
    Ended,
    LegCommand,
    LegMachine,
    LegPhase,
    PartyHold,
    Progress,
    ReinviteDone,
    Retransmit,
    SendRequest,
    SendResponse,
    StartTimer,
)

log = logging.getLogger(__name__)

ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
ClientTx = ClientInviteTransaction | ClientNonInviteTransaction


class SipPort(Protocol):
    """What a leg asks of the SIP endpoint it talks through (`hatif.sip.server.SipServer` is one)."""

    transactions: TransactionTable

    def respond(self, tx: ServerTx, response: Response) -> None: ...
    def send_request(self, request: Request, peer: Peer,
                     on_event: Callable[[Action], None] | None = None) -> ClientTx: ...
    def send_ack(self, ack: Request, peer: Peer) -> None: ...
    def send_stateless(self, message: Request | Response | bytes, peer: Peer) -> None: ...
    def contact_uri(self, transport: str, user: str | None = None) -> URI: ...


@dataclass(frozen=True, slots=True)
class LegContext:
    """What every leg is given when it is made (one per call control, shared by its legs).

    `loop` is the leg's clock (`loop.time()`) and its timers; `t1`/`t2` the SIP timers (RFC 3261 Table 4);
    `acknowledge(send)` runs `send` once what a call's end recorded is durable (the 200 to a BYE waits on it);
    `byes(+1/-1)` counts Hatif's BYEs not yet answered (a drain waits for them)."""

    sip: SipPort
    loop: asyncio.AbstractEventLoop
    sdp_address: str
    session_id: int
    min_se: int = 90
    t1: float = 0.5
    t2: float = 4.0
    acknowledge: Callable[[Callable[[], None]], None] = lambda send: send()
    byes: Callable[[int], None] = lambda delta: None


class LegListener(Protocol):
    """Who a leg reports to (its call): events for the log, and what happened that the call decides on."""

    @property
    def id(self) -> str: ...
    def emit(self, kind: str, leg: SipLeg | None = None, **data: object) -> None: ...
    def on_leg_progress(self, leg: SipLeg) -> None: ...
    def on_leg_answered(self, leg: SipLeg) -> None: ...
    def on_leg_ended(self, leg: SipLeg) -> None: ...
    def on_remote_hold(self, leg: SipLeg, held: bool) -> None: ...
    def on_refer(self, leg: SipLeg, target: str) -> bool: ...
    def on_refresh_failed(self, leg: SipLeg, status: int) -> None: ...


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """How one party is treated in media (from its user's or endpoint's configuration).

    `symmetric_rtp`: latch onto the address the party's RTP really comes from (phones behind NAT), or take
    RTP only from the address its SDP names (trunks). `srtp`: what Hatif offers when it calls the party
    ("off", "optional": RTP/AVP with `a=crypto`, "mandatory": RTP/SAVP); a party's SRTP offer is always taken."""

    symmetric_rtp: bool = True
    srtp: str = "off"


def _address(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


def _allows_update(message: Request | Response) -> bool:
    """Whether the party's Allow lists UPDATE (RFC 3311), so a session refresh may do without SDP."""
    return any(m.strip().upper() == "UPDATE" for v in message.headers.get_all("Allow") for m in v.split(","))


class LegState(enum.Enum):
    """A leg as its users see it: the machine's phase with hold folded into answered (`SipLeg.phase` has
    the machine's own) and a leg Hatif gave up on already ended for them."""

    NEW = "new"  # inbound: INVITE received; outbound: INVITE sent
    RINGING = "ringing"  # 180 sent or received
    EARLY = "early"  # 183 with SDP: early media flows
    ANSWERED = "answered"
    ENDED = "ended"


_VIEW = {LegPhase.CALLING: LegState.NEW, LegPhase.RINGING: LegState.RINGING, LegPhase.EARLY: LegState.EARLY,
         LegPhase.ANSWERED: LegState.ANSWERED, LegPhase.HELD: LegState.ANSWERED, LegPhase.ENDING: LegState.ENDED,
         LegPhase.ENDED: LegState.ENDED}


class SipLeg:
    """One party of a call, seen from Hatif: its dialog, its RTP leg, its state machine and its digits."""

    def __init__(self, context: LegContext, call: LegListener, direction: str, peer: Peer, media: MediaLeg,
                 party: str, invite: Request, tag: str, policy: MediaPolicy | None = None) -> None:
        self.context = context
        self.sip = context.sip
        self.loop = loop = context.loop
        self.policy = policy or MediaPolicy()
        media.latch.symmetric = self.policy.symmetric_rtp
        media.on_latch = self._media_latched
        self.call = call
        self.id = secrets.token_hex(6)
        self.direction = direction  # "inbound" or "outbound"
        self.machine = LegMachine("inbound" if direction == "inbound" else "outbound", loop.time(),
                                  t1=context.t1, t2=context.t2)
        self.peer = peer
        self.media = media
        self.party = party
        self.invite = invite
        self.tag = tag
        self.dialog: Dialog | None = None
        self.server_tx: ServerInviteTransaction | None = None
        self.client_tx: ClientInviteTransaction | None = None
        self.answered: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[str] = loop.create_future()  # result: the cause
        self.remote_sdp: SessionDescription | None = None
        self.local_sdp: SessionDescription | None = None
        self._offered_key: bytes | None = None  # our SDES key in the offer we sent last
        self._srtp_params: tuple[str, bytes, bytes] | None = None  # suite, our key, theirs: SRTP in use
        self._srtp_proto = "RTP/SAVP"
        self.sdp_version = 1
        self._ok: bytes | None = None  # our 2xx to an inbound INVITE (retransmitted), or the ACK of an outbound 2xx
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._reinvites: dict[str, deque[asyncio.Future[bool]]] = {}  # direction -> who waits for its answer
        self.digits: deque[str] = deque(maxlen=64)
        self._digit_waiter: asyncio.Future[None] | None = None
        self._pending_bye = False
        self.on_digit: Callable[[str], None] | None = None
        self.listening = False
        self.rtp: dict[str, int] = {}  # the media leg's counters, taken when the leg ends
        self._offer_holds = False  # whether the party's last offer held us (told to the machine once up)
        # RFC 4028: the session interval, whether Hatif is the refresher, and when it was last refreshed.
        self.session_interval: int | None = None
        self.we_refresh = False
        self.refreshed_at = self.started
        self.refreshing = False
        self.peer_allows_update = _allows_update(invite)
        # RTP inactivity (`media.rtp_timeout`): the packet count last seen, and since when it has not moved.
        self.rtp_seen = -1
        self.rtp_since = self.started

    def listen(self) -> None:
        """Start hearing this party's digits (RFC 4733, or in-band tones when the phone negotiated none).

        Only legs an application talks to listen: in-band detection costs a little on every frame, and a
        plain bridged call has no use for it (its digits pass through to the other side anyway)."""
        if not self.listening and not self.media.closed:
            self.listening = True
            self.media.listen_dtmf(self._dtmf)

    def __repr__(self) -> str:
        return f"<SipLeg {self.id} {self.direction} {self.party} {self.phase.value}>"

    # -- the machine's state, read through ------------------------------------------------------------

    @property
    def phase(self) -> LegPhase:
        return self.machine.state

    @property
    def state(self) -> LegState:
        return _VIEW[self.machine.state]

    @property
    def ended(self) -> bool:
        """Over for the call (Hatif may still wait for the other side's answer to its CANCEL or BYE)."""
        return self.machine.state.over

    @property
    def started(self) -> float:
        return self.machine.started

    @property
    def answered_at(self) -> float | None:
        return self.machine.answered_at

    @property
    def ended_at(self) -> float | None:
        return self.machine.ended_at

    @property
    def cause(self) -> str:
        return self.machine.cause

    @property
    def status(self) -> int | None:
        """An outbound leg's final failure status (or the final status sent to the caller)."""
        return self.machine.status

    @property
    def reason(self) -> str:
        return self.machine.reason

    @property
    def held(self) -> bool:
        """Hatif put this party on hold."""
        return self.machine.held

    @property
    def remote_held(self) -> bool:
        """This party put Hatif on hold (its offer or answer said sendonly or inactive)."""
        return self.machine.remote_held

    @property
    def acked(self) -> bool:
        return self.machine.acked

    # -- executing the machine's commands -------------------------------------------------------------

    def _run(self, commands: list[LegCommand], request: Request | None = None, tx: ServerTx | None = None) -> None:
        """Carry out what the machine said, in order. `request`/`tx`: the party's request in hand, which a
        `SendResponse` answers (else it answers the party's INVITE)."""
        for command in commands:
            match command:
                case SendRequest(method="INVITE", direction=None):
                    self._send_invite()
                case SendRequest(method="INVITE", direction=str(direction)):
                    self._send_reinvite(direction)
                case SendRequest(method="CANCEL"):
                    self._send_cancel()
                case SendRequest(method="BYE"):
                    self._send_bye()
                case SendResponse(status=status, reason=reason, early_media=early):
                    if request is not None and tx is not None:
                        self.sip.respond(tx, make_response(request, status, reason))
                    else:
                        self._respond_invite(status, reason, early)
                case Retransmit():
                    if self._ok is not None:
                        self.sip.send_stateless(self._ok, self.peer)
                case StartTimer(name=name, delay=delay):
                    old = self._timers.pop(name, None)
                    if old is not None:
                        old.cancel()
                    self._timers[name] = self.loop.call_later(delay, self._timer_fired, name)
                case CancelTimer(name=name):
                    handle = self._timers.pop(name, None)
                    if handle is not None:
                        handle.cancel()
                case Emit(kind=kind, data=data):
                    self.call.emit(kind, self, **data)
                case Progress():
                    self.call.on_leg_progress(self)
                case Answered():
                    self.media.answered()
                    if not self.answered.done():
                        self.answered.set_result(None)
                    self.call.on_leg_answered(self)
                case Ended():
                    self._ended()
                case ReinviteDone(direction=direction, accepted=accepted):
                    waiting = self._reinvites.get(direction)
                    if waiting:
                        done = waiting.popleft()
                        if not done.done():
                            done.set_result(accepted)
                case PartyHold(held=held):
                    self.call.on_remote_hold(self, held)

    def _timer_fired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._run(self.machine.timer_fired(name, self.loop.time()))

    def _contact(self) -> tuple[str, str]:
        return ("Contact", str(NameAddr(self.sip.contact_uri(self.peer.transport, "hatif"))))

    # -- SDP ------------------------------------------------------------------------------------------

    def _party_holds(self, held: bool) -> None:
        """What the party's description says of hold: before the leg is up a description (the machine starts
        the leg held), afterwards an event."""
        if self.machine.state.up:
            self._run(self.machine.party_hold(held, self.loop.time()))
        else:
            self.machine.remote_held = held

    def learn_remote(self, body: bytes) -> None:
        """The party's SDP (offer or answer): where to send, which codec, and whether it holds us."""
        description = SessionDescription.parse(body)
        n = negotiated(description)
        self._srtp_from_answer(description.audio())
        self.remote_sdp = description
        self.media.set_remote(n.address, n.port, n.payload_type, n.dtmf_payload_type)
        self._party_holds(n.direction in ("sendonly", "inactive") or n.address in ("0.0.0.0", "::"))

    def answer_sdp(self, offer: bytes) -> bytes:
        """Our answer to the party's offer (the first offered codec we support; direction mirrored)."""
        description = SessionDescription.parse(offer)
        key = new_key()
        answer = make_answer(description, self.context.sdp_address, self.media.local_port, self.context.session_id,
                             self.sdp_version, supported=SUPPORTED, srtp_key=key)
        chosen = negotiated(answer)
        remote = negotiated(description)
        index = next(i for i, m in enumerate(answer.media) if m.port != 0)
        offered = description.media[index]
        crypto = chosen_crypto(offered) if answer.media[index].proto == "RTP/SAVP" else None
        self._use_srtp(None if crypto is None else (crypto.suite, key, crypto.key), offered.proto)
        self.remote_sdp = description
        self.media.set_remote(remote.address, remote.port, chosen.payload_type, chosen.dtmf_payload_type)
        self.local_sdp = answer
        self._offer_holds = remote.direction in ("sendonly", "inactive") or remote.address in ("0.0.0.0", "::")
        if not self.machine.state.up:
            self.machine.remote_held = self._offer_holds
        return answer.serialize()

    def offer_sdp(self, prefer: str | None = None, direction: str = "sendrecv") -> bytes:
        """Our offer; with SDES (a fresh key) when SRTP is in use on this leg or its policy asks for it."""
        codecs = [c for c in SUPPORTED if c != "telephone-event"]
        if prefer in codecs:
            codecs.remove(prefer)
            codecs.insert(0, prefer)
        proto = "RTP/AVP"
        key: bytes | None = None
        if self._srtp_params is not None:
            proto, key = self._srtp_proto, new_key()
        elif self.policy.srtp in ("mandatory", "optional"):
            proto, key = "RTP/SAVP" if self.policy.srtp == "mandatory" else "RTP/AVP", new_key()
        self._offered_key = key
        offer = make_offer(self.context.sdp_address, self.media.local_port, self.context.session_id,
                           self.sdp_version, (*codecs, "telephone-event"), direction=direction, srtp_key=key,
                           proto=proto)
        self.local_sdp = offer
        return offer.serialize()

    def _srtp_from_answer(self, answer: Media) -> None:
        """SRTP as the answer to our offer says: the crypto line of our tag, or plain RTP (RFC 4568 §7.1.3)."""
        key = self._offered_key
        if key is None:
            if answer.proto == "RTP/SAVP":
                raise SdpError("an RTP/SAVP answer to an offer without SRTP")
            return
        crypto = next((c for c in answer.crypto if c.tag == 1 and c.usable), None)
        if crypto is None:
            if answer.proto == "RTP/SAVP" or self.policy.srtp == "mandatory" or self._srtp_params is not None:
                raise SdpError("the answer takes none of our SRTP crypto lines")
            self._use_srtp(None, answer.proto)
            return
        self._use_srtp((crypto.suite, key, crypto.key), answer.proto)

    def _use_srtp(self, params: tuple[str, bytes, bytes] | None, proto: str) -> None:
        """Key the media leg (a new context only when suite or keys changed: replay state is kept)."""
        if params == self._srtp_params:
            return
        self._srtp_params = params
        self._srtp_proto = proto
        self.media.srtp = None if params is None else Srtp(*params)
        log.info("SRTP " + ("keyed" if params is not None else "off"),
                 extra={"fields": {"call": self.call.id, "leg": self.id,
                                   "suite": params[0] if params is not None else None}})

    @property
    def codec(self) -> str:
        return "PCMA" if self.media.payload_type == 8 else "PCMU"

    def _media_latched(self, old: tuple[str, int] | None, new: tuple[str, int]) -> None:
        """The media leg took a source (its first, or a new one): an event with both addresses."""
        self.call.emit("media.latched", self, old=_address(old), new=_address(new),
                       sdp=_address(self.media.latch.expected), dropped_source=self.media.dropped_source)

    # -- digits ---------------------------------------------------------------------------------------

    def _dtmf(self, digit: DtmfDigit) -> None:
        self.add_digit(digit.digit)

    def add_digit(self, digit: str) -> None:
        self.digits.append(digit)
        self.call.emit("dtmf", self, digit=digit)
        if self.on_digit is not None:
            self.on_digit(digit)
        waiter = self._digit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_digit(self, timeout: float) -> str | None:
        """The next digit pressed (or already pressed and not yet taken), or None after `timeout`."""
        self.listen()
        if self.digits:
            return self.digits.popleft()
        if timeout <= 0:
            return None
        waiter = self.loop.create_future()
        self._digit_waiter = waiter
        try:
            futures: list[asyncio.Future[Any]] = [waiter, self.finished]
            await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._digit_waiter = None
        if self.digits:
            return self.digits.popleft()
        return None

    # -- inbound: answering the caller ----------------------------------------------------------------

    def ring(self, early_media: bool = False) -> None:
        """180 Ringing; or 183 with our SDP when Hatif plays something before answering (early media)."""
        self._run(self.machine.ring(self.loop.time(), early_media and self.local_sdp is not None))

    def answer(self) -> None:
        """200 OK with our SDP, retransmitted until the ACK (RFC 3261 §13.3.1.4)."""
        self._run(self.machine.answer(self.loop.time()))

    def reject(self, status: int, reason: str | None = None, cause: str | None = None) -> None:
        """A final failure to the caller's INVITE (nothing is sent once it was answered: use `hangup`)."""
        self._run(self.machine.reject(status, self.loop.time(), reason, cause))

    def _respond_invite(self, status: int, reason: str | None, early_media: bool) -> None:
        """A response to the party's INVITE: 180, 183 with our SDP, 200 with it, or a final failure."""
        tx = self.server_tx
        assert tx is not None
        if status >= 300:
            extra = [("Retry-After", "5")] if status == 503 else None
            self.sip.respond(tx, make_response(self.invite, status, reason, self.tag, extra=extra))
            return
        headers = [self._contact()]
        if status < 200:
            body = b""
            if early_media and self.local_sdp is not None:
                headers.append(("Content-Type", "application/sdp"))
                body = self.local_sdp.serialize()
            self.sip.respond(tx, make_response(self.invite, status, reason, self.tag, body, headers))
            return
        # A late offer (INVITE without SDP): ours goes in the 200, theirs comes in the ACK.
        body = self.offer_sdp() if self.local_sdp is None else self.local_sdp.serialize()
        headers.append(("Content-Type", "application/sdp"))
        headers += self._timer_headers()
        ok = make_response(self.invite, status, reason, self.tag, body, headers)
        self.dialog = Dialog.uas(self.invite, self.tag)
        self.sip.respond(tx, ok)
        self._ok = bytes(ok)

    def on_ack(self, request: Request) -> None:
        self._run(self.machine.ack(self.loop.time()))
        if request.body and self.remote_sdp is None:
            try:
                self.learn_remote(request.body)
            except SdpError as e:
                log.info("unusable SDP in ACK", extra={"fields": {"call": self.call.id, "error": str(e)}})
                self.hangup("failed")

    def on_cancel(self) -> None:
        """The caller's CANCEL: 487 before the answer, nothing after it (RFC 3261 §9.2)."""
        self._run(self.machine.cancel(self.loop.time()))

    # -- RFC 4028 session timers ----------------------------------------------------------------------

    def set_session_timer(self, timer: SessionTimer, we_are_uac: bool) -> None:
        """The negotiated RFC 4028 timer; `refresher` is relative to the transaction that set it."""
        self.session_interval = timer.interval
        self.we_refresh = (timer.refresher == "uac") == we_are_uac
        self.refreshed_at = self.loop.time()

    def _timer_headers(self, *, as_uac: bool = False) -> list[tuple[str, str]]:
        """Supported/Session-Expires (and Require when the party refreshes) for a 2xx or a refresh we send."""
        if self.session_interval is None:
            return [("Supported", "timer")]
        # The refresher parameter names a role in this transaction (RFC 4028 §4): we are its UAC or UAS.
        ours = "uac" if as_uac else "uas"
        theirs = "uas" if as_uac else "uac"
        out = [("Supported", "timer"),
               ("Session-Expires", f"{self.session_interval};refresher={ours if self.we_refresh else theirs}")]
        if not self.we_refresh and not as_uac:
            out.append(("Require", "timer"))
        return out

    def session_deadline(self) -> float | None:
        """When this session expires unless refreshed (None: no session timer)."""
        if self.session_interval is None:
            return None
        interval = self.session_interval
        if self.we_refresh:
            return self.refreshed_at + interval
        return self.refreshed_at + interval - min(32.0, interval / 3)  # RFC 4028 §10: BYE a little early

    def refresh_due(self, now: float) -> bool:
        return (self.we_refresh and self.session_interval is not None and not self.refreshing
                and self.machine.state.up and now >= self.refreshed_at + self.session_interval / 2)

    def refresh_session(self) -> None:
        """Refresh the session (RFC 4028 §7.4, §10): UPDATE without a body when the party allows it, else a
        re-INVITE with our current SDP unchanged (same version: no change to the media, RFC 3264 §8)."""
        dialog = self.dialog
        if dialog is None or not self.machine.state.up or self.local_sdp is None:
            return
        self.refreshing = True
        headers = self._timer_headers(as_uac=True)
        if self.peer_allows_update:
            out = dialog.create_request("UPDATE", b"", headers)
        else:
            out = dialog.create_request("INVITE", self.local_sdp.serialize(),
                                        [("Content-Type", "application/sdp"), *headers])
        out.headers.add(*self._contact())

        def answered(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            self.refreshing = False
            if not self.machine.state.up:
                return
            if isinstance(action, TimedOut):
                self.call.on_refresh_failed(self, 408)
                return
            if not isinstance(action, DeliverResponse):
                return
            resp = action.response
            if out.method == "INVITE" and resp.status < 300 and self.dialog is not None:
                self.sip.send_ack(self.dialog.create_ack(out), self.peer)
            if resp.status < 300:
                timer = uac_timer(resp)
                if timer is not None:
                    self.set_session_timer(timer, we_are_uac=True)
                else:
                    self.refreshed_at = self.loop.time()
            elif resp.status in (405, 501) and out.method == "UPDATE":
                self.peer_allows_update = False  # try a re-INVITE at once
            elif resp.status in (408, 481):
                self.call.on_refresh_failed(self, resp.status)  # RFC 5057: the dialog is gone
        self.sip.send_request(out, self.peer, answered)

    # -- outbound: calling a party --------------------------------------------------------------------

    def send_invite(self, ring_timeout: float) -> None:
        """Call the party; Hatif gives up (CANCEL) after `ring_timeout` seconds without an answer."""
        self._run(self.machine.invite(ring_timeout, self.loop.time()))

    def _send_invite(self) -> None:
        tx = self.sip.send_request(self.invite, self.peer, self._on_invite_event)
        assert isinstance(tx, ClientInviteTransaction)
        self.client_tx = tx

    def _on_invite_event(self, action: Action) -> None:
        now = self.loop.time()
        if isinstance(action, TimedOut):
            self._run(self.machine.timed_out(now))
            return
        if not isinstance(action, DeliverResponse):
            return
        resp = action.response
        status = resp.status
        if status < 200:
            early = False
            if (status != 100 and self.machine.state in (LegPhase.CALLING, LegPhase.RINGING, LegPhase.EARLY)
                    and resp.body and (resp.headers.get("Content-Type") or "").lower().startswith("application/sdp")):
                try:
                    self.learn_remote(resp.body)
                    early = True
                except SdpError as e:  # early media we cannot use: the leg rings, the caller hears our ringback
                    log.info("unusable SDP in a provisional response", extra={"fields": {"leg": self.id,
                                                                                       "error": str(e)}})
            self._run(self.machine.provisional(status, now, early))
        elif status < 300:
            self._on_2xx(resp, now)
        else:
            self._run(self.machine.failed(status, now, resp.reason))

    def _on_2xx(self, resp: Response, now: float) -> None:
        if self._ok is not None:
            self.sip.send_stateless(self._ok, self.peer)  # a retransmitted 2xx: ACK again
            return
        try:
            dialog = Dialog.uac(self.invite, resp)
        except ParseError as e:
            log.info("bad 2xx", extra={"fields": {"call": self.call.id, "error": e.reason}})
            return
        self.dialog = dialog
        ack = dialog.create_ack(self.invite)
        self.sip.send_ack(ack, self.peer)
        self._ok = bytes(ack)  # for an outbound leg, what answers a retransmitted 2xx is the ACK
        timer = uac_timer(resp)
        if timer is not None:
            self.set_session_timer(timer, we_are_uac=True)
        self.peer_allows_update = _allows_update(resp)
        usable = True
        if resp.body and not self.machine.state.over:
            try:
                self.learn_remote(resp.body)
            except SdpError as e:
                log.info("unusable SDP answer", extra={"fields": {"call": self.call.id, "error": str(e)}})
                usable = False
        self._run(self.machine.accepted(now, usable))

    def cancel(self, cause: str = "cancelled") -> None:
        """Give up an outbound attempt: CANCEL once a provisional response came (RFC 3261 §9.1)."""
        self._run(self.machine.give_up(cause, self.loop.time()))

    def _send_cancel(self) -> None:
        self.sip.send_request(make_cancel(self.invite), self.peer)
        # Without a final response within 64*T1 the client transaction is given up (RFC 3261 §9.1).
        tx = self.client_tx

        def give_up() -> None:
            if tx is not None and self.dialog is None:
                self.sip.transactions.remove(tx)
                self._run(self.machine.timed_out(self.loop.time()))
        self.loop.call_later(64 * self.context.t1, give_up)

    # -- both ways ------------------------------------------------------------------------------------

    def hangup(self, cause: str = "normal") -> None:
        """End this leg however far it got: BYE, CANCEL, or a final response to the caller."""
        self._run(self.machine.hangup(cause, self.loop.time()))

    def _send_bye(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        self.dialog = None
        bye = dialog.create_request("BYE")
        self._pending_bye = True
        self.context.byes(1)

        def done(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            if self._pending_bye:
                self._pending_bye = False
                self.context.byes(-1)
            self._run(self.machine.bye_done(self.loop.time()))
        self.sip.send_request(bye, self.peer, done)

    def _ended(self) -> None:
        """The machine says the leg is over for its call: release timers and media, tell the call."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.media.close()
        if not self.finished.done():
            self.finished.set_result(self.cause)
        waiter = self._digit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self.rtp = self.media.stats()
        self.call.emit("leg.ended", self, cause=self.cause, status=self.status, rtp=self.rtp)
        self.call.on_leg_ended(self)

    # -- in-dialog requests ---------------------------------------------------------------------------

    def on_request(self, request: Request, tx: ServerTx) -> None:
        dialog = self.dialog
        if dialog is None:
            self.sip.respond(tx, make_response(request, 481))
            return
        error = dialog.receive_request(request)
        if error is not None:
            self.sip.respond(tx, error)
            return
        method = request.method
        if method == "BYE":
            self.dialog = None
            self._run(self.machine.bye(self.loop.time()))
            # The 200 says the call is over: it goes once the call's records are in the store.
            sip = self.sip
            self.context.acknowledge(lambda: sip.respond(tx, make_response(request, 200)))
            return
        if method in ("INVITE", "UPDATE"):
            self._reinvite(request, tx)
            return
        if method == "INFO":
            self._info(request, tx)
            return
        if method == "REFER":
            self._refer(request, tx)
            return
        if method in ("OPTIONS", "NOTIFY"):
            self.sip.respond(tx, make_response(request, 200))
            return
        self.sip.respond(tx, make_response(request, 501))

    def _reinvite(self, request: Request, tx: ServerTx) -> None:
        """A re-INVITE or UPDATE from the party: new address, codec or hold (RFC 3264 §8, RFC 6337); 491 when
        it crosses Hatif's own (RFC 3261 §14.2)."""
        if request.method == "INVITE" or request.body:
            refusal = self.machine.offer(self.loop.time())
            if refusal:
                self._run(refusal, request, tx)
                return
        extra = [self._contact()]
        if self.session_interval is not None:
            current = SessionTimer(self.session_interval, "uas" if self.we_refresh else "uac")
            timer = refreshed(request, current, self.context.min_se)
            if isinstance(timer, TooSmall):
                self.sip.respond(tx, make_response(request, 422, "Session Interval Too Small",
                                                   extra=[("Min-SE", str(timer.min_se))]))
                return
            self.set_session_timer(timer, we_are_uac=False)
            extra += self._timer_headers()
        elif session_expires_of(request) is not None:
            extra.append(("Supported", "timer"))
        to_tag = self.tag if self.direction == "inbound" else None
        if request.method == "UPDATE" and not request.body:
            self.sip.respond(tx, make_response(request, 200, "OK", to_tag, b"", extra))
            return
        held = self.remote_held
        if request.body:
            try:
                self.sdp_version += 1
                body = self.answer_sdp(request.body)
            except SdpError as e:
                self.sip.respond(tx, make_response(request, 488, f"Not Acceptable Here: {e}"[:120]))
                return
            held = self._offer_holds
        else:
            self.sdp_version += 1
            body = self.offer_sdp(self.codec)  # an offer in the 200, the answer comes in the ACK
        extra.append(("Content-Type", "application/sdp"))
        self.sip.respond(tx, make_response(request, 200, "OK", to_tag, body, extra))
        self._party_holds(held)

    def _info(self, request: Request, tx: ServerTx) -> None:
        """SIP INFO DTMF (application/dtmf-relay, application/dtmf), as some phones send digits."""
        self.sip.respond(tx, make_response(request, 200))
        ctype = (request.headers.get("Content-Type") or "").lower()
        text = request.body.decode("utf-8", "replace")
        digit = ""
        if ctype.startswith("application/dtmf-relay"):
            for line in text.splitlines():
                key, _, value = line.partition("=")
                if key.strip().lower() == "signal":
                    digit = value.strip()
        elif ctype.startswith("application/dtmf"):
            digit = text.strip()
        if len(digit) == 1 and digit in "0123456789*#ABCD":
            self.add_digit(digit)

    def _refer(self, request: Request, tx: ServerTx) -> None:
        """A phone transfers its party blind (REFER, RFC 3515): 202 when the call takes it, 400 when Refer-To
        names no one, 481 when there is no one to transfer."""
        target = refer_target(request.headers.get("Refer-To") or "")
        if target is None:
            self.sip.respond(tx, make_response(request, 400, "Bad Refer-To"))
        elif self.call.on_refer(self, target):
            self.sip.respond(tx, make_response(request, 202, "Accepted"))
        else:
            self.sip.respond(tx, make_response(request, 481))

    def notify_refer(self, sipfrag: str) -> asyncio.Future[None]:
        """RFC 3515 §2.4.4: tell the transferring phone how its REFER is going (message/sipfrag); the future
        is done when the NOTIFY is answered (or timed out)."""
        done: asyncio.Future[None] = self.loop.create_future()
        dialog = self.dialog
        if dialog is None:
            done.set_result(None)
            return done
        state = "terminated;reason=noresource" if sipfrag.endswith("200 OK") else "active;expires=60"
        note = dialog.create_request("NOTIFY", sipfrag.encode(), [
            ("Event", "refer"), ("Subscription-State", state), ("Content-Type", "message/sipfrag;version=2.0")])

        def answered(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            if not done.done():
                done.set_result(None)
        self.sip.send_request(note, self.peer, answered)
        return done

    # -- Hatif's own hold and resume ------------------------------------------------------------------

    def hold(self) -> asyncio.Future[bool]:
        """Put the party on hold: a re-INVITE offering sendonly (RFC 3264 §8.4). The future says whether the
        party accepted it (False at once when the leg is not up or already held)."""
        return self._ask("sendonly", self.machine.hold)

    def resume(self) -> asyncio.Future[bool]:
        """Take the party off hold: a re-INVITE offering sendrecv."""
        return self._ask("sendrecv", self.machine.resume)

    def _ask(self, direction: str, event: Callable[[float], list[LegCommand]]) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = self.loop.create_future()
        self._reinvites.setdefault(direction, deque()).append(done)
        self._run(event(self.loop.time()))
        return done

    def _send_reinvite(self, direction: str) -> None:
        """Our re-INVITE in flight (a first one, one that waited its turn, or one retried after a 491)."""
        dialog = self.dialog
        if dialog is None:
            self._run(self.machine.reinvite_answered(481, self.loop.time()))
            return
        self.sdp_version += 1
        body = self.offer_sdp(self.codec, direction)
        out = dialog.create_request("INVITE", body, [("Content-Type", "application/sdp")])
        out.headers.add(*self._contact())

        def answered(action: Action) -> None:
            if isinstance(action, TimedOut):
                self._run(self.machine.reinvite_answered(408, self.loop.time()))
                return
            if not isinstance(action, DeliverResponse) or action.response.status < 200:
                return
            resp = action.response
            if resp.status < 300:
                self.sip.send_ack(dialog.create_ack(out), self.peer)
                if resp.body:
                    try:
                        description = SessionDescription.parse(resp.body)
                        n = negotiated(description)
                        self._srtp_from_answer(description.audio())
                        self.remote_sdp = description
                        self.media.set_remote(n.address, n.port, self.media.payload_type, self.media.dtmf_pt)
                    except SdpError as e:
                        log.info("unusable SDP in re-INVITE answer", extra={"fields": {"error": str(e)}})
            self._run(self.machine.reinvite_answered(resp.status, self.loop.time(), random.random()))

        self.sip.send_request(out, self.peer, answered)


def refer_target(refer_to: str) -> str | None:
    """The number a REFER points at (`<sip:1002@host>` -> "1002"); None if it names no one we can dial."""
    text = refer_to.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1:text.index(">")]
    text = text.split("?", 1)[0]
    try:
        uri = URI.parse(text)
    except ValueError:
        return None
    return uri.user or None
