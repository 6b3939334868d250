"""`Store`: Hatif's records (CDRs, voicemail, queue log) in SQLite or PostgreSQL, through SQLAlchemy 2.

Embedded by default (ARCHITECTURE.md principle 3): with no URL the store is a SQLite file, `var/hatif.db`, in WAL
mode (readers never block the writer) with foreign keys on. Given a URL such as
`postgresql+psycopg://hatif@db.example:5432/hatif`, the same code runs on PostgreSQL.

The store is synchronous on purpose: the asyncio shells call it with `asyncio.to_thread`, and SQLAlchemy's pool
hands each thread its own connection. Every `add_*` commits before it returns, so a record is on disk before
anyone is told it happened (SECURITY.md: persist before acknowledging). Every query filters by tenant; an id of
another tenant reads as absent.

The schema belongs to the Alembic revisions shipped in `hatif/store/migrations`; `Store.migrate()` runs them
from code (no alembic.ini), so an installed Hatif upgrades its own database at start.

Every database failure comes out as `StoreError`, whose message names the database URL with its password
hidden.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, delete, event, insert, select, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hatif.store.models import CallRow, LegRow, QueueEventRow, VoicemailRow
from hatif.store.records import CallRecord, LegRecord, QueueLogEntry, VoicemailMessage

from ..errors import HatifError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_PATH = "var/hatif.db"
_CONNECT_TIMEOUT = 5  # seconds to reach a PostgreSQL server before StoreError
_MIGRATION_LOCK = 0x48617469660001  # "Hatif" 1: the advisory lock key held while migrating PostgreSQL
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


class StoreError(HatifError):
    """The database could not be reached or refused an operation. The message names the database (its URL
    without the password) and the reason."""


def redact(url: str | URL) -> str:
    """`url` as text with its password replaced by `***`, even when the URL cannot be parsed."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", url)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration for Hatif's migrations, built in code so that it works from an installed package.
    `url` is only needed when Alembic is to open the database itself (`Store.migrate` hands it a connection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Hatif."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {MIGRATIONS}")
    return head


