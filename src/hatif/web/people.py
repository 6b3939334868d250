"""People over HTTP: signing in and out, users, their API tokens, and the audit log.

    POST   /api/v1/session                      sign in: sets the session cookie, returns the CSRF token
    GET    /api/v1/session                      who I am (and the CSRF token of my session)
    DELETE /api/v1/session                      sign out
    GET    /api/v1/users                        users:read
    POST   /api/v1/users                        users:admin
    GET    /api/v1/users/{id}                   users:read, or oneself
    PATCH  /api/v1/users/{id}                   users:admin
    DELETE /api/v1/users/{id}                   users:admin
    GET    /api/v1/users/{id}/tokens            users:admin, or oneself
    POST   /api/v1/users/{id}/tokens            users:admin, or oneself signed in (a token mints no token)
    DELETE /api/v1/users/{id}/tokens/{token}    users:admin, or oneself signed in
    GET    /api/v1/audit                        users:admin

A platform owner acts in any tenant with `?tenant=NAME`. A user of another tenant is 404, like one that never
existed. The handlers only shape requests for `PeopleService` and its answers into `schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hatif.errors import PeopleError
from hatif.people.model import PASSWORD_MAX, SESSION_ABSOLUTE, AuditEntry, Person, Principal, Role, Scope, Token
from hatif.people.service import LastAdministrator, PeopleService, SignInRefused
from hatif.people.store import DuplicateName
from hatif.web.auth import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    PrincipalDep,
    TenantQuery,
    acting_tenant,
    client_address,
    session_secret,
)
from hatif.web.errors import forbidden, not_found
from hatif.web.schemas import ErrorOut, RowId

PREFIX = "/api/v1"
MAX_AUDIT = 10000

# -- schemas -------------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignInIn(_In):
    tenant: str = Field(min_length=1, max_length=200, description="the user's tenant; `*` for platform owners")
    name: str = Field(max_length=200)
    password: str = Field(max_length=PASSWORD_MAX)


class UserOut(BaseModel):
    id: int
    tenant: str
    name: str
    role: Role
    disabled: bool
    created: datetime

    @classmethod
    def of(cls, person: Person) -> UserOut:
        return cls(id=person.id, tenant=person.tenant, name=person.name, role=person.role, disabled=person.disabled,
                   created=person.created)


class SessionOut(BaseModel):
    """Who a request acts for. `user` is null for an installation token; `csrf_token` is the value unsafe
    requests of this browser session send in `X-CSRF-Token` (null without a session)."""
    tenant: str
    user: UserOut | None
    via: Literal["session", "token", "installation"]
    scopes: list[Scope]
    csrf_token: str | None

    @classmethod
    def of(cls, who: Principal) -> SessionOut:
        return cls(tenant=who.tenant, user=None if who.user is None else UserOut.of(who.user), via=who.via,
                   scopes=sorted(who.scopes), csrf_token=who.csrf)


class UserIn(_In):
    name: str
    role: Role
    password: str = Field(max_length=PASSWORD_MAX)


class UserPatch(_In):
    role: Role | None = None
    password: str | None = Field(default=None, max_length=PASSWORD_MAX)
    disabled: bool | None = None


class TokenIn(_In):
    name: str
    scopes: list[Scope] | None = Field(default=None, description="all the user's role grants when absent")
    expires: datetime | None = Field(default=None, description="never when absent (ISO 8601; UTC if no zone)")


class TokenOut(BaseModel):
    id: int
    user_id: int
    name: str
    scopes: list[Scope]
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None

    @classmethod
    def of(cls, token: Token) -> TokenOut:
        return cls(id=token.id, user_id=token.user_id, name=token.name, scopes=sorted(token.scopes),
                   created=token.created, expires=token.expires, revoked=token.revoked, last_used=token.last_used)


class NewTokenOut(BaseModel):
    """The token's `secret` is shown in this answer only: Hatif keeps its SHA-256, never the secret."""
    token: TokenOut
    secret: str


class AuditOut(BaseModel):
    id: int | None
    tenant: str
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(id=entry.id, tenant=entry.tenant, at=entry.at, actor_id=entry.actor_id, actor=entry.actor,
                   action=entry.action, target=entry.target, address=entry.address, detail=dict(entry.detail))


