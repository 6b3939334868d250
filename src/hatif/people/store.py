"""`PeopleStore`: users, web sessions, API tokens, failed sign-ins and the audit log in the same database as
the records (`hatif.store.Store`), through SQLAlchemy 2.

Synchronous like `Store` (call it from a worker thread). Every query is filtered by tenant except the lookups
by a secret's SHA-256, which name their tenant in the row they find. Database failures are `StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hatif.errors import PeopleError
from hatif.people.model import AuditEntry, Person, Role, Scope, Token, WebSession
from hatif.store.db import StoreError, redact
from hatif.store.models import ApiTokenRow, AuditRow, SignInFailureRow, UserRow, WebSessionRow


class DuplicateName(PeopleError):
    """A user of that name already exists in the tenant."""


class PeopleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._name = redact(engine.url)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError as exc:
            if "users" in str(exc.orig) or "ix_users_tenant_name" in str(exc.orig):
                raise DuplicateName() from exc
            raise StoreError(f"database {self._name!r} refused the record: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot use database {self._name!r}: {_first_line(exc)}") from exc

    # -- users ---------------------------------------------------------------------------------------------

    def add_user(self, tenant: str, name: str, role: Role, password_hash: str, now: datetime) -> Person:
        row = UserRow(tenant=tenant, name=name, role=role.value, password_hash=password_hash, disabled=False,
                      created=now)
        with self._transaction() as session:
            session.add(row)
        return _user(row)

    def user(self, tenant: str, user_id: int) -> Person | None:
        with self._transaction() as session:
            row = session.scalars(select(UserRow).where(UserRow.tenant == tenant, UserRow.id == user_id)).first()
            return None if row is None else _user(row)

    def user_with_hash(self, tenant: str, name: str) -> tuple[Person, str] | None:
        with self._transaction() as session:
            row = session.scalars(select(UserRow).where(UserRow.tenant == tenant, UserRow.name == name)).first()
            return None if row is None else (_user(row), row.password_hash)

    def users(self, tenant: str) -> list[Person]:
        query = select(UserRow).where(UserRow.tenant == tenant).order_by(UserRow.name, UserRow.id)
        with self._transaction() as session:
            return [_user(row) for row in session.scalars(query)]

    def count_role(self, tenant: str, role: Role) -> int:
        query = select(func.count()).select_from(UserRow).where(
            UserRow.tenant == tenant, UserRow.role == role.value, UserRow.disabled.is_(False))
        with self._transaction() as session:
            return int(session.scalar(query) or 0)

    def update_user(self, tenant: str, user_id: int, *, role: Role | None = None, password_hash: str | None = None,
                    disabled: bool | None = None) -> Person | None:
        with self._transaction() as session:
            row = session.scalars(select(UserRow).where(UserRow.tenant == tenant, UserRow.id == user_id)).first()
            if row is None:
                return None
            if role is not None:
                row.role = role.value
            if password_hash is not None:
                row.password_hash = password_hash
            if disabled is not None:
                row.disabled = disabled
            return _user(row)

    def delete_user(self, tenant: str, user_id: int) -> bool:
        with self._transaction() as session:
            # Explicit, not only ON DELETE CASCADE: the rows go even where foreign keys are off.
            session.execute(delete(WebSessionRow).where(WebSessionRow.user_pk == user_id))
            session.execute(delete(ApiTokenRow).where(ApiTokenRow.user_pk == user_id))
            result = session.execute(delete(UserRow).where(UserRow.tenant == tenant, UserRow.id == user_id))
            return _rowcount(result) > 0

    # -- sessions ------------------------------------------------------------------------------------------

    def add_session(self, user: Person, secret_sha256: str, now: datetime) -> WebSession:
        row = WebSessionRow(tenant=user.tenant, user_pk=user.id, secret_sha256=secret_sha256, created=now,
                            last_seen=now)
        with self._transaction() as session:
            session.add(row)
        return _web_session(row)

    def session_by_secret(self, secret_sha256: str) -> tuple[WebSession, Person] | None:
        query = (select(WebSessionRow, UserRow).join(UserRow, UserRow.id == WebSessionRow.user_pk)
                 .where(WebSessionRow.secret_sha256 == secret_sha256))
        with self._transaction() as session:
            found = session.execute(query).first()
            return None if found is None else (_web_session(found[0]), _user(found[1]))

    def touch_session(self, session_id: int, now: datetime) -> None:
        with self._transaction() as session:
            session.execute(update(WebSessionRow).where(WebSessionRow.id == session_id).values(last_seen=now))

    def delete_session(self, session_id: int) -> None:
        with self._transaction() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.id == session_id))

    def delete_sessions_of(self, tenant: str, user_id: int) -> None:
        with self._transaction() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.tenant == tenant,
                                                        WebSessionRow.user_pk == user_id))

    # -- API tokens ----------------------------------------------------------------------------------------

    def add_token(self, user: Person, name: str, secret_sha256: str, scopes: frozenset[Scope], now: datetime,
                  expires: datetime | None) -> Token:
        row = ApiTokenRow(tenant=user.tenant, user_pk=user.id, name=name, secret_sha256=secret_sha256,
                          scopes=" ".join(sorted(scopes)), created=now, expires=expires, revoked=None,
                          last_used=None)
        with self._transaction() as session:
            session.add(row)
        return _token(row)

    def tokens_of(self, tenant: str, user_id: int) -> list[Token]:
        query = (select(ApiTokenRow).where(ApiTokenRow.tenant == tenant, ApiTokenRow.user_pk == user_id)
                 .order_by(ApiTokenRow.id))
        with self._transaction() as session:
            return [_token(row) for row in session.scalars(query)]

    def token_by_secret(self, secret_sha256: str) -> tuple[Token, Person] | None:
        query = (select(ApiTokenRow, UserRow).join(UserRow, UserRow.id == ApiTokenRow.user_pk)
                 .where(ApiTokenRow.secret_sha256 == secret_sha256))
        with self._transaction() as session:
            found = session.execute(query).first()
            return None if found is None else (_token(found[0]), _user(found[1]))

    def touch_token(self, token_id: int, now: datetime) -> None:
        with self._transaction() as session:
            session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used=now))

    def revoke_token(self, tenant: str, user_id: int, token_id: int, now: datetime) -> Token | None:
        with self._transaction() as session:
            row = session.scalars(select(ApiTokenRow).where(
                ApiTokenRow.tenant == tenant, ApiTokenRow.user_pk == user_id, ApiTokenRow.id == token_id)).first()
            if row is None:
                return None
            if row.revoked is None:
                row.revoked = now
            return _token(row)

    # -- failed sign-ins -----------------------------------------------------------------------------------

    def failures(self, tenant: str, name: str, since: datetime) -> list[datetime]:
        query = select(SignInFailureRow.at).where(
            SignInFailureRow.tenant == tenant, SignInFailureRow.name == name, SignInFailureRow.at >= since)
        with self._transaction() as session:
            return list(session.scalars(query))

    def add_failure(self, tenant: str, name: str, now: datetime, forget_before: datetime) -> None:
        """Record one failure and forget this name's failures older than `forget_before` (the table stays
        bounded by the names tried in the last window)."""
        with self._transaction() as session:
            session.execute(delete(SignInFailureRow).where(SignInFailureRow.tenant == tenant,
                                                           SignInFailureRow.name == name,
                                                           SignInFailureRow.at < forget_before))
            session.add(SignInFailureRow(tenant=tenant, name=name, at=now))

    def forget_failures(self, before: datetime) -> int:
        """Forget every failure older than `before`, of any name: the table holds the last window's only, however
        many names a guesser sprays."""
        with self._transaction() as session:
            return _rowcount(session.execute(delete(SignInFailureRow).where(SignInFailureRow.at < before)))

    def clear_failures(self, tenant: str, name: str) -> None:
        with self._transaction() as session:
            session.execute(delete(SignInFailureRow).where(SignInFailureRow.tenant == tenant,
                                                           SignInFailureRow.name == name))

    # -- audit log -----------------------------------------------------------------------------------------

    def add_audit(self, entry: AuditEntry) -> AuditEntry:
        row = AuditRow(tenant=entry.tenant, at=entry.at, actor_id=entry.actor_id, actor=entry.actor,
                       action=entry.action, target=entry.target, address=entry.address, detail=dict(entry.detail))
        with self._transaction() as session:
            session.add(row)
        return _audit(row)

    def audit(self, tenant: str, *, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        """The tenant's audit entries, newest first."""
        query = select(AuditRow).where(AuditRow.tenant == tenant)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        query = query.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        with self._transaction() as session:
            return [_audit(row) for row in session.scalars(query)]


def _user(row: UserRow) -> Person:
    return Person(id=row.id, tenant=row.tenant, name=row.name, role=Role(row.role), disabled=row.disabled,
                created=row.created)


def _web_session(row: WebSessionRow) -> WebSession:
    return WebSession(id=row.id, tenant=row.tenant, user_id=row.user_pk, created=row.created,
                      last_seen=row.last_seen)


def _token(row: ApiTokenRow) -> Token:
    scopes = frozenset(Scope(s) for s in row.scopes.split() if s in Scope.__members__.values())
    return Token(id=row.id, tenant=row.tenant, user_id=row.user_pk, name=row.name, scopes=scopes,
                 created=row.created, expires=row.expires, revoked=row.revoked, last_used=row.last_used)


def _audit(row: AuditRow) -> AuditEntry:
    return AuditEntry(tenant=row.tenant, at=row.at, actor_id=row.actor_id, actor=row.actor, action=row.action,
                      target=row.target, address=row.address, detail=dict(row.detail), id=row.id)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _first_line(exc: SQLAlchemyError) -> str:
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0]
