"""Alembic's environment for Hatif's store: runs the revisions in versions/ on the connection that
`hatif.store.db.Store.migrate()` hands over in `config.attributes["connection"]`, or on an engine made from the
`sqlalchemy.url` option when Alembic is driven some other way. No logging configuration here: Hatif's own
logging setup stays in charge."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from hatif.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: neither a connection nor sqlalchemy.url was given")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Hatif's migrations run online only (Store.migrate())")
run_migrations_online()
