"""Fakes for the voicemail tests: a scripted caller on a `Channel`, an in-memory store, a recording notifier.

`FakeChannel` behaves as `hatif.calls.api.Channel` promises: after the caller hangs up every method raises
`Hangup` (and the attempt is noted in `after_hangup`), `record` writes a real mono 8 kHz 16-bit WAV of the
length the script says and returns its SHA-256, a digit pressed during an interruptible prompt is returned
by it and not kept for `collect`.
"""

from __future__ import annotations

import hashlib
import wave
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from hatif.calls.api import Hangup, Outcome, Recorded, Samples
from hatif.store.records import CallRecord, QueueLogEntry, VoicemailMessage
from hatif.voicemail.model import Mailbox

RATE = 8000


def write_wav(path: Path, seconds: float, freq: float = 440.0) -> None:
    """A tone of `seconds` as mono 8 kHz 16-bit PCM."""
    n = round(seconds * RATE)
    samples = (8000 * np.sin(2 * np.pi * freq * np.arange(n) / RATE)).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Speech:
    """What the caller does once the beep sounds: talks for `talk` seconds, presses `#` at `pound_at` or hangs up
    at `hangup_at` (seconds after the beep); whichever comes first, or `max_seconds`, ends the recording."""

    talk: float = 3.0
    pound_at: float | None = None
    hangup_at: float | None = None


class FakeChannel:
    """A scripted caller. `keys` feeds `collect` (one entry per call, "" for a time-out); when it runs out the
    caller hangs up. `barge` maps a piece of a prompt's text (or a played file's name) to the key pressed while
    it plays, once, for interruptible prompts. `hangup_during` hangs up when a prompt containing it is said."""

    def __init__(self, *, caller_number: str = "1002", caller_name: str | None = "Alice", language: str = "en",
                 call_id: str = "call-1", tenant: str = "default", keys: Iterable[str] = (),
                 barge: dict[str, str] | None = None, speech: Speech | None = None,
                 hangup_during: str | None = None) -> None:
        self.call_id = call_id
        self.tenant = tenant
        self.caller_number = caller_number
        self.caller_name = caller_name
        self.called_number = "*97"
        self.language = language
        self.variables: dict[str, str] = {}
        self.keys: deque[str] = deque(keys)
        self.barge = dict(barge or {})
        self.speech = speech or Speech()
        self.hangup_during = hangup_during
        self.events: list[tuple[object, ...]] = []
        self.after_hangup: list[str] = []
        self._ended = False

    # -- what the tests read -----------------------------------------------------------------------------------

    @property
    def said(self) -> list[str]:
        return [str(e[1]) for e in self.events if e[0] == "say"]

    @property
    def played(self) -> list[Path]:
        return [Path(str(e[1])) for e in self.events if e[0] == "play"]

    def kinds(self) -> list[str]:
        return [str(e[0]) for e in self.events]

    # -- the Channel protocol ----------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    def _check(self, what: str) -> None:
        if self._ended:
            self.after_hangup.append(what)
            raise Hangup(what)

    def _hang_up(self) -> None:
        self._ended = True
        self.events.append(("caller hung up",))
        raise Hangup("caller hung up")

    def _barge(self, label: str, interrupt: bool) -> str | None:
        if not interrupt:
            return None
        for piece, key in list(self.barge.items()):
            if piece in label:
                del self.barge[piece]
                return key
        return None

    async def answer(self) -> None:
        self._check("answer")
        self.events.append(("answer",))

    async def play(self, audio: Samples | Path, *, interrupt: bool = False) -> str | None:
        self._check("play")
        if not isinstance(audio, Path):
            self.events.append(("play", "<samples>"))
            return None
        if not audio.is_file():
            raise FileNotFoundError(f"{audio}: no such file")
        with wave.open(str(audio), "rb"):
            pass
        self.events.append(("play", audio))
        return self._barge(audio.name, interrupt)

    async def say(self, text: str, *, language: str | None = None, interrupt: bool = False) -> str | None:
        self._check("say")
        self.events.append(("say", text, language or self.language, interrupt))
        if self.hangup_during is not None and self.hangup_during in text:
            self._hang_up()
        return self._barge(text, interrupt)

    async def collect(self, *, max_digits: int = 1, timeout: float = 5.0, inter_digit: float = 3.0,
                      terminators: str = "#") -> str:
        self._check("collect")
        self.events.append(("collect", max_digits, terminators))
        if not self.keys:
            self._hang_up()
        entry = self.keys.popleft()
        digits = ""
        for key in entry:
            if key in terminators:
                break
            digits += key
            if len(digits) == max_digits:
                break
        return digits

    async def record(self, path: Path, *, max_seconds: float = 120.0, terminators: str = "#", beep: bool = True,
                     silence_seconds: float | None = None) -> Recorded:
        self._check("record")
        self.events.append(("record", path, max_seconds, terminators, beep))
        s = self.speech
        ends: list[tuple[float, str]] = [(max_seconds, "max_length")]
        if silence_seconds is not None:
            ends.append((s.talk + silence_seconds, "silence"))
        if s.pound_at is not None and "#" in terminators:
            ends.append((s.pound_at, "terminator"))
        if s.hangup_at is not None:
            ends.append((s.hangup_at, "hangup"))
        seconds, ended_by = min(ends)
        write_wav(path, seconds)
        if ended_by == "hangup":
            self._ended = True
            self.events.append(("caller hung up",))
        return Recorded(path, seconds, sha256_of(path), ended_by)  # type: ignore[arg-type]

    async def hangup(self, cause: str = "normal") -> None:
        self._check("hangup")
        self.events.append(("hangup", cause))
        self._ended = True

    async def connect(self, target: str, *, timeout: float | None = None, caller_id: str | None = None,
                      music: bool = False) -> Outcome:
        raise AssertionError("voicemail does not connect calls")


