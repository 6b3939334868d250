"""API v1, agents: their work states, read and set (issue 11, points 6 and 7).

`GET /api/v1/agents` lists every agent of the token's tenant with its state, reason, since when, the queues it
is logged in to and the after-call work left; `GET /api/v1/agents/{name}` one of them (an agent of another
tenant is the same 404 as one that does not exist); `PUT /api/v1/agents/{name}/state` asks for `logged_in`,
`available`, `not_ready` (with a reason of the tenant's list) or `logged_out`. The rules are the ACD's
(`hatif.acd.states`): a refusal is 422 for a request that can never work (an unknown reason names the allowed
ones), 409 for one the agent's state refuses now (log out during a call). The answer is the state once this
node's router applied the request; every other node applies the same event from the bus.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hatif.acd.ports import AgentStatesPort, AgentView
from hatif.acd.states import StateRefused, StateRequest, WorkState
from hatif.people.model import AuditEntry, Principal, Role
from hatif.people.service import PeopleService
from hatif.web.auth import PrincipalDep, TenantWithScope, client_address
from hatif.web.errors import ApiError, not_found
from hatif.web.schemas import ErrorOut

PREFIX = "/api/v1"

_STATUS = {"unknown_agent": 404, "logged_out": 409, "on_call": 409}
"""HTTP status of a refusal by its code; every other refusal is 422 (the request itself is wrong)."""


class AgentOut(BaseModel):
    agent: str
    state: str = Field(description="logged_out, available, ringing, on_call, after_call_work or not_ready")
    reason: str | None = Field(description="why not ready (a reason code, missed, rejected) or what changed it")
    since: datetime
    queues: list[str] = Field(description="the queues it is logged in to")
    wrapup_queue: str | None = None
    wrapup_remaining: float | None = Field(None, description="seconds of after-call work left; null: none, "
                                                             "or until the agent says done")
    pending_reason: str | None = Field(None, description="a break asked for during a call, starting after it")
    missed_in_a_row: int = 0

    @classmethod
    def of(cls, v: AgentView) -> AgentOut:
        return cls(agent=v.agent, state=v.state, reason=v.reason, since=datetime.fromtimestamp(v.since, UTC),
                   queues=list(v.queues), wrapup_queue=v.wrapup_queue, wrapup_remaining=v.wrapup_remaining,
                   pending_reason=v.pending_reason, missed_in_a_row=v.missed_in_a_row)


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["logged_in", "available", "not_ready", "logged_out"]
    reason: str | None = Field(None, max_length=40, description="for not_ready: one of the tenant's reason codes")
    queues: list[str] | None = Field(None, max_length=100, description="for a login: some of the agent's queues "
                                                                       "(all when absent)")


TenantDep = Annotated[str, Depends(TenantWithScope(None))]


def _agents(request: Request, tenant: TenantDep) -> AgentStatesPort | None:
    ports: Mapping[str, AgentStatesPort] = request.app.state.hatif_agents
    return ports.get(tenant)


AgentsDep = Annotated[AgentStatesPort | None, Depends(_agents)]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
STATE_RESPONSES = {**AUTH_RESPONSES, 409: {"model": ErrorOut}}

router = APIRouter(prefix=PREFIX, tags=["agents"])


def _not_found(name: str) -> ApiError:
    return not_found(f"agent {name!r}")


def _may_set(who: Principal, agent: str) -> bool:
    """An agent sets only its own state (its user name is its ACD name, the SIP user); a supervisor, an
    administrator or the platform owner anyone's of the tenant; the tenant's installation token acts for the
    tenant's systems (a wallboard, a workforce tool) and may too."""
    if who.user is None:
        return True
    return who.user.role is not Role.AGENT or who.user.name == agent


async def _audit(request: Request, who: Principal, tenant: str, agent: str, body: StateIn) -> None:
    """SECURITY.md: a supervisory action (forcing another's state) is written to the audit log."""
    people: PeopleService | None = getattr(request.app.state, "hatif_people", None)
    if people is None:
        return
    detail = {k: v for k, v in (("state", body.state), ("reason", body.reason)) if v is not None}
    if body.queues is not None:
        detail["queues"] = ",".join(body.queues)
    entry = AuditEntry(tenant, datetime.now(UTC), who.user.id if who.user is not None else None, who.label,
                       "agent.state", agent, client_address(request), detail)
    await run_in_threadpool(people.audit, entry)


@router.get("/agents", responses=AUTH_RESPONSES)
async def list_agents(agents: AgentsDep) -> list[AgentOut]:
    if agents is None:
        return []
    views = (agents.view(name) for name in sorted(agents.agent_names()))
    return [AgentOut.of(v) for v in views if v is not None]


@router.get("/agents/{name}", responses=AUTH_RESPONSES)
async def get_agent(name: str, agents: AgentsDep) -> AgentOut:
    view = agents.view(name) if agents is not None else None
    if view is None:
        raise _not_found(name)
    return AgentOut.of(view)


@router.put("/agents/{name}/state", responses=STATE_RESPONSES)
async def set_agent_state(name: str, body: StateIn, request: Request, who: PrincipalDep, tenant: TenantDep,
                          agents: AgentsDep) -> AgentOut:
    """Ask for the agent's work state; the answer is its state once applied (not_ready during a call shows as
    `pending_reason` until the call is over). An agent may set only its own; a supervisor anyone's."""
    if agents is None or agents.view(name) is None:
        raise _not_found(name)
    if not _may_set(who, name):
        raise ApiError(403, "forbidden", f"an agent sets only its own state, not agent {name!r}'s")
    by = who.user.name if who.user is not None and who.user.tenant == tenant else who.label
    asked = StateRequest(name, WorkState(body.state), by, body.reason,
                         tuple(body.queues) if body.queues is not None else None)
    try:
        view = await agents.request(asked)
    except StateRefused as e:
        if e.code == "unknown_agent":
            raise _not_found(name) from None
        raise ApiError(_STATUS.get(e.code, 422), e.code, e.message) from None
    if asked.forced:
        await _audit(request, who, tenant, name, body)
    return AgentOut.of(view)
