"""Each tenant's configuration as rows of `config_objects`: one row per object (a queue, an agent, a flow, a
user, ...) holding what the YAML writes for it, plus single rows for what is one thing per tenant (the dial
plan, an ordered list; the not-ready reasons; the tenant's own settings).

The rows know nothing of what the bodies mean: `hatif.center` assembles a tenant from them and validates it
exactly as the YAML is validated. A change and the events announcing it are written in one transaction
(`write`), so a node that reads the event finds the rows, and rows nobody was told about cannot exist.

Blocking (SQLAlchemy, synchronous): call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from ..events import Event
from .db import Store, StoreError
from .eventlog import append_in
from .models import ConfigObjectRow


@dataclass(frozen=True, slots=True)
class ConfigObject:
    """One stored configuration object; `body` is JSON data (a mapping, or a list for ordered kinds)."""

    tenant: str
    kind: str
    name: str
    body: Any
    version: int = 1
    updated_at: datetime | None = None
    updated_by: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """Put `body` at (kind, name) of a tenant, or delete it when `body` is None."""

    kind: str
    name: str
    body: Any | None


class ConfigRows:
    """The `config_objects` table of `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def objects(self, tenant: str | None = None) -> list[ConfigObject]:
        """Every object (of `tenant`, when given) in the order it was first written: a tenant's users, queues and
        agents keep the order of the file they were imported from, and new ones come last."""
        query = select(ConfigObjectRow).order_by(ConfigObjectRow.id)
        if tenant is not None:
            query = query.where(ConfigObjectRow.tenant == tenant)
        with self.store._errors("read the configuration from"), self.store._sessions() as session:
            return [_object(row) for row in session.scalars(query)]

    def get(self, tenant: str, kind: str, name: str) -> ConfigObject | None:
        query = select(ConfigObjectRow).where(ConfigObjectRow.tenant == tenant, ConfigObjectRow.kind == kind,
                                              ConfigObjectRow.name == name)
        with self.store._errors("read the configuration from"), self.store._sessions() as session:
            row = session.scalars(query).first()
            return _object(row) if row is not None else None

    def write(self, tenant: str, changes: Sequence[Change], events: Sequence[Event], by: str,
              now: datetime | None = None) -> list[Event]:
        """Applies `changes` to `tenant`'s objects and appends `events` to the event log, all in one transaction;
        returns the events numbered."""
        at = now or datetime.now(UTC)
        with self.store._transaction("write the configuration to") as session:
            for change in changes:
                row = session.scalars(select(ConfigObjectRow).where(
                    ConfigObjectRow.tenant == tenant, ConfigObjectRow.kind == change.kind,
                    ConfigObjectRow.name == change.name).with_for_update()).first()
                if change.body is None:
                    if row is not None:
                        session.delete(row)
                elif row is None:
                    session.add(ConfigObjectRow(tenant=tenant, kind=change.kind, name=change.name, body=change.body,
                                                version=1, updated_at=at, updated_by=by))
                else:
                    row.body, row.version, row.updated_at, row.updated_by = change.body, row.version + 1, at, by
            return append_in(session, events)

    def replace(self, tenants: Mapping[str, Sequence[Change]], events: Sequence[Event], by: str,
                now: datetime | None = None, only_if_empty: bool = False) -> list[Event]:
        """Replaces every object of each tenant named in `tenants` by the ones given (an import), in one
        transaction with `events`."""
        at = now or datetime.now(UTC)
        with self.store._transaction("write the configuration to") as session:
            if only_if_empty and session.scalars(select(ConfigObjectRow.id).limit(1)).first() is not None:
                raise StoreError("the store holds tenants already")
            for tenant, changes in tenants.items():
                session.execute(delete(ConfigObjectRow).where(ConfigObjectRow.tenant == tenant))
                session.add_all([ConfigObjectRow(tenant=tenant, kind=c.kind, name=c.name, body=c.body, version=1,
                                                 updated_at=at, updated_by=by)
                                 for c in changes if c.body is not None])
            return append_in(session, events)


    def seed(self, tenants: Mapping[str, Sequence[Change]], events: Sequence[Event], by: str) -> list[Event]:
        """The first start's import: like `replace`, but only into an empty table; two processes seeding at once
        on PostgreSQL collide on the unique index and the second's transaction is refused (StoreError)."""
        return self.replace(tenants, events, by, only_if_empty=True)


def _object(row: ConfigObjectRow) -> ConfigObject:
    return ConfigObject(row.tenant, row.kind, row.name, row.body, row.version, row.updated_at, row.updated_by)
