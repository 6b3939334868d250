"""The center's configuration over HTTP: each tenant's objects, changed while it runs (`hatif.center`).

    GET    /api/v1/config/{kind}           config:read    the objects of a kind
    GET    /api/v1/config/{kind}/{name}    config:read    one object
    PUT    /api/v1/config/{kind}/{name}    config:admin   create or replace one (queues, agents, flows, users, ...)
    PUT    /api/v1/config/{kind}           config:admin   replace the one object of `dialplan`, `reasons`, `settings`
    DELETE /api/v1/config/{kind}/{name}    config:admin   delete one

A body is what the YAML writes for the object (a queue's mapping, a flow's mapping, the dial plan's list). The
whole center is validated with the change exactly as `hatif check-config` validates a file; a refusal is 422
`invalid_config` whose `problems` carry check-config's messages (without `file:line: `) and each one's place in
the tenant, and nothing changes. Users' passwords and HA1 hashes are never answered; a user written back
without them keeps its own. Another tenant's objects are 404, like ones that do not exist.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from hatif.errors import ConfigError
from hatif.people.model import Principal, Scope
from hatif.web.auth import PrincipalDep, TenantQuery, acting_tenant, client_address
from hatif.web.errors import forbidden, not_found
from hatif.web.schemas import ErrorOut

PREFIX = "/api/v1/config"
_ONE = {"users": "user", "endpoints": "endpoint", "mailboxes": "mailbox", "schedules": "schedule", "lists": "list",
        "flows": "flow", "queues": "queue", "agents": "agent"}
_TENANT_AT = re.compile(r"^tenants\[\d+\]\.?")


class StoredObject(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def body(self) -> Any: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> datetime | None: ...
    @property
    def updated_by(self) -> str: ...


class ConfigAdmin(Protocol):
    """What this router needs of the center (`hatif.center.Center`). `LookupError`: no such kind or tenant;
    `ConfigError`: the center would not validate with the change."""

    kinds: tuple[str, ...]

    async def objects(self, tenant: str, kind: str) -> Sequence[StoredObject]: ...
    async def get(self, tenant: str, kind: str, name: str) -> StoredObject | None: ...
    async def put(self, tenant: str, kind: str, name: str, body: Any, *, by: Principal | None = ...,
                  address: str = ...) -> tuple[StoredObject, bool]: ...
    async def delete(self, tenant: str, kind: str, name: str, *, by: Principal | None = ...,
                     address: str = ...) -> bool: ...


class ConfigObjectOut(BaseModel):
    kind: str
    name: str
    body: Any
    version: int
    updated_at: datetime | None
    updated_by: str

    @classmethod
    def of(cls, o: StoredObject) -> ConfigObjectOut:
        return cls(kind=o.kind, name=o.name, body=o.body, version=o.version, updated_at=o.updated_at,
                   updated_by=o.updated_by)


class Problem(BaseModel):
    location: str  # the place within the tenant, e.g. flows.main.nodes.x.next
    message: str  # check-config's message, e.g. tenants[0].flows.main.nodes.x.next: no node 'y'


class InvalidConfigBody(BaseModel):
    code: str
    message: str
    problems: list[Problem]


class InvalidConfigOut(BaseModel):
    error: InvalidConfigBody


RESPONSES: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                                              404: {"model": ErrorOut}}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {**RESPONSES, 422: {"model": InvalidConfigOut}}


def _admin(request: Request) -> ConfigAdmin:
    admin: ConfigAdmin | None = request.app.state.hatif_config
    if admin is None:
        raise not_found("configuration here")
    return admin


AdminDep = Annotated[ConfigAdmin, Depends(_admin)]


def _tenant(who: Principal, asked: str | None, scope: Scope) -> str:
    if scope not in who.scopes:
        raise forbidden(scope.value)
    return acting_tenant(who, asked)


def invalid(exc: ConfigError) -> JSONResponse:
    problems = [Problem(location=_TENANT_AT.sub("", m.partition(": ")[0]) or m.partition(": ")[0], message=m)
                for m in exc.messages]
    body = InvalidConfigOut(error=InvalidConfigBody(code="invalid_config", message="; ".join(exc.messages),
                                                    problems=problems))
    return JSONResponse(body.model_dump(), status_code=422)


router = APIRouter(prefix=PREFIX, tags=["configuration"])


@router.get("/{kind}", responses=RESPONSES)
async def list_objects(kind: str, who: PrincipalDep, admin: AdminDep,
                       tenant: TenantQuery = None) -> list[ConfigObjectOut]:
    acting = _tenant(who, tenant, Scope.CONFIG_READ)
    try:
        found = await admin.objects(acting, kind)
    except LookupError as e:
        raise not_found(str(e)) from None
    return [ConfigObjectOut.of(o) for o in found]


@router.get("/{kind}/{name}", responses=RESPONSES)
async def get_object(kind: str, name: str, who: PrincipalDep, admin: AdminDep,
                     tenant: TenantQuery = None) -> ConfigObjectOut:
    acting = _tenant(who, tenant, Scope.CONFIG_READ)
    try:
        found = await admin.get(acting, kind, name)
    except LookupError as e:
        raise not_found(str(e)) from None
    if found is None:
        raise not_found(f"{_ONE.get(kind, kind)} {name!r}")
    return ConfigObjectOut.of(found)


async def _put(kind: str, name: str, body: Any, who: Principal, admin: ConfigAdmin, tenant: str | None,
               request: Request, response: Response) -> ConfigObjectOut | JSONResponse:
    acting = _tenant(who, tenant, Scope.CONFIG_ADMIN)
    try:
        stored, created = await admin.put(acting, kind, name, body, by=who, address=client_address(request))
    except LookupError as e:
        raise not_found(str(e)) from None
    except ConfigError as e:
        return invalid(e)
    response.status_code = 201 if created else 200
    return ConfigObjectOut.of(stored)


@router.put("/{kind}/{name}", responses={**CHANGE_RESPONSES, 201: {"model": ConfigObjectOut}},
            response_model=ConfigObjectOut)
async def put_object(kind: str, name: str, who: PrincipalDep, admin: AdminDep, request: Request, response: Response,
                     body: Annotated[Any, Body()], tenant: TenantQuery = None) -> ConfigObjectOut | JSONResponse:
    return await _put(kind, name, body, who, admin, tenant, request, response)


@router.put("/{kind}", responses={**CHANGE_RESPONSES, 201: {"model": ConfigObjectOut}},
            response_model=ConfigObjectOut)
async def put_whole(kind: str, who: PrincipalDep, admin: AdminDep, request: Request, response: Response,
                    body: Annotated[Any, Body()], tenant: TenantQuery = None) -> ConfigObjectOut | JSONResponse:
    return await _put(kind, "", body, who, admin, tenant, request, response)


@router.delete("/{kind}/{name}", status_code=204, responses=CHANGE_RESPONSES, response_model=None)
async def delete_object(kind: str, name: str, who: PrincipalDep, admin: AdminDep, request: Request,
                        tenant: TenantQuery = None) -> Response:
    acting = _tenant(who, tenant, Scope.CONFIG_ADMIN)
    try:
        deleted = await admin.delete(acting, kind, name, by=who, address=client_address(request))
    except LookupError as e:
        raise not_found(str(e)) from None
    except ConfigError as e:
        return invalid(e)
    if not deleted:
        raise not_found(f"{_ONE.get(kind, kind)} {name!r}")
    return Response(status_code=204)
