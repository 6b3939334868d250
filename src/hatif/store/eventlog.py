"""The durable event log (the bus's outbox): every event is a row here before any consumer sees it.

`append(events)` numbers the events in their streams and stores them in one transaction. The number comes
from the stream's row in `event_streams`, updated in the same transaction: on PostgreSQL the update's row lock
is held until the commit, so two Hatif processes sharing the database number one stream one after the other
and a number is only given out once every lower number of that stream has committed. A consumer reading
`since(stream, n)` therefore never finds a number filled in later below one it has already read: reading
from its last number again misses nothing. SQLite has one writer at a time, which gives the same.

Blocking (SQLAlchemy, synchronous): the outbox calls it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..events import STREAMS, Event, EventError, from_dict
from .db import Store, StoreError
from .models import EventRow, EventStreamRow


class EventLog:
    """The events of every stream, numbered, in `store`'s `event_log` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Stores `events` (all or none) and returns them numbered, in the order given."""
        if not events:
            return []
        with self.store._transaction("write events to") as session:
            return append_in(session, events)

    def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]:
        """Up to `limit` events of `stream` numbered above `seq` (of `tenant` only, when given), in order."""
        if stream not in STREAMS:
            raise ValueError(f"unknown event stream {stream!r} (known: {', '.join(STREAMS)})")
        query = select(EventRow.body).where(EventRow.stream == stream, EventRow.seq > seq)
        if tenant is not None:
            query = query.where(EventRow.tenant == tenant)
        query = query.order_by(EventRow.seq).limit(limit)
        with self.store._errors("read events from"), self.store.engine.connect() as conn:
            bodies = conn.scalars(query).all()
        out: list[Event] = []
        for body in bodies:
            try:
                out.append(from_dict(dict(body)))
            except EventError as e:
                raise StoreError(f"event log of {stream!r}: a stored event this version cannot read: {e}") from e
        return out

    def last(self) -> dict[str, int]:
        """The last number given out in each stream."""
        with self.store._errors("read event streams of"), self.store.engine.connect() as conn:
            rows = conn.execute(select(EventStreamRow.stream, EventStreamRow.last)).all()
        return {stream: last for stream, last in rows}

    def count(self, stream: str) -> int:
        with self.store._errors("count events in"), self.store.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(EventRow).where(EventRow.stream == stream))
                       or 0)


def append_in(session: Session, events: Sequence[Event]) -> list[Event]:
    """Numbers and inserts `events` inside `session`'s transaction (which the caller commits): another table's
    rows and the events saying they changed then commit together, or neither does (`store.configrows`)."""
    counts: dict[str, int] = {}
    for e in events:
        if e.STREAM not in STREAMS:
            raise StoreError(f"event {e.NAME!r} has no known stream ({e.STREAM!r})")
        counts[e.STREAM] = counts.get(e.STREAM, 0) + 1
    next_seq: dict[str, int] = {}
    for stream in sorted(counts):  # a fixed order: two writers of several streams cannot deadlock
        session.execute(update(EventStreamRow).where(EventStreamRow.stream == stream)
                        .values(last=EventStreamRow.last + counts[stream]))
        last = session.scalar(select(EventStreamRow.last).where(EventStreamRow.stream == stream))
        if last is None:
            raise StoreError(f"the store has no event stream {stream!r}: run the migrations")
        next_seq[stream] = last - counts[stream] + 1
    numbered: list[Event] = []
    for e in events:
        numbered.append(e.numbered(next_seq[e.STREAM]))
        next_seq[e.STREAM] += 1
    if numbered:
        session.execute(insert(EventRow), [
            {"stream": e.STREAM, "seq": e.seq, "tenant": e.tenant, "at": e.at, "name": e.NAME,
             "body": e.to_dict()} for e in numbered])
    return numbered
