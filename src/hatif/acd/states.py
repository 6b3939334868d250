"""Agent work states as asked for by people: the rules a request must pass and how it drives the router.

An agent (or a supervisor forcing it, `by`) asks for one of four *work states*: `logged_in` to some or all of
the agent's queues, `available`, `not_ready` with a reason code from the tenant's managed list (required when
the tenant says `require_reason`), or `logged_out`. The router owns the states that calls drive (ringing, on a
call, after-call work, not ready after `missed_in_a_row` offers rang out); this module never duplicates them,
it only decides, from the table `STEPS`, what a request means in the state the agent is in.

Sans-IO like the router: `check` validates a request against the tenant's rules and the agent's state and
returns the normalized request or raises `StateRefused` (a stable code and a sentence naming the problem);
`apply` turns a checked request into router calls, with the time passed in. The shell (`AcdService`) decides
where requests come from (the API, feature codes) and how they reach every node (events on the bus).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from ..errors import AcdError
from .model import AgentProfile, AgentState, QueueMembership, RouterOutput
from .router import Router


class WorkState(enum.Enum):
    """What a person may ask for; every other state is the router's, driven by calls."""

    LOGGED_IN = "logged_in"
    AVAILABLE = "available"
    NOT_READY = "not_ready"
    LOGGED_OUT = "logged_out"


class Step(enum.Enum):
    """What the router is asked to do for a request, given the agent's state."""

    LOG_IN = "log_in"  # into the requested queues; available, or not ready when a reason is given
    READY = "ready"  # available (a break asked for during a call is called off)
    END_WRAPUP = "end_wrapup"  # after-call work done: available
    PAUSE = "pause"  # not ready for the reason (during a call: once the call is over)
    LOG_OUT = "log_out"
    NOTHING = "nothing"  # already so: a request is idempotent


