"""The journal of open calls: what lets the next start write a CDR for every call that was up at a crash.

A call's CDR is written when it ends; a process killed with calls up would leave no trace of them. So each
call's start (and each recording it begins) is appended to this journal as one JSON line, and its end is
appended once its CDR is committed. On the next start, `recover()` returns the calls that were opened and never
closed: Hatif writes each of them a CDR marked `interrupted`, repairs their recordings' WAV headers, and starts a
fresh journal.

Lines are written with one `os.write` on an `O_APPEND` descriptor: in the kernel at once, so they survive the
process being killed. `sync()` fsyncs what was written since the last call (Hatif calls it about once a second
from a thread), so a power cut loses at most that second of starts. A torn last line is ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

COMPACT_BYTES = 8 * 1024 * 1024
"""Past this size the journal is rewritten with only the calls still open."""


@dataclass(slots=True)
class OpenCall:
    """A call the journal saw start and not end."""

    call_id: str
    tenant: str
    caller: str
    called: str
    started: datetime
    recordings: list[str] = field(default_factory=list)
    last_seen: datetime | None = None  # the latest trace of it (the journal's or a recording's last write)


class CallJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, dict[str, object]] = {}  # call id -> its open line (for compaction)
        self._recordings: dict[str, set[str]] = {}  # call id -> recordings noted
        self._fd = -1
        self._size = 0
        self._dirty = False
        self._lock = threading.Lock()  # sync() runs in a thread; appends run on the loop

    # -- recovery (before the first call) -------------------------------------------------------------

    def recover(self) -> list[OpenCall]:
        """The calls left open by the last run, oldest first; the journal is then started afresh."""
        found: dict[str, OpenCall] = {}
        mtime: datetime | None = None
        try:
            text = self.path.read_bytes().decode("utf-8", "replace")
            mtime = datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                op, call_id = entry["op"], str(entry["call"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line (the process died inside a write)
            if op == "open":
                found[call_id] = OpenCall(call_id, str(entry["tenant"]), str(entry["caller"]), str(entry["called"]),
                                          datetime.fromisoformat(str(entry["started"])))
            elif op == "rec" and call_id in found:
                found[call_id].recordings.append(str(entry["path"]))
            elif op == "close":
                found.pop(call_id, None)
        for call in found.values():
            seen = [mtime] if mtime is not None else []
            for path in call.recordings:
                with contextlib.suppress(OSError):  # a recording not begun on disk leaves no trace to read
                    seen.append(datetime.fromtimestamp(Path(path).stat().st_mtime, UTC))
            call.last_seen = max([call.started, *seen])
        self._start_fresh({})
        return sorted(found.values(), key=lambda c: c.started)

    # -- the running journal --------------------------------------------------------------------------

    def _start_fresh(self, still_open: dict[str, dict[str, object]]) -> None:
        tmp = self.path.with_name(self.path.name + ".new")
        lines = [_line(entry) for entry in still_open.values()]
        lines += [_line({"op": "rec", "call": call_id, "path": path})
                  for call_id, paths in self._recordings.items() if call_id in still_open for path in sorted(paths)]
        data = b"".join(lines)
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._size = len(data)
            self._open = dict(still_open)
            self._dirty = False

    def _append(self, entry: dict[str, object]) -> None:
        if self._fd < 0:
            return
        data = _line(entry)
        os.write(self._fd, data)
        self._size += len(data)
        self._dirty = True

    def opened(self, call_id: str, tenant: str, caller: str, called: str, started: datetime) -> None:
        entry: dict[str, object] = {"op": "open", "call": call_id, "tenant": tenant, "caller": caller,
                                    "called": called, "started": started.isoformat()}
        self._open[call_id] = entry
        self._append(entry)

    def recording(self, call_id: str, path: str) -> None:
        """The call records to `path` (noted once per path)."""
        entry = self._open.get(call_id)
        if entry is None:
            return
        noted = self._recordings.setdefault(call_id, set())
        if path not in noted:
            noted.add(path)
            self._append({"op": "rec", "call": call_id, "path": path})

    def closed(self, call_id: str) -> None:
        """The call's CDR is committed: the next start has nothing to do for it."""
        self._recordings.pop(call_id, None)
        if self._open.pop(call_id, None) is None:
            return
        self._append({"op": "close", "call": call_id})
        if self._size > COMPACT_BYTES:
            self._start_fresh(self._open)

    def sync(self) -> None:
        """fsync what was appended since the last call (from a thread; cheap when nothing was)."""
        with self._lock:
            if self._dirty and self._fd >= 0:
                self._dirty = False
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    def __len__(self) -> int:
        """Calls open right now."""
        return len(self._open)


def _line(entry: dict[str, object]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def repair_wav(path: Path) -> float | None:
    """Make a WAV written as it went (a canonical 44-byte PCM header, as `hatif.media.recording` writes) claim
    exactly the whole frames it holds, after a crash between a write and its header patch; returns its
    seconds, or None when it is not such a file."""
    try:
        with path.open("r+b") as f:
            head = f.read(44)
            if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE" or head[36:40] != b"data":
                return None
            channels, rate = struct.unpack_from("<HI", head, 22)
            block = struct.unpack_from("<H", head, 32)[0] or 2 * channels
            size = path.stat().st_size
            data = (size - 44) // block * block
            f.seek(4)
            f.write(struct.pack("<I", 36 + data))
            f.seek(40)
            f.write(struct.pack("<I", data))
            f.truncate(44 + data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        log.warning("recording not repaired", extra={"fields": {"path": str(path), "error": str(e)}})
        return None
    return data / (block * rate) if rate else 0.0
