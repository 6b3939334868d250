"""What the desk, the supervisor's board and the API may ask of a tenant's ACD about agents (LAYOUT.md: ports).

The web layer knows an ACD only through `AgentStatesPort`; `hatif.acd.service.AcdService` is the one there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .states import StateRequest, StateRules


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as people see it: wall-clock `since` (seconds since the epoch), the queues it is logged in to,
    and the seconds of after-call work left (None: not in wrap-up, or wrap-up until the agent says done)."""

    agent: str
    state: str  # logged_out, available, ringing, on_call, after_call_work, not_ready
    reason: str | None
    since: float
    queues: tuple[str, ...]
    wrapup_queue: str | None = None
    wrapup_remaining: float | None = None
    pending_reason: str | None = None  # a break asked for during a call: it starts after the call
    missed_in_a_row: int = 0


class AgentStatesPort(Protocol):
    """One tenant's agents: read their states, ask for one."""

    @property
    def rules(self) -> StateRules: ...

    def agent_names(self) -> tuple[str, ...]:
        """Every configured agent of the tenant, logged in or not."""
        ...

    def view(self, agent: str) -> AgentView | None:
        """The agent's state now; None when the tenant has no such agent."""
        ...

    async def request(self, request: StateRequest) -> AgentView:
        """Check the request (`StateRefused`), make it an event every node applies, and answer the state once
        this node has applied it."""
        ...
