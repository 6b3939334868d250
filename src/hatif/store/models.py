"""The store's tables as SQLAlchemy 2 typed ORM classes: calls, call legs, voicemail messages and the queue log.

These rows never leave `hatif.store`: `hatif.store.db.Store` turns them into the dataclasses of
`hatif.store.records`. The schema itself is created by the Alembic migrations in `migrations/versions`, not by
`metadata.create_all`; a test compares the two so they cannot drift apart.

Every table has a `tenant` column (ARCHITECTURE.md: tenants everywhere) and every index starts with it.
Times are stored as UTC: `timestamptz` on PostgreSQL, ISO text without zone on SQLite (`UTCDateTime` adds the
zone back when reading, so both engines return aware UTC datetimes and SQLite's text sorts in time order).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# A 64-bit key on PostgreSQL; on SQLite only the exact type INTEGER is an alias of the rowid (autoincrement).
BigKey = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JsonDict = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC. A naive datetime is refused: Hatif's records are aware UTC by contract,
    and guessing a zone would silently shift a CDR by hours."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store: times must be aware (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, str]: JsonDict, str: String(), float: Double(),
    }


class CallRow(Base):
    """One call detail record. `call_id` is Hatif's id of the call, unique within a tenant."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_tenant_call_id", "tenant", "call_id", unique=True),
        Index("ix_calls_tenant_started", "tenant", "started"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    call_id: Mapped[str]
    caller: Mapped[str]
    called: Mapped[str]
    started: Mapped[datetime]
    answered: Mapped[datetime | None]
    ended: Mapped[datetime | None]
    outcome: Mapped[str]
    duration: Mapped[float]
    talk_seconds: Mapped[float]
    recording: Mapped[str | None]
    recording_sha256: Mapped[str | None]
    variables: Mapped[dict[str, str]]
    legs: Mapped[list[LegRow]] = relationship(
        back_populates="call", order_by="LegRow.position", cascade="all, delete-orphan", lazy="selectin"
    )


class LegRow(Base):
    """One SIP leg of a call; `position` keeps the legs in the order the CDR listed them."""

    __tablename__ = "call_legs"
    __table_args__ = (
        Index("ix_call_legs_call", "call", "position"),
        Index("ix_call_legs_tenant_leg_id", "tenant", "leg_id"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    call_pk: Mapped[int] = mapped_column(
        "call", BigKey, ForeignKey("calls.id", ondelete="CASCADE", name="fk_call_legs_call")
    )
    tenant: Mapped[str]
    position: Mapped[int]
    leg_id: Mapped[str]
    direction: Mapped[str]
    party: Mapped[str]
    started: Mapped[datetime]
    answered: Mapped[datetime | None]
    ended: Mapped[datetime | None]
    cause: Mapped[str]
    call: Mapped[CallRow] = relationship(back_populates="legs")


class VoicemailRow(Base):
    """One voicemail message; the audio is a WAV file at `path`, checked by `sha256`."""

    __tablename__ = "voicemail_messages"
    __table_args__ = (Index("ix_voicemail_messages_tenant_mailbox", "tenant", "mailbox", "received"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    mailbox: Mapped[str]
    caller: Mapped[str]
    caller_name: Mapped[str | None]
    received: Mapped[datetime]
    seconds: Mapped[float]
    path: Mapped[str]
    sha256: Mapped[str]
    call_id: Mapped[str]
    heard: Mapped[bool]


class QueueEventRow(Base):
    """One queue event, the source of the queue reports."""

    __tablename__ = "queue_log"
    __table_args__ = (
        Index("ix_queue_log_tenant_queue_time", "tenant", "queue", "time"),
        Index("ix_queue_log_tenant_call_id", "tenant", "call_id"),
        Index("ix_queue_log_tenant_time", "tenant", "time"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    time: Mapped[datetime]
    queue: Mapped[str]
    call_id: Mapped[str]
    event: Mapped[str]
    agent: Mapped[str | None]
    wait: Mapped[float | None]
    talk: Mapped[float | None]
    position: Mapped[int | None]
    data: Mapped[dict[str, str]]


class EventRow(Base):
    """One event of the durable event log (the outbox): written before the bus delivers it. `seq` is the event's
    number in its stream, the same in every process sharing the database; `body` is `Event.to_dict()`."""

    __tablename__ = "event_log"
    __table_args__ = (
        Index("ix_event_log_stream_seq", "stream", "seq", unique=True),
        Index("ix_event_log_tenant_stream_seq", "tenant", "stream", "seq"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    stream: Mapped[str]
    seq: Mapped[int] = mapped_column(BigInteger)
    tenant: Mapped[str]
    at: Mapped[float]
    name: Mapped[str]
    body: Mapped[dict[str, Any]] = mapped_column(JsonDict)


class EventStreamRow(Base):
    """The last sequence number given out in each event stream; its row lock orders writers of that stream."""

    __tablename__ = "event_streams"

    stream: Mapped[str] = mapped_column(primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


# -- people (hatif.people) ---------------------------------------------------------------------------------


class UserRow(Base):
    """A person who signs in to the web API: a name unique in its tenant, one role, an argon2id hash. A platform
    owner's tenant is `*` (hatif.people.PLATFORM)."""

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_tenant_name", "tenant", "name", unique=True),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    name: Mapped[str]
    role: Mapped[str]
    password_hash: Mapped[str]
    disabled: Mapped[bool]
    created: Mapped[datetime]


class WebSessionRow(Base):
    """A signed-in browser session; only the SHA-256 of its cookie's secret is kept."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        Index("ix_web_sessions_secret_sha256", "secret_sha256", unique=True),
        Index("ix_web_sessions_tenant_user", "tenant", "user"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    user_pk: Mapped[int] = mapped_column(
        "user", BigKey, ForeignKey("users.id", ondelete="CASCADE", name="fk_web_sessions_user")
    )
    secret_sha256: Mapped[str]
    created: Mapped[datetime]
    last_seen: Mapped[datetime]


class ApiTokenRow(Base):
    """A user's API token: its SHA-256 (the token itself is shown once), its scopes (space-separated), and
    when it was revoked, if it was."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index("ix_api_tokens_secret_sha256", "secret_sha256", unique=True),
        Index("ix_api_tokens_tenant_user", "tenant", "user"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    user_pk: Mapped[int] = mapped_column(
        "user", BigKey, ForeignKey("users.id", ondelete="CASCADE", name="fk_api_tokens_user")
    )
    name: Mapped[str]
    secret_sha256: Mapped[str]
    scopes: Mapped[str]
    created: Mapped[datetime]
    expires: Mapped[datetime | None]
    revoked: Mapped[datetime | None]
    last_used: Mapped[datetime | None]


class SignInFailureRow(Base):
    """One failed sign-in, counted per (tenant, name) whether the name exists or not, for the lock-out."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_tenant_name_at", "tenant", "name", "at"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    name: Mapped[str]
    at: Mapped[datetime]


class AuditRow(Base):
    """One administrative or supervisory action: who (user id and name), what (action, target, detail), when,
    and from where (the client's address)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant", "at"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(BigKey)
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str]
    address: Mapped[str]
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDict)


# -- runtime configuration (hatif.center) -------------------------------------------------------------------


class ConfigObjectRow(Base):
    """One object of a tenant's configuration (a queue, an agent, a flow, the dial plan, ...), as the YAML
    writes it: `body` is what the tenant's `kind` section holds for `name`. The tenant is assembled from its
    rows and validated as a whole (`hatif.center`); `version` counts the changes of the object."""

    __tablename__ = "config_objects"
    __table_args__ = (Index("ix_config_objects_tenant_kind_name", "tenant", "kind", "name", unique=True),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    kind: Mapped[str]
    name: Mapped[str]
    body: Mapped[Any] = mapped_column(JsonDict)
    version: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str]