class Store:
    """Hatif's records in a SQL database; implements `hatif.store.records.RecordStore`.

    `Store()` opens (and creates) the SQLite file `path`; `Store(url)` opens the database at a SQLAlchemy URL
    (`sqlite:///file.db`, `postgresql+psycopg://user@host:5432/name`). The database is reached once here, so a
    bad URL or an unreachable server raises `StoreError` at once rather than at the first call. Call
    `migrate()` before the first use of a new database.
    """

    def __init__(self, url: str | None = None, *, path: str | Path = DEFAULT_PATH) -> None:
        if url is None:
            url = f"sqlite:///{Path(path)}"
        self.url = self._parse(url)
        self.name = redact(self.url)
        self.engine = self._engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.check()
        log.info("store opened", extra={"fields": {"url": self.name, "dialect": self.engine.dialect.name}})

    # -- setup ---------------------------------------------------------------------------------------------

    @staticmethod
    def _parse(url: str) -> URL:
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError):
            raise StoreError(f"bad database URL {redact(url)!r}: expected e.g. sqlite:///var/hatif.db "
                             "or postgresql+psycopg://user@host:5432/name") from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise StoreError(f"unsupported database {redact(parsed)!r}: Hatif runs on sqlite or postgresql")
        return parsed

    def _engine(self, url: URL) -> Engine:
        connect_args: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # The pool hands a connection to one thread at a time; asyncio.to_thread callers change threads.
            connect_args["check_same_thread"] = False
        else:
            options["pool_pre_ping"] = True  # a restarted server's dead connections are replaced, not handed out
            if "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = _CONNECT_TIMEOUT
        try:
            engine = create_engine(url, connect_args=connect_args, **options)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot use database {self.name!r}: {exc}") from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    def check(self) -> None:
        """Reach the database (one `SELECT 1`); `StoreError` if it cannot be reached."""
        with self._errors("reach"), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first `migrate()`)."""
        with self._errors("read the schema revision of"), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (`alembic upgrade head`). Safe to run at every start, and from
        several processes at once on PostgreSQL (an advisory lock serializes them)."""
        before = self.revision()
        with self._errors("migrate"), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several Hatif nodes starting at once: one migrates, the others wait and then find nothing to do.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        after = self.revision()
        if after != before:
            log.info("store migrated", extra={"fields": {"url": self.name, "from": before, "to": after}})

    def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except IntegrityError as exc:
            raise StoreError(f"database {self.name!r} refused the record: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot {action} database {self.name!r}: {_reason(exc)}") from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[Session]:
        """A session whose transaction commits when the block ends, with errors turned into StoreError."""
        with self._errors(action), self._sessions.begin() as session:
            yield session

    # -- calls ---------------------------------------------------------------------------------------------

    def add_call(self, record: CallRecord) -> int:
        """Persist one CDR with its legs and return its id (also set on `record.id`). A second CDR with the same
        (tenant, call_id) is refused with StoreError."""
        self.add_calls([record])
        assert record.id is not None
        return record.id

    def add_calls(self, records: list[CallRecord]) -> None:
        """Persist several CDRs in one transaction (all or none): what a busy server writes each moment."""
        # ORM bulk inserts (lists of dicts, no unit of work): several times cheaper per row than `add`, which
        # matters at a thousand calls a second; ids come back in order (`sort_by_parameter_order`).
        for record in records:
            _check_times("CallRecord", started=record.started, answered=record.answered, ended=record.ended)
            for i, leg in enumerate(record.legs):
                _check_times(f"CallRecord.legs[{i}]", started=leg.started, answered=leg.answered, ended=leg.ended)
        if not records:
            return
        calls = [{"tenant": r.tenant, "call_id": r.call_id, "caller": r.caller, "called": r.called,
                  "started": r.started, "answered": r.answered, "ended": r.ended, "outcome": r.outcome,
                  "duration": r.duration, "talk_seconds": r.talk_seconds, "recording": r.recording,
                  "recording_sha256": r.recording_sha256, "variables": dict(r.variables)} for r in records]
        with self._transaction("write to") as session:
            ids = session.scalars(insert(CallRow).returning(CallRow.id, sort_by_parameter_order=True), calls).all()
            legs = [{"call_pk": pk, "tenant": r.tenant, "position": i, "leg_id": leg.leg_id,
                     "direction": leg.direction, "party": leg.party, "started": leg.started,
                     "answered": leg.answered, "ended": leg.ended, "cause": leg.cause}
                    for pk, r in zip(ids, records, strict=True) for i, leg in enumerate(r.legs)]
            if legs:
                session.execute(insert(LegRow), legs)
        for record, pk in zip(records, ids, strict=True):
            record.id = pk

    def calls(self, tenant: str, *, limit: int = 100, since: datetime | None = None) -> list[CallRecord]:
        """The tenant's CDRs, newest first; `since` keeps those started at or after it."""
        query = select(CallRow).where(CallRow.tenant == tenant)
        if since is not None:
            query = query.where(CallRow.started >= since)
        query = query.order_by(CallRow.started.desc(), CallRow.id.desc()).limit(limit)
        with self._transaction("read") as session:
            return [_call_record(row) for row in session.scalars(query)]

    def call(self, tenant: str, call_id: str) -> CallRecord | None:
        """The tenant's CDR of the call `call_id`, or None."""
        query = select(CallRow).where(CallRow.tenant == tenant, CallRow.call_id == call_id)
        with self._transaction("read") as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _call_record(row)

    # -- voicemail -----------------------------------------------------------------------------------------

    def add_voicemail(self, message: VoicemailMessage) -> int:
        """Persist one voicemail message (the WAV must already be written) and return its id."""
        _check_times("VoicemailMessage", received=message.received)
        row = VoicemailRow(
            tenant=message.tenant, mailbox=message.mailbox, caller=message.caller, caller_name=message.caller_name,
            received=message.received, seconds=message.seconds, path=message.path, sha256=message.sha256,
            call_id=message.call_id, heard=message.heard,
        )
        with self._transaction("write to") as session:
            session.add(row)
        message.id = row.id
        return row.id

    def voicemails(self, tenant: str, mailbox: str, *, new_only: bool = False) -> list[VoicemailMessage]:
        """The messages of one mailbox, newest first; `new_only` keeps those not yet heard."""
        query = select(VoicemailRow).where(VoicemailRow.tenant == tenant, VoicemailRow.mailbox == mailbox)
        if new_only:
            query = query.where(VoicemailRow.heard.is_(False))
        query = query.order_by(VoicemailRow.received.desc(), VoicemailRow.id.desc())
        with self._transaction("read") as session:
            return [_voicemail(row) for row in session.scalars(query)]

    def voicemail(self, tenant: str, message_id: int) -> VoicemailMessage | None:
        query = select(VoicemailRow).where(VoicemailRow.tenant == tenant, VoicemailRow.id == message_id)
        with self._transaction("read") as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _voicemail(row)

    def mark_heard(self, tenant: str, message_id: int, heard: bool = True) -> bool:
        """Set a message heard (or new again); False if the tenant has no such message."""
        query = (update(VoicemailRow).where(VoicemailRow.tenant == tenant, VoicemailRow.id == message_id)
                 .values(heard=heard))
        with self._transaction("write to") as session:
            return _rowcount(session.execute(query)) > 0

    def delete_voicemail(self, tenant: str, message_id: int) -> bool:
        """Delete a message's record (not its file: the caller owns the audio); False if there was none."""
        query = delete(VoicemailRow).where(VoicemailRow.tenant == tenant, VoicemailRow.id == message_id)
        with self._transaction("write to") as session:
            return _rowcount(session.execute(query)) > 0

    # -- queue log -----------------------------------------------------------------------------------------

    def add_queue_events(self, entries: list[QueueLogEntry]) -> None:
        """Persist queue events in one transaction (all or none); each entry's `id` is set."""
        if not entries:
            return
        for i, entry in enumerate(entries):
            _check_times(f"QueueLogEntry[{i}]", time=entry.time)
        rows = [
            QueueEventRow(
                tenant=e.tenant, time=e.time, queue=e.queue, call_id=e.call_id, event=e.event, agent=e.agent,
                wait=e.wait, talk=e.talk, position=e.position, data=dict(e.data),
            )
            for e in entries
        ]
        with self._transaction("write to") as session:
            session.add_all(rows)
        for entry, row in zip(entries, rows, strict=True):
            entry.id = row.id

    def queue_events(self, tenant: str, *, queue: str | None = None, call_id: str | None = None,
                     since: datetime | None = None, limit: int = 10000) -> list[QueueLogEntry]:
        """The tenant's queue events in time order (ties in the order they were written), at most `limit`."""
        query = select(QueueEventRow).where(QueueEventRow.tenant == tenant)
        if queue is not None:
            query = query.where(QueueEventRow.queue == queue)
        if call_id is not None:
            query = query.where(QueueEventRow.call_id == call_id)
        if since is not None:
            query = query.where(QueueEventRow.time >= since)
        query = query.order_by(QueueEventRow.time, QueueEventRow.id).limit(limit)
        with self._transaction("read") as session:
            return [_queue_entry(row) for row in session.scalars(query)]


