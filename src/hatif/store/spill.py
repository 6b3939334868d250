"""Records the database refused, kept in an fsynced file until the next start writes them to the store.

A BYE is answered once its call's records are durable; when the database is down, durable means this file:
`SpillFile.append` writes the batch as JSON lines and fsyncs before it returns, and `replay` (at start, after
the migrations) stores every line and empties the file. Call detail records and queue-log entries are the
records kept; each line says which.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .records import CallRecord, LegRecord, QueueLogEntry

log = logging.getLogger(__name__)

KINDS: dict[str, type[CallRecord] | type[QueueLogEntry]] = {"call": CallRecord, "queue": QueueLogEntry}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$t"}:
            return datetime.fromisoformat(value["$t"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def encode(record: CallRecord | QueueLogEntry) -> bytes:
    kind = "call" if isinstance(record, CallRecord) else "queue"
    return json.dumps({"kind": kind, "record": _encode(asdict(record))}, ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> CallRecord | QueueLogEntry:
    entry = json.loads(line)
    cls = KINDS[entry["kind"]]
    data = _decode(entry["record"])
    known = {f.name for f in fields(cls)}
    record = cls(**{k: v for k, v in data.items() if k in known})
    if isinstance(record, CallRecord):
        record.legs = [LegRecord(**leg) if not is_dataclass(leg) else leg for leg in record.legs]
    return record


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, records: list[CallRecord] | list[QueueLogEntry]) -> None:
        """Write `records` and fsync before returning (called from the writer's thread)."""
        data = b"".join(encode(r) for r in records)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> tuple[list[CallRecord], list[QueueLogEntry]]:
        calls: list[CallRecord] = []
        queue: list[QueueLogEntry] = []
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return calls, queue
        for line in lines:
            try:
                record = decode(line)
            except (ValueError, KeyError, TypeError):
                log.warning("spilled record unreadable, skipped", extra={"fields": {"path": str(self.path)}})
                continue
            if isinstance(record, CallRecord):
                calls.append(record)
            else:
                queue.append(record)
        return calls, queue

    def clear(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)
