"""The ACD router, sans-IO: calls and agent changes in, offers and queue-log events out.

`Router` owns the queues, the logged-in agents and the calls waiting or talking. It reads no clock and
does no I/O: every method takes `now` (seconds, any monotonic origin) and returns a list of outputs in
the order they happened, events (`AgentStateChanged`, `CallEntered`, `CallAnswered`, ...) mixed with
actions for the shell (`Offer`, `CancelOffer`, `PlaceCallback`, `Overflow`, `ToVoicemail`, `Reject`).
Its own timers (ring timeout, wrap-up end, overflow rules, maximum wait, sticky reservation, callback
timeout) are deadlines: the shell arms one timer for `next_deadline()` and calls `tick(now)` when it
comes, as `hatif.sip.transaction.TransactionTable` does.

Routing is work-conserving: after every method returns, no AVAILABLE agent fits any call waiting in
its queues (calls kept for a sticky agent aside). So a call that arrives only looks for an available
agent, and an agent who frees only looks at the heads of the lines it serves:

* per queue, overflow level and language, a pool of the available agents who fit (`strategies`);
* per queue, overflow level and language, a heap of the waiting calls, ordered by priority (VIP first)
  then by when they joined; an agent compares the heads of its heaps (priority, then longest waiting).

Neither side scans all agents or all calls. Overflow levels are the queue's requirements followed by
each `WidenSkills` rule; an agent belongs to the pools and heaps of the levels it meets.
"""

from __future__ import annotations

import enum
import logging
import random
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from heapq import heappop, heappush

from .model import (
    AGENT_TRANSITIONS,
    TRIGGER_REASONS,
    VOICEMAIL,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    AgentTrigger,
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
    InvalidCallState,
    LanguageMode,
    MissedInARow,
    MoveToQueue,
    Offer,
    Overflow,
    PlaceCallback,
    QueueConfig,
    QueueMembership,
    Reject,
    RejectReason,
    RequirementsWidened,
    RouterOutput,
    RoutingError,
    SendToVoicemail,
    Strategy,
    ToVoicemail,
    UnknownAgent,
    UnknownCall,
    UnknownQueue,
    WidenSkills,
)
from .strategies import AgentPool, RoundRobinMemory, make_pool, rank_for

log = logging.getLogger(__name__)

_AVAILABLE = AgentState.AVAILABLE
_NEXT_STATE = dict(AGENT_TRANSITIONS)  # plain dicts: the hot path looks these up for every state change
_TRIGGER_REASON = {trigger: TRIGGER_REASONS.get(trigger, trigger.value) for trigger in AgentTrigger}


class CallPhase(enum.Enum):
    WAITING = "waiting"  # in line: in a heap, or kept for a sticky agent
    OFFERED = "offered"  # ringing agents, or a callback being placed
    CONNECTED = "connected"  # talking with an agent


