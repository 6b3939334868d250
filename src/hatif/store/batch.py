"""One writer in a thread for records that arrive faster than one transaction each can keep up with.

Call detail records and queue events come from the event loop at call rate (a thousand a second at load).
`BatchWriter.add` queues a record; one thread at a time writes everything queued since its last write, in one
transaction, after letting the first record wait `linger` seconds for company. Nothing is acknowledged to
anyone on the strength of these writes, so batching costs no safety; `close` waits for the queue to drain.
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
                 linger: float = 0.2) -> None:
        self.write = write
        self.what = what
        self.limit = limit  # records per transaction
        self.linger = linger  # seconds a first record waits for others to share its transaction
        self._pending: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed = 0

    def add(self, item: T) -> None:
        self._pending.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def extend(self, items: list[T]) -> None:
        for item in items:
            self.add(item)

    async def _drain(self) -> None:
        try:
            # A transaction costs about a millisecond whatever it holds: at a few calls a second, writing each
            # record alone would cost more than the calls themselves.
            if len(self._pending) < self.limit:
                await asyncio.sleep(self.linger)
            while self._pending:
                batch, self._pending = self._pending[:self.limit], self._pending[self.limit:]
                try:
                    await asyncio.to_thread(self.write, batch)
                    self.written += len(batch)
                except Exception:
                    self.failed += len(batch)
                    log.exception("records not stored", extra={"fields": {"what": self.what, "records": len(batch)}})
        finally:
            self._task = None

    async def close(self, timeout: float = 10.0) -> None:
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=timeout)
