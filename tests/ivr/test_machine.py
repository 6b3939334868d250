"""The sans-IO interpreter alone: actions out, results in, time passed in; no channel, no event loop."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hatif.ivr.machine import (
    Collect,
    EndCall,
    FlowMachine,
    HandOff,
    HttpFailure,
    HttpLookup,
    HttpResponse,
    Play,
    Say,
    SetLanguage,
)
from hatif.ivr.model import Flow, FlowSet, RouteTarget
from hatif.ivr.rules import Schedule

FLOW = Flow.model_validate({"start": "hours", "nodes": {
    "hours": {"type": "condition", "cases": [{"when": {"hours": "office"}, "next": "lang"}], "default": "night"},
    "night": {"type": "route", "to": "number:+982100000000", "on_fail": "bye"},
    "lang": {"type": "language", "options": {"1": "fa", "2": "en"}, "next": "ask"},
    "ask": {"type": "collect", "prompt": {"en": "Order?", "fa": "شماره سفارش؟"}, "variable": "order",
            "max_digits": 4, "next": "lookup"},
    "lookup": {"type": "http", "url": "http://127.0.0.1:9/orders/{order}", "extract": {"status": "status"},
               "say": {"en": "{status}", "fa": "وضعیت: {status}"}, "next": "sales", "on_error": "bye"},
    "sales": {"type": "route", "to": "queue:sales", "on_fail": "bye"},
    "bye": {"type": "route", "to": "hangup", "message": {"en": "Bye", "fa": "خدانگهدار"}},
}})
OFFICE = Schedule.model_validate({"open": {"sat-wed": "08:00-16:00"}, "holidays": ["03-21"]})
FLOWS = FlowSet({"main": FLOW}, {"office": OFFICE}, timezone="Asia/Tehran")


def tehran(month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, month, day, hour, minute, tzinfo=ZoneInfo("Asia/Tehran")).timestamp()


SATURDAY_MORNING = tehran(6, 6, 9)


def test_a_call_through_every_kind_of_action() -> None:
    now = SATURDAY_MORNING
    m = FlowMachine(FLOWS, "main", caller="+989120000000", language="en", call_id="c1")
    assert m.start(now) == Say("برای فارسی، 1 را فشار دهید.", "fa", interrupt=True)  # options in written order
    assert m.send(None, now) == Say("For English, press 2.", "en", interrupt=True)
    assert m.send(None, now) == Collect(1, 5.0, 5.0, "")
    assert m.send("1", now) == SetLanguage("fa")
    assert m.send(None, now) == Say("شماره سفارش؟", "fa", interrupt=True)
    assert m.send("7", now) == Collect(3, 3.0, 3.0, "#")
    assert m.send("12", now) == HttpLookup("GET", "http://127.0.0.1:9/orders/712", 3.0)
    assert m.send(HttpResponse(200, '{"status": "آماده"}'.encode()), now) == Say("وضعیت: آماده", "fa")
    assert m.variables == {"order": "712", "status": "آماده"}
    assert m.send(None, now) == HandOff(RouteTarget("queue", "sales"))
    assert m.send("no_answer", now) == Say("خدانگهدار", "fa")
    assert m.send(None, now) == EndCall("normal")
    assert m.finished
    with pytest.raises(RuntimeError, match="ended"):
        m.send(None, now)


@pytest.mark.parametrize(("when", "first"), [
    (tehran(6, 6, 8, 0), Say),          # Saturday 08:00 in Tehran (04:30 UTC)
    (tehran(6, 6, 7, 59), HandOff),       # a minute before opening
    (tehran(6, 10, 15, 59), Say),       # Wednesday
    (tehran(6, 10, 16, 0), HandOff),      # closing time is closed
    (tehran(6, 11, 10, 0), HandOff),      # Thursday
    (tehran(3, 21, 10, 0), HandOff),      # Nowruz (a Saturday in 2026): a yearly holiday
])
def test_hours_are_judged_at_the_time_passed_in(when: float, first: type) -> None:
    m = FlowMachine(FLOWS, "main", language="en")
    assert isinstance(m.start(when), first)


def test_after_hours_route_and_lookup_failure() -> None:
    m = FlowMachine(FLOWS, "main", language="fa")
    night = tehran(6, 6, 23)
    assert m.start(night) == HandOff(RouteTarget("number", "+982100000000"))
    assert m.send("busy", night) == Say("خدانگهدار", "fa")

    m = FlowMachine(FLOWS, "main", language="en", variables={})
    m.start(SATURDAY_MORNING)
    for result in ("2", None, None, "1234"):
        action = m.send(result, SATURDAY_MORNING)
    assert isinstance(action, HttpLookup)
    assert m.send(HttpFailure("no answer within 3 s"), SATURDAY_MORNING) == Say("Bye", "en")


def test_results_that_do_not_fit_the_action_are_refused() -> None:
    m = FlowMachine(FLOWS, "main")
    m.start(SATURDAY_MORNING)
    with pytest.raises(TypeError, match="not a result of Say"):
        m.send("12", SATURDAY_MORNING)
    m.send(None, SATURDAY_MORNING)
    m.send(None, SATURDAY_MORNING)
    with pytest.raises(TypeError, match="not a result of Collect"):
        m.send(None, SATURDAY_MORNING)
    with pytest.raises(RuntimeError, match="already started"):
        m.start(SATURDAY_MORNING)
    with pytest.raises(RuntimeError, match="start"):
        FlowMachine(FLOWS, "main").send(None, 0.0)


def test_a_recording_with_a_text_fallback() -> None:
    flows = FlowSet({"main": Flow.model_validate({"start": "a", "nodes": {
        "a": {"type": "say", "wav": {"ar": "/prompts/welcome-ar.wav"}, "text": {"fa": "خوش آمدید"}},
    }})})
    m = FlowMachine(flows, "main", language="ar")
    action = m.start(0.0)
    assert isinstance(action, Play)
    assert str(action.path) == "/prompts/welcome-ar.wav"
    assert action.fallback == Say("خوش آمدید", "fa")
