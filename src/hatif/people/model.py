"""The people model as data: roles, scopes, who holds what, the lock-out rule and the password rule.

No database, clock or I/O here: times come in as arguments (STYLE.md, sans-IO cores).

Roles are per tenant and ordered: an agent handles calls and its voicemail; a supervisor also reads calls, the
queue log and the people of its tenant; an administrator also manages those people and reads the audit log.
A platform owner (tenant `*`) holds every scope in every tenant. A scope is what one request needs; a role
grants a set of scopes, and an API token carries a chosen subset, checked against the role again at each use
(so a demoted user's tokens lose what the new role lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

PLATFORM = "*"
"""The tenant of platform owners: no real tenant can be named `*`."""


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMINISTRATOR = "administrator"
    OWNER = "owner"  # the platform owner, across tenants


class Scope(StrEnum):
    CALLS_READ = "calls:read"
    VOICEMAIL_READ = "voicemail:read"
    VOICEMAIL_WRITE = "voicemail:write"
    EVENTS_READ = "events:read"
    USERS_READ = "users:read"
    USERS_ADMIN = "users:admin"
    CONFIG_READ = "config:read"
    CONFIG_ADMIN = "config:admin"


_AGENT = frozenset({Scope.VOICEMAIL_READ, Scope.VOICEMAIL_WRITE})
_SUPERVISOR = _AGENT | {Scope.CALLS_READ, Scope.EVENTS_READ, Scope.USERS_READ, Scope.CONFIG_READ}
_ADMINISTRATOR = _SUPERVISOR | {Scope.USERS_ADMIN, Scope.CONFIG_ADMIN}

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.AGENT: _AGENT,
    Role.SUPERVISOR: _SUPERVISOR,
    Role.ADMINISTRATOR: _ADMINISTRATOR,
    Role.OWNER: frozenset(Scope),
}

INSTALLATION_SCOPES = frozenset({Scope.CALLS_READ, Scope.VOICEMAIL_READ, Scope.VOICEMAIL_WRITE, Scope.EVENTS_READ})
"""What a configured API token (`api.tokens` in the YAML) may do: the records of its tenant, no people."""

TENANT_ROLES = (Role.AGENT, Role.SUPERVISOR, Role.ADMINISTRATOR)

# SECURITY.md (Web): 30 min idle and 12 h absolute limits on a session.
SESSION_IDLE = timedelta(minutes=30)
SESSION_ABSOLUTE = timedelta(hours=12)
SESSION_TOUCH = timedelta(seconds=60)  # last_seen is rewritten at most this often

LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)

PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # argon2 hashes any length, but a megabyte password is a denial of service, not a secret


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    tenant: str
    name: str
    role: Role
    disabled: bool
    created: datetime

    @property
    def scopes(self) -> frozenset[Scope]:
        return frozenset() if self.disabled else ROLE_SCOPES[self.role]


@dataclass(frozen=True, slots=True)
class Token:
    """An API token as listed: never its secret, which is shown once when it is made."""
    id: int
    tenant: str
    user_id: int
    name: str
    scopes: frozenset[Scope]
    created: datetime
    expires: datetime | None
    revoked: datetime | None
    last_used: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked is None and (self.expires is None or now < self.expires)


@dataclass(frozen=True, slots=True)
class WebSession:
    id: int
    tenant: str
    user_id: int
    created: datetime
    last_seen: datetime

    def live(self, now: datetime) -> bool:
        """SECURITY.md: idle for less than 30 minutes and younger than 12 hours."""
        return now - self.last_seen < SESSION_IDLE and now - self.created < SESSION_ABSOLUTE

    def expires(self) -> datetime:
        """When the session ends if it keeps being used (the absolute limit)."""
        return self.created + SESSION_ABSOLUTE


@dataclass(frozen=True, slots=True)
class AuditEntry:
    tenant: str
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for. `user` is None for a configured installation token, which names only a tenant.
    `via` says how it was proved; `csrf` is the token unsafe requests of this session must repeat."""
    tenant: str
    user: Person | None
    scopes: frozenset[Scope]
    via: Literal["session", "token", "installation"]
    session_id: int | None = None
    token_id: int | None = None
    csrf: str | None = None

    @property
    def owner(self) -> bool:
        return self.user is not None and self.user.role is Role.OWNER

    @property
    def label(self) -> str:
        """The actor's name in the audit log."""
        if self.user is None:
            return f"installation token of {self.tenant}"
        return self.user.name if self.user.tenant == self.tenant else f"{self.user.name}@{self.user.tenant}"


def token_scopes(role: Role, asked: frozenset[Scope]) -> frozenset[Scope]:
    """The scopes a token of a user with `role` carries now: those asked for that the role still grants."""
    return asked & ROLE_SCOPES[role]


def lockout_remaining(failures: list[datetime], now: datetime) -> timedelta | None:
    """Given the failed sign-ins of one (tenant, name), how long it stays locked out, or None if it is not.

    Locked while `LOCKOUT_FAILURES` or more failures fall in the last `LOCKOUT_WINDOW`; it opens again when
    enough of them have aged out of the window. Failures while locked are not counted (the caller does not
    record them), so an attacker cannot keep a name locked for ever by guessing on."""
    recent = sorted(t for t in failures if now - t < LOCKOUT_WINDOW)
    if len(recent) < LOCKOUT_FAILURES:
        return None
    return recent[len(recent) - LOCKOUT_FAILURES] + LOCKOUT_WINDOW - now


def password_problem(password: str) -> str | None:
    """Why `password` cannot be used, as a sentence, or None."""
    if not password or not password.strip():
        return "the password is empty"
    if len(password) < PASSWORD_MIN:
        return f"the password is too short: at least {PASSWORD_MIN} characters are needed"
    if len(password) > PASSWORD_MAX:
        return f"the password is too long: at most {PASSWORD_MAX} characters"
    return None


def name_problem(name: str) -> str | None:
    if not name or name != name.strip() or len(name) > 200 or any(not c.isprintable() for c in name):
        return "a user name is 1 to 200 printable characters without surrounding white space"
    return None