# -- rows <-> records ---------------------------------------------------------------------------------------


def _call_record(row: CallRow) -> CallRecord:
    return CallRecord(
        call_id=row.call_id, tenant=row.tenant, caller=row.caller, called=row.called, started=row.started,
        outcome=row.outcome, answered=row.answered, ended=row.ended, duration=row.duration,
        talk_seconds=row.talk_seconds, recording=row.recording, recording_sha256=row.recording_sha256,
        variables=dict(row.variables),
        legs=[
            LegRecord(leg_id=leg.leg_id, direction=leg.direction, party=leg.party, started=leg.started,
                      answered=leg.answered, ended=leg.ended, cause=leg.cause)
            for leg in row.legs
        ],
        id=row.id,
    )


def _voicemail(row: VoicemailRow) -> VoicemailMessage:
    return VoicemailMessage(
        tenant=row.tenant, mailbox=row.mailbox, caller=row.caller, caller_name=row.caller_name,
        received=row.received, seconds=row.seconds, path=row.path, sha256=row.sha256, call_id=row.call_id,
        heard=row.heard, id=row.id,
    )


def _queue_entry(row: QueueEventRow) -> QueueLogEntry:
    return QueueLogEntry(
        tenant=row.tenant, time=row.time, queue=row.queue, call_id=row.call_id, event=row.event, agent=row.agent,
        wait=row.wait, talk=row.talk, position=row.position, data=dict(row.data), id=row.id,
    )


# -- helpers ------------------------------------------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL (readers do not block the writer, a crash loses no committed transaction) and foreign keys, which
    SQLite leaves off unless asked on every connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed transaction survives the
        # process being killed (SECURITY.md's rule), though not a power cut; FULL costs an fsync per commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _check_times(what: str, **times: datetime | None) -> None:
    for name, value in times.items():
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"{what}.{name} is a naive datetime ({value.isoformat()}): the store needs aware UTC")


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, first line only (SQLAlchemy's text repeats the statement and its parameters)."""
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0]
