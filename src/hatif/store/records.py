"""The records Hatif keeps (call detail records, voicemail messages) as plain dataclasses.

`hatif.store.Store` persists them with SQLAlchemy (SQLite by default, PostgreSQL when configured); the rest of
Hatif builds and reads these dataclasses and never sees a database row. `RecordStore` is what callers may rely
on; it is a Protocol so that applications' tests can pass a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(slots=True)
class LegRecord:
    """One SIP leg of a call: who, which way, when it rang, was answered and ended, and why it ended."""

    leg_id: str
    direction: str  # "inbound" (toward Hatif) or "outbound" (placed by Hatif)
    party: str  # user name, extension, endpoint or outside number
    started: datetime
    answered: datetime | None = None
    ended: datetime | None = None
    cause: str = ""  # "normal", "busy", "no_answer", "cancelled", "failed", "unavailable", "transferred" ...


@dataclass(slots=True)
class CallRecord:
    """One call detail record (CDR): one per call, however many legs it had. Times are UTC, aware."""

    call_id: str
    tenant: str
    caller: str
    called: str
    started: datetime
    outcome: str  # "answered", "busy", "no_answer", "abandoned", "voicemail", "ivr", "failed", "rejected" ...
    answered: datetime | None = None
    ended: datetime | None = None
    duration: float = 0.0  # seconds from start to end
    talk_seconds: float = 0.0  # seconds bridged to a person
    recording: str | None = None  # path of the call's recording, if any
    recording_sha256: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    legs: list[LegRecord] = field(default_factory=list)
    id: int | None = None  # assigned by the store


@dataclass(slots=True)
class VoicemailMessage:
    """One message left in a mailbox (a user's or a queue's)."""

    tenant: str
    mailbox: str
    caller: str
    caller_name: str | None
    received: datetime  # UTC, aware
    seconds: float
    path: str  # the WAV file (mono, 8 kHz, 16 bit)
    sha256: str
    call_id: str = ""
    heard: bool = False
    id: int | None = None  # assigned by the store


@dataclass(slots=True)
class QueueLogEntry:
    """One queue event (entered, offered, answered, abandoned, completed, transferred, overflowed, callback ...):
    the source of the queue reports. `wait`/`talk` in seconds where the event has them."""

    tenant: str
    time: datetime  # UTC, aware
    queue: str
    call_id: str
    event: str
    agent: str | None = None
    wait: float | None = None
    talk: float | None = None
    position: int | None = None
    data: dict[str, str] = field(default_factory=dict)
    id: int | None = None  # assigned by the store


class RecordStore(Protocol):
    """The store's methods as the rest of Hatif uses them (synchronous: run them with `asyncio.to_thread`).

    Every method is scoped by tenant: a message or call of another tenant is never returned.
    """

    def add_call(self, record: CallRecord) -> int: ...
    def add_calls(self, records: list[CallRecord]) -> None: ...
    def calls(self, tenant: str, *, limit: int = 100, since: datetime | None = None) -> list[CallRecord]: ...
    def call(self, tenant: str, call_id: str) -> CallRecord | None: ...
    def add_voicemail(self, message: VoicemailMessage) -> int: ...
    def voicemails(self, tenant: str, mailbox: str, *, new_only: bool = False) -> list[VoicemailMessage]: ...
    def voicemail(self, tenant: str, message_id: int) -> VoicemailMessage | None: ...
    def mark_heard(self, tenant: str, message_id: int, heard: bool = True) -> bool: ...
    def delete_voicemail(self, tenant: str, message_id: int) -> bool: ...
    def add_queue_events(self, entries: list[QueueLogEntry]) -> None: ...
    def queue_events(self, tenant: str, *, queue: str | None = None, call_id: str | None = None,
                     since: datetime | None = None, limit: int = 10000) -> list[QueueLogEntry]: ...