class StateRefused(AcdError, ValueError):
    """A request the rules refuse: `code` is stable for programs, the message names the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_W, _S = WorkState, AgentState
_LOGGED_IN = (_S.AVAILABLE, _S.RINGING, _S.ON_CALL, _S.AFTER_CALL_WORK, _S.NOT_READY)

STEPS: Final[Mapping[tuple[WorkState, AgentState], Step | str]] = MappingProxyType({
    (_W.LOGGED_IN, _S.LOGGED_OUT): Step.LOG_IN,
    **{(_W.LOGGED_IN, s): Step.NOTHING for s in _LOGGED_IN},
    (_W.AVAILABLE, _S.LOGGED_OUT): "logged_out",
    (_W.AVAILABLE, _S.AVAILABLE): Step.NOTHING,
    (_W.AVAILABLE, _S.RINGING): Step.READY,
    (_W.AVAILABLE, _S.ON_CALL): Step.READY,
    (_W.AVAILABLE, _S.AFTER_CALL_WORK): Step.END_WRAPUP,
    (_W.AVAILABLE, _S.NOT_READY): Step.READY,
    (_W.NOT_READY, _S.LOGGED_OUT): Step.LOG_IN,
    **{(_W.NOT_READY, s): Step.PAUSE for s in _LOGGED_IN},
    (_W.LOGGED_OUT, _S.LOGGED_OUT): Step.NOTHING,
    (_W.LOGGED_OUT, _S.AVAILABLE): Step.LOG_OUT,
    (_W.LOGGED_OUT, _S.RINGING): Step.LOG_OUT,
    (_W.LOGGED_OUT, _S.ON_CALL): "on_call",
    (_W.LOGGED_OUT, _S.AFTER_CALL_WORK): Step.LOG_OUT,
    (_W.LOGGED_OUT, _S.NOT_READY): Step.LOG_OUT,
})
"""(requested, current) -> the step, or the code of the refusal. `not_ready` for a logged-out agent logs it in
not ready; `available` does not (log in first, to the queues wanted); a logout waits for no call."""

_REFUSALS: Final[Mapping[str, str]] = MappingProxyType({
    "logged_out": "agent {agent!r} is logged out: log in first (state logged_in)",
    "on_call": "agent {agent!r} is on a call: it can log out once the call is over",
})


@dataclass(frozen=True, slots=True)
class StateRules:
    """A tenant's rules for agent states (its configuration: `not_ready_reasons`, `require_reason`,
    `missed_in_a_row`). An empty `reasons` list accepts any reason."""

    reasons: tuple[str, ...] = ()
    require_reason: bool = False
    missed_in_a_row: int = 1


@dataclass(frozen=True, slots=True)
class StateRequest:
    """`by` (the agent itself, a supervisor, or "acd" for the router's own) asks for `state` of `agent`.

    `queues` (for a login) are some of the agent's queues, None for all; `reason` is for `not_ready`."""

    agent: str
    state: WorkState
    by: str
    reason: str | None = None
    queues: tuple[str, ...] | None = None

    @property
    def forced(self) -> bool:
        """Asked by someone other than the agent (a supervisor, or the ACD itself)."""
        return self.by != self.agent


def check(request: StateRequest, rules: StateRules, memberships: tuple[str, ...] | None,
          current: AgentState) -> StateRequest:
    """The request normalized (queues filled in for a login, no reason where none belongs), or `StateRefused`.

    `memberships` are the agent's queues by configuration, None when the tenant has no such agent."""
    agent = request.agent
    if memberships is None:
        raise StateRefused("unknown_agent", f"no agent {agent!r}")
    reason = request.reason or None
    if request.state is WorkState.NOT_READY:
        if reason is None and rules.require_reason:
            raise StateRefused("reason_required", f"a reason is required to make agent {agent!r} not ready; "
                                                  f"one of: {', '.join(rules.reasons)}")
        if reason is not None and rules.reasons and reason not in rules.reasons:
            raise StateRefused("unknown_reason", f"{reason!r} is not a not-ready reason of this tenant; "
                                                 f"one of: {', '.join(rules.reasons)}")
        if reason is None:
            reason = rules.reasons[0] if rules.reasons else "break"
    elif reason is not None:
        raise StateRefused("reason_not_allowed", f"a reason goes only with state not_ready, not {request.state.value}")
    queues = request.queues
    if queues is not None:
        unknown = [q for q in queues if q not in memberships]
        if unknown:
            raise StateRefused("unknown_queue", f"agent {agent!r} is not a member of {', '.join(map(repr, unknown))}; "
                                                f"its queues: {', '.join(memberships) or 'none'}")
        if len(set(queues)) != len(queues):
            raise StateRefused("invalid_queues", "a queue is listed twice")
        if request.state not in (WorkState.LOGGED_IN, WorkState.NOT_READY) or current is not AgentState.LOGGED_OUT:
            raise StateRefused("queues_not_allowed", "queues are chosen when logging in (from logged_out)")
    step = STEPS[request.state, current]
    if isinstance(step, str):
        raise StateRefused(step, _REFUSALS[step].format(agent=agent))
    if step is Step.LOG_IN and queues is None:
        queues = memberships
    return replace(request, reason=reason, queues=queues if step is Step.LOG_IN else None)


def apply(router: Router, request: StateRequest, profile: AgentProfile, memberships: tuple[QueueMembership, ...],
          now: float) -> list[RouterOutput]:
    """Drive the router for a checked request; `memberships` are the agent's (with penalties). Raises the
    router's `RoutingError` when the agent's state no longer allows it (refused on this node)."""
    agent = request.agent
    current = router.agent_state(agent)
    step = STEPS[request.state, current]  # the state may have changed since `check`
    if isinstance(step, str):
        raise StateRefused(step, _REFUSALS[step].format(agent=agent))
    match step:
        case Step.LOG_IN:
            wanted = set(request.queues or ())
            chosen = [m for m in memberships if m.queue in wanted] if request.queues is not None else list(memberships)
            paused = request.reason if request.state is WorkState.NOT_READY else None
            return router.agent_login(profile, chosen, now, paused)
        case Step.READY:
            return router.agent_set_ready(agent, now)
        case Step.END_WRAPUP:
            return router.wrapup_done(agent, now)
        case Step.PAUSE:
            status = router.agent_status(agent)
            if current is AgentState.NOT_READY and status.reason == request.reason:
                return []  # already so: the same request twice (or its echo) changes nothing
            return router.agent_set_not_ready(agent, request.reason or "break", now)
        case Step.LOG_OUT:
            return router.agent_logout(agent, now)
        case Step.NOTHING:
            return []