@dataclass
class FakeStore:
    """The voicemail half of `RecordStore`, in memory; returns copies, as a database would. `journal` (shared with
    a channel's events, say) gets an entry for each write, so tests can check what happened first."""

    journal: list[tuple[object, ...]] = field(default_factory=list)
    fail_add: Exception | None = None
    rows: dict[int, VoicemailMessage] = field(default_factory=dict)
    next_id: int = 1

    def add_voicemail(self, message: VoicemailMessage) -> int:
        if self.fail_add is not None:
            raise self.fail_add
        message_id = self.next_id
        self.next_id += 1
        self.rows[message_id] = replace(message, id=message_id)
        self.journal.append(("store", message_id))
        return message_id

    def voicemails(self, tenant: str, mailbox: str, *, new_only: bool = False) -> list[VoicemailMessage]:
        return [replace(m) for m in self.rows.values()
                if m.tenant == tenant and m.mailbox == mailbox and not (new_only and m.heard)]

    def voicemail(self, tenant: str, message_id: int) -> VoicemailMessage | None:
        m = self.rows.get(message_id)
        return replace(m) if m is not None and m.tenant == tenant else None

    def mark_heard(self, tenant: str, message_id: int, heard: bool = True) -> bool:
        m = self.rows.get(message_id)
        if m is None or m.tenant != tenant:
            return False
        m.heard = heard
        self.journal.append(("heard", message_id, heard))
        return True

    def delete_voicemail(self, tenant: str, message_id: int) -> bool:
        m = self.rows.get(message_id)
        if m is None or m.tenant != tenant:
            return False
        del self.rows[message_id]
        self.journal.append(("delete", message_id))
        return True


    # the rest of RecordStore, which voicemail must not touch
    def add_call(self, record: CallRecord) -> int:
        raise AssertionError("voicemail stores no calls")

    def calls(self, tenant: str, *, limit: int = 100, since: datetime | None = None) -> list[CallRecord]:
        raise AssertionError("voicemail reads no calls")

    def call(self, tenant: str, call_id: str) -> CallRecord | None:
        raise AssertionError("voicemail reads no calls")

    def add_queue_events(self, entries: list[QueueLogEntry]) -> None:
        raise AssertionError("voicemail stores no queue events")

    def queue_events(self, tenant: str, *, queue: str | None = None, call_id: str | None = None,
                     since: datetime | None = None, limit: int = 10000) -> list[QueueLogEntry]:
        raise AssertionError("voicemail reads no queue events")


@dataclass
class FakeNotifier:
    calls: list[tuple[str, str, int, int]] = field(default_factory=list)

    async def notify(self, tenant: str, mailbox: Mailbox, new: int, old: int) -> None:
        self.calls.append((tenant, mailbox.name, new, old))
