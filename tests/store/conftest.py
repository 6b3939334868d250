"""Every store test runs twice: on a SQLite file in tmp_path and on PostgreSQL (127.0.0.1:5432, database `test`),
each PostgreSQL test in a schema of its own that is dropped afterwards. The PostgreSQL variant is skipped, with
the reason, only when no server answers there."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from hatif.store import Store

PG_DSN = "postgresql://127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://127.0.0.1:5432/test"


def _pg_unreachable() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} unreachable: {str(exc).strip().splitlines()[0]}"


_PG_SKIP: list[str | None] = []


def pg_skip_reason() -> str | None:
    if not _PG_SKIP:
        _PG_SKIP.append(_pg_unreachable())
    return _PG_SKIP[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of the parametrized engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'hatif.db'}"
        return
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    schema = f"hatif_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        # libpq's `options` puts the schema first on the search path of every connection the store opens.
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[[], Store]]:
    """Opens (and migrates) a Store on the test's database; every store it opened is closed at the end."""
    opened: list[Store] = []

    def factory() -> Store:
        store = Store(db_url)
        opened.append(store)
        store.migrate()
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()
