"""Call control: Hatif's calls, each made of SIP legs that end at Hatif, and the applications that run them.

`CallControl` is the SIP server's request handler. For each INVITE it accepted it creates a `Call` with the
caller's leg, routes the dialed number through the tenant's dial plan, and starts what the target says:

- `user` / `endpoint`: a direct call. Hatif places a new leg toward the callee (its own SDP offer, a fresh
  Call-ID, tags and CSeq: a back-to-back user agent, RFC 7092) and tells the caller what happens: 180 when it
  rings, 183 with early media, 200 and a media bridge when it answers; busy, no answer (ring timeout, then
  CANCEL) and unreachable callees end with 486, 480 and 408; CANCEL from the caller cancels the callee.
  A user's mailbox, when configured, takes the call instead of a busy or unanswered phone.
- `app:NAME`: an application registered with `register_app` (echo test, greeting, IVR flows, voicemail,
  queues) gets the `Call` (a `hatif.calls.api.Channel`) and runs as a task; the call ends when it returns.

Events: every state change is a `CallEvent` (kinds: call.started, leg.ringing, leg.answered, leg.held,
leg.resumed, leg.timeout, leg.ended, call.bridged, call.unbridged, dtmf, record.started, record.done, transfer,
conference.joined, conference.left, ivr.node, media.latched, call.ended), kept in a bounded deque and passed
to listeners. `media.latched` says which address a leg's RTP is taken from (`old`, `new`, the SDP's `sdp`),
each time it is first taken and each time it moves; `leg.ended` carries the leg's RTP counters (`rtp`:
received, relayed, sent, and dropped by source, as invalid, or failing SRTP authentication).
When a call ends its call detail record is handed to the `on_record` hooks (the store writes it).

No call lives forever (`calls.guard`): one sweep every half second ends calls whose RTP stopped, whose
RFC 4028 session timer expired, or that outlived their tenant's maximum, and sends Hatif's own session
refreshes. Calls being set up are counted for the SIP server's admission control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..media.engine import MediaEngine, MediaError, Mix
from ..media.mixing import conference_matrix
from ..media.prompts import PromptCache
from ..sip.dialog import new_tag
from ..sip.headers import Headers, NameAddr
from ..sip.message import Request, Response, make_response
from ..sip.sdp import SdpError
from ..sip.server import Caller, ServerTx, SipServer
from ..sip.session_timer import TooSmall, uas_timer
from ..sip.transaction import ServerInviteTransaction
from ..sip.transport import Peer
from ..sip.uri import URI
from ..store.records import CallRecord
from .api import CallEvent, Hangup, Outcome
from .call import Call, Conference
from .dialplan import Target
from .guard import CallLimits, call_too_long, check_leg
from .leg import LegContext, LegState, MediaPolicy, SipLeg

log = logging.getLogger(__name__)

App = Callable[[Call, str], Awaitable[None]]
"""An application: runs on a call Hatif answers; gets the call and the argument after `app:NAME:`."""


@dataclass(frozen=True, slots=True)
class FinishedMedia:
    """What a call's media left behind: its recording (path, SHA-256, seconds) and the digits heard."""

    call_id: str
    recording: Path | None
    sha256: str | None
    seconds: float
    digits: tuple[str, ...]


STATUS_FOR = {"busy": (486, "Busy Here"), "no_answer": (480, "No Answer"),
              "unavailable": (480, "Temporarily Unavailable"), "unreachable": (408, "Request Timeout"),
              "rejected": (603, "Decline"), "failed": (500, "Server Internal Error")}


