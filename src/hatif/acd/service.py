"""The ACD service: the sans-IO router driving real calls (one per tenant, on Hatif's loop).

A caller sent to a queue (`queue:NAME` in the dial plan, or an IVR route) is answered and hears music,
with their position and expected wait announced every `announce_every` seconds in their language; a key
asks for a callback (the place in line is kept; Hatif calls back when an agent frees up), another leaves a
voicemail. The router's `Offer` rings the agents' registered phones (`user:NAME`) with the caller's number;
the first to answer is bridged to the caller; a phone that rings out or refuses makes its agent NOT_READY
("missed"/"rejected"), as the router says. When the call ends the agent gets the queue's wrap-up time.

Every router event goes to the queue log in the store (`QueueLogEntry`), with wall-clock times, and agent
state changes are kept for the summary. The router's deadlines (ring timeout, wrap-up, overflow, maximum
wait, callbacks) are served by one asyncio timer.

Agent work states asked for by people (`request`, checked by `hatif.acd.states`) are events: with `publish`
set (the outbox's `emit`), a request becomes `agent.state.requested` on the `agents` stream, and every node,
this one too, applies it to its own router when the bus delivers it (`on_event`), so all nodes apply every
request in the stream's one order and agree. The node that took the request (`origin`) reports what its
router did (`agent.state`, the queue log); the others apply it quietly. When the router itself makes an agent
not ready (offers missed or rejected), that too is published as a request by "acd", for the other nodes.
Without `publish` (a single process, tests) requests apply at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import events as ev
from ..calls.api import Channel, Hangup, Outcome
from ..calls.call import Call, first
from ..calls.control import CallControl
from ..calls.leg import LegState, SipLeg
from ..clock import DeadlineTimer
from ..media import prompts as tones
from ..store.batch import BatchWriter
from ..store.records import QueueLogEntry, RecordStore
from . import prompts
from . import states as rules_
from .model import (
    MISSED,
    REJECTED,
    AgentState,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackAnswered,
    CallbackFailed,
    CallbackMade,
    CallbackRequested,
    CallCompleted,
    CallEntered,
    CallExited,
    CallOffered,
    CallOverflowed,
    CallRejected,
    CallTransferred,
    CancelOffer,
    InvalidAgentTransition,
    MissedInARow,
    Offer,
    Overflow,
    PlaceCallback,
    Reject,
    RequirementsWidened,
    RouterOutput,
    RoutingError,
    ToVoicemail,
)
from .ports import AgentView
from .router import Router
from .settings import AgentSettings, QueueSettings, agent_profile, memberships, queue_config
from .snapshot import AcdSnapshot, AgentSnapshot, QueueSnapshot
from .states import StateRefused, StateRequest, StateRules, WorkState

log = logging.getLogger(__name__)

VoicemailFn = Callable[[Channel, str], Any]
Publish = Callable[[ev.Event], "asyncio.Future[ev.Event]"]

_REQUESTED_STATES: dict[WorkState, tuple[AgentState, ...]] = {
    WorkState.LOGGED_IN: (AgentState.AVAILABLE, AgentState.NOT_READY),
    WorkState.AVAILABLE: (AgentState.AVAILABLE,),
    WorkState.NOT_READY: (AgentState.NOT_READY,),
    WorkState.LOGGED_OUT: (AgentState.LOGGED_OUT,),
}
"""The states a request itself puts the agent in: on a node that is not its origin, these changes are applied
without being reported again (the origin reports them); what follows from them there (an offer) is reported."""
APPLY_WAIT = 2.0
"""Seconds `request` waits for its event to come back from the log and be applied here."""


@dataclass
class _Waiting:
    """A caller in a queue: the call, where it waits now, and how its wait ends."""

    call: Call
    queue: str
    done: asyncio.Future[str]
    callback: bool = False


@dataclass
class _QueueStats:
    entered: int = 0
    answered: int = 0
    in_target: int = 0
    abandoned: int = 0
    handle: float = 60.0  # recent handle time (talk + wrap-up), an exponential moving average


@dataclass
class _AgentInfo:
    state: AgentState = AgentState.LOGGED_OUT
    reason: str = ""
    since: float = 0.0


class AcdService:
    """One tenant's queues and agents over real calls."""

    def __init__(self, control: CallControl, tenant: str, queues: tuple[QueueSettings, ...],
                 agents: tuple[AgentSettings, ...], *, store: RecordStore | None,
                 voicemail: VoicemailFn | None = None,
                 vip: Callable[[str, str], bool] | None = None, reasons: tuple[str, ...] = (),
                 seed: int | None = None, linger: float = 0.02,
                 spill: Callable[[list[QueueLogEntry]], object] | None = None,
                 rules: StateRules | None = None, publish: Publish | None = None, node: str = "") -> None:
        self.control = control
        self.tenant = tenant
        self.loop = control.loop
        self.settings: dict[str, QueueSettings] = {q.name: q for q in queues}
        self.agents: dict[str, AgentSettings] = {a.user: a for a in agents}
        self.rules = rules if rules is not None else StateRules(reasons)
        self.router = Router([queue_config(q) for q in queues], random.Random(seed),
                             missed_limit=self.rules.missed_in_a_row)
        self.publish = publish
        self.node = node
        self.by: str | None = None
        """Who asked for the change being applied (None: the router's own, or calls); read by the listeners."""
        self.applied = 0  # the sequence number of the last `agent.state.requested` applied here
        self._applied = asyncio.Event()
        self._quiet: tuple[str, tuple[AgentState, ...]] | None = None
        self.store = store
        self.voicemail = voicemail
        self.vip = vip
        self.waiting: dict[str, _Waiting] = {}
        self.offers: dict[tuple[str, str], SipLeg] = {}
        self.stats: dict[str, _QueueStats] = {q.name: _QueueStats() for q in queues}
        self.agent_info: dict[str, _AgentInfo] = {a.user: _AgentInfo(since=self.loop.time()) for a in agents}
        self.events: deque[RouterOutput] = deque(maxlen=20_000)
        self._timer = DeadlineTimer(self.loop, self.router.next_deadline, self._on_timer)
        self._log = (BatchWriter(store.add_queue_events, "queue events", linger=linger, spill=spill)
                     if store is not None else None)
        self._pending_log: list[QueueLogEntry] = []
        self._wall0 = time.time() - self.loop.time()
        self.listeners: list[Callable[[RouterOutput, float], None]] = []  # (event, wall-clock time at loop 0)

    # -- agent work states (people's requests) ---------------------------------------------------------

    def agent_names(self) -> tuple[str, ...]:
        return tuple(self.agents)

    def view(self, agent: str) -> AgentView | None:
        """The agent's state now, with wall-clock times; None when the tenant has no such agent."""
        if agent not in self.agents:
            return None
        status = self.router.agent_status(agent)
        info = self.agent_info.get(agent)
        since = status.since if status.state is not AgentState.LOGGED_OUT or info is None else info.since
        remaining = (max(0.0, round(status.wrapup_until - self.loop.time(), 3))
                     if status.wrapup_until is not None else None)
        return AgentView(agent, status.state.value, status.reason or None, round(self._wall0 + since, 3),
                         status.queues, status.wrapup_queue, remaining, status.pending_reason,
                         status.missed_in_a_row)

    def _check(self, request: StateRequest) -> StateRequest:
        agent = self.agents.get(request.agent)
        member = tuple(m.queue for m in agent.queues) if agent is not None else None
        return rules_.check(request, self.rules, member, self.router.agent_state(request.agent))

    async def request(self, request: StateRequest) -> AgentView:
        """Check `request` (`StateRefused` names the problem), then apply it: at once without `publish`, else
        as an event every node applies; answers the agent's state once this node has applied it. The store's
        error, when the event could not be written, is raised: nothing changed anywhere."""
        checked = self._check(request)
        if self.publish is None:
            self._apply_request(checked, quiet=False)
        else:
            stored = await self.publish(self._event(checked))
            await self._until_applied(stored.seq)
        view = self.view(checked.agent)
        assert view is not None
        return view

    def _event(self, r: StateRequest) -> ev.AgentStateRequested:
        return ev.AgentStateRequested(tenant=self.tenant, at=time.time(), agent=r.agent, state=r.state.value,
                                      reason=r.reason, queues=r.queues, by=r.by, origin=self.node)

    async def _until_applied(self, seq: int) -> None:
        deadline = self.loop.time() + APPLY_WAIT
        while self.applied < seq and self.loop.time() < deadline:  # bounded: APPLY_WAIT seconds
            self._applied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), max(0.0, deadline - self.loop.time()))
        if self.applied < seq:
            log.warning("agent state request not applied in time", extra={"fields": {
                "tenant": self.tenant, "seq": seq, "applied": self.applied}})

    def on_event(self, event: ev.Event) -> None:
        """A bus listener: apply the tenant's `agent.state.requested` events, each once, in order."""
        self._take(event, replayed=False)

    def replay(self, events: Iterable[ev.Event]) -> None:
        """Apply requests committed before this node started (the log's), quietly: they were reported then."""
        for event in events:
            self._take(event, replayed=True)

    def _take(self, event: ev.Event, *, replayed: bool) -> None:
        if not isinstance(event, ev.AgentStateRequested) or event.tenant != self.tenant or event.seq <= self.applied:
            return
        try:
            request = StateRequest(event.agent, WorkState(event.state), event.by or "", event.reason, event.queues)
            self._apply_request(request, quiet=replayed or event.origin != self.node)
        except (RoutingError, ValueError) as e:
            # This node's router does not allow it (the agent is on a call here, or an unknown agent or state).
            log.info("agent state request not applied here", extra={"fields": {
                "tenant": self.tenant, "agent": event.agent, "state": event.state, "why": str(e)}})
        finally:
            self.applied = event.seq
            self._applied.set()

    def _apply_request(self, request: StateRequest, *, quiet: bool) -> None:
        settings = self.agents.get(request.agent)
        if settings is None:
            raise StateRefused("unknown_agent", f"no agent {request.agent!r}")
        profile = agent_profile(settings, self._language(request.agent))
        out = rules_.apply(self.router, request, profile, tuple(memberships(settings)), self.loop.time())
        self.by = None if request.by == request.agent else request.by
        self._quiet = (request.agent, _REQUESTED_STATES[request.state]) if quiet else None
        try:
            self._apply(out)
        finally:
            self.by = None
            self._quiet = None

    def _share_router_pause(self, event: AgentStateChanged) -> None:
        """The router made an agent not ready (missed or rejected offers): the other nodes are asked to follow."""
        if self.publish is None or self._quiet is not None or event.reason not in (MISSED, REJECTED):
            return
        request = StateRequest(event.agent, WorkState.NOT_READY, "acd", event.reason)
        self.publish(self._event(request)).add_done_callback(
            lambda f: f.cancelled() or f.exception())  # a failure is logged by the outbox

    # -- agents ---------------------------------------------------------------------------------------

    def start(self) -> None:
        for agent in self.agents.values():
            if agent.login:
                self.login(agent.user)

    def _language(self, user: str) -> str:
        return self.control.server.directory.language(self.tenant, user)

    def login(self, user: str, ready: bool = True) -> bool:
        agent = self.agents.get(user)
        if agent is None:
            return False
        try:
            out = self.router.agent_login(agent_profile(agent, self._language(user)), memberships(agent),
                                          self.loop.time(), None if ready else "login")
        except RoutingError:
            return False
        self._apply(out)
        return True

    def _agent_change(self, change: Callable[[], list[RouterOutput]]) -> bool:
        try:
            out = change()
        except (RoutingError, InvalidAgentTransition):
            return False
        self._apply(out)
        return True

    def logout(self, user: str) -> bool:
        return self._agent_change(lambda: self.router.agent_logout(user, self.loop.time()))

    def set_ready(self, user: str) -> bool:
        if self.router.agent_state(user) is AgentState.AFTER_CALL_WORK:
            return self._agent_change(lambda: self.router.wrapup_done(user, self.loop.time()))
        return self._agent_change(lambda: self.router.agent_set_ready(user, self.loop.time()))

    def set_not_ready(self, user: str, reason: str) -> bool:
        """Not ready for `reason`, one of the tenant's reason codes (break, lunch ...)."""
        if self.rules.reasons and reason not in self.rules.reasons:
            return False
        return self._agent_change(lambda: self.router.agent_set_not_ready(user, reason, self.loop.time()))

    def extend_wrapup(self, user: str, seconds: float) -> bool:
        """More after-call work for an agent in wrap-up."""
        return self._agent_change(lambda: self.router.extend_wrapup(user, seconds, self.loop.time()))

    # -- callers --------------------------------------------------------------------------------------

    async def queue(self, channel: Channel, name: str) -> Outcome:
        """Wait in queue `name` until an agent takes the call (`answered` once it has ended), or the queue
        gives up (`unavailable`, `no_answer`); a callback request or a voicemail ends the call here."""
        if not isinstance(channel, Call) or name not in self.settings:
            return "unavailable"
        call = channel
        caller = call.caller
        if caller is None or caller.ended:
            raise Hangup(call.id)
        settings = self.settings[name]
        w = _Waiting(call, name, self.loop.create_future())
        self.waiting[call.id] = w
        # A caller who hangs up while waiting is abandoned in the leg's own callback, so the queue log has it
        # before the caller's BYE is answered (`CallControl.acknowledge`), not a wake-up of `_wait` later.
        caller.finished.add_done_callback(lambda _: self._abandon(w))
        priority = 10 if settings.vip_list and self.vip is not None and self.vip(settings.vip_list,
                                                                                call.caller_number) else 0
        call.variables.setdefault("queue", name)
        self._apply(self.router.enqueue(call.id, name, self.loop.time(), priority=priority,
                                        language=call.language, customer_id=call.caller_number))
        try:
            if not w.done.done():
                await call.answer()
                await self._wait(w)
            result = w.done.result() if w.done.done() else "abandoned"
        finally:
            self.waiting.pop(call.id, None)
        if result == "answered":
            await call.wait_bridged(caller)
            return "answered"
        if result == "callback":
            await call.say(prompts.text("callback_ok", call.language))
            call.outcome = "callback"
            await call.hangup()
            raise Hangup(call.id)
        mailbox = self.settings[w.queue].mailbox  # the queue it waited in last (overflow may have moved it)
        if result == "voicemail" and self.voicemail is not None and mailbox:
            await self.voicemail(call, mailbox)
            raise Hangup(call.id)
        # Turned away or timed out: the caller is still here; the IVR's on_fail branch (or the queue's own
        # number, `services`) says so and decides what follows.
        return "no_answer" if result == "exited" else "unavailable"

    async def _wait(self, w: _Waiting) -> None:
        """Music, announcements and keys until the wait is decided (or the caller hangs up)."""
        call = w.call
        caller = call.caller
        assert caller is not None
        music = tones.music_on_hold()
        next_announcement = self.loop.time()
        while not w.done.done():
            settings = self.settings[w.queue]  # overflow may move the caller to another queue
            if caller.ended:
                self._abandon(w)
                raise Hangup(call.id)
            if self.offered_answer(call):
                break
            now = self.loop.time()
            if settings.announce_every > 0 and now >= next_announcement:
                next_announcement = now + settings.announce_every
                digit = await self._announce(w)
                if digit is not None and self._key(w, digit):
                    continue
                if w.done.done() or self.offered_answer(call):
                    break
            if caller.media.player is None and not w.done.done():
                caller.media.play(music, loop=True)
            digit = await caller.next_digit(min(1.0, max(0.05, next_announcement - self.loop.time())))
            if digit is not None:
                self._key(w, digit)
        if caller.ended and not w.done.done():
            self._abandon(w)
            raise Hangup(call.id)

    def offered_answer(self, call: Call) -> bool:
        caller = call.caller
        return caller is not None and caller in call.partner

    async def _announce(self, w: _Waiting) -> str | None:
        call = w.call
        settings = self.settings[w.queue]
        try:
            position = self.router.position(call.id)
        except RoutingError:
            return None
        lang = call.language
        parts = [prompts.text("position", lang, position=position)]
        minutes = self.expected_wait(w.queue, position) / 60
        parts.append(prompts.text("wait", lang, minutes=max(1, math.ceil(minutes))) if minutes >= 1
                     else prompts.text("wait_short", lang))
        if settings.callback_key is not None:
            parts.append(prompts.text("keys", lang, callback=settings.callback_key))
        if settings.voicemail_key is not None:
            parts.append(prompts.text("voicemail_key", lang, voicemail=settings.voicemail_key))
        assert call.caller is not None
        call.caller.media.stop_playing()
        if self.offered_answer(call):
            return None
        samples = await self.control.prompts.speak_async(" ".join(parts), lang)
        if w.done.done() or self.offered_answer(call):
            return None
        return await call.play_to(call.caller, samples, interrupt=True)

    def expected_wait(self, queue: str, position: int) -> float:
        """Seconds: the callers ahead times the recent handle time, shared by the agents staffing the queue."""
        status = self.router.queue_status(queue, self.loop.time())
        staffed = max(1, status.logged_in)
        return position * self.stats[queue].handle / staffed

    def _key(self, w: _Waiting, digit: str) -> bool:
        settings = self.settings[w.queue]
        now = self.loop.time()
        if digit == settings.callback_key and not w.done.done():
            try:
                self._apply(self.router.request_callback(w.call.id, now))
            except RoutingError:
                return False
            w.callback = True
            if not w.done.done():
                w.done.set_result("callback")
            return True
        if digit == settings.voicemail_key and settings.mailbox and not w.done.done():
            try:
                self._apply(self.router.abandon(w.call.id, now))
            except RoutingError:
                return False
            if not w.done.done():
                w.done.set_result("voicemail")
            return True
        return False

    def _abandon(self, w: _Waiting) -> None:
        if w.done.done():
            return
        with contextlib.suppress(RoutingError):
            self._apply(self.router.abandon(w.call.id, self.loop.time()))
        if not w.done.done():
            w.done.set_result("abandoned")

    # -- router outputs -------------------------------------------------------------------------------

    def _apply(self, outputs: list[RouterOutput]) -> None:
        for out in outputs:
            self.events.append(out)
            if isinstance(out, Offer):
                self._offer(out)
            elif isinstance(out, CancelOffer):
                for agent in out.agents:
                    leg = self.offers.pop((out.call_id, agent), None)
                    if leg is not None:
                        leg.hangup("cancelled")
            elif isinstance(out, PlaceCallback):
                self.control.spawn(self._callback(out))
            elif isinstance(out, Overflow):
                w = self.waiting.get(out.call_id)
                if w is not None:
                    w.queue = out.to_queue
            elif isinstance(out, ToVoicemail):
                self._resolve(out.call_id, "voicemail")
            elif isinstance(out, Reject):
                self._resolve(out.call_id, "rejected")
            else:
                self._note(out)
        self._flush_log()
        self._timer.arm()

    def _resolve(self, call_id: str, result: str) -> None:
        w = self.waiting.get(call_id)
        if w is not None and not w.done.done():
            w.done.set_result(result)

    def _note(self, event: RouterOutput) -> None:
        """Statistics, agent states and the queue log; the listeners get every router event (but the state
        changes of another node's request, which that node reports)."""
        quiet = self._quiet
        if (quiet is not None and isinstance(event, AgentStateChanged) and event.agent == quiet[0]
                and event.new in quiet[1]):
            info = self.agent_info.setdefault(event.agent, _AgentInfo())
            info.state, info.reason, info.since = event.new, event.reason, event.at
            return
        for listener in self.listeners:
            try:
                listener(event, self._wall0)
            except Exception:
                log.exception("acd listener failed", extra={"fields": {"tenant": self.tenant}})
        if isinstance(event, AgentStateChanged):
            info = self.agent_info.setdefault(event.agent, _AgentInfo())
            info.state, info.reason, info.since = event.new, event.reason, event.at
            if event.new is AgentState.NOT_READY and event.old is AgentState.RINGING:
                self._share_router_pause(event)
            log.info("agent state", extra={"fields": {"tenant": self.tenant, "agent": event.agent,
                                                      "state": event.new.value, "reason": event.reason}})
            # Agent states go to the log too (queue ""), the source of occupancy and not-ready reports.
            self._pending_log.append(QueueLogEntry(self.tenant, self._wall(event.at), "", "", "agent_state",
                                                   agent=event.agent, data={"from": event.old.value,
                                                                            "to": event.new.value,
                                                                            "reason": event.reason}))
            return
        stats = self.stats.get(getattr(event, "queue", ""))
        entry = QueueLogEntry(self.tenant, self._wall(getattr(event, "at", self.loop.time())),
                              getattr(event, "queue", ""), getattr(event, "call_id", ""), _kind(event))
        if isinstance(event, CallEntered):
            entry.position = event.position
            if stats is not None:
                stats.entered += 1
        elif isinstance(event, CallOffered):
            entry.data = {"agents": ",".join(event.agents)}
        elif isinstance(event, CallAnswered):
            entry.agent, entry.wait = event.agent, round(event.wait, 3)
            if stats is not None:
                stats.answered += 1
                stats.in_target += event.wait <= self.settings[event.queue].service_level
            w = self.waiting.get(event.call_id)
            if w is not None:
                w.call.variables["agent"] = event.agent
        elif isinstance(event, CallAbandoned):
            entry.position, entry.wait = event.position, round(event.wait, 3)
            if stats is not None:
                stats.abandoned += 1
        elif isinstance(event, CallCompleted | CallTransferred):
            entry.agent, entry.talk = event.agent, round(event.talk_time, 3)
            if isinstance(event, CallTransferred):
                entry.data = {"to": event.to}
            if stats is not None:
                wrapup = self.settings[event.queue].wrapup or 0.0
                stats.handle = 0.8 * stats.handle + 0.2 * (event.talk_time + wrapup)
        elif isinstance(event, CallOverflowed):
            entry.wait, entry.data = round(event.wait, 3), {"to": event.to}
        elif isinstance(event, CallRejected | CallExited):
            entry.data = {"reason": event.reason.value}
            if isinstance(event, CallExited):
                entry.wait = round(event.wait, 3)
        elif isinstance(event, CallbackRequested):
            entry.position, entry.wait = event.position, round(event.wait, 3)
        elif isinstance(event, CallbackMade | CallbackAnswered):
            entry.agent = event.agent
        elif isinstance(event, CallbackFailed):
            entry.agent, entry.data = event.agent, {"reason": event.reason}
        elif isinstance(event, RequirementsWidened):
            entry.data = {"level": str(event.level)}
        elif isinstance(event, MissedInARow):
            entry.agent, entry.data = event.agent, {"in_a_row": str(event.in_a_row)}
        self._pending_log.append(entry)

    def _wall(self, at: float) -> datetime:
        return datetime.fromtimestamp(self._wall0 + at, UTC)

    @property
    def queue_log(self) -> BatchWriter[QueueLogEntry] | None:
        """The writer of this tenant's queue log (its `flushed()` is part of a BYE's acknowledgement)."""
        return self._log

    def _flush_log(self) -> None:
        entries, self._pending_log = self._pending_log, []
        if self._log is not None:
            self._log.extend(entries)

    # -- timers ---------------------------------------------------------------------------------------

    def _on_timer(self, now: float) -> None:
        self._apply(self.router.tick(now))

    # -- offers ---------------------------------------------------------------------------------------

    def _offer(self, offer: Offer) -> None:
        w = self.waiting.get(offer.call_id)
        if w is None:
            return
        for agent in offer.agents:
            leg = w.call.dial(self.device(agent), timeout=offer.timeout + 5.0, caller_id=w.call.caller_number)
            if isinstance(leg, str):
                # Not registered (or no media port): the phone cannot ring; the router moves on.
                self.loop.call_soon(self._offer_failed, offer.call_id, agent, "rejected")
                continue
            self.offers[(offer.call_id, agent)] = leg
            self.control.spawn(self._watch_offer(w, agent, leg))

    def device(self, agent: str) -> str:
        """What rings for `agent`: the configured device (a mobile through a trunk) or the user's phone."""
        settings = self.agents.get(agent)
        return settings.device if settings is not None and settings.device else f"user:{agent}"

    def _offer_failed(self, call_id: str, agent: str, how: str) -> None:
        now = self.loop.time()
        with contextlib.suppress(RoutingError):
            if how == "timeout":
                self._apply(self.router.offer_timeout(call_id, agent, now))
            else:
                self._apply(self.router.offer_rejected(call_id, agent, now))

    async def _watch_offer(self, w: _Waiting, agent: str, leg: SipLeg) -> None:
        await first(leg.answered, leg.finished)
        call = w.call
        key = (call.id, agent)
        if self.offers.get(key) is not leg:
            if leg.state is LegState.ANSWERED:
                leg.hangup("cancelled")  # answered just as the offer was withdrawn
            return
        del self.offers[key]
        if leg.state is not LegState.ANSWERED:
            self._offer_failed(call.id, agent, "timeout" if leg.cause == "no_answer" else "rejected")
            return
        caller = call.caller
        if caller is None or caller.ended:
            leg.hangup("cancelled")
            return
        try:
            out = self.router.offer_answered(call.id, agent, self.loop.time())
        except RoutingError:
            leg.hangup("cancelled")
            return
        caller.media.stop_playing()
        call.bridge(caller, leg)
        self._apply(out)
        self._resolve(call.id, "answered")
        # The end is handled in the legs' own callbacks, not after an await: the queue log's `completed` and
        # the agent's wrap-up are then queued before the caller's BYE is answered (`CallControl.acknowledge`).
        ended = False

        def on_end(_: object) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            transferred = leg.cause == "transferred"
            with contextlib.suppress(RoutingError):
                self._apply(self.router.call_ended(call.id, self.loop.time(),
                                                   transferred_to="transfer" if transferred else None))
            if not transferred:
                leg.hangup()

        leg.finished.add_done_callback(on_end)
        caller.finished.add_done_callback(on_end)

    # -- callbacks ------------------------------------------------------------------------------------

    async def _callback(self, pc: PlaceCallback) -> None:
        """Ring the reserved agent, then the customer; bridge them (RFC-free: a click-to-call)."""
        customer = pc.customer_id or ""
        call = self.control.new_call(self.tenant, pc.queue, None, customer, self._language(pc.agent))
        now = self.loop.time
        agent_leg = call.dial(self.device(pc.agent), timeout=pc.timeout)
        if isinstance(agent_leg, str):
            self._callback_failed(pc.call_id, "agent unreachable")
            return
        await first(agent_leg.answered, agent_leg.finished)
        if agent_leg.state is not LegState.ANSWERED:
            self._callback_failed(pc.call_id, "agent did not answer")
            return
        with contextlib.suppress(Hangup):
            await call.play_to(agent_leg, await self.control.prompts.speak_async(
                prompts.text("callback_agent", call.language, number=" ".join(customer)), call.language))
        is_user = self.control.server.directory.has_user(self.tenant, customer)
        target = f"user:{customer}" if is_user else customer
        leg = call.dial(target, timeout=pc.timeout)
        if isinstance(leg, str):
            agent_leg.hangup()
            self._callback_failed(pc.call_id, "customer unreachable")
            return
        agent_leg.media.play(tones.music_on_hold(), loop=True)
        await first(leg.answered, leg.finished, agent_leg.finished)
        if leg.state is not LegState.ANSWERED or agent_leg.ended:
            leg.hangup()
            agent_leg.hangup()
            self._callback_failed(pc.call_id, "customer did not answer" if not agent_leg.ended else "agent left")
            return
        with contextlib.suppress(RoutingError):
            self._apply(self.router.callback_answered(pc.call_id, now()))
        call.bridge(leg, agent_leg)
        await first(leg.finished, agent_leg.finished)
        with contextlib.suppress(RoutingError):
            self._apply(self.router.call_ended(pc.call_id, now()))
        leg.hangup()
        agent_leg.hangup()

    def _callback_failed(self, call_id: str, reason: str) -> None:
        with contextlib.suppress(RoutingError):
            self._apply(self.router.callback_failed(call_id, self.loop.time(), reason))

    # -- reading --------------------------------------------------------------------------------------

    def snapshot(self) -> AcdSnapshot:
        now = self.loop.time()
        queues = []
        for name, s in self.settings.items():
            status = self.router.queue_status(name, now)
            st = self.stats[name]
            queues.append(QueueSnapshot(name, status.waiting, status.callbacks, status.available, status.logged_in,
                                        status.longest_wait, st.entered, st.answered, st.in_target, st.abandoned,
                                        s.service_level))
        agents = tuple(AgentSnapshot(user, info.state.value, info.reason, now - info.since)
                       for user, info in sorted(self.agent_info.items()))
        return AcdSnapshot(self.tenant, tuple(queues), agents)

    async def close(self) -> None:
        self._timer.close()
        if self._log is not None:
            await self._log.close()


def _kind(event: RouterOutput) -> str:
    """The queue-log name of an event: `CallEntered` -> "entered", `CallbackRequested` -> "callback_requested"."""
    name = type(event).__name__
    if name.startswith("Callback"):
        return "callback_" + name[len("Callback"):].lower()
    if name.startswith("Call"):
        name = name[len("Call"):]
    out = ""
    for ch in name:
        out += ("_" + ch.lower()) if ch.isupper() and out else ch.lower()
    return out
