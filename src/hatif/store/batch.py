"""One writer in a thread for records that arrive faster than one transaction each can keep up with.

Call detail records and queue events come from the event loop at call rate (a thousand a second at load).
`BatchWriter.add` queues a record; one thread at a time writes everything queued since its last write, in one
transaction, after letting the first record wait `linger` seconds for company (group commit).

Nothing is acknowledged before its record is stored (SECURITY.md: persist before acknowledging): `add` returns
a future that is done once the record's transaction committed, and `flushed()` one that is done once everything
queued so far did. The SIP layer answers a BYE only then. A batch the store refuses (the database is down) is
appended to an fsynced spill file instead, when one is given, and the next start writes it to the store: the
acknowledgement waits for whichever of the two made the record durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchWriter(Generic[T]):
    def __init__(self, write: Callable[[list[T]], object], what: str, limit: int = 1000,
                 linger: float = 0.02, spill: Callable[[list[T]], object] | None = None) -> None:
        self.write = write
        self.what = what
        self.limit = limit  # records per transaction
        self.linger = linger  # seconds a first record waits for others to share its transaction
        self.spill = spill  # where a batch goes when the store refuses it (fsynced before it returns)
        self._pending: list[T] = []
        self._pending_done: asyncio.Future[None] | None = None  # done when `_pending` is durable
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None  # the future of the batch being written
        self.written = 0
        self.spilled = 0
        self.failed = 0

    def add(self, item: T) -> asyncio.Future[None]:
        """Queue `item`; the future is done once it is durable (its exception: it could not be stored)."""
        loop = asyncio.get_running_loop()
        self._pending.append(item)
        if self._pending_done is None:
            self._pending_done = loop.create_future()
        done = self._pending_done
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return done

    def extend(self, items: list[T]) -> asyncio.Future[None] | None:
        done = None
        for item in items:
            done = self.add(item)
        return done

    def flushed(self) -> asyncio.Future[None]:
        """A future done once every record added so far is durable (at once when nothing is waiting)."""
        if self._pending_done is not None:
            return self._pending_done
        if self._last is not None and not self._last.done():
            return self._last
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def _drain(self) -> None:
        try:
            # A transaction costs about a millisecond whatever it holds: at a few calls a second, writing each
            # record alone would cost more than the calls themselves. The linger is short, since a BYE's 200
            # waits for it.
            if len(self._pending) < self.limit:
                await asyncio.sleep(self.linger)
            while self._pending:
                batch, self._pending = self._pending[:self.limit], self._pending[self.limit:]
                done = self._pending_done
                assert done is not None
                if self._pending:
                    self._pending_done = asyncio.get_running_loop().create_future()
                else:
                    self._pending_done = None
                self._last = done
                error = await self._store(batch)
                if not done.done():
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                        done.exception()  # retrieved here: whoever waits decides; nobody waiting is fine too
        finally:
            self._task = None

    async def _store(self, batch: list[T]) -> Exception | None:
        try:
            await asyncio.to_thread(self.write, batch)
            self.written += len(batch)
            return None
        except Exception as e:
            log.error("records not stored", extra={"fields": {"what": self.what, "records": len(batch),
                                                               "error": str(e)}})
            if self.spill is None:
                self.failed += len(batch)
                return e
        try:
            await asyncio.to_thread(self.spill, batch)
            self.spilled += len(batch)
            log.warning("records kept in the spill file for the next start", extra={"fields": {
                "what": self.what, "records": len(batch)}})
            return None
        except Exception as e:
            self.failed += len(batch)
            log.exception("records lost: neither stored nor spilled", extra={"fields": {
                "what": self.what, "records": len(batch)}})
            return e

    async def close(self, timeout: float = 10.0) -> None:
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=timeout)