class CallControl:
    """Takes the INVITEs the SIP server accepted; owns every call, leg and conference of this Hatif."""

    def __init__(self, server: SipServer, media: MediaEngine, prompts: PromptCache, *,
                 route: Callable[[str, str], Target | None], record: bool = False,
                 recordings: Path | None = None, limits: CallLimits | None = None) -> None:
        self.server = server
        self.route = route  # (tenant, dialled number) -> where it goes: the tenant's dial plan
        self.limits = limits or CallLimits()
        self.media = media
        self.prompts = prompts
        self.loop = server.loop
        self.record = record
        self.recordings = recordings or media.settings.recordings
        self.session_id = secrets.randbelow(2**31)
        self.calls: dict[str, Call] = {}
        self.conferences: dict[tuple[str, str], Conference] = {}
        self.apps: dict[str, App] = {}
        self.events: deque[CallEvent] = deque(maxlen=10_000)
        self.listeners: list[Callable[[CallEvent], None]] = []
        self.on_record: list[Callable[[CallRecord], None]] = []
        self.finished: deque[FinishedMedia] = deque(maxlen=1000)
        self.mailbox_for: Callable[[str, str], str | None] = lambda tenant, user: None
        self.durable: Callable[[], asyncio.Future[None]] | None = None  # done when records so far are committed
        self.stats = {"calls": 0, "answered": 0, "failed": 0, "cancelled": 0, "no_answer": 0}
        self.pending_byes = 0
        self._legs: dict[tuple[str, str], SipLeg] = {}  # (Call-ID, our tag) -> leg
        self._by_server_tx: dict[int, SipLeg] = {}
        self._by_out_call_id: dict[str, SipLeg] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._setting_up: set[SipLeg] = set()  # inbound legs not yet answered or ended (admission counts them)
        self.ended_by: dict[str, int] = {"rtp_timeout": 0, "session_expired": 0, "max_duration": 0}
        self._sweep_timer: asyncio.TimerHandle | None = self.loop.call_later(self.limits.sweep, self._sweep)
        timers = server.settings.timers
        self.leg_context = LegContext(server, self.loop, media.settings.sdp_address, self.session_id,
                                      self.limits.min_se, timers.t1, timers.t2, self.acknowledge, self._count_bye)
        server.handler = self

    def _count_bye(self, delta: int) -> None:
        self.pending_byes += delta

    # -- events ---------------------------------------------------------------------------------------

    def emit(self, call: Call, kind: str, leg: SipLeg | None = None, **data: object) -> None:
        event = CallEvent(kind, call.id, self.loop.time(), call.tenant, leg.id if leg is not None else None, data)
        self.events.append(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", extra={"fields": {"kind": kind}})

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), Hangup):
            log.error("call task failed", exc_info=task.exception())

    def register_app(self, name: str, app: App) -> None:
        self.apps[name] = app

    def acknowledge(self, send: Callable[[], None]) -> None:
        """Run `send` (the answer that tells a party its call is over) once what the call's end recorded is
        durable (SECURITY.md: persist before acknowledging).

        It waits one turn of the loop first: the queue's completion and the agent's wrap-up are recorded by
        callbacks of the legs that just ended, which the loop runs before this one."""
        durable = self.durable
        if durable is None:
            send()
            return

        def settled(_: object) -> None:
            try:
                send()
            except Exception:
                log.exception("acknowledgement failed")

        self.loop.call_soon(lambda: durable().add_done_callback(settled))

    # -- new calls ------------------------------------------------------------------------------------

    def on_invite(self, request: Request, tx: ServerInviteTransaction, caller: Caller, peer: Peer) -> None:
        srv = self.server
        tag = new_tag()
        srv.respond(tx, make_response(request, 100))
        if len(self.calls) >= srv.settings.max_dialogs:
            srv.respond(tx, make_response(request, 503, "Too Many Calls", to_tag=tag, extra=[("Retry-After", "5")]))
            return
        number = request.uri.user
        target = self.route(caller.tenant, number) if number else None
        if target is None:
            srv.respond(tx, make_response(request, 404, to_tag=tag))
            return
        timer = uas_timer(request, self.limits.min_se, self.limits.session_expires)
        if isinstance(timer, TooSmall):
            srv.respond(tx, make_response(request, 422, "Session Interval Too Small", to_tag=tag,
                                          extra=[("Min-SE", str(timer.min_se))]))
            return
        try:
            media = self.media.open_leg()
        except MediaError as e:
            log.warning("media unavailable", extra={"fields": {"error": str(e)}})
            srv.respond(tx, make_response(request, 503, "Service Unavailable: no media port", to_tag=tag,
                                          extra=[("Retry-After", "5")]))
            return
        if caller.kind == "user":
            name, display = caller.name, srv.directory.display_name(caller.tenant, caller.name)
            language = srv.directory.language(caller.tenant, caller.name)
        else:
            from_uri = request.from_.uri
            name = (from_uri.user if from_uri is not None else None) or caller.name
            display, language = request.from_.display, "en"
        call = Call(self, caller.tenant, name, display, number or "", language)
        leg = SipLeg(self.leg_context, call, "inbound", peer, media, name, request, tag,
                     self.media_policy(caller.tenant, caller.kind, caller.name))
        leg.server_tx = tx
        leg.set_session_timer(timer, we_are_uac=False)
        if request.body:
            try:
                leg.answer_sdp(request.body)
            except SdpError as e:
                media.close()
                srv.respond(tx, make_response(request, 488, f"Not Acceptable Here: {e}"[:120], to_tag=tag))
                return
        call.add_leg(leg, caller=True)
        self.calls[call.id] = call
        self._legs[(request.call_id, tag)] = leg
        self._by_server_tx[id(tx)] = leg
        self._setting_up.add(leg)
        srv.admission.setup_started()
        self.stats["calls"] += 1
        self.emit(call, "call.started", leg, caller=name, called=number, target=f"{target.kind}:{target.name}")
        if target.kind == "app":
            self.spawn(self._run_app(call, target))
        else:
            self.spawn(self._direct(call, target))

    async def _run_app(self, call: Call, target: Target) -> None:
        name, _, argument = target.name.partition(":")
        app = self.apps.get(name)
        try:
            if app is None:
                log.warning("unknown application", extra={"fields": {"app": target.name}})
                assert call.caller is not None
                call.caller.reject(404, "Not Found: no such application")
                return
            with contextlib.suppress(Hangup):  # the caller went away: nothing more to do than clean up
                await app(call, argument)
        finally:
            if not call.ended:
                await call.hangup()

    async def _direct(self, call: Call, target: Target) -> None:
        caller = call.caller
        assert caller is not None
        dest = f"user:{target.name}" if target.kind == "user" else f"endpoint:{target.name}/{target.number}"
        leg = self.dial(call, dest, prefer=caller.codec)
        if isinstance(leg, str):
            outcome: str = leg
        else:
            outcome = await call.connect_leg(caller, leg)
        if caller.ended:
            return
        if outcome == "answered":
            caller.hangup()
            return
        mailbox = self.mailbox_for(call.tenant, target.name) if target.kind == "user" else None
        voicemail = self.apps.get("voicemail")
        if mailbox and voicemail is not None and outcome in ("busy", "no_answer", "unavailable"):
            try:
                await voicemail(call, mailbox)
            except Hangup:
                return
            if not call.ended:
                await call.hangup()
            return
        status, reason = call.failure or STATUS_FOR.get(outcome, (480, "Temporarily Unavailable"))
        if status in (401, 407, 487) or status < 300:
            status, reason = 480, "Temporarily Unavailable"
        if outcome == "no_answer" and status == 480:
            self.stats["no_answer"] += 1
        else:
            self.stats["failed"] += 1
        caller.reject(status, reason, outcome)

    # -- placing legs ---------------------------------------------------------------------------------

    def new_call(self, tenant: str, caller_number: str, caller_name: str | None, called: str,
                 language: str = "en") -> Call:
        """A call Hatif places itself (a callback, the dialer): no caller leg; `Call.dial` adds legs."""
        call = Call(self, tenant, caller_number, caller_name, called, language)
        self.calls[call.id] = call
        self.emit(call, "call.started", None, caller=caller_number, called=called, target="originate")
        return call

    def dial(self, call: Call, target: str, *, timeout: float | None = None, caller_id: str | None = None,
             prefer: str | None = None) -> SipLeg | Outcome:
        """Send an INVITE for `call` to `target` (`user:NAME`, `extension:N`, `endpoint:NAME/NUMBER`, or a
        number for the dial plan); returns the new leg, or an outcome when no one can be called."""
        srv = self.server
        kind, _, rest = target.partition(":")
        now = srv.now()
        if kind == "extension" or (not rest and kind):
            routed = self.route(call.tenant, rest or kind)
            if routed is None or routed.kind == "app":
                return "failed"
            kind = "user" if routed.kind == "user" else "endpoint"
            rest = routed.name if routed.kind == "user" else f"{routed.name}/{routed.number}"
        elif kind == "number":
            routed = self.route(call.tenant, rest)
            if routed is None or routed.kind != "endpoint":
                return "failed"
            kind, rest = "endpoint", f"{routed.name}/{routed.number}"
        if kind == "user":
            bindings = srv.registry.lookup((call.tenant, rest), now)
            if not bindings:
                call.failure = (480, "Temporarily Unavailable: not registered")
                return "unavailable"
            b = bindings[0]
            peer = Peer(b.source[0], b.source[1], b.source[2])
            ruri = b.uri
            to_uri = URI("sip", srv.local_host(peer.transport)[0], rest)
            party = rest
            policy = self.media_policy(call.tenant, "user", rest)
        elif kind == "endpoint":
            name, _, number = rest.partition("/")
            found = self._endpoint(call.tenant, name)
            if found is None:
                return "failed"
            peer = found
            ruri = URI("sip", peer.host, number or None, None, peer.port,
                       () if peer.transport == "udp" else (("transport", peer.transport),))
            to_uri = ruri
            party = number or name
            policy = self.media_policy(call.tenant, "endpoint", name)
        else:
            return "failed"
        try:
            media = self.media.open_leg()
        except MediaError as e:
            log.warning("media unavailable", extra={"fields": {"error": str(e)}})
            return "failed"
        tag = new_tag()
        invite = self._invite(call, ruri, to_uri, peer, tag, caller_id)
        leg = SipLeg(self.leg_context, call, "outbound", peer, media, party, invite, tag, policy)
        invite.body = leg.offer_sdp(prefer)
        invite.headers.add("Content-Type", "application/sdp")
        call.add_leg(leg)
        self._legs[(invite.call_id, tag)] = leg
        self._by_out_call_id[invite.call_id] = leg
        log.debug("dialing", extra={"fields": {"call": call.id, "target": target}})
        leg.send_invite(timeout if timeout is not None else srv.settings.ring_timeout)
        return leg

    def media_policy(self, tenant: str, kind: str, name: str) -> MediaPolicy:
        """Symmetric RTP and SRTP for a user's phone or an endpoint, as the directory configures them."""
        lookup = getattr(self.server.directory, "media_policy", None)
        if lookup is not None:
            policy: MediaPolicy = lookup(tenant, kind, name)
            return policy
        return MediaPolicy(symmetric_rtp=kind == "user")

    def _endpoint(self, tenant: str, name: str) -> Peer | None:
        routed = getattr(self.server.directory, "endpoint_peer", None)
        if routed is not None:
            peer: Peer | None = routed(tenant, name)
            return peer
        return None

    def _invite(self, call: Call, ruri: URI, to_uri: URI, peer: Peer, tag: str, caller_id: str | None) -> Request:
        srv = self.server
        host = srv.local_host(peer.transport)[0]
        user = caller_id or call.caller_number or None
        display = call.caller_name if caller_id is None else None
        caller = call.caller
        mf = caller.invite.header_int("Max-Forwards") if caller is not None else None
        h = Headers([
            ("From", str(NameAddr(URI("sip", host, user), display, (("tag", tag),)))),
            ("To", str(NameAddr(to_uri))),
            ("Call-ID", f"{secrets.token_hex(12)}@hatif"),
            ("CSeq", "1 INVITE"),
            ("Contact", str(NameAddr(srv.contact_uri(peer.transport, "hatif")))),
            ("Max-Forwards", str((mf if mf is not None else 70) - 1)),
            ("User-Agent", srv.settings.user_agent),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"),
            ("Supported", "timer"),
            ("Session-Expires", str(self.limits.session_expires)),
            ("Min-SE", str(self.limits.min_se)),
        ])
        return Request(h, b"", "INVITE", ruri)

    def detach(self, leg: SipLeg) -> None:
        """Forget a leg's dialog keys (it ended); a call whose legs all ended is dropped."""
        invite = leg.invite
        self._legs.pop((invite.call_id, leg.tag), None)
        if leg.server_tx is not None:
            self._by_server_tx.pop(id(leg.server_tx), None)
        if leg.direction == "outbound":
            self._by_out_call_id.pop(invite.call_id, None)
        self.setup_done(leg)

    def caller_answered(self, leg: SipLeg) -> None:
        """A call's caller was answered: counted, and no longer a call being set up."""
        self.stats["answered"] += 1
        self.setup_done(leg)

    def setup_done(self, leg: SipLeg) -> None:
        """An inbound leg was answered or ended: it no longer counts as a call being set up."""
        if leg in self._setting_up:
            self._setting_up.discard(leg)
            self.server.admission.setup_finished()

    def call_ended(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        record = call.cdr()
        self.finished.append(FinishedMedia(call.id, call.recording, call.recording_sha256, call.recorded_seconds,
                                           tuple(d for leg in call.legs for d in leg.digits) or
                                           tuple(call.digits_heard)))
        self.emit(call, "call.ended", None, outcome=record.outcome, duration=record.duration)
        for hook in self.on_record:
            try:
                hook(record)
            except Exception:
                log.exception("call record hook failed", extra={"fields": {"call": call.id}})

    # -- no call lives forever -----------------------------------------------------------------------

    def _sweep(self) -> None:
        """Every `limits.sweep` seconds: refresh sessions Hatif refreshes, end calls that must end."""
        now = self.loop.time()
        self._sweep_timer = self.loop.call_later(self.limits.sweep, self._sweep)
        for call in list(self.calls.values()):
            if call_too_long(call.started, now, call.tenant, self.limits):
                self.end_call(call, "max_duration")
                continue
            for leg in call.legs:
                if leg.state is not LegState.ANSWERED:
                    continue
                try:
                    verdict = check_leg(leg, now, self.limits)
                except Exception:
                    log.exception("call check failed", extra={"fields": {"call": call.id}})
                    continue
                if verdict == "refresh":
                    leg.refresh_session()
                elif verdict is not None:
                    self.end_leg(leg, verdict)

    def end_leg(self, leg: SipLeg, cause: str) -> None:
        """End one leg for a reason of Hatif's (BYE, the cause in the CDR, a `leg.timeout` event); when it is
        the caller's, the call ends with it."""
        if leg.ended:
            return
        if cause in self.ended_by:
            self.ended_by[cause] += 1
        log.info("ending leg", extra={"fields": {"call": leg.call.id, "leg": leg.id, "cause": cause}})
        leg.call.emit("leg.timeout", leg, cause=cause)
        leg.hangup(cause)

    def end_call(self, call: Call, cause: str) -> None:
        """End every leg of a call with `cause` (its maximum length passed, or Hatif stops)."""
        for leg in list(call.legs):
            if not leg.ended:
                self.end_leg(leg, cause)

    def end_all(self, cause: str) -> int:
        """End every live call (the drain deadline passed, or a second SIGTERM); returns how many."""
        calls = list(self.calls.values())
        for call in calls:
            self.end_call(call, cause)
        return len(calls)

    def session_refresh_failed(self, leg: SipLeg, status: int) -> None:
        """Hatif's session refresh got 408 or 481 (or no answer): the dialog is gone (RFC 4028 §10)."""
        log.info("session refresh failed", extra={"fields": {"call": leg.call.id, "status": status}})
        self.end_leg(leg, "session_expired")

    # -- conferences ----------------------------------------------------------------------------------

    def conference(self, tenant: str, name: str) -> Conference:
        room = self.conferences.get((tenant, name))
        if room is None:
            room = Conference(name, tenant)
            self.conferences[(tenant, name)] = room
        return room

    def remix(self, room: Conference) -> None:
        if room.mix is not None:
            room.mix.close()
            room.mix = None
        live = [leg for leg in room.members if not leg.ended]
        room.members = live
        if len(live) >= 2:
            room.mix = Mix(self.media, [leg.media for leg in live], conference_matrix(len(live)))
        if not live:
            self.conferences.pop((room.tenant, room.name), None)

    # -- what the SIP server passes on ----------------------------------------------------------------

    def on_cancel(self, invite_tx: ServerInviteTransaction) -> None:
        leg = self._by_server_tx.get(id(invite_tx))
        if leg is None:
            if invite_tx.state in ("trying", "proceeding"):
                self.server.respond(invite_tx, make_response(invite_tx.request, 487, to_tag=new_tag()))
            return
        if leg.state in (LegState.ANSWERED, LegState.ENDED):
            return
        self.stats["cancelled"] += 1
        leg.on_cancel()

    def on_in_dialog(self, request: Request, tx: ServerTx | None, peer: Peer) -> bool:
        srv = self.server
        leg = self._legs.get((request.call_id, request.to.tag or ""))
        if leg is None:
            if tx is not None:
                srv.respond(tx, make_response(request, 481))
            return False
        if request.method == "ACK":
            leg.on_ack(request)
            return True
        if tx is None:
            return True
        leg.on_request(request, tx)
        return True

    def on_stray_2xx(self, response: Response) -> None:
        leg = self._by_out_call_id.get(response.call_id)
        if leg is not None and leg.dialog is not None:
            ack = leg.dialog.create_ack(leg.invite)
            self.server.send_ack(ack, leg.peer)

    # -- counting -------------------------------------------------------------------------------------

    def dialog_count(self) -> int:
        """Dialogs still held (for tests and stats)."""
        return sum(leg.dialog is not None for call in self.calls.values() for leg in call.legs)

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for call in list(self.calls.values()):
            for leg in call.legs:
                if not leg.ended:
                    leg.hangup("shutdown")
        for task in list(self._tasks):
            task.cancel()
