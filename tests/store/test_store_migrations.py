"""Migrations from an empty database, on SQLite and PostgreSQL: the tables and indexes exist, running them again
changes nothing, the ORM models agree with them, and the store opens and fails the way its docstring says."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from hatif.store import Store, StoreError
from hatif.store.db import MIGRATIONS, head_revision
from hatif.store.models import Base

TABLES = {"calls", "call_legs", "voicemail_messages", "queue_log"}


def test_migrate_from_empty_creates_every_table_with_tenant(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert store.revision() is None
        store.migrate()
        assert store.revision() == head_revision()
        store.migrate()  # idempotent
        assert store.revision() == head_revision()
        inspector = inspect(store.engine)
        assert TABLES <= set(inspector.get_table_names())
        for table in TABLES:
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            assert "tenant" in columns and not columns["tenant"]["nullable"], table
            indexes = inspector.get_indexes(table)
            assert indexes and all(i["column_names"][0] in ("tenant", "call") for i in indexes), table
        index_columns = {
            (t, tuple(i["column_names"])) for t in TABLES for i in inspector.get_indexes(t)
        }
        assert ("calls", ("tenant", "started")) in index_columns
        assert ("voicemail_messages", ("tenant", "mailbox", "received")) in index_columns
        assert ("queue_log", ("tenant", "queue", "time")) in index_columns
        unique = [i for i in inspector.get_indexes("calls") if i["unique"]]
        assert [i["column_names"] for i in unique] == [["tenant", "call_id"]]
        assert ("event_log", ("stream", "seq")) in {
            ("event_log", tuple(i["column_names"])) for i in inspector.get_indexes("event_log") if i["unique"]
        }
        with store.engine.connect() as conn:
            streams = dict(conn.execute(text("SELECT stream, last FROM event_streams")).all())
        assert streams == {"calls": 0, "queues": 0, "agents": 0, "users": 0, "config": 0}
        fks = inspector.get_foreign_keys("call_legs")
        assert fks[0]["referred_table"] == "calls" and fks[0]["options"].get("ondelete") == "CASCADE"
    finally:
        store.close()


def test_models_match_the_migrations(store: Store) -> None:
    """The ORM classes and the hand-written revisions describe the same schema (autogenerate finds nothing)."""
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert (MIGRATIONS / "versions" / "0001_initial.py").is_file()


def test_sqlite_default_path_wal_and_foreign_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store() as store:
        assert (tmp_path / "var" / "hatif.db").is_file()  # parent folder created
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with Store(path=tmp_path / "deep" / "er" / "h.db") as store:
        store.migrate()
        assert (tmp_path / "deep" / "er" / "h.db").is_file()


def test_sqlite_legs_are_deleted_with_their_call(tmp_path: Path) -> None:
    """Foreign keys are really on: deleting a call row cascades to its legs."""
    from datetime import UTC, datetime

    from hatif.store import CallRecord, LegRecord

    with Store(path=tmp_path / "h.db") as store:
        store.migrate()
        t = datetime(2026, 1, 1, tzinfo=UTC)
        store.add_call(CallRecord("c", "acme", "1", "2", t, "answered", legs=[LegRecord("a", "inbound", "1", t)]))
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM calls"))
            assert conn.execute(text("SELECT count(*) FROM call_legs")).scalar() == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_database_names_url_without_password() -> None:
    url = f"postgresql+psycopg://hatif:s3cret@127.0.0.1:{_closed_port()}/hatif"
    with pytest.raises(StoreError) as info:
        Store(url)
    message = str(info.value)
    assert "127.0.0.1" in message and "hatif:***@" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://root:s3cret@127.0.0.1/x", "postgresql+nodriver://u:s3cret@127.0.0.1/x"]
)
def test_bad_url_is_a_store_error_without_password(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store(url)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None or "s3cret" not in str(info.value.__cause__)


def test_store_before_migrate_says_so(db_url: str) -> None:
    with Store(db_url) as store, pytest.raises(StoreError, match="cannot read database"):
        store.calls("acme")


def test_downgrade_base_drops_the_tables(db_url: str) -> None:
    """The revision's downgrade works too, so a failed upgrade can be rolled back by hand."""
    from alembic import command

    from hatif.store.db import alembic_config

    with Store(db_url) as store:
        store.migrate()
        with store.engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert TABLES.isdisjoint(inspect(store.engine).get_table_names())
        assert store.revision() is None


def test_alembic_can_open_the_database_itself(db_url: str) -> None:
    """env.py also works when Alembic is driven with a URL (the command line way), not a connection."""
    from alembic import command

    from hatif.store.db import alembic_config

    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    command.upgrade(alembic_config(db_url), "head")
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    finally:
        engine.dispose()


def test_redact_hides_passwords() -> None:
    from hatif.store.db import redact

    assert redact("postgresql+psycopg://hatif:p%40ss@db:5432/h") == "postgresql+psycopg://hatif:***@db:5432/h"
    assert "s3cret" not in redact("garbage://u:s3cret@@host/x y")
    assert redact("sqlite:///var/hatif.db") == "sqlite:///var/hatif.db"


def test_concurrent_migrations(db_url: str) -> None:
    """Two processes' stores migrating at the same time: both finish, the schema is created once."""
    from concurrent.futures import ThreadPoolExecutor

    stores = [Store(db_url) for _ in range(2)]
    try:
        if stores[0].engine.dialect.name == "sqlite":
            pytest.skip("an embedded SQLite file has one Hatif process; concurrent migration is a PostgreSQL matter")
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(s.migrate) for s in stores]:
                future.result(timeout=60)
        assert all(s.revision() == head_revision() for s in stores)
    finally:
        for s in stores:
            s.close()
