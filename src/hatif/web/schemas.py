"""What the HTTP API answers, as pydantic models (they also make the OpenAPI document).

Built from the store's dataclasses; file paths on the server never leave it (a voicemail's audio is reached by
its URL, a call's recording is only said to exist, with its SHA-256). Times are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel

from hatif.store.records import CallRecord, LegRecord, QueueLogEntry, VoicemailMessage

ROW_ID_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX, description="a record's number (1 to 2^63-1, a database integer)")]
"""A record's number in a path: larger numbers cannot name a row (a database integer is 64 bits) and are 422, not
an error deep in the store."""


class ErrorBody(BaseModel):
    code: str  # stable, for programs: "unauthorized", "not_found", "invalid_request", "store_unavailable" ...
    message: str  # a sentence, for people


class ErrorOut(BaseModel):
    error: ErrorBody


class LegOut(BaseModel):
    leg_id: str
    direction: str
    party: str
    started: datetime
    answered: datetime | None
    ended: datetime | None
    cause: str

    @classmethod
    def of(cls, leg: LegRecord) -> LegOut:
        return cls(leg_id=leg.leg_id, direction=leg.direction, party=leg.party, started=leg.started,
                   answered=leg.answered, ended=leg.ended, cause=leg.cause)


class CallOut(BaseModel):
    id: int | None
    call_id: str
    caller: str
    called: str
    started: datetime
    answered: datetime | None
    ended: datetime | None
    outcome: str
    duration: float
    talk_seconds: float
    has_recording: bool
    recording_sha256: str | None
    variables: dict[str, str]
    legs: list[LegOut]

    @classmethod
    def of(cls, call: CallRecord) -> CallOut:
        return cls(
            id=call.id, call_id=call.call_id, caller=call.caller, called=call.called, started=call.started,
            answered=call.answered, ended=call.ended, outcome=call.outcome, duration=call.duration,
            talk_seconds=call.talk_seconds, has_recording=call.recording is not None,
            recording_sha256=call.recording_sha256, variables=call.variables,
            legs=[LegOut.of(leg) for leg in call.legs],
        )


class VoicemailOut(BaseModel):
    id: int
    mailbox: str
    caller: str
    caller_name: str | None
    received: datetime
    seconds: float
    heard: bool
    sha256: str
    call_id: str
    url: str  # of the WAV: GET it with the same token

    @classmethod
    def of(cls, message: VoicemailMessage, url: str) -> VoicemailOut:
        if message.id is None:
            raise ValueError("a voicemail message read from the store has an id")
        return cls(id=message.id, mailbox=message.mailbox, caller=message.caller, caller_name=message.caller_name,
                   received=message.received, seconds=message.seconds, heard=message.heard, sha256=message.sha256,
                   call_id=message.call_id, url=url)


class HeardIn(BaseModel):
    heard: bool


class QueueEventOut(BaseModel):
    id: int | None
    time: datetime
    queue: str
    call_id: str
    event: str
    agent: str | None
    wait: float | None
    talk: float | None
    position: int | None
    data: dict[str, str]

    @classmethod
    def of(cls, entry: QueueLogEntry) -> QueueEventOut:
        return cls(id=entry.id, time=entry.time, queue=entry.queue, call_id=entry.call_id, event=entry.event,
                   agent=entry.agent, wait=entry.wait, talk=entry.talk, position=entry.position, data=entry.data)
