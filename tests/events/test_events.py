"""The one event model: names, streams, schema and the dict form every transport carries."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest

from hatif.events import (
    STREAMS,
    AgentStateChanged,
    CallEnded,
    ConfigChanged,
    Event,
    EventError,
    QueueAbandoned,
    event,
    event_types,
    from_dict,
)


def test_every_event_has_a_unique_name_in_its_stream_and_round_trips_through_json() -> None:
    types = event_types()
    assert len(types) >= 25
    for name, cls in types.items():
        assert name.startswith(STREAMS[cls.STREAM]), name
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert {"tenant", "at", "seq"} <= fields.keys()
        required = {n: "x" for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        event = cls(**{**required, "tenant": "acme", "at": 1.5})
        again = from_dict(json.loads(json.dumps(event.to_dict())))
        assert again == event and type(again) is cls


def test_events_are_frozen_and_numbered_by_copy() -> None:
    ended = CallEnded(tenant="acme", at=10.0, call_id="c1", cause="rtp_timeout", seconds=31.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ended.cause = "normal"  # type: ignore[misc]
    numbered = ended.numbered(7)
    assert (ended.seq, numbered.seq, numbered.cause) == (0, 7, "rtp_timeout")


def test_the_dict_form_names_the_event_and_its_schema() -> None:
    state = AgentStateChanged(tenant="acme", at=2.0, agent="1001", state="not_ready", reason="lunch")
    assert state.to_dict() == {"event": "agent.state", "schema": 1, "tenant": "acme", "at": 2.0, "seq": 0,
                               "agent": "1001", "state": "not_ready", "reason": "lunch", "by": None}


@pytest.mark.parametrize(("data", "message"), [
    ({"event": "call.exploded", "tenant": "a", "at": 1.0}, "unknown event 'call.exploded'"),
    ({"tenant": "a", "at": 1.0}, "unknown event None"),
    ({"event": "queue.abandoned", "schema": 9, "tenant": "a", "at": 1.0, "queue": "q", "call_id": "c"},
     "queue.abandoned: schema 9 is newer than this version's 1"),
    ({"event": "queue.abandoned", "tenant": "a", "at": 1.0, "queue": "q"}, "queue.abandoned: "),
])
def test_a_dict_that_is_not_a_known_event_is_refused_with_what_is_wrong(data: dict[str, object],
                                                                       message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(data)  # type: ignore[arg-type]


def test_unknown_fields_from_a_newer_minor_producer_are_ignored() -> None:
    data = QueueAbandoned(tenant="a", at=1.0, queue="sales", call_id="c", waited=12.5).to_dict()
    data["future_field"] = "ignored"
    assert from_dict(data) == QueueAbandoned(tenant="a", at=1.0, queue="sales", call_id="c", waited=12.5)


def test_a_name_outside_its_stream_or_taken_twice_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="must start with its stream"):
        @event
        class Misnamed(Event):
            NAME: ClassVar[str] = "queue.thing"
            STREAM: ClassVar[str] = "calls"
    with pytest.raises(TypeError, match="is taken by ConfigChanged"):
        @event
        class Twice(Event):
            NAME: ClassVar[str] = "config.changed"
            STREAM: ClassVar[str] = "config"
    assert event_types()["config.changed"] is ConfigChanged