# -- dependencies --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Access:
    """A request's principal, the tenant it acts in and the address it came from (for the audit log)."""
    who: Principal
    tenant: str
    address: str

    def may(self, scope: Scope) -> bool:
        return scope in self.who.scopes

    def is_self(self, user_id: int) -> bool:
        user = self.who.user
        return user is not None and user.id == user_id and user.tenant == self.tenant

    def need(self, scope: Scope, *, self_id: int | None = None, signed_in: bool = False) -> None:
        """403 unless the principal holds `scope`, or acts on itself (`self_id`; by its session when
        `signed_in`: a token cannot mint or revoke tokens on its own authority)."""
        if self.may(scope):
            return
        if self_id is not None and self.is_self(self_id) and (not signed_in or self.who.via == "session"):
            return
        raise forbidden(scope.value)


def _people(request: Request) -> PeopleService:
    people: PeopleService = request.app.state.hatif_people
    return people


async def _access(request: Request, who: PrincipalDep, tenant: TenantQuery = None) -> Access:
    return Access(who, acting_tenant(who, tenant), client_address(request))


PeopleDep = Annotated[PeopleService, Depends(_people)]
AccessDep = Annotated[Access, Depends(_access)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
    422: {"model": ErrorOut, "description": "a parameter or body the route cannot take, or a people rule broken"}}
"""Every refusal in the API's one error shape (a 422 of a bad parameter also carries FastAPI's `detail`)."""
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {**RESPONSES, 409: {"model": ErrorOut}}


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def _user(people: PeopleService, access: Access, user_id: int) -> Person:
    person = await run_in_threadpool(people.user, access.tenant, user_id)
    if person is None:
        raise not_found(f"user {user_id}")
    return person


# -- the session ---------------------------------------------------------------------------------------------

router = APIRouter(prefix=PREFIX, tags=["people"])


@router.post("/session", responses={401: {"model": ErrorOut}, 422: RESPONSES[422]})
async def sign_in(body: SignInIn, request: Request, response: Response, people: PeopleDep) -> SessionOut:
    """Sign in with a tenant, name and password. Every refusal is the same 401 (`sign_in_refused`), whether the
    name exists or not, the password is wrong or the name is locked out after repeated failures."""
    signed = await run_in_threadpool(people.sign_in, body.tenant, body.name, body.password, client_address(request))
    old = session_secret(request)
    if old is not None:  # a new session at each sign-in (SECURITY.md): the one the browser held ends
        await run_in_threadpool(people.sign_out, old)
    https = request.url.scheme == "https"
    response.set_cookie(SECURE_SESSION_COOKIE if https else SESSION_COOKIE, signed.secret,
                        max_age=int(SESSION_ABSOLUTE.total_seconds()), path="/", secure=https, httponly=True,
                        samesite="strict")
    return SessionOut(tenant=signed.user.tenant, user=UserOut.of(signed.user), via="session",
                      scopes=sorted(signed.user.scopes), csrf_token=signed.csrf)


@router.get("/session", responses={401: {"model": ErrorOut}})
async def me(who: PrincipalDep) -> SessionOut:
    return SessionOut.of(who)


