"""One SIP leg of a call: a dialog between Hatif and one party, with an RTP leg of Hatif's own.

Every leg ends at Hatif, in signalling and in media: Hatif answers the caller's offer with its own SDP and
offers its own SDP to everyone it calls, so any leg can be bridged to any other, played to, recorded, held or
put in a conference, whatever happened to it before. An inbound leg is the caller's INVITE (Hatif is the UAS);
an outbound leg is an INVITE Hatif sent (Hatif is the UAC).

The leg is a thin shell over the sans-IO SIP pieces (`Dialog`, the transactions the server runs): it turns
their responses into state changes and futures that `Call` awaits, and reports each change to its call.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    DeliverResponse,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TimedOut,
)
from ..sip.transport import Peer
from .state import cause_of

if TYPE_CHECKING:
    from .call import Call
    from .control import CallControl

log = logging.getLogger(__name__)

ServerTx = ServerInviteTransaction | ServerNonInviteTransaction


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
    NEW = "new"  # inbound: INVITE received; outbound: INVITE sent
    RINGING = "ringing"  # 180 sent or received
    EARLY = "early"  # 183 with SDP: early media flows
    ANSWERED = "answered"
    ENDED = "ended"


class SipLeg:
    """One party of a call, seen from Hatif: its dialog, its RTP leg, its state and its digits."""

    def __init__(self, control: CallControl, call: Call, direction: str, peer: Peer, media: MediaLeg,
                 party: str, invite: Request, tag: str, policy: MediaPolicy | None = None) -> None:
        self.control = control
        self.policy = policy or MediaPolicy()
        media.latch.symmetric = self.policy.symmetric_rtp
        media.on_latch = self._media_latched
        self.call = call
        self.id = secrets.token_hex(6)
        self.direction = direction  # "inbound" or "outbound"
        self.peer = peer
        self.media = media
        self.party = party
        self.invite = invite
        self.tag = tag
        self.state = LegState.NEW
        self.dialog: Dialog | None = None
        self.server_tx: ServerInviteTransaction | None = None
        self.client_tx: ClientInviteTransaction | None = None
        loop = control.loop
        self.answered: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[str] = loop.create_future()  # result: the cause
        self.started = loop.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.cause = ""
        self.status: int | None = None  # an outbound leg's final failure status
        self.reason = ""
        self.remote_sdp: SessionDescription | None = None
        self.local_sdp: SessionDescription | None = None
        self._offered_key: bytes | None = None  # our SDES key in the offer we sent last
        self._srtp_params: tuple[str, bytes, bytes] | None = None  # suite, our key, theirs: SRTP in use
        self._srtp_proto = "RTP/SAVP"
        self.sdp_version = 1
        self.held = False  # Hatif put this party on hold
        self.remote_held = False  # this party put Hatif on hold (its re-INVITE said sendonly/inactive)
        self.acked = direction == "outbound"
        self._ok: bytes | None = None  # our 2xx to an inbound INVITE, retransmitted until the ACK
        self._retransmit = control.server.settings.timers.t1
        self._retransmit_until = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self.digits: deque[str] = deque(maxlen=64)
        self._digit_waiter: asyncio.Future[None] | None = None
        self._cancel_pending = False
        self._provisional = False
        self._pending_bye = False
        self.on_digit: Callable[[str], None] | None = None
        self.listening = False
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
        return f"<SipLeg {self.id} {self.direction} {self.party} {self.state.value}>"

    @property
    def ended(self) -> bool:
        return self.state is LegState.ENDED

    # -- SDP ------------------------------------------------------------------------------------------

    def _sdp_address(self) -> str:
        return self.control.media.settings.sdp_address

    def learn_remote(self, body: bytes) -> None:
        """The party's SDP (offer or answer): where to send, which codec, and whether it holds us."""
        description = SessionDescription.parse(body)
        n = negotiated(description)
        self._srtp_from_answer(description.audio())
        self.remote_sdp = description
        self.media.set_remote(n.address, n.port, n.payload_type, n.dtmf_payload_type)
        self.remote_held = n.direction in ("sendonly", "inactive") or n.address in ("0.0.0.0", "::")

    def answer_sdp(self, offer: bytes) -> bytes:
        """Our answer to the party's offer (the first offered codec we support; direction mirrored)."""
        description = SessionDescription.parse(offer)
        key = new_key()
        answer = make_answer(description, self._sdp_address(), self.media.local_port, self.control.session_id,
                             self.sdp_version, supported=SUPPORTED, srtp_key=key)
        chosen = negotiated(answer)
        remote = negotiated(description)
        index = next(i for i, m in enumerate(answer.media) if m.port != 0)
        offered = description.media[index]
        crypto = chosen_crypto(offered) if answer.media[index].proto == "RTP/SAVP" else None
        self._use_srtp(None if crypto is None else (crypto.suite, key, crypto.key), offered.proto)
        self.remote_sdp = description
        self.media.set_remote(remote.address, remote.port, chosen.payload_type, chosen.dtmf_payload_type)
        self.remote_held = remote.direction in ("sendonly", "inactive") or remote.address in ("0.0.0.0", "::")
        self.local_sdp = answer
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
        offer = make_offer(self._sdp_address(), self.media.local_port, self.control.session_id, self.sdp_version,
                           (*codecs, "telephone-event"), direction=direction, srtp_key=key, proto=proto)
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
        self.control.emit(self.call, "media.latched", self, old=_address(old), new=_address(new),
                          sdp=_address(self.media.latch.expected), dropped_source=self.media.dropped_source)

    # -- digits ---------------------------------------------------------------------------------------

    def _dtmf(self, digit: DtmfDigit) -> None:
        self.add_digit(digit.digit)

    def add_digit(self, digit: str) -> None:
        self.digits.append(digit)
        self.control.emit(self.call, "dtmf", self, digit=digit)
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
        waiter = self.control.loop.create_future()
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
        if self.direction != "inbound" or self.state not in (LegState.NEW, LegState.RINGING):
            return
        srv = self.control.server
        assert self.server_tx is not None
        extra = [("Contact", str(NameAddr(srv.contact_uri(self.peer.transport, "hatif"))))]
        if early_media and self.local_sdp is not None:
            extra.append(("Content-Type", "application/sdp"))
            srv.respond(self.server_tx, make_response(self.invite, 183, "Session Progress", self.tag,
                                                      self.local_sdp.serialize(), extra))
            self.state = LegState.EARLY
        else:
            srv.respond(self.server_tx, make_response(self.invite, 180, "Ringing", self.tag, b"", extra))
            self.state = LegState.RINGING
        self.control.emit(self.call, "leg.ringing", self, early=early_media)

    def answer(self) -> None:
        """200 OK with our SDP, retransmitted until the ACK (RFC 3261 §13.3.1.4)."""
        if self.direction != "inbound" or self.state in (LegState.ANSWERED, LegState.ENDED):
            return
        srv = self.control.server
        assert self.server_tx is not None
        extra = [("Contact", str(NameAddr(srv.contact_uri(self.peer.transport, "hatif"))))]
        body = b""
        if self.local_sdp is None:
            body = self.offer_sdp()  # a late offer (INVITE without SDP): ours goes in the 200, theirs in the ACK
        else:
            body = self.local_sdp.serialize()
        extra.append(("Content-Type", "application/sdp"))
        extra += self._timer_headers()
        ok = make_response(self.invite, 200, "OK", self.tag, body, extra)
        self.dialog = Dialog.uas(self.invite, self.tag)
        srv.respond(self.server_tx, ok)
        self._ok = bytes(ok)
        self.acked = False
        self._retransmit_until = srv.now() + 64 * srv.settings.timers.t1
        self._timers.append(srv.loop.call_later(self._retransmit, self._retransmit_ok))
        self._answered()

    def set_session_timer(self, timer: SessionTimer, we_are_uac: bool) -> None:
        """The negotiated RFC 4028 timer; `refresher` is relative to the transaction that set it."""
        self.session_interval = timer.interval
        self.we_refresh = (timer.refresher == "uac") == we_are_uac
        self.refreshed_at = self.control.loop.time()

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
                and self.state is LegState.ANSWERED and now >= self.refreshed_at + self.session_interval / 2)

    def refresh_session(self) -> None:
        """Refresh the session (RFC 4028 §7.4, §10): UPDATE without a body when the party allows it, else a
        re-INVITE with our current SDP unchanged (same version: no change to the media, RFC 3264 §8)."""
        dialog = self.dialog
        if dialog is None or self.state is not LegState.ANSWERED or self.local_sdp is None:
            return
        srv = self.control.server
        self.refreshing = True
        headers = self._timer_headers(as_uac=True)
        if self.peer_allows_update:
            out = dialog.create_request("UPDATE", b"", headers)
        else:
            out = dialog.create_request("INVITE", self.local_sdp.serialize(),
                                        [("Content-Type", "application/sdp"), *headers])
        out.headers.add("Contact", str(NameAddr(srv.contact_uri(self.peer.transport, "hatif"))))

        def answered(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            self.refreshing = False
            if self.state is not LegState.ANSWERED:
                return
            if isinstance(action, TimedOut):
                self.control.session_refresh_failed(self, 408)
                return
            if not isinstance(action, DeliverResponse):
                return
            resp = action.response
            if out.method == "INVITE" and resp.status < 300 and self.dialog is not None:
                srv.send_ack(self.dialog.create_ack(out), self.peer)
            if resp.status < 300:
                timer = uac_timer(resp)
                if timer is not None:
                    self.set_session_timer(timer, we_are_uac=True)
                else:
                    self.refreshed_at = self.control.loop.time()
            elif resp.status in (405, 501) and out.method == "UPDATE":
                self.peer_allows_update = False  # try a re-INVITE at once
            elif resp.status in (408, 481):
                self.control.session_refresh_failed(self, resp.status)  # RFC 5057: the dialog is gone
        srv.send_request(out, self.peer, answered)

    def _retransmit_ok(self) -> None:
        if self.acked or self.state is not LegState.ANSWERED or self._ok is None:
            return
        srv = self.control.server
        if srv.now() >= self._retransmit_until:
            log.info("no ACK for 2xx: ending call", extra={"fields": {"call": self.call.id, "leg": self.id}})
            self.hangup("no_ack")
            return
        srv.transports.send(self._ok, self.peer)
        self._retransmit = min(self._retransmit * 2, srv.settings.timers.t2)
        self._timers.append(srv.loop.call_later(self._retransmit, self._retransmit_ok))

    def reject(self, status: int, reason: str | None = None, cause: str | None = None) -> None:
        """A final failure to the caller's INVITE (nothing is sent once it was answered: use `hangup`)."""
        if self.direction != "inbound" or self.state in (LegState.ANSWERED, LegState.ENDED):
            return
        assert self.server_tx is not None
        extra = [("Retry-After", "5")] if status == 503 else None
        self.control.server.respond(self.server_tx, make_response(self.invite, status, reason, self.tag,
                                                                  extra=extra))
        self.status = status
        self.end(cause or cause_of(status))

    def on_ack(self, request: Request) -> None:
        self.acked = True
        if request.body and self.remote_sdp is None:
            try:
                self.learn_remote(request.body)
            except SdpError as e:
                log.info("unusable SDP in ACK", extra={"fields": {"call": self.call.id, "error": str(e)}})
                self.hangup("failed")

    def on_cancel(self) -> None:
        if self.state in (LegState.ANSWERED, LegState.ENDED):
            return
        assert self.server_tx is not None
        self.control.server.respond(self.server_tx, make_response(self.invite, 487, to_tag=self.tag))
        self.end("cancelled")

    # -- outbound: calling a party --------------------------------------------------------------------

    def send_invite(self, ring_timeout: float) -> None:
        srv = self.control.server
        tx = srv.send_request(self.invite, self.peer, self._on_invite_event)
        assert isinstance(tx, ClientInviteTransaction)
        self.client_tx = tx
        self._timers.append(srv.loop.call_later(ring_timeout, self._ring_timeout))

    def _on_invite_event(self, action: Action) -> None:
        if isinstance(action, TimedOut):
            if self.state is not LegState.ENDED and self.dialog is None:
                self.status = 408
                self.reason = "Request Timeout"
                self.end("no_answer" if self._cancel_pending else "unreachable")
            return
        if not isinstance(action, DeliverResponse):
            return
        resp = action.response
        status = resp.status
        if status == 100:
            return
        if status < 200:
            self._provisional = True
            if self._cancel_pending:
                self._send_cancel()
                return
            if self.state in (LegState.ENDED, LegState.ANSWERED):
                return
            if resp.body and (resp.headers.get("Content-Type") or "").lower().startswith("application/sdp"):
                try:
                    self.learn_remote(resp.body)
                    self.state = LegState.EARLY
                except SdpError:
                    self.state = LegState.RINGING
            elif self.state is LegState.NEW:
                self.state = LegState.RINGING
            self.control.emit(self.call, "leg.ringing", self, early=self.state is LegState.EARLY, status=status)
            self.call.on_leg_progress(self)
            return
        if status < 300:
            self._on_2xx(resp)
            return
        if self.state is LegState.ENDED:
            return
        self.status = status
        self.reason = resp.reason
        if status in (401, 407):
            self.status, self.reason = 480, "Temporarily Unavailable"
        self.end("no_answer" if self.cause == "no_answer" or (self._cancel_pending and status == 487)
                 else cause_of(self.status))

    def _on_2xx(self, resp: Response) -> None:
        srv = self.control.server
        if self.dialog is not None:
            if self._ok is not None:
                srv.transports.send(self._ok, self.peer)  # a retransmitted 2xx: ACK again
            return
        try:
            dialog = Dialog.uac(self.invite, resp)
        except ParseError as e:
            log.info("bad 2xx", extra={"fields": {"call": self.call.id, "error": e.reason}})
            return
        self.dialog = dialog
        ack = dialog.create_ack(self.invite)
        srv.send_ack(ack, self.peer)
        timer = uac_timer(resp)
        if timer is not None:
            self.set_session_timer(timer, we_are_uac=True)
        self.peer_allows_update = _allows_update(resp)
        self._ok = bytes(ack)  # for an outbound leg, what answers a retransmitted 2xx is the ACK
        if self.state is LegState.ENDED or self._cancel_pending:
            self._bye()  # answered after we gave up (RFC 3261 §9.1: the race with CANCEL)
            return
        if resp.body:
            try:
                self.learn_remote(resp.body)
            except SdpError as e:
                log.info("unusable SDP answer", extra={"fields": {"call": self.call.id, "error": str(e)}})
                self.hangup("failed")
                return
        self._answered()

    def _ring_timeout(self) -> None:
        if self.state in (LegState.ANSWERED, LegState.ENDED):
            return
        self.cause = "no_answer"
        self.status, self.reason = 480, "No Answer"
        self.cancel("no_answer")

    def cancel(self, cause: str = "cancelled") -> None:
        """Give up an outbound attempt: CANCEL once a provisional response came (RFC 3261 §9.1)."""
        if self.direction != "outbound" or self.state in (LegState.ANSWERED, LegState.ENDED):
            return
        self.cause = cause
        if not self._provisional:
            self._cancel_pending = True
            # No provisional response yet: the CANCEL waits for one; Timer B ends the attempt otherwise.
            self.control.detach(self)
            self._finish(cause)
            return
        self._send_cancel()
        self.control.detach(self)
        self._finish(cause)

    def _send_cancel(self) -> None:
        srv = self.control.server
        self._cancel_pending = False
        srv.send_request(make_cancel(self.invite), self.peer)
        # Without a final response within 64*T1 the client transaction is given up (RFC 3261 §9.1).
        tx = self.client_tx

        def give_up() -> None:
            if tx is not None and self.dialog is None:
                srv.transactions.remove(tx)
        srv.loop.call_later(64 * srv.settings.timers.t1, give_up)

    # -- both ways ------------------------------------------------------------------------------------

    def _answered(self) -> None:
        self.state = LegState.ANSWERED
        self.answered_at = self.control.loop.time()
        self.media.answered()
        if not self.answered.done():
            self.answered.set_result(None)
        self.control.emit(self.call, "leg.answered", self)
        self.call.on_leg_answered(self)

    def hangup(self, cause: str = "normal") -> None:
        """End this leg however far it got: BYE, CANCEL, or a final response to the caller."""
        if self.state is LegState.ENDED:
            return
        if self.dialog is not None:
            self._bye()
            self.end(cause)
        elif self.direction == "inbound":
            self.reject(480 if cause != "busy" else 486, "No Answer" if cause == "no_answer" else None, cause)
        else:
            self.cancel(cause)

    def _bye(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        self.dialog = None
        bye = dialog.create_request("BYE")
        self._pending_bye = True
        self.control.pending_byes += 1

        def done(action: Action) -> None:
            if isinstance(action, DeliverResponse) and action.response.status < 200:
                return
            if self._pending_bye:
                self._pending_bye = False
                self.control.pending_byes -= 1
        self.control.server.send_request(bye, self.peer, done)

    def end(self, cause: str) -> None:
        """The leg is over (whatever ended it): release its timers, media, and tell the call."""
        if self.state is LegState.ENDED:
            return
        self.control.detach(self)
        self._finish(cause)

    def _finish(self, cause: str) -> None:
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        self.cause = self.cause or cause
        self.ended_at = self.control.loop.time()
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self.media.close()
        if not self.finished.done():
            self.finished.set_result(self.cause)
        waiter = self._digit_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        rtp = self.media.stats()
        for key in ("dropped_source", "dropped_auth"):  # refused packets, in the CDR (and so the API)
            if rtp[key]:
                variables = self.call.variables
                variables[f"rtp_{key}"] = str(int(variables.get(f"rtp_{key}", "0")) + rtp[key])
        self.control.emit(self.call, "leg.ended", self, cause=self.cause, status=self.status, rtp=rtp)
        self.call.on_leg_ended(self)

    # -- in-dialog requests ---------------------------------------------------------------------------

    def on_request(self, request: Request, tx: ServerTx) -> None:
        srv = self.control.server
        dialog = self.dialog
        if dialog is None:
            srv.respond(tx, make_response(request, 481))
            return
        error = dialog.receive_request(request)
        if error is not None:
            srv.respond(tx, error)
            return
        method = request.method
        if method == "BYE":
            self.dialog = None
            self.end("normal")
            # The 200 says the call is over: it goes once the call's records are in the store.
            self.control.acknowledge(lambda: srv.respond(tx, make_response(request, 200)))
            return
        if method in ("INVITE", "UPDATE"):
            self._reinvite(request, tx)
            return
        if method == "INFO":
            self._info(request, tx)
            return
        if method == "REFER":
            self.call.on_refer(self, request, tx)
            return
        if method in ("OPTIONS", "NOTIFY"):
            srv.respond(tx, make_response(request, 200))
            return
        srv.respond(tx, make_response(request, 501))

    def _reinvite(self, request: Request, tx: ServerTx) -> None:
        """A re-INVITE or UPDATE from the party: new address, codec or hold (RFC 3264 §8, RFC 6337)."""
        srv = self.control.server
        was_held = self.remote_held
        extra = [("Contact", str(NameAddr(srv.contact_uri(self.peer.transport, "hatif"))))]
        if self.session_interval is not None:
            current = SessionTimer(self.session_interval, "uas" if self.we_refresh else "uac")
            timer = refreshed(request, current, self.control.limits.min_se)
            if isinstance(timer, TooSmall):
                srv.respond(tx, make_response(request, 422, "Session Interval Too Small",
                                              extra=[("Min-SE", str(timer.min_se))]))
                return
            self.set_session_timer(timer, we_are_uac=False)
            extra += self._timer_headers()
        elif session_expires_of(request) is not None:
            extra.append(("Supported", "timer"))
        if request.method == "UPDATE" and not request.body:
            srv.respond(tx, make_response(request, 200, "OK", self.tag if self.direction == "inbound" else None,
                                          b"", extra))
            return
        if request.body:
            try:
                self.sdp_version += 1
                body = self.answer_sdp(request.body)
            except SdpError as e:
                srv.respond(tx, make_response(request, 488, f"Not Acceptable Here: {e}"[:120]))
                return
        else:
            self.sdp_version += 1
            body = self.offer_sdp(self.codec)  # an offer in the 200, the answer comes in the ACK
        extra.append(("Content-Type", "application/sdp"))
        srv.respond(tx, make_response(request, 200, "OK", self.tag if self.direction == "inbound" else None,
                                      body, extra))
        if self.remote_held != was_held:
            self.control.emit(self.call, "leg.held" if self.remote_held else "leg.resumed", self, by="party")
            self.call.on_remote_hold(self, self.remote_held)

    def _info(self, request: Request, tx: ServerTx) -> None:
        """SIP INFO DTMF (application/dtmf-relay, application/dtmf), as some phones send digits."""
        srv = self.control.server
        srv.respond(tx, make_response(request, 200))
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

    def reinvite(self, direction: str) -> asyncio.Future[bool]:
        """Send our own re-INVITE (hold: sendonly; resume: sendrecv). The future says whether it was accepted."""
        done: asyncio.Future[bool] = self.control.loop.create_future()
        dialog = self.dialog
        if dialog is None or self.state is not LegState.ANSWERED:
            done.set_result(False)
            return done
        srv = self.control.server
        self.sdp_version += 1
        body = self.offer_sdp(self.codec, direction)
        out = dialog.create_request("INVITE", body, [("Content-Type", "application/sdp")])
        out.headers.add("Contact", str(NameAddr(srv.contact_uri(self.peer.transport, "hatif"))))

        def answered(action: Action) -> None:
            if isinstance(action, TimedOut):
                if not done.done():
                    done.set_result(False)
                return
            if not isinstance(action, DeliverResponse) or action.response.status < 200:
                return
            resp = action.response
            if resp.status < 300:
                srv.send_ack(dialog.create_ack(out), self.peer)
                if resp.body:
                    try:
                        description = SessionDescription.parse(resp.body)
                        n = negotiated(description)
                        self._srtp_from_answer(description.audio())
                        self.remote_sdp = description
                        self.media.set_remote(n.address, n.port, self.media.payload_type, self.media.dtmf_pt)
                    except SdpError as e:
                        log.info("unusable SDP in re-INVITE answer", extra={"fields": {"error": str(e)}})
            if not done.done():
                done.set_result(resp.status < 300)

        srv.send_request(out, self.peer, answered)
        return done
