"""The ACD's vocabulary: agents, skills, queues and their rules, agent states, events and actions.

Everything here is an immutable value. The router (`hatif.acd.router`) takes these in and hands back
lists of them: *events* say what happened (they go to the queue log, the wallboard, reports), *actions*
say what the shell must do with a call (ring an agent, stop ringing, send to voicemail, place a callback).

Agent states follow the usual ACD model (FEATURES.md §2 and §5): an agent logs in, is AVAILABLE, is
offered a call (RINGING), talks (ON_CALL), finishes the paperwork (AFTER_CALL_WORK, the wrap-up of the
call's queue) and becomes available again, or takes a break (NOT_READY with a reason). The allowed
changes are the table `AGENT_TRANSITIONS`; anything else is refused with `InvalidAgentTransition`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from ..errors import AcdError

MIN_PROFICIENCY: Final = 1
MAX_PROFICIENCY: Final = 10


class RoutingError(AcdError, ValueError):
    """A request the router cannot carry out; the message names the agent, call or queue at fault."""


class UnknownQueue(RoutingError):
    def __init__(self, queue: str) -> None:
        super().__init__(f"no queue named {queue!r}")
        self.queue = queue


class UnknownAgent(RoutingError):
    def __init__(self, agent: str) -> None:
        super().__init__(f"agent {agent!r} is not logged in")
        self.agent = agent


class UnknownCall(RoutingError):
    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id!r} is not in any queue nor with an agent")
        self.call_id = call_id


class InvalidCallState(RoutingError):
    """An operation that does not fit where the call is (for instance answering a call nobody was offered)."""


class InvalidAgentTransition(RoutingError):
    """A state change the table `AGENT_TRANSITIONS` does not allow."""

    def __init__(self, agent: str, state: AgentState, trigger: AgentTrigger) -> None:
        super().__init__(f"agent {agent!r} is {state.value}: cannot {trigger.value.replace('_', ' ')}")
        self.agent = agent
        self.state = state
        self.trigger = trigger


class AgentState(enum.Enum):
    # Members are singletons compared by identity, so identity hashing is exact; it keeps the router's
    # table lookups in C (Enum's own __hash__ is Python code).
    __hash__ = object.__hash__

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    AFTER_CALL_WORK = "after_call_work"
    NOT_READY = "not_ready"


class AgentTrigger(enum.Enum):
    """What moves an agent from one state to another."""

    __hash__ = object.__hash__

    LOG_IN_READY = "log_in_ready"
    LOG_IN_NOT_READY = "log_in_not_ready"
    OFFER = "offer"
    ANSWER = "answer"
    REJECT = "reject"
    RING_TIMEOUT = "ring_timeout"  # the offer rang out, the agent's last allowed miss in a row
    MISS = "miss"  # the offer rang out, with misses in a row left before the agent is made not ready
    CANCEL_OFFER = "cancel_offer"
    HANG_UP = "hang_up"
    WRAPUP_DONE = "wrapup_done"
    SET_READY = "set_ready"
    SET_NOT_READY = "set_not_ready"
    LOG_OUT = "log_out"


_S = AgentState
_T = AgentTrigger

AGENT_TRANSITIONS: Final[Mapping[tuple[AgentState, AgentTrigger], AgentState]] = MappingProxyType({
    (_S.LOGGED_OUT, _T.LOG_IN_READY): _S.AVAILABLE,
    (_S.LOGGED_OUT, _T.LOG_IN_NOT_READY): _S.NOT_READY,
    (_S.AVAILABLE, _T.OFFER): _S.RINGING,
    (_S.AVAILABLE, _T.SET_NOT_READY): _S.NOT_READY,
    (_S.AVAILABLE, _T.LOG_OUT): _S.LOGGED_OUT,
    (_S.RINGING, _T.ANSWER): _S.ON_CALL,
    (_S.RINGING, _T.REJECT): _S.NOT_READY,
    (_S.RINGING, _T.RING_TIMEOUT): _S.NOT_READY,
    (_S.RINGING, _T.MISS): _S.AVAILABLE,
    (_S.RINGING, _T.CANCEL_OFFER): _S.AVAILABLE,
    (_S.RINGING, _T.LOG_OUT): _S.LOGGED_OUT,
    (_S.ON_CALL, _T.HANG_UP): _S.AFTER_CALL_WORK,
    (_S.AFTER_CALL_WORK, _T.WRAPUP_DONE): _S.AVAILABLE,
    (_S.AFTER_CALL_WORK, _T.SET_NOT_READY): _S.NOT_READY,
    (_S.AFTER_CALL_WORK, _T.LOG_OUT): _S.LOGGED_OUT,
    (_S.NOT_READY, _T.SET_READY): _S.AVAILABLE,
    (_S.NOT_READY, _T.SET_NOT_READY): _S.NOT_READY,
    (_S.NOT_READY, _T.LOG_OUT): _S.LOGGED_OUT,
})
"""(state, trigger) -> next state. A pair not in the table is refused."""

MISSED: Final = "missed"
"""The NOT_READY reason after an offer rang out unanswered."""
REJECTED: Final = "rejected"
"""The NOT_READY reason after the agent declined an offer."""

TRIGGER_REASONS: Final[Mapping[AgentTrigger, str]] = MappingProxyType({
    _T.RING_TIMEOUT: MISSED,
    _T.MISS: MISSED,
    _T.REJECT: REJECTED,
})
"""The reason recorded for a trigger when the caller gives none (otherwise the trigger's own name)."""


class Strategy(enum.Enum):
    """How a queue picks among several available agents who fit a call (Asterisk's names in brackets)."""

    LONGEST_IDLE = "longest_idle"  # the agent available for the longest time [leastrecent]
    ROUND_ROBIN = "round_robin"  # the next agent after the last one offered, in a fixed ring [rrmemory]
    FEWEST_CALLS = "fewest_calls"  # the agent who answered the fewest calls of this queue [fewestcalls]
    RING_ALL = "ring_all"  # every fitting agent at once; the first to answer takes it [ringall]
    RANDOM = "random"  # any fitting agent, drawn with the router's seeded generator [random]
    BEST_SKILL_MATCH = "best_skill_match"  # highest total proficiency in the queue's skills, then longest idle


class LanguageMode(enum.Enum):
    """How the caller's language is used: not at all, as a preference, or as a requirement."""

    IGNORE = "ignore"
    PREFER = "prefer"
    REQUIRE = "require"


class RejectReason(enum.Enum):
    QUEUE_FULL = "queue_full"  # the queue's maximum length is reached
    NO_AGENTS = "no_agents"  # nobody who could take the call is logged in
    MAX_WAIT = "max_wait"  # the caller waited the queue's maximum wait


VOICEMAIL: Final = "voicemail"
"""The destination named in `CallOverflowed` when an overflow rule sends the caller to voicemail."""


def _check_proficiency(what: str, level: int) -> None:
    if not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
        raise ValueError(f"{what}: proficiency {level} is outside {MIN_PROFICIENCY}..{MAX_PROFICIENCY}")


@dataclass(frozen=True, slots=True)
class SkillRequirement:
    """A call in this queue needs an agent with `skill` at `min_level` or better."""

    skill: str
    min_level: int = MIN_PROFICIENCY

    def __post_init__(self) -> None:
        _check_proficiency(f"requirement {self.skill!r}", self.min_level)


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """Who an agent is for routing: skills with proficiency 1..10, and the languages spoken."""

    agent_id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    languages: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for skill, level in self.skills.items():
            _check_proficiency(f"agent {self.agent_id!r} skill {skill!r}", level)
        object.__setattr__(self, "skills", MappingProxyType(dict(self.skills)))
        object.__setattr__(self, "languages", frozenset(self.languages))

    def proficiency(self, skill: str) -> int:
        return self.skills.get(skill, 0)

    def meets(self, requirements: tuple[SkillRequirement, ...]) -> bool:
        return all(self.skills.get(r.skill, 0) >= r.min_level for r in requirements)


@dataclass(frozen=True, slots=True)
class QueueMembership:
    """An agent serves `queue`; agents with a lower penalty are offered calls first."""

    queue: str
    penalty: int = 0


@dataclass(frozen=True, slots=True)
class WidenSkills:
    """Overflow action: from now on the call needs only these requirements (drop or lower some)."""

    requirements: tuple[SkillRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class MoveToQueue:
    """Overflow action: the call leaves for another queue (its wait there starts again)."""

    queue: str


@dataclass(frozen=True, slots=True)
class SendToVoicemail:
    """Overflow action: the call leaves the queue for voicemail."""


OverflowAction = WidenSkills | MoveToQueue | SendToVoicemail


@dataclass(frozen=True, slots=True)
class OverflowRule:
    """`after` seconds in the queue, do `action`."""

    after: float
    action: OverflowAction

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError(f"overflow rule {self.action!r}: after must not be negative, not {self.after}")


@dataclass(frozen=True, slots=True)
class StickyAgent:
    """Offer a returning customer's call to the agent who last talked with them.

    The relation is remembered for `memory` seconds after that call was answered. For the first `wait`
    seconds the call is kept for that agent alone (if logged in and fit for the call), after which any
    agent may take it; with `wait` 0 the agent gets it only if available at once.
    """

    memory: float = 86_400.0
    wait: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue and its rules.

    `wrapup` is the after-call work given to agents after each call of this queue, in seconds; `None`
    means until the agent says done. `max_length` counts callers on the line (callbacks waiting for their
    turn do not occupy a line). A queue is *empty* when no logged-in member fits it at any overflow level:
    `join_when_empty` False turns new callers away then, `leave_when_empty` True sends the waiting ones
    out when the last such agent logs out. Overflow rules run in order of `after`.
    """

    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE
    requirements: tuple[SkillRequirement, ...] = ()
    ring_timeout: float = 15.0
    wrapup: float | None = 0.0
    max_wait: float | None = None
    max_length: int | None = None
    join_when_empty: bool = True
    leave_when_empty: bool = False
    overflow: tuple[OverflowRule, ...] = ()
    sticky: StickyAgent | None = None
    language: LanguageMode = LanguageMode.IGNORE
    callback_timeout: float = 60.0

    def __post_init__(self) -> None:
        where = f"queue {self.name!r}"
        if self.ring_timeout <= 0:
            raise ValueError(f"{where}: ring_timeout must be positive, not {self.ring_timeout}")
        if self.callback_timeout <= 0:
            raise ValueError(f"{where}: callback_timeout must be positive, not {self.callback_timeout}")
        if self.wrapup is not None and self.wrapup < 0:
            raise ValueError(f"{where}: wrapup must not be negative, not {self.wrapup}")
        if self.max_wait is not None and self.max_wait <= 0:
            raise ValueError(f"{where}: max_wait must be positive, not {self.max_wait}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"{where}: max_length must be at least 1, not {self.max_length}")
        afters = [r.after for r in self.overflow]
        if afters != sorted(afters):
            raise ValueError(f"{where}: overflow rules must be in order of `after`, not {afters}")
        for i, rule in enumerate(self.overflow):
            if isinstance(rule.action, MoveToQueue) and rule.action.queue == self.name:
                raise ValueError(f"{where}: overflow rule {i} moves the call to its own queue")
            if not isinstance(rule.action, WidenSkills) and i != len(self.overflow) - 1:
                raise ValueError(f"{where}: overflow rule {i} ({rule.action!r}) takes the call away, "
                                 "so the rules after it would never run")

    @property
    def levels(self) -> tuple[tuple[SkillRequirement, ...], ...]:
        """The requirements at each overflow level: the queue's own, then one per `WidenSkills` rule."""
        widened = tuple(r.action.requirements for r in self.overflow if isinstance(r.action, WidenSkills))
        return (self.requirements, *widened)


# --- events: what happened ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent: str
    old: AgentState
    new: AgentState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class CallEntered:
    """The call joined the line at `position` (1 is next)."""

    call_id: str
    queue: str
    position: int
    priority: int
    at: float


@dataclass(frozen=True, slots=True)
class CallRejected:
    """The call was turned away at the door and never entered the queue."""

    call_id: str
    queue: str
    reason: RejectReason
    at: float


@dataclass(frozen=True, slots=True)
class CallOffered:
    call_id: str
    queue: str
    agents: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """An agent took the call after `wait` seconds in this queue."""

    call_id: str
    queue: str
    agent: str
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class CallAbandoned:
    """The caller hung up while waiting, at `position`, after `wait` seconds."""

    call_id: str
    queue: str
    position: int
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class CallCompleted:
    call_id: str
    queue: str
    agent: str
    talk_time: float
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """The agent passed the call on to `to` (a queue or any other destination)."""

    call_id: str
    queue: str
    agent: str
    to: str
    talk_time: float
    at: float


@dataclass(frozen=True, slots=True)
class CallOverflowed:
    """The call left this queue by an overflow rule, for queue `to` or `VOICEMAIL`."""

    call_id: str
    queue: str
    to: str
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class CallExited:
    """The call left the queue unanswered by the queue's own rule (maximum wait, queue emptied)."""

    call_id: str
    queue: str
    reason: RejectReason
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class RequirementsWidened:
    """An overflow rule lowered what the call needs: it now uses overflow `level`."""

    call_id: str
    queue: str
    level: int
    at: float


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    """The caller hung up asking to be called back; the request keeps `position` in the line."""

    call_id: str
    queue: str
    position: int
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class CallbackMade:
    """The callback reached the head of the line: `agent` is reserved and the customer is being called."""

    call_id: str
    queue: str
    agent: str
    wait: float
    at: float


@dataclass(frozen=True, slots=True)
class CallbackAnswered:
    call_id: str
    queue: str
    agent: str
    at: float


@dataclass(frozen=True, slots=True)
class CallbackFailed:
    call_id: str
    queue: str
    agent: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class MissedInARow:
    """`agent` let the offer of `call_id` ring out: the `in_a_row`-th offer missed since it last answered one.

    At the router's `missed_limit` the agent is made NOT_READY `MISSED`; below it, AVAILABLE again."""

    agent: str
    call_id: str
    queue: str
    in_a_row: int
    at: float


QueueEvent = (CallEntered | CallRejected | CallOffered | CallAnswered | CallAbandoned | CallCompleted
              | CallTransferred | CallOverflowed | CallExited | RequirementsWidened | CallbackRequested
              | CallbackMade | CallbackAnswered | CallbackFailed)
RouterEvent = AgentStateChanged | MissedInARow | QueueEvent


# --- actions: what the shell must do ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Offer:
    """Ring `agents` (one, or several for ring-all) with the call; the router times out after `timeout`."""

    call_id: str
    queue: str
    agents: tuple[str, ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing `agents` with the call."""

    call_id: str
    agents: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class PlaceCallback:
    """Call the customer back and connect `agent`; report `callback_answered` or `callback_failed`."""

    call_id: str
    queue: str
    agent: str
    customer_id: str | None
    timeout: float


@dataclass(frozen=True, slots=True)
class Overflow:
    """The call now waits in `to_queue` (announcements may change)."""

    call_id: str
    from_queue: str
    to_queue: str


@dataclass(frozen=True, slots=True)
class ToVoicemail:
    call_id: str
    queue: str


@dataclass(frozen=True, slots=True)
class Reject:
    """The call is not (or no longer) in the queue: play the reason and hang up, or route it elsewhere."""

    call_id: str
    queue: str
    reason: RejectReason


RouterAction = Offer | CancelOffer | PlaceCallback | Overflow | ToVoicemail | Reject
RouterOutput = RouterEvent | RouterAction