@router.delete("/session", status_code=204, responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
async def sign_out(request: Request, who: PrincipalDep, people: PeopleDep) -> Response:
    """End this browser session (with its CSRF token, like every unsafe request of a session)."""
    secret = session_secret(request)
    if who.via == "session" and secret is not None:
        await run_in_threadpool(people.sign_out, secret)
    response = Response(status_code=204)
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        if name in request.cookies:
            response.delete_cookie(name, path="/", secure=name == SECURE_SESSION_COOKIE, httponly=True,
                                   samesite="strict")
    return response


# -- users ---------------------------------------------------------------------------------------------------


@router.get("/users", responses=RESPONSES)
async def list_users(access: AccessDep, people: PeopleDep) -> list[UserOut]:
    access.need(Scope.USERS_READ)
    return [UserOut.of(p) for p in await run_in_threadpool(people.users, access.tenant)]


@router.post("/users", status_code=201, responses=CHANGE_RESPONSES)
async def add_user(body: UserIn, access: AccessDep, people: PeopleDep) -> UserOut:
    access.need(Scope.USERS_ADMIN)
    person = await run_in_threadpool(lambda: people.add_user(access.tenant, body.name, body.role, body.password,
                                                             by=access.who, address=access.address))
    return UserOut.of(person)


@router.get("/users/{user_id}", responses=RESPONSES)
async def get_user(user_id: RowId, access: AccessDep, people: PeopleDep) -> UserOut:
    access.need(Scope.USERS_READ, self_id=user_id)
    return UserOut.of(await _user(people, access, user_id))


@router.patch("/users/{user_id}", responses=CHANGE_RESPONSES)
async def change_user(user_id: RowId, body: UserPatch, access: AccessDep, people: PeopleDep) -> UserOut:
    """Change a user's role, password or whether it is disabled. A new password or disabling ends its sessions."""
    access.need(Scope.USERS_ADMIN)
    person = await run_in_threadpool(lambda: people.update_user(
        access.tenant, user_id, role=body.role, password=body.password, disabled=body.disabled, by=access.who,
        address=access.address))
    if person is None:
        raise not_found(f"user {user_id}")
    return UserOut.of(person)


@router.delete("/users/{user_id}", status_code=204, responses=CHANGE_RESPONSES)
async def delete_user(user_id: RowId, access: AccessDep, people: PeopleDep) -> Response:
    access.need(Scope.USERS_ADMIN)
    if not await run_in_threadpool(lambda: people.delete_user(access.tenant, user_id, by=access.who,
                                                              address=access.address)):
        raise not_found(f"user {user_id}")
    return Response(status_code=204)


# -- API tokens ----------------------------------------------------------------------------------------------


@router.get("/users/{user_id}/tokens", responses=RESPONSES)
async def list_tokens(user_id: RowId, access: AccessDep, people: PeopleDep) -> list[TokenOut]:
    access.need(Scope.USERS_ADMIN, self_id=user_id)
    await _user(people, access, user_id)
    return [TokenOut.of(t) for t in await run_in_threadpool(people.tokens, access.tenant, user_id)]


@router.post("/users/{user_id}/tokens", status_code=201, responses=RESPONSES)
async def create_token(user_id: RowId, body: TokenIn, access: AccessDep, people: PeopleDep) -> NewTokenOut:
    """A new API token for the user, its secret shown in this answer only. Its scopes must be granted by the
    user's role, and are checked against the role again at each use."""
    access.need(Scope.USERS_ADMIN, self_id=user_id, signed_in=True)
    issued = await run_in_threadpool(lambda: people.create_token(
        access.tenant, user_id, body.name, body.scopes, expires=_utc(body.expires), by=access.who,
        address=access.address))
    if issued is None:
        raise not_found(f"user {user_id}")
    return NewTokenOut(token=TokenOut.of(issued.token), secret=issued.secret)


@router.delete("/users/{user_id}/tokens/{token_id}", status_code=204, responses=RESPONSES)
async def revoke_token(user_id: RowId, token_id: RowId, access: AccessDep, people: PeopleDep) -> Response:
    access.need(Scope.USERS_ADMIN, self_id=user_id, signed_in=True)
    if await run_in_threadpool(lambda: people.revoke_token(access.tenant, user_id, token_id, by=access.who,
                                                           address=access.address)) is None:
        raise not_found(f"token {token_id} of user {user_id}")
    return Response(status_code=204)


# -- the audit log -------------------------------------------------------------------------------------------


@router.get("/audit", responses=RESPONSES)
async def audit_log(
    access: AccessDep, people: PeopleDep,
    since: Annotated[datetime | None, Query(description="at or after (ISO 8601; UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT, description="at most this many, newest first")] = 1000,
) -> list[AuditOut]:
    access.need(Scope.USERS_ADMIN)
    entries = await run_in_threadpool(lambda: people.audit_log(access.tenant, since=_utc(since), limit=limit))
    return [AuditOut.of(e) for e in entries]


# -- refusals ------------------------------------------------------------------------------------------------


def _status(exc: PeopleError) -> tuple[int, str]:
    if isinstance(exc, SignInRefused):
        return 401, exc.code
    if isinstance(exc, DuplicateName):
        return 409, "duplicate_name"
    if isinstance(exc, LastAdministrator):
        return 409, exc.code
    return 422, str(getattr(exc, "code", "invalid_request"))


async def people_error(_request: Request, exc: Exception) -> JSONResponse:
    """A refusal of the people rules in the API's error shape; its message names the problem."""
    if not isinstance(exc, PeopleError):
        raise exc
    status, code = _status(exc)
    return JSONResponse({"error": {"code": code, "message": str(exc) or code.replace("_", " ")}}, status_code=status)

