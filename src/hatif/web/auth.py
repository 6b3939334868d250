"""Who a request acts for: `principal` resolves one `Principal` from, in this order,

- `Authorization: Bearer <token>`: a person's API token (`hatif_...`, made through /api/v1/users/{id}/tokens),
  or one of the installation's configured tokens (`api.tokens` in the YAML), a service token of its tenant
  with `INSTALLATION_SCOPES` (the records, no people);
- the session cookie set at sign-in (`hatif_session`, `__Host-hatif_session` over https): then every unsafe
  request (POST, PUT, PATCH, DELETE) must repeat the session's CSRF token in `X-CSRF-Token`, or it is 403
  `csrf`. A cross-site page can make the browser send the cookie but cannot read the token.

No valid credential at all is 401; a valid one without the scope a route needs is 403 (`RequireScope`); another
tenant's objects are answered 404 by the routes, as if they did not exist (SECURITY.md).

Configured tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every configured token without
stopping at the first match, so neither the time taken nor the answer tells a caller how close a guess came or
whether a token exists. A missing header, a malformed one and a wrong token all get the same 401.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from hatif.people.credentials import TOKEN_PREFIX, same
from hatif.people.model import INSTALLATION_SCOPES, PLATFORM, Principal, Scope
from hatif.people.service import PeopleService
from hatif.web.errors import CSRF_REFUSED, UNAUTHORIZED, forbidden, not_found

_SCHEME = "bearer"
SESSION_COOKIE = "hatif_session"
SECURE_SESSION_COOKIE = "__Host-hatif_session"
"""RFC 6265bis §4.1.3.2: a `__Host-` cookie is only accepted with Secure, Path=/ and no Domain, so it is used
over https; plain http (a development server on loopback) gets the unprefixed name."""
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class TokenAuth:
    """The API tokens of an installation, each mapped to one tenant."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._keys: list[tuple[bytes, str]] = []
        for i, (token, tenant) in enumerate(tokens.items()):
            if not token or token != token.strip() or any(c.isspace() for c in token):
                raise ValueError(f"API token #{i + 1} (tenant {tenant!r}) is empty or contains white space")
            if not tenant:
                raise ValueError(f"API token #{i + 1} has an empty tenant")
            self._keys.append((_digest(token), tenant))

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant of the bearer token in an `Authorization` header value, or None."""
        token = _bearer(authorization)
        presented = _digest(token if token is not None else "")
        tenant: str | None = None
        for key, owner in self._keys:
            if hmac.compare_digest(key, presented) and token is not None:
                tenant = owner
        return tenant


def _bearer(authorization: str | None) -> str | None:
    """RFC 6750 §2.1: `Bearer` (any case), one space or more, the token."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token:
        return None
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


# -- the principal of a request ------------------------------------------------------------------------------


def session_secret(conn: HTTPConnection) -> str | None:
    return conn.cookies.get(SECURE_SESSION_COOKIE) or conn.cookies.get(SESSION_COOKIE) or None


def client_address(conn: HTTPConnection) -> str:
    """The caller's address as the server sees it (behind a proxy, uvicorn's `--forwarded-allow-ips` decides)."""
    return conn.client.host if conn.client is not None else ""


def _by_bearer(people: PeopleService | None, auth: TokenAuth, authorization: str) -> Principal | None:
    token = _bearer(authorization)
    if token is None:
        return None
    if people is not None and token.startswith(TOKEN_PREFIX):
        found = people.principal_of_token(token)
        if found is not None:
            return found
    tenant = auth.tenant_of(authorization)
    return None if tenant is None else Principal(tenant, None, INSTALLATION_SCOPES, "installation")


async def authenticate(conn: HTTPConnection) -> Principal | None:
    """The principal of the bearer token, or else of the session cookie, or None. The CSRF token is the
    caller's to check (`principal` for HTTP; the WebSocket feed checks the origin instead)."""
    people: PeopleService | None = getattr(conn.app.state, "hatif_people", None)
    auth: TokenAuth = conn.app.state.hatif_auth
    authorization = conn.headers.get("authorization")
    if authorization is not None:
        return await run_in_threadpool(_by_bearer, people, auth, authorization)
    secret = session_secret(conn)
    if secret is None or people is None:
        return None
    return await run_in_threadpool(people.session_of, secret)


async def principal(request: Request) -> Principal:
    """The one dependency every authenticated route starts from (see the module)."""
    found = await authenticate(request)
    if found is None:
        raise UNAUTHORIZED
    if found.via == "session" and request.method in UNSAFE_METHODS and not same(
            request.headers.get(CSRF_HEADER) or "", found.csrf or ""):
        raise CSRF_REFUSED
    return found


def same_origin(conn: HTTPConnection) -> bool:
    """Whether the browser says the page is of this site: `Origin` (RFC 6454), which every browser sends with a
    WebSocket handshake, names the host the request was sent to (or is absent: not a browser)."""
    origin = conn.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (conn.headers.get("host") or "").lower()


PrincipalDep = Annotated[Principal, Depends(principal)]


class RequireScope:
    """A dependency: the principal, refused 403 unless it holds `scope` (None: any valid principal).

    A class, not a closure: FastAPI reads the annotations of `__call__` from this module's names."""

    def __init__(self, scope: Scope | None) -> None:
        self.scope = scope

    async def __call__(self, who: PrincipalDep) -> Principal:
        if self.scope is not None and self.scope not in who.scopes:
            raise forbidden(self.scope.value)
        return who


def acting_tenant(who: Principal, asked: str | None) -> str:
    """The tenant a request acts in: the principal's own; a platform owner names any with `?tenant=` (its own,
    `*`, otherwise). Anyone else naming another tenant gets the 404 of a tenant that does not exist."""
    if who.owner:
        if asked is not None and not asked.isprintable():  # no tenant is named so (PostgreSQL refuses NUL)
            raise not_found(f"tenant {asked!r}")
        return asked or PLATFORM
    if asked is not None and asked != who.tenant:
        raise not_found(f"tenant {asked!r}")
    return who.tenant


TenantQuery = Annotated[str | None, Query(
    alias="tenant", description="platform owners: the tenant to act in (others may only name their own)")]


class TenantWithScope(RequireScope):
    """A dependency: the acting tenant of a principal that holds `scope` (None: of any valid principal)."""

    async def __call__(self, who: PrincipalDep, tenant: TenantQuery = None) -> str:  # type: ignore[override]
        return acting_tenant(await super().__call__(who), tenant)