class _Timer(enum.Enum):
    RING = "ring"
    CALLBACK = "callback"
    RULE = "rule"
    MAX_WAIT = "max_wait"
    STICKY = "sticky"
    WRAPUP = "wrapup"


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """An agent at one moment, for the desk, the supervisor's board and the API.

    `since` is when the state began (the router's clock); `wrapup_until` is when after-call work ends (None:
    not in wrap-up, or wrap-up until the agent says done); `pending_reason` is a break asked for during a call,
    which starts when the call (and its wrap-up) is over."""

    agent: str
    state: AgentState
    reason: str
    since: float
    queues: tuple[str, ...]
    wrapup_queue: str | None = None
    wrapup_until: float | None = None
    pending_reason: str | None = None
    missed_in_a_row: int = 0


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A queue at one moment, for the wallboard and announcements."""

    queue: str
    waiting: int  # callers on the line
    callbacks: int  # callback requests keeping their place
    available: int  # available agents fit for the queue's own requirements
    logged_in: int  # logged-in members who fit it at some overflow level
    longest_wait: float


class _Queue:
    __slots__ = ("callbacks", "config", "entries", "heaps", "levels", "line", "live", "memory", "name",
                 "next_ordinal", "ordinals", "pools", "qualified", "ring_all", "rng",
                 "round_robin")

    def __init__(self, config: QueueConfig, rng: random.Random) -> None:
        self.config = config
        self.name = config.name
        self.levels = config.levels
        self.round_robin = config.strategy is Strategy.ROUND_ROBIN
        self.ring_all = config.strategy is Strategy.RING_ALL
        self.rng = rng
        self.pools: dict[tuple[int, str | None], AgentPool] = {}
        self.heaps: dict[tuple[int, str | None], list[_Entry]] = {}
        self.line: dict[int, list[int]] = {}  # priority -> sequence numbers of the calls in line, in order
        self.entries: dict[str, _Call] = {}
        self.live = 0  # callers in line (callbacks excluded)
        self.callbacks = 0
        self.qualified = 0
        self.memory = RoundRobinMemory()
        self.ordinals: dict[str, int] = {}
        self.next_ordinal = 0

    def pool(self, level: int, language: str | None) -> AgentPool:
        pool = self.pools.get((level, language))
        if pool is None:
            pool = self.pools[level, language] = make_pool(self.config.strategy, self.rng, self.memory)
        return pool

    def heap(self, level: int, language: str | None) -> list[_Entry]:
        return self.heaps.setdefault((level, language), [])

    def ordinal(self, agent_id: str) -> int:
        if agent_id not in self.ordinals:
            self.ordinals[agent_id] = self.next_ordinal
            self.next_ordinal += 1
        return self.ordinals[agent_id]

    def add_to_line(self, call: _Call) -> int:
        self.line.setdefault(call.priority, []).append(call.seq)
        self.entries[call.call_id] = call
        return self.position(call)

    def remove_from_line(self, call: _Call) -> None:
        seqs = self.line[call.priority]
        del seqs[bisect_left(seqs, call.seq)]
        if not seqs:
            del self.line[call.priority]
        del self.entries[call.call_id]

    def position(self, call: _Call) -> int:
        ahead = sum(len(seqs) for priority, seqs in self.line.items() if priority > call.priority)
        return ahead + bisect_left(self.line[call.priority], call.seq) + 1


class _Agent:
    __slots__ = ("agent_id", "answered", "call", "idle_since", "missed", "penalties", "pending_reason", "pooled",
                 "pools", "profile", "queue_pools", "reason", "reserved", "since", "sources", "state",
                 "wrapup_queue", "wrapup_timer", "wrapup_until")

    def __init__(self, profile: AgentProfile, now: float) -> None:
        self.profile = profile
        self.agent_id = profile.agent_id
        self.state = AgentState.LOGGED_OUT
        self.reason = ""
        self.since = now
        self.idle_since = now
        self.penalties: dict[str, int] = {}
        # (queue, penalty, skill score, ring ordinal, the queue's pools this agent belongs to)
        self.queue_pools: list[tuple[_Queue, int, int, int, tuple[AgentPool, ...]]] = []
        self.pools: tuple[AgentPool, ...] = ()
        self.pooled = False
        self.sources: tuple[list[_Entry], ...] = ()
        self.call: _Call | None = None
        self.reserved: list[_Call] = []
        self.pending_reason: str | None = None
        self.answered: dict[str, int] = {}
        self.wrapup_timer = 0
        self.wrapup_until = 0.0
        self.wrapup_queue = ""
        self.missed = 0  # offers rung out since the agent last answered one (or was made not ready for it)


class _Call:
    __slots__ = ("agent", "answered_at", "arrived_at", "call_id", "callback", "customer_id", "entered_at",
                 "heap", "language", "level", "max_wait_timer", "phase", "pools", "priority", "queue",
                 "reserved_for", "ring_timer", "ringing", "rule", "rule_timer", "seq", "sticky_timer", "token")

    def __init__(self, call_id: str, queue: _Queue, priority: int, language: str | None,
                 customer_id: str | None, now: float) -> None:
        self.call_id = call_id
        self.queue = queue
        self.priority = priority
        self.language = language
        self.customer_id = customer_id
        self.arrived_at = now
        self.entered_at = now
        self.seq = 0
        self.phase = CallPhase.WAITING
        self.level = 0
        self.rule = 0
        self.token = 0  # bumped whenever the call leaves a heap: older heap entries are stale
        self.heap: list[_Entry] = []
        self.pools: tuple[AgentPool, ...] = ()
        self.ringing: list[_Agent] = []
        self.agent: _Agent | None = None
        self.answered_at = 0.0
        self.callback = False
        self.reserved_for: _Agent | None = None
        self.ring_timer = 0
        self.rule_timer = 0
        self.max_wait_timer = 0
        self.sticky_timer = 0


_Entry = tuple[int, int, int, _Call]  # (-priority, seq, token, call): a call waiting in a heap


class Router:
    """Agents, queues and the calls between them. See the module docstring for the contract.

    `rng` draws agents for `Strategy.RANDOM` queues; pass a seeded `random.Random` to replay a run.
    `missed_limit` is how many offers in a row an agent may let ring out before being made NOT_READY
    (`MISSED`); below it a missed offer (`MissedInARow`) leaves the agent AVAILABLE, the call going to the next
    agent first. Answering an offer starts the count again.
    """

    def __init__(self, queues: Iterable[QueueConfig], rng: random.Random | None = None,
                 missed_limit: int = 1) -> None:
        if missed_limit < 1:
            raise ValueError(f"missed_limit must be at least 1, not {missed_limit}")
        self.missed_limit = missed_limit
        self._rng = rng if rng is not None else random.Random(0)
        self._queues: dict[str, _Queue] = {}
        for config in queues:
            if config.name in self._queues:
                raise ValueError(f"queue {config.name!r} is defined twice")
            self._queues[config.name] = _Queue(config, self._rng)
        for q in self._queues.values():
            for rule in q.config.overflow:
                if isinstance(rule.action, MoveToQueue) and rule.action.queue not in self._queues:
                    raise ValueError(f"queue {q.name!r}: an overflow rule moves calls to unknown queue "
                                     f"{rule.action.queue!r}")
        self._agents: dict[str, _Agent] = {}
        self._calls: dict[str, _Call] = {}
        self._seq = 0
        self._timers: list[tuple[float, int, _Timer, _Call | _Agent]] = []
        self._timer_seq = 0
        self._last_agent: OrderedDict[str, tuple[str, float]] = OrderedDict()  # customer -> (agent, answered at)
        self._sticky_memory = max((q.config.sticky.memory for q in self._queues.values() if q.config.sticky),
                                  default=0.0)

    # --- agents ------------------------------------------------------------------------------------

    def agent_login(self, agent: AgentProfile, queues: Iterable[QueueMembership | str], now: float,
                    not_ready_reason: str | None = None) -> list[RouterOutput]:
        """Log `agent` in to `queues` (names, or memberships with a penalty): AVAILABLE, or NOT_READY."""
        if agent.agent_id in self._agents:
            raise RoutingError(f"agent {agent.agent_id!r} is already logged in")
        a = _Agent(agent, now)
        memberships = [QueueMembership(m) if isinstance(m, str) else m for m in queues]
        for m in memberships:
            self._queue(m.queue)
            if m.queue in a.penalties:
                raise RoutingError(f"agent {agent.agent_id!r} is listed twice in queue {m.queue!r}")
            a.penalties[m.queue] = m.penalty
        sources: list[list[_Entry]] = []
        for m in memberships:
            q = self._queue(m.queue)
            levels = [k for k, reqs in enumerate(q.levels) if agent.meets(reqs)]
            if not levels:
                continue  # a member who fits none of the queue's levels never gets its calls
            q.qualified += 1
            mode = q.config.language
            spoken = sorted(agent.languages)
            pool_keys = [None, *spoken] if mode is not LanguageMode.IGNORE else [None]
            heap_keys = [None, *spoken] if mode is LanguageMode.REQUIRE else [None]
            pools = tuple(q.pool(k, lang) for k in levels for lang in pool_keys)
            sources += [q.heap(k, lang) for k in levels for lang in heap_keys]
            score = sum(agent.proficiency(r.skill) for r in q.config.requirements)
            a.queue_pools.append((q, m.penalty, score, q.ordinal(a.agent_id), pools))
        a.pools = tuple(p for entry in a.queue_pools for p in entry[4])
        a.sources = tuple(sources)
        self._agents[a.agent_id] = a
        out: list[RouterOutput] = []
        if not_ready_reason is None:
            self._change(a, AgentTrigger.LOG_IN_READY, now, out, "login")
            self._became_available(a, now, out)
        else:
            self._change(a, AgentTrigger.LOG_IN_NOT_READY, now, out, not_ready_reason)
        return out

    def agent_logout(self, agent_id: str, now: float) -> list[RouterOutput]:
        """Log the agent out; an offer ringing it goes to the next agent. Refused while ON_CALL."""
        a = self._agent(agent_id)
        self._check_transition(a, AgentTrigger.LOG_OUT)
        out: list[RouterOutput] = []
        call = a.call
        a.wrapup_timer = 0
        a.call = None
        self._change(a, AgentTrigger.LOG_OUT, now, out)
        del self._agents[agent_id]
        if call is not None:  # it was ringing
            call.ringing.remove(a)
            out.append(CancelOffer(call.call_id, (agent_id,), "agent logged out"))
            if not call.ringing:
                call.ring_timer = 0
                self._back_in_line(call, now, out)
        for held in list(a.reserved):
            self._release_reservation(held, now, out)
        for q, *_ in a.queue_pools:
            q.qualified -= 1
            if q.qualified == 0 and q.config.leave_when_empty:
                self._empty_queue(q, now, out)
        return out

    def agent_set_ready(self, agent_id: str, now: float) -> list[RouterOutput]:
        """The agent is ready for calls: from NOT_READY, or ending after-call work early.

        Already AVAILABLE: nothing happens. ON_CALL or RINGING: a break asked for earlier is called off.
        """
        a = self._agent(agent_id)
        out: list[RouterOutput] = []
        if a.state is _AVAILABLE:
            return out
        if a.state in (AgentState.ON_CALL, AgentState.RINGING):
            a.pending_reason = None
            return out
        if a.state is AgentState.AFTER_CALL_WORK:
            a.pending_reason = None
            self._end_wrapup(a, now, out)
            return out
        self._check_transition(a, AgentTrigger.SET_READY)
        self._change(a, AgentTrigger.SET_READY, now, out)
        self._became_available(a, now, out)
        return out

    def agent_set_not_ready(self, agent_id: str, reason: str, now: float) -> list[RouterOutput]:
        """The agent takes a break for `reason`; asked while RINGING or ON_CALL, it starts after that call."""
        a = self._agent(agent_id)
        out: list[RouterOutput] = []
        if a.state in (AgentState.ON_CALL, AgentState.RINGING):
            a.pending_reason = reason
            return out
        self._check_transition(a, AgentTrigger.SET_NOT_READY)
        a.wrapup_timer = 0
        self._change(a, AgentTrigger.SET_NOT_READY, now, out, reason)
        return out

    def wrapup_done(self, agent_id: str, now: float) -> list[RouterOutput]:
        """The agent finished after-call work before (or without) the queue's wrap-up time."""
        a = self._agent(agent_id)
        self._check_transition(a, AgentTrigger.WRAPUP_DONE)
        out: list[RouterOutput] = []
        self._end_wrapup(a, now, out)
        return out

    def extend_wrapup(self, agent_id: str, seconds: float, now: float) -> list[RouterOutput]:
        """Give the agent `seconds` more after-call work (no effect when wrap-up has no end)."""
        a = self._agent(agent_id)
        if a.state is not AgentState.AFTER_CALL_WORK:
            raise RoutingError(f"agent {agent_id!r} is {a.state.value}: only after-call work can be extended")
        if seconds < 0:
            raise ValueError(f"agent {agent_id!r}: cannot extend wrap-up by {seconds} s")
        if a.wrapup_timer:
            a.wrapup_until = max(a.wrapup_until, now) + seconds
            a.wrapup_timer = self._arm(a.wrapup_until, _Timer.WRAPUP, a)
        return []

    # --- calls -------------------------------------------------------------------------------------

    def enqueue(self, call_id: str, queue: str, now: float, *, priority: int = 0, language: str | None = None,
                customer_id: str | None = None) -> list[RouterOutput]:
        """A caller joins `queue`. Higher `priority` is served first (VIP), equal priorities in order."""
        if call_id in self._calls:
            raise InvalidCallState(f"call {call_id!r} is already in queue {self._calls[call_id].queue.name!r}")
        q = self._queue(queue)
        out: list[RouterOutput] = []
        refusal = self._refusal(q)
        if refusal is not None:
            out.append(CallRejected(call_id, q.name, refusal, now))
            out.append(Reject(call_id, q.name, refusal))
            return out
        call = _Call(call_id, q, priority, language, customer_id, now)
        self._calls[call_id] = call
        self._join(call, q, now, out)
        return out

    def abandon(self, call_id: str, now: float) -> list[RouterOutput]:
        """The caller hung up before an agent answered."""
        call = self._call(call_id)
        self._expect(call, "abandon", CallPhase.WAITING, CallPhase.OFFERED, callback=False)
        q = call.queue
        out: list[RouterOutput] = []
        position = q.position(call)
        self._leave_line(call)
        del self._calls[call_id]
        freed = self._cancel_offer(call, "abandoned", now, out)
        out.append(CallAbandoned(call_id, q.name, position, now - call.entered_at, now))
        self._rematch(freed, now, out)
        return out

    def offer_answered(self, call_id: str, agent_id: str, now: float) -> list[RouterOutput]:
        """`agent_id` answered the offer; anyone else ringing with the call stops."""
        call = self._call(call_id)
        a = self._agent(agent_id)
        self._expect(call, "answer", CallPhase.OFFERED, callback=False)
        if a not in call.ringing:
            raise InvalidCallState(f"call {call_id!r} was not offered to agent {agent_id!r}")
        out: list[RouterOutput] = []
        call.ringing.remove(a)
        if not call.ringing:
            call.ring_timer = 0
        self._change(a, AgentTrigger.ANSWER, now, out)
        a.missed = 0
        self._connect(call, a, now)
        out.append(CallAnswered(call_id, call.queue.name, agent_id, now - call.entered_at, now))
        freed = self._cancel_offer(call, "answered elsewhere", now, out)
        self._rematch(freed, now, out)
        return out

    def offer_rejected(self, call_id: str, agent_id: str, now: float) -> list[RouterOutput]:
        """The agent declined the offer (or its phone refused it): NOT_READY "rejected", next agent."""
        return self._offer_failed(call_id, agent_id, AgentTrigger.REJECT, now)

    def offer_timeout(self, call_id: str, agent_id: str, now: float) -> list[RouterOutput]:
        """The agent's phone rang out before the router's own ring timeout: a miss (NOT_READY "missed" at the
        `missed_limit`), and the call goes to the next agent."""
        return self._offer_failed(call_id, agent_id, AgentTrigger.RING_TIMEOUT, now)

    def _offer_failed(self, call_id: str, agent_id: str, trigger: AgentTrigger, now: float) -> list[RouterOutput]:
        call = self._call(call_id)
        a = self._agent(agent_id)
        self._expect(call, "withdraw the offer of", CallPhase.OFFERED, callback=False)
        if a not in call.ringing:
            raise InvalidCallState(f"call {call_id!r} was not offered to agent {agent_id!r}")
        out: list[RouterOutput] = []
        call.ringing.remove(a)
        a.call = None
        if trigger is AgentTrigger.RING_TIMEOUT:
            available = self._missed(a, call, now, out)
        else:
            available = False
            self._change(a, trigger, now, out)
            a.pending_reason = None
        if not call.ringing:
            call.ring_timer = 0
            self._back_in_line(call, now, out)
        if available:
            self._became_available(a, now, out)
        return out

    def call_ended(self, call_id: str, now: float, transferred_to: str | None = None) -> list[RouterOutput]:
        """The call with an agent is over (hung up, or transferred away to `transferred_to`)."""
        call = self._call(call_id)
        self._expect(call, "end", CallPhase.CONNECTED)
        a = call.agent
        assert a is not None
        out: list[RouterOutput] = []
        del self._calls[call_id]
        talk = now - call.answered_at
        q = call.queue
        if transferred_to is None:
            out.append(CallCompleted(call_id, q.name, a.agent_id, talk, now))
        else:
            out.append(CallTransferred(call_id, q.name, a.agent_id, transferred_to, talk, now))
        self._hang_up(a, q, now, out)
        return out

    def transfer_to_queue(self, call_id: str, queue: str, now: float, *,
                          priority: int | None = None) -> list[RouterOutput]:
        """The agent sends the call into `queue` (same call id; its wait there starts now)."""
        call = self._call(call_id)
        self._expect(call, "transfer", CallPhase.CONNECTED)
        target = self._queue(queue)
        a = call.agent
        assert a is not None
        old = call.queue
        out: list[RouterOutput] = []
        out.append(CallTransferred(call_id, old.name, a.agent_id, target.name, now - call.answered_at, now))
        refusal = self._refusal(target)
        if refusal is not None:
            del self._calls[call_id]
            out.append(CallRejected(call_id, target.name, refusal, now))
            out.append(Reject(call_id, target.name, refusal))
        else:
            call.agent = None
            call.callback = False
            if priority is not None:
                call.priority = priority
            self._join(call, target, now, out)
        self._hang_up(a, old, now, out)
        return out

    def request_callback(self, call_id: str, now: float) -> list[RouterOutput]:
        """The waiting caller asks to be called back: the request keeps the call's place in line."""
        call = self._call(call_id)
        self._expect(call, "request a callback for", CallPhase.WAITING, CallPhase.OFFERED, callback=False)
        q = call.queue
        out: list[RouterOutput] = [CallbackRequested(call_id, q.name, q.position(call), now - call.entered_at, now)]
        was_offered = call.phase is CallPhase.OFFERED
        call.callback = True
        q.live -= 1
        q.callbacks += 1
        call.rule_timer = call.max_wait_timer = 0
        if was_offered:
            call.phase = CallPhase.WAITING
            self._wait(call)  # back at its place before the ringing agents look for work
            freed = self._cancel_offer(call, "callback requested", now, out)
            self._rematch(freed, now, out)
            if call.phase is CallPhase.WAITING:  # agents of a higher penalty may be free (ring-all)
                self._match_call(call, now, out)
        return out

    def callback_answered(self, call_id: str, now: float) -> list[RouterOutput]:
        """The customer picked up the callback and is connected to the reserved agent."""
        call = self._call(call_id)
        self._expect(call, "connect", CallPhase.OFFERED, callback=True)
        a = call.ringing.pop()
        call.ring_timer = 0
        out: list[RouterOutput] = []
        self._change(a, AgentTrigger.ANSWER, now, out)
        self._connect(call, a, now)
        out.append(CallbackAnswered(call_id, call.queue.name, a.agent_id, now))
        return out

    def callback_failed(self, call_id: str, now: float, reason: str = "no answer") -> list[RouterOutput]:
        """The callback could not reach the customer; the request is closed and the agent freed."""
        call = self._call(call_id)
        self._expect(call, "fail", CallPhase.OFFERED, callback=True)
        out: list[RouterOutput] = []
        self._callback_failed(call, reason, now, out)
        return out

    # --- time --------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick` has something to do next, or None."""
        timers = self._timers
        while timers:
            when, seq, kind, subject = timers[0]
            if self._timer_live(kind, subject, seq):
                return when
            heappop(timers)
        return None

    def tick(self, now: float) -> list[RouterOutput]:
        """Run every timer due at `now`; outputs carry each timer's own deadline as their time."""
        out: list[RouterOutput] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, seq, kind, subject = heappop(timers)
            if self._timer_live(kind, subject, seq):
                self._fire(kind, subject, when, out)
        return out

    # --- reading -----------------------------------------------------------------------------------

    def agent_state(self, agent_id: str) -> AgentState:
        a = self._agents.get(agent_id)
        return AgentState.LOGGED_OUT if a is None else a.state

    def agent_status(self, agent_id: str) -> AgentStatus:
        """The agent's state, reason, queues and wrap-up; a logged-out agent has no queues."""
        a = self._agents.get(agent_id)
        if a is None:
            return AgentStatus(agent_id, AgentState.LOGGED_OUT, "", 0.0, ())
        wrapping = a.state is AgentState.AFTER_CALL_WORK
        return AgentStatus(a.agent_id, a.state, a.reason, a.since, tuple(a.penalties),
                           wrapup_queue=a.wrapup_queue if wrapping else None,
                           wrapup_until=a.wrapup_until if wrapping and a.wrapup_timer else None,
                           pending_reason=a.pending_reason, missed_in_a_row=a.missed)

    def agent_call(self, agent_id: str) -> str | None:
        """The call the agent is ringing with or talking on."""
        a = self._agents.get(agent_id)
        return None if a is None or a.call is None else a.call.call_id

    def position(self, call_id: str) -> int:
        """The call's place in its queue's line (1 is next), for announcements."""
        call = self._call(call_id)
        if call.phase is CallPhase.CONNECTED:
            raise InvalidCallState(f"call {call_id!r} is with an agent, not in line")
        return call.queue.position(call)

    def queue_status(self, queue: str, now: float) -> QueueStatus:
        q = self._queue(queue)
        waits = [now - c.entered_at for c in q.entries.values() if not c.callback]
        return QueueStatus(q.name, q.live, q.callbacks, len(q.pool(0, None)), q.qualified, max(waits, default=0.0))

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(self._queues)

    def check_invariants(self) -> None:
        """Verify the router's bookkeeping, O(agents + calls); raises `AssertionError` listing what is broken.

        Meant for tests and for a supervisor's "self-check" button, not for every call.
        """
        problems: list[str] = []
        for a in self._agents.values():
            name = f"agent {a.agent_id!r} ({a.state.value})"
            if any((a.agent_id in pool) != (a.state is _AVAILABLE) for pool in a.pools):
                problems.append(f"{name}: pool membership does not follow its state")
            call = a.call
            if a.state in (AgentState.RINGING, AgentState.ON_CALL):
                if call is None or self._calls.get(call.call_id) is not call:
                    problems.append(f"{name}: no live call")
                elif a.state is AgentState.RINGING and a not in call.ringing:
                    problems.append(f"{name}: rings with {call.call_id!r}, which does not ring it")
                elif a.state is AgentState.ON_CALL and (call.agent is not a or call.phase is not CallPhase.CONNECTED):
                    problems.append(f"{name}: talks on {call.call_id!r}, which is not connected to it")
            elif call is not None:
                problems.append(f"{name}: holds call {call.call_id!r}")
        for call in self._calls.values():
            name = f"call {call.call_id!r} ({call.phase.value})"
            q = call.queue
            if (q.entries.get(call.call_id) is call) != (call.phase is not CallPhase.CONNECTED):
                problems.append(f"{name}: in line of {q.name!r} is wrong")
            if call.phase is CallPhase.WAITING and call.reserved_for is None:
                live = [e for e in call.heap if e[3] is call and e[2] == call.token]
                if len(live) != 1:
                    problems.append(f"{name}: {len(live)} live heap entries")
                if any(call.pools):
                    problems.append(f"{name}: waits while a fitting agent is available")
            if call.phase is CallPhase.OFFERED and not (
                    call.ringing and all(a.state is AgentState.RINGING and a.call is call for a in call.ringing)):
                problems.append(f"{name}: its ringing agents are not ringing with it")
        for q in self._queues.values():
            if not len(q.entries) == q.live + q.callbacks == sum(len(seqs) for seqs in q.line.values()):
                problems.append(f"queue {q.name!r}: line counts disagree")
        if problems:
            raise AssertionError("; ".join(problems))

    # --- internals: agents -------------------------------------------------------------------------

    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise UnknownAgent(agent_id)
        return a

    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            raise UnknownQueue(name)
        return q

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall(call_id)
        return call

    @staticmethod
    def _check_transition(a: _Agent, trigger: AgentTrigger) -> None:
        if (a.state, trigger) not in AGENT_TRANSITIONS:
            raise InvalidAgentTransition(a.agent_id, a.state, trigger)

    def _change(self, a: _Agent, trigger: AgentTrigger, now: float, out: list[RouterOutput],
                reason: str | None = None) -> None:
        old = a.state
        new = _NEXT_STATE.get((old, trigger))
        if new is None:
            raise InvalidAgentTransition(a.agent_id, old, trigger)
        if a.pooled:
            a.pooled = False
            agent_id = a.agent_id
            for pool in a.pools:
                pool.discard(agent_id)
        why = reason or _TRIGGER_REASON[trigger]
        a.state = new
        a.reason = why
        a.since = now
        out.append(AgentStateChanged(a.agent_id, old, new, why, now))

    def _became_available(self, a: _Agent, now: float, out: list[RouterOutput], fresh: bool = True) -> None:
        """`a` just turned AVAILABLE: a break asked for meanwhile starts, else the agent takes work or waits."""
        if a.pending_reason is not None:
            reason, a.pending_reason = a.pending_reason, None
            self._change(a, AgentTrigger.SET_NOT_READY, now, out, reason)
            return
        if fresh:
            a.idle_since = now
        if self._match_agent(a, now, out):
            return
        agent_id = a.agent_id
        idle = a.idle_since
        for q, penalty, score, ordinal, pools in a.queue_pools:
            rank = rank_for(q.config.strategy, idle_since=idle, calls_taken=a.answered.get(q.name, 0),
                            skill_score=score, ordinal=ordinal)
            for pool in pools:
                pool.add(agent_id, penalty, rank)
        a.pooled = True

    def _rematch(self, agents: list[_Agent], now: float, out: list[RouterOutput]) -> None:
        for a in agents:
            self._became_available(a, now, out, fresh=False)

    def _end_wrapup(self, a: _Agent, now: float, out: list[RouterOutput]) -> None:
        a.wrapup_timer = 0
        if a.pending_reason is not None:
            reason, a.pending_reason = a.pending_reason, None
            self._change(a, AgentTrigger.SET_NOT_READY, now, out, reason)
            return
        self._change(a, AgentTrigger.WRAPUP_DONE, now, out)
        self._became_available(a, now, out)

    def _missed(self, a: _Agent, call: _Call, now: float, out: list[RouterOutput]) -> bool:
        """Counts a rung-out offer: at the limit the agent is NOT_READY `MISSED` (False), below it AVAILABLE
        again (True: `_became_available` is due, once the call has gone on to the next agent)."""
        a.missed += 1
        in_a_row = a.missed
        limit = in_a_row >= self.missed_limit
        self._change(a, AgentTrigger.RING_TIMEOUT if limit else AgentTrigger.MISS, now, out)
        out.append(MissedInARow(a.agent_id, call.call_id, call.queue.name, in_a_row, now))
        if limit:
            a.missed = 0
            a.pending_reason = None
        return not limit

    def _hang_up(self, a: _Agent, q: _Queue, now: float, out: list[RouterOutput]) -> None:
        a.call = None
        self._change(a, AgentTrigger.HANG_UP, now, out)
        a.wrapup_queue = q.name
        wrapup = q.config.wrapup
        if wrapup == 0:
            self._end_wrapup(a, now, out)
        elif wrapup is not None:
            a.wrapup_until = now + wrapup
            a.wrapup_timer = self._arm(a.wrapup_until, _Timer.WRAPUP, a)

    def _fits(self, a: _Agent, call: _Call) -> bool:
        q = call.queue
        if q.name not in a.penalties or not a.profile.meets(q.levels[call.level]):
            return False
        return (q.config.language is not LanguageMode.REQUIRE or call.language is None
                or call.language in a.profile.languages)

    # --- internals: matching -----------------------------------------------------------------------

    def _match_agent(self, a: _Agent, now: float, out: list[RouterOutput]) -> bool:
        """Give the newly available agent the call it should take next, if any waits."""
        if a.reserved:
            call = min(a.reserved, key=lambda c: (-c.priority, c.seq))
            a.reserved.remove(call)
            call.reserved_for = None
            call.sticky_timer = 0
            self._offer(call, [a], now, out)
            return True
        best: _Entry | None = None
        best_heap: list[_Entry] = []
        for heap in a.sources:
            while heap:
                entry = heap[0]
                if entry[3].token == entry[2]:
                    if best is None or entry < best:
                        best = entry
                        best_heap = heap
                    break
                heappop(heap)
        if best is None:
            return False
        heappop(best_heap)
        self._offer(best[3], [a], now, out)
        return True

    def _match_call(self, call: _Call, now: float, out: list[RouterOutput]) -> bool:
        """Offer the call to the best available agent(s) fit for it, if there is one."""
        for pool in call.pools:
            if pool:
                agents = self._agents
                if call.queue.ring_all and not call.callback:
                    chosen = [agents[g] for g in pool.ring_group()]
                else:
                    picked = pool.pick()
                    assert picked is not None  # a non-empty pool always picks someone
                    chosen = [agents[picked]]
                self._offer(call, chosen, now, out)
                return True
        return False

    def _wait(self, call: _Call) -> None:
        call.token += 1
        heappush(call.heap, (-call.priority, call.seq, call.token, call))

    def _back_in_line(self, call: _Call, now: float, out: list[RouterOutput]) -> None:
        call.phase = CallPhase.WAITING
        if not self._match_call(call, now, out):
            self._wait(call)

    def _offer(self, call: _Call, agents: list[_Agent], now: float, out: list[RouterOutput]) -> None:
        call.token += 1
        call.phase = CallPhase.OFFERED
        call.ringing = agents
        q = call.queue
        ids = (agents[0].agent_id,) if len(agents) == 1 else tuple(a.agent_id for a in agents)
        for a in agents:
            self._change(a, AgentTrigger.OFFER, now, out, "callback" if call.callback else None)
            a.call = call
        if q.round_robin:
            q.memory.last = q.ordinals[ids[0]]
        if call.callback:
            call.ring_timer = self._arm(now + q.config.callback_timeout, _Timer.CALLBACK, call)
            out.append(CallbackMade(call.call_id, q.name, ids[0], now - call.entered_at, now))
            out.append(PlaceCallback(call.call_id, q.name, ids[0], call.customer_id, q.config.callback_timeout))
        else:
            call.ring_timer = self._arm(now + q.config.ring_timeout, _Timer.RING, call)
            out.append(CallOffered(call.call_id, q.name, ids, now))
            out.append(Offer(call.call_id, q.name, ids, q.config.ring_timeout))

    def _cancel_offer(self, call: _Call, reason: str, now: float, out: list[RouterOutput]) -> list[_Agent]:
        """Stop the agents ringing with the call; they are AVAILABLE again and returned for `_rematch`."""
        agents = call.ringing
        if not agents:
            return agents
        call.ringing = []
        call.ring_timer = 0
        out.append(CancelOffer(call.call_id, tuple(a.agent_id for a in agents), reason))
        for a in agents:
            a.call = None
            self._change(a, AgentTrigger.CANCEL_OFFER, now, out)
        return agents

    def _connect(self, call: _Call, a: _Agent, now: float) -> None:
        q = call.queue
        self._leave_line(call)
        call.phase = CallPhase.CONNECTED
        call.agent = a
        call.answered_at = now
        a.call = call
        a.answered[q.name] = a.answered.get(q.name, 0) + 1
        if call.customer_id is not None and self._sticky_memory > 0:
            memory = self._last_agent
            memory[call.customer_id] = (a.agent_id, now)
            memory.move_to_end(call.customer_id)
            while memory:
                oldest = next(iter(memory.values()))
                if now - oldest[1] <= self._sticky_memory:
                    break
                memory.popitem(last=False)

    # --- internals: the line -----------------------------------------------------------------------

    def _refusal(self, q: _Queue) -> RejectReason | None:
        if q.config.max_length is not None and q.live >= q.config.max_length:
            return RejectReason.QUEUE_FULL
        if not q.config.join_when_empty and q.qualified == 0:
            return RejectReason.NO_AGENTS
        return None

    def _join(self, call: _Call, q: _Queue, now: float, out: list[RouterOutput]) -> None:
        self._seq += 1
        call.queue = q
        call.seq = self._seq
        call.entered_at = now
        call.phase = CallPhase.WAITING
        call.rule = 0
        q.live += 1
        out.append(CallEntered(call.call_id, q.name, q.add_to_line(call), call.priority, now))
        self._set_level(call, 0)
        config = q.config
        if config.overflow:
            call.rule_timer = self._arm(now + config.overflow[0].after, _Timer.RULE, call)
        if config.max_wait is not None:
            call.max_wait_timer = self._arm(now + config.max_wait, _Timer.MAX_WAIT, call)
        if not self._sticky(call, now, out) and not self._match_call(call, now, out):
            self._wait(call)

    def _set_level(self, call: _Call, level: int) -> None:
        q = call.queue
        call.level = level
        mode = q.config.language
        language = call.language
        if language is None or mode is LanguageMode.IGNORE:
            call.heap = q.heap(level, None)
            call.pools = (q.pool(level, None),)
        elif mode is LanguageMode.PREFER:
            call.heap = q.heap(level, None)
            call.pools = (q.pool(level, language), q.pool(level, None))
        else:
            call.heap = q.heap(level, language)
            call.pools = (q.pool(level, language),)

    def _sticky(self, call: _Call, now: float, out: list[RouterOutput]) -> bool:
        """Offer the call to, or keep it for, the customer's last agent (`QueueConfig.sticky`)."""
        sticky = call.queue.config.sticky
        if sticky is None or call.customer_id is None:
            return False
        last = self._last_agent.get(call.customer_id)
        if last is None or now - last[1] > sticky.memory:
            return False
        a = self._agents.get(last[0])
        if a is None or a.call is call or not self._fits(a, call):  # (a.call is call: it transfers the call away)
            return False
        if a.state is _AVAILABLE and a.pending_reason is None:
            self._offer(call, [a], now, out)
            return True
        if sticky.wait <= 0:
            return False
        call.reserved_for = a
        a.reserved.append(call)
        call.sticky_timer = self._arm(call.entered_at + sticky.wait, _Timer.STICKY, call)
        return True

    def _release_reservation(self, call: _Call, now: float, out: list[RouterOutput]) -> None:
        """The sticky agent's turn is over: the call goes to anyone, keeping its place."""
        if call.reserved_for is not None:
            call.reserved_for.reserved.remove(call)
        call.reserved_for = None
        call.sticky_timer = 0
        if not self._match_call(call, now, out):
            self._wait(call)

    def _leave_line(self, call: _Call) -> None:
        q = call.queue
        q.remove_from_line(call)
        if call.callback:
            q.callbacks -= 1
        else:
            q.live -= 1
        call.token += 1
        call.rule_timer = call.max_wait_timer = call.sticky_timer = 0
        if call.reserved_for is not None:
            call.reserved_for.reserved.remove(call)
            call.reserved_for = None

    def _empty_queue(self, q: _Queue, now: float, out: list[RouterOutput]) -> None:
        """`leave_when_empty`: the last fitting agent left, so the callers on the line leave too."""
        for call in sorted((c for c in q.entries.values() if not c.callback), key=lambda c: (-c.priority, c.seq)):
            self._exit(call, RejectReason.NO_AGENTS, now, out)

    def _exit(self, call: _Call, reason: RejectReason, now: float, out: list[RouterOutput]) -> None:
        q = call.queue
        self._leave_line(call)
        del self._calls[call.call_id]
        freed = self._cancel_offer(call, "caller left the queue", now, out)
        out.append(CallExited(call.call_id, q.name, reason, now - call.entered_at, now))
        out.append(Reject(call.call_id, q.name, reason))
        self._rematch(freed, now, out)

    def _callback_failed(self, call: _Call, reason: str, now: float, out: list[RouterOutput]) -> None:
        a = call.ringing[0]
        self._leave_line(call)
        del self._calls[call.call_id]
        out.append(CallbackFailed(call.call_id, call.queue.name, a.agent_id, reason, now))
        freed = self._cancel_offer(call, f"callback failed: {reason}", now, out)
        self._rematch(freed, now, out)

    def _apply_rule(self, call: _Call, now: float, out: list[RouterOutput]) -> None:
        q = call.queue
        rules = q.config.overflow
        action = rules[call.rule].action
        call.rule += 1
        if isinstance(action, WidenSkills):
            self._set_level(call, call.level + 1)
            out.append(RequirementsWidened(call.call_id, q.name, call.level, now))
            if call.rule < len(rules):
                call.rule_timer = self._arm(call.entered_at + rules[call.rule].after, _Timer.RULE, call)
            if call.phase is CallPhase.WAITING and call.reserved_for is None:
                call.token += 1  # its entry in the old level's heap is now stale
                if not self._match_call(call, now, out):
                    self._wait(call)
            return
        if isinstance(action, MoveToQueue):
            target = self._queues[action.queue]
            if self._refusal(target) is not None:
                log.info("call %s stays in %s: overflow queue %s refuses it", call.call_id, q.name, target.name)
                return
            self._leave_line(call)
            freed = self._cancel_offer(call, "overflow", now, out)
            out.append(CallOverflowed(call.call_id, q.name, target.name, now - call.entered_at, now))
            out.append(Overflow(call.call_id, q.name, target.name))
            self._join(call, target, now, out)
            self._rematch(freed, now, out)
            return
        assert isinstance(action, SendToVoicemail)
        self._leave_line(call)
        del self._calls[call.call_id]
        freed = self._cancel_offer(call, "overflow", now, out)
        out.append(CallOverflowed(call.call_id, q.name, VOICEMAIL, now - call.entered_at, now))
        out.append(ToVoicemail(call.call_id, q.name))
        self._rematch(freed, now, out)

    @staticmethod
    def _expect(call: _Call, operation: str, *phases: CallPhase, callback: bool | None = None) -> None:
        if call.phase not in phases or (callback is not None and call.callback != callback):
            what = "callback" if call.callback else "call"
            raise InvalidCallState(f"cannot {operation} {what} {call.call_id!r}: it is {call.phase.value} "
                                   f"in queue {call.queue.name!r}")

    # --- internals: timers -------------------------------------------------------------------------

    def _arm(self, when: float, kind: _Timer, subject: _Call | _Agent) -> int:
        self._timer_seq += 1
        heappush(self._timers, (when, self._timer_seq, kind, subject))
        return self._timer_seq

    @staticmethod
    def _timer_live(kind: _Timer, subject: _Call | _Agent, seq: int) -> bool:
        if isinstance(subject, _Agent):
            return subject.wrapup_timer == seq and subject.state is AgentState.AFTER_CALL_WORK
        if kind is _Timer.RING or kind is _Timer.CALLBACK:
            return subject.ring_timer == seq
        if kind is _Timer.RULE:
            return subject.rule_timer == seq
        if kind is _Timer.MAX_WAIT:
            return subject.max_wait_timer == seq
        return subject.sticky_timer == seq

    def _fire(self, kind: _Timer, subject: _Call | _Agent, when: float, out: list[RouterOutput]) -> None:
        if isinstance(subject, _Agent):
            self._end_wrapup(subject, when, out)
            return
        call = subject
        if kind is _Timer.RING:
            call.ring_timer = 0
            agents = call.ringing
            call.ringing = []
            out.append(CancelOffer(call.call_id, tuple(a.agent_id for a in agents), "ring timeout"))
            again: list[_Agent] = []
            for a in agents:
                a.call = None
                if self._missed(a, call, when, out):
                    again.append(a)
            self._back_in_line(call, when, out)
            for a in again:
                self._became_available(a, when, out)
        elif kind is _Timer.CALLBACK:
            call.ring_timer = 0
            self._callback_failed(call, "timeout", when, out)
        elif kind is _Timer.RULE:
            call.rule_timer = 0
            self._apply_rule(call, when, out)
        elif kind is _Timer.MAX_WAIT:
            call.max_wait_timer = 0
            self._exit(call, RejectReason.MAX_WAIT, when, out)
        else:
            self._release_reservation(call, when, out)


__all__ = ["AgentStatus", "CallPhase", "QueueStatus", "Router"]
