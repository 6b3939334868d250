"""`PeopleService`: what the web API and the command line call to add people, sign them in and out, make and
revoke their API tokens, and write the audit log.

Synchronous over `PeopleStore` (call it from a worker thread). Time comes from the `clock` given, so tests move
it. Every change to a user or a token is written to the audit log with who did it, when and from which address
(SECURITY.md, Web); the command line is the actor `command line` from the address `local`.

Sign-in answers one way to every refusal (unknown name, wrong password, disabled user, locked-out name) and
spends the same argon2 work on each (`Passwords.verify_dummy`), so neither the answer nor its time tells a
caller which names exist (SECURITY.md: no enumeration). Failures are counted per (tenant, name) whether the
name exists or not, so the lock-out cannot tell them apart either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hatif.errors import PeopleError
from hatif.people.credentials import Passwords, csrf_of, new_secret, new_token, sha256
from hatif.people.model import (
    LOCKOUT_WINDOW,
    PLATFORM,
    SESSION_TOUCH,
    TENANT_ROLES,
    AuditEntry,
    Person,
    Principal,
    Role,
    Scope,
    Token,
    WebSession,
    lockout_remaining,
    name_problem,
    password_problem,
    token_scopes,
)
from hatif.people.store import DuplicateName, PeopleStore

log = logging.getLogger(__name__)

COMMAND_LINE = "command line"
"""The actor of changes made with `hatif user ...` on the server itself."""
TOKEN_NAME_MAX = 200


class PeopleRefusal(PeopleError):
    """A request the people rules refuse; `code` is stable for programs, the message a sentence for people."""

    code = "refused"


class InvalidUser(PeopleRefusal, ValueError):
    """A name, password, role or tenant a user cannot have; the message names which and why."""

    code = "invalid_user"


class InvalidToken(PeopleRefusal, ValueError):
    """A token name or scope set that cannot be granted."""

    code = "invalid_token"


class LastAdministrator(PeopleRefusal):
    """The change would leave a tenant without an enabled administrator (nobody could manage it again)."""

    code = "last_administrator"


class SignInRefused(PeopleRefusal):
    """The one answer to every failed sign-in."""

    code = "sign_in_refused"

    def __init__(self) -> None:
        super().__init__("wrong tenant, name or password, or too many failed attempts: try again later")


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session: `secret` goes in the cookie, `csrf` to the page (unsafe requests repeat it)."""

    secret: str
    csrf: str
    session: WebSession
    user: Person


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: `secret` is shown this once and never kept (only its SHA-256 is)."""

    token: Token
    secret: str


def _now() -> datetime:
    return datetime.now(UTC)


class PeopleService:
    """People, sessions and tokens of every tenant. `tenants`, when given, is the set of tenants users may be
    added to (the configuration's); the platform tenant `*` is always there for owners."""

    def __init__(self, store: PeopleStore, passwords: Passwords | None = None,
                 clock: Callable[[], datetime] = _now, tenants: Collection[str] | None = None) -> None:
        self.store = store
        self.passwords = passwords or Passwords()
        self.clock = clock
        self.tenants = None if tenants is None else frozenset(tenants)
        self._forgotten: datetime | None = None  # when failures older than the window were last forgotten

    # -- users ---------------------------------------------------------------------------------------------

    def add_user(self, tenant: str, name: str, role: Role | str, password: str, *, by: Principal | None = None,
                 address: str = "local") -> Person:
        role = self._role_for(tenant, role)
        problem = name_problem(name) or password_problem(password)
        if problem:
            raise InvalidUser(problem)
        try:
            person = self.store.add_user(tenant, name, role, self.passwords.hash(password), self.clock())
        except DuplicateName:
            raise DuplicateName(f"a user named {name!r} already exists in tenant {tenant!r}") from None
        self._audit(by, address, tenant, "user.added", _target(person), role=role.value)
        return person

    def users(self, tenant: str) -> list[Person]:
        return self.store.users(tenant)

    def user(self, tenant: str, user_id: int) -> Person | None:
        return self.store.user(tenant, user_id)

    def update_user(self, tenant: str, user_id: int, *, role: Role | str | None = None, password: str | None = None,
                    disabled: bool | None = None, by: Principal | None = None,
                    address: str = "local") -> Person | None:
        """Change a user; None if there is no such user in `tenant`. A new password or disabling ends the user's
        sessions; a new role applies to the next request of every session and token at once."""
        person = self.store.user(tenant, user_id)
        if person is None:
            return None
        new_role = None if role is None else self._role_for(tenant, role)
        if password is not None and (problem := password_problem(password)):
            raise InvalidUser(problem)
        demoted = new_role is not None and new_role is not Role.ADMINISTRATOR
        if person.role is Role.ADMINISTRATOR and not person.disabled and (demoted or disabled):
            self._keep_an_administrator(tenant)
        changed = self.store.update_user(
            tenant, user_id, role=new_role, disabled=disabled,
            password_hash=None if password is None else self.passwords.hash(password))
        if changed is None:
            return None
        if password is not None or disabled:
            self.store.delete_sessions_of(tenant, user_id)
        detail: dict[str, Any] = {}
        if new_role is not None and new_role is not person.role:
            detail["role"] = {"from": person.role.value, "to": new_role.value}
        if disabled is not None and disabled != person.disabled:
            detail["disabled"] = disabled
        if password is not None:
            detail["password"] = "changed"
        self._audit(by, address, tenant, "user.changed", _target(changed), **detail)
        return changed

    def delete_user(self, tenant: str, user_id: int, *, by: Principal | None = None, address: str = "local") -> bool:
        person = self.store.user(tenant, user_id)
        if person is None:
            return False
        if person.role is Role.ADMINISTRATOR and not person.disabled:
            self._keep_an_administrator(tenant)
        if not self.store.delete_user(tenant, user_id):
            return False
        self._audit(by, address, tenant, "user.deleted", _target(person))
        return True

    def _role_for(self, tenant: str, role: Role | str) -> Role:
        """The role, if a user of `tenant` may hold it: owners only in the platform tenant, the others only in
        a configured tenant."""
        try:
            role = Role(role)
        except ValueError:
            raise InvalidUser(f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}") from None
        if tenant == PLATFORM:
            if role is not Role.OWNER:
                raise InvalidUser(f"the platform tenant {PLATFORM!r} holds owners only, not {role.value}s")
        elif role not in TENANT_ROLES:
            raise InvalidUser(f"an owner belongs to the platform tenant {PLATFORM!r}, not to tenant {tenant!r}")
        elif self.tenants is not None and tenant not in self.tenants:
            raise InvalidUser(f"no tenant {tenant!r}; the configured tenants are {', '.join(sorted(self.tenants))}")
        return role

    def _keep_an_administrator(self, tenant: str) -> None:
        if tenant != PLATFORM and self.store.count_role(tenant, Role.ADMINISTRATOR) <= 1:
            raise LastAdministrator(f"this is the last administrator of tenant {tenant!r}: add another first")

    # -- signing in ----------------------------------------------------------------------------------------

    def sign_in(self, tenant: str, name: str, password: str, source: str) -> SignedIn:
        """A new session for the user, or `SignInRefused`, the same for every reason (see the module)."""
        now = self.clock()
        if name_problem(name) or name_problem(tenant):  # no such user can exist (and PostgreSQL refuses NUL)
            self.passwords.verify_dummy(password)
            raise SignInRefused()
        locked = lockout_remaining(self.store.failures(tenant, name, now - LOCKOUT_WINDOW), now) is not None
        found = self.store.user_with_hash(tenant, name)
        if locked or found is None:
            self.passwords.verify_dummy(password)
        ok = not locked and found is not None and self.passwords.verify(found[1], password) and not found[0].disabled
        if not ok or found is None:
            if not locked:  # failures while locked are not counted: the lock opens as the window moves on
                self.store.add_failure(tenant, name, now, now - LOCKOUT_WINDOW)
                self._forget_old_failures(now)
            log.info("sign-in refused", extra={"fields": {"tenant": tenant, "source": source, "locked": locked}})
            raise SignInRefused()
        person, stored = found
        self.store.clear_failures(tenant, name)
        if self.passwords.needs_rehash(stored):
            self.store.update_user(tenant, person.id, password_hash=self.passwords.hash(password))
        secret = new_secret()
        session = self.store.add_session(person, sha256(secret), now)
        log.info("signed in", extra={"fields": {"tenant": tenant, "user": person.id, "source": source}})
        return SignedIn(secret, csrf_of(secret), session, person)

    def _forget_old_failures(self, now: datetime) -> None:
        """At most once a minute, drop the failures every name has aged out of (SECURITY.md: a flood grows no
        table without bound)."""
        if self._forgotten is None or now - self._forgotten >= SESSION_TOUCH:
            self._forgotten = now
            self.store.forget_failures(now - LOCKOUT_WINDOW)

    def sign_out(self, secret: str) -> None:
        found = self.store.session_by_secret(sha256(secret))
        if found is not None:
            self.store.delete_session(found[0].id)

    def session_of(self, secret: str) -> Principal | None:
        """Who holds the session cookie `secret`, or None when it is unknown, expired or its user disabled. Its
        last use is written at most once a minute."""
        found = self.store.session_by_secret(sha256(secret))
        if found is None:
            return None
        session, person = found
        now = self.clock()
        if not session.live(now):
            self.store.delete_session(session.id)
            return None
        if person.disabled:
            return None
        if now - session.last_seen >= SESSION_TOUCH:
            self.store.touch_session(session.id, now)
        return Principal(person.tenant, person, person.scopes, "session", session_id=session.id,
                         csrf=csrf_of(secret))

    # -- API tokens ----------------------------------------------------------------------------------------

    def create_token(self, tenant: str, user_id: int, name: str, scopes: Collection[Scope | str] | None = None, *,
                     expires: datetime | None = None, by: Principal | None = None,
                     address: str = "local") -> IssuedToken | None:
        """A token for the user (None if there is no such user in `tenant`) carrying `scopes`, all the user's
        role grants when None. A scope the role does not grant is refused, not silently dropped."""
        person = self.store.user(tenant, user_id)
        if person is None:
            return None
        if not name or name != name.strip() or len(name) > TOKEN_NAME_MAX or not name.isprintable():
            raise InvalidToken(f"a token name is 1 to {TOKEN_NAME_MAX} printable characters without surrounding "
                               "white space")
        asked = _scopes(scopes) if scopes is not None else person.scopes
        granted = token_scopes(person.role, asked)
        if asked - granted:
            raise InvalidToken(f"the role {person.role.value} does not grant {', '.join(sorted(asked - granted))}")
        if not granted:
            raise InvalidToken("a token needs at least one scope")
        now = self.clock()
        if expires is not None and expires <= now:
            raise InvalidToken("the token would expire before it is made")
        secret = new_token()
        token = self.store.add_token(person, name, sha256(secret), granted, now, expires)
        self._audit(by, address, tenant, "token.created", _target(person), token=token.id, name=name,
                    scopes=sorted(granted))
        return IssuedToken(token, secret)

    def tokens(self, tenant: str, user_id: int) -> list[Token]:
        return self.store.tokens_of(tenant, user_id)

    def revoke_token(self, tenant: str, user_id: int, token_id: int, *, by: Principal | None = None,
                     address: str = "local") -> Token | None:
        person = self.store.user(tenant, user_id)
        token = None if person is None else self.store.revoke_token(tenant, user_id, token_id, self.clock())
        if person is None or token is None:
            return None
        self._audit(by, address, tenant, "token.revoked", _target(person), token=token.id, name=token.name)
        return token

    def principal_of_token(self, secret: str) -> Principal | None:
        """Who a people API token acts for, or None when it is unknown, revoked, expired or its user disabled.
        Its scopes are checked against the user's role as it is now."""
        found = self.store.token_by_secret(sha256(secret))
        if found is None:
            return None
        token, person = found
        now = self.clock()
        if not token.usable(now) or person.disabled:
            return None
        if token.last_used is None or now - token.last_used >= SESSION_TOUCH:
            self.store.touch_token(token.id, now)
        return Principal(person.tenant, person, token_scopes(person.role, token.scopes), "token",
                         token_id=token.id)

    # -- audit log -----------------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> AuditEntry:
        """Write one entry: every administrative and supervisory action of any feature comes here."""
        return self.store.add_audit(entry)

    def audit_log(self, tenant: str, *, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        return self.store.audit(tenant, since=since, limit=limit)

    def _audit(self, by: Principal | None, address: str, tenant: str, action: str, target: str,
               **detail: Any) -> None:
        actor_id = by.user.id if by is not None and by.user is not None else None
        actor = by.label if by is not None else COMMAND_LINE
        if by is not None and by.user is not None and by.user.tenant != tenant:  # an owner, in a tenant
            actor = f"{by.user.name}@{by.user.tenant}"
        self.audit(AuditEntry(tenant=tenant, at=self.clock(), actor_id=actor_id, actor=actor, action=action,
                              target=target, address=address, detail=detail))


def _target(person: Person) -> str:
    return f"user {person.id} ({person.name})"


def _scopes(scopes: Collection[Scope | str]) -> frozenset[Scope]:
    known = {s.value for s in Scope}
    unknown = sorted(str(s) for s in scopes if str(s) not in known)
    if unknown:
        raise InvalidToken(f"unknown scope {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return frozenset(Scope(s) for s in scopes)
