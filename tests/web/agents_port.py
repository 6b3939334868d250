"""`AgentStatesPort` over a real router and the real state rules, with a fake clock: the agents the web tests
see (what `AcdService` does, without calls or a bus)."""

from __future__ import annotations

from hatif.acd import AgentProfile, QueueConfig, Router
from hatif.acd.model import QueueMembership
from hatif.acd.ports import AgentView
from hatif.acd.states import StateRequest, StateRules, apply, check

WALL0 = 1_790_000_000.0


class RouterPort:
    """`AgentStatesPort` over a router: what `AcdService` does, without calls or a bus."""

    def __init__(self, agents: dict[str, tuple[str, ...]], rules: StateRules, wrapup: float | None = 30.0) -> None:
        queues = sorted({q for qs in agents.values() for q in qs})
        self.router = Router([QueueConfig(q, wrapup=wrapup) for q in queues])
        self.members = agents
        self._rules = rules
        self.now = 100.0
        self.asked: list[StateRequest] = []

    @property
    def rules(self) -> StateRules:
        return self._rules

    def agent_names(self) -> tuple[str, ...]:
        return tuple(self.members)

    def view(self, agent: str) -> AgentView | None:
        if agent not in self.members:
            return None
        s = self.router.agent_status(agent)
        left = s.wrapup_until - self.now if s.wrapup_until is not None else None
        return AgentView(agent, s.state.value, s.reason or None, WALL0 + s.since, s.queues, s.wrapup_queue, left,
                         s.pending_reason, s.missed_in_a_row)

    async def request(self, request: StateRequest) -> AgentView:
        checked = check(request, self._rules, self.members.get(request.agent), self.router.agent_state(request.agent))
        self.asked.append(checked)
        members = tuple(QueueMembership(q) for q in self.members[request.agent])
        apply(self.router, checked, AgentProfile(request.agent), members, self.now)
        view = self.view(request.agent)
        assert view is not None
        return view
