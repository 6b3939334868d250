"""Persist before acknowledging: the batch writer's futures, the spill file and the journal of open calls."""

from __future__ import annotations

import asyncio
import struct
import types
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hatif.media.recording import wav_header
from hatif.services import Services
from hatif.store.batch import BatchWriter
from hatif.store.db import Store
from hatif.store.journal import CallJournal, repair_wav
from hatif.store.records import CallRecord, LegRecord, QueueLogEntry
from hatif.store.spill import SpillFile

T0 = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def cdr(call_id: str) -> CallRecord:
    return CallRecord(call_id=call_id, tenant="default", caller="1001", called="600", started=T0,
                      outcome="answered", answered=T0, ended=T0 + timedelta(seconds=5), duration=5.0,
                      variables={"queue": "sales"},
                      legs=[LegRecord("a1", "inbound", "1001", T0, T0, T0 + timedelta(seconds=5), "normal")])


def test_add_is_done_only_once_the_batch_is_written() -> None:
    written: list[list[str]] = []

    async def run() -> None:
        w: BatchWriter[str] = BatchWriter(written.append, "things", linger=0.05)
        first = w.add("a")
        second = w.add("b")
        assert first is second and not first.done() and w.flushed() is first
        await asyncio.wait_for(first, 2)
        assert written == [["a", "b"]]
        assert w.flushed().done()  # nothing waiting: done at once
        third = w.add("c")
        assert w.flushed() is third and not third.done()
        await asyncio.wait_for(w.flushed(), 2)
        assert written == [["a", "b"], ["c"]]

    asyncio.run(run())


def test_a_refused_batch_is_spilled_and_still_acknowledged(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "unstored.jsonl")

    def down(batch: list[CallRecord]) -> None:
        raise OSError("database down")

    async def run() -> None:
        w = BatchWriter(down, "call records", linger=0.0, spill=spill.append)
        await asyncio.wait_for(w.add(cdr("c1")), 2)
        assert (w.spilled, w.failed) == (1, 0)
        lost = BatchWriter(down, "call records", linger=0.0)
        with pytest.raises(OSError, match="database down"):
            await asyncio.wait_for(lost.add(cdr("c2")), 2)
        assert lost.failed == 1

    asyncio.run(run())
    calls, queue = spill.read()
    assert calls == [cdr("c1")] and queue == []


def test_spilled_records_are_stored_at_the_next_start(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "unstored.jsonl")
    entry = QueueLogEntry("default", T0, "sales", "c1", "completed", agent="2001", talk=4.5)
    spill.append([cdr("c1"), cdr("c2")])
    spill.append([entry])
    with Store(path=tmp_path / "hatif.db") as store:
        store.migrate()
        store.add_call(cdr("c2"))  # stored just before the database went away: not written twice
        Services._replay(types.SimpleNamespace(store=store), spill)  # type: ignore[arg-type]
        assert sorted(c.call_id for c in store.calls("default")) == ["c1", "c2"]
        got = store.call("default", "c1")
        assert got is not None and got.legs[0].party == "1001" and got.variables == {"queue": "sales"}
        assert [(e.event, e.agent, e.talk) for e in store.queue_events("default")] == [("completed", "2001", 4.5)]
    assert not spill.path.exists()


def test_the_journal_returns_what_was_opened_and_never_closed(tmp_path: Path) -> None:
    path = tmp_path / "open-calls.journal"
    rec = tmp_path / "rec.wav"
    rec.write_bytes(wav_header(0))
    j = CallJournal(path)
    assert j.recover() == []
    j.opened("up", "default", "1001", "600", T0)
    j.opened("done", "default", "1002", "601", T0)
    j.recording("up", str(rec))
    j.recording("up", str(rec))  # noted once
    j.closed("done")
    j.close()
    with path.open("ab") as f:
        f.write(b'{"op":"open","call":"torn"')  # the process died inside a write
    again = CallJournal(path)
    (left,) = again.recover()
    assert (left.call_id, left.caller, left.started, left.recordings) == ("up", "1001", T0, [str(rec)])
    assert left.last_seen is not None and left.last_seen >= T0
    assert again.recover() == []  # a fresh journal after recovery
    again.close()


def test_compaction_keeps_only_open_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hatif.store.journal.COMPACT_BYTES", 2000)
    j = CallJournal(tmp_path / "j")
    j.recover()
    j.opened("keep", "default", "1001", "600", T0)
    j.recording("keep", "/r/keep.wav")
    for i in range(40):
        j.opened(f"c{i}", "default", "1001", "600", T0)
        j.closed(f"c{i}")
    assert (tmp_path / "j").stat().st_size < 2000 and len(j) == 1
    j.close()
    (left,) = CallJournal(tmp_path / "j").recover()
    assert left.call_id == "keep" and left.recordings == ["/r/keep.wav"]


def test_repair_wav_makes_the_header_match_the_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    audio = struct.pack("<4000h", *range(4000))  # 2,000 stereo frames (4 bytes each)
    path.write_bytes(wav_header(1600) + audio + b"\x01\x02\x03")  # header behind, a torn frame at the end
    assert repair_wav(path) == pytest.approx(2000 / 8000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 2000)
    assert path.stat().st_size == 44 + len(audio)
    bad = tmp_path / "not.wav"
    bad.write_bytes(b"hello")
    assert repair_wav(bad) is None
