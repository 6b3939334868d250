"""The floor's own reports as typed events: call-control kinds and ACD router events, with wall-clock times."""

from __future__ import annotations

from hatif import events as ev
from hatif.acd import model as acd
from hatif.calls.api import CallEvent
from hatif.translate import call_event, router_events

WALL0 = 1_780_000_000.0


def test_call_reports_become_call_events_and_internal_ones_none() -> None:
    started = call_event(CallEvent("call.started", "c1", 5.0, "acme", "l1",
                                   {"caller": "1001", "called": "600", "target": "originate"}), WALL0)
    assert started == ev.CallOffered(tenant="acme", at=WALL0 + 5.0, call_id="c1", leg_id="l1", caller="1001",
                                     called="600", direction="outbound")
    ended = call_event(CallEvent("call.ended", "c1", 9.5, "acme", None, {"outcome": "answered", "duration": 4.5}),
                       WALL0)
    assert ended == ev.CallEnded(tenant="acme", at=WALL0 + 9.5, call_id="c1", cause="answered", seconds=4.5)
    held = call_event(CallEvent("leg.held", "c1", 6.0, "acme", "l2", {"by": "hatif"}), WALL0)
    assert isinstance(held, ev.LegHeld) and held.by == "hatif"
    assert call_event(CallEvent("dtmf", "c1", 6.0, "acme", "l1", {"digit": "5"}), WALL0) is None
    assert call_event(CallEvent("media.latched", "c1", 6.0, "acme", "l1", {}), WALL0) is None


def test_router_events_become_queue_and_agent_events() -> None:
    assert router_events("acme", acd.CallEntered("c1", "sales", 3, 0, 2.0), WALL0) == [
        ev.QueueEntered(tenant="acme", at=WALL0 + 2.0, queue="sales", call_id="c1", position=3)]
    offered = router_events("acme", acd.CallOffered("c1", "sales", ("a1", "a2"), 3.0), WALL0)
    assert [(type(e), e.agent) for e in offered] == [(ev.QueueOffered, "a1"), (ev.QueueOffered, "a2")]  # type: ignore[attr-defined]
    answered = router_events("acme", acd.CallAnswered("c1", "sales", "a1", 12.3456, 4.0), WALL0)
    assert answered == [ev.QueueAnswered(tenant="acme", at=WALL0 + 4.0, queue="sales", call_id="c1", agent="a1",
                                         waited=12.346)]
    login = router_events("acme", acd.AgentStateChanged("a1", acd.AgentState.LOGGED_OUT,
                                                         acd.AgentState.AVAILABLE, "", 1.0), WALL0)
    assert [type(e) for e in login] == [ev.AgentLoggedIn, ev.AgentStateChanged]
    pause = router_events("acme", acd.AgentStateChanged("a1", acd.AgentState.AVAILABLE,
                                                         acd.AgentState.NOT_READY, "lunch", 1.0), WALL0)
    assert pause == [ev.AgentStateChanged(tenant="acme", at=WALL0 + 1.0, agent="a1", state="not_ready",
                                          reason="lunch")]
    assert router_events("acme", acd.ToVoicemail("c1", "sales"), WALL0) == []


def test_agent_changes_carry_who_forced_them_wrapup_and_queues() -> None:
    S = acd.AgentState
    forced = router_events("acme", acd.AgentStateChanged("a1", S.AVAILABLE, S.NOT_READY, "lunch", 1.0), WALL0,
                           by="sup1")
    assert forced == [ev.AgentStateChanged(tenant="acme", at=WALL0 + 1.0, agent="a1", state="not_ready",
                                           reason="lunch", by="sup1")]
    login = router_events("acme", acd.AgentStateChanged("a1", S.LOGGED_OUT, S.AVAILABLE, "login", 1.0), WALL0,
                          queues=("sales",))
    assert login[0] == ev.AgentLoggedIn(tenant="acme", at=WALL0 + 1.0, agent="a1", queues=("sales",))
    wrap = router_events("acme", acd.AgentStateChanged("a1", S.ON_CALL, S.AFTER_CALL_WORK, "hang_up", 2.0), WALL0,
                         wrapup=("sales", 5.0))
    assert wrap[-1] == ev.WrapUpStarted(tenant="acme", at=WALL0 + 2.0, agent="a1", queue="sales", seconds=5.0)
    done = router_events("acme", acd.AgentStateChanged("a1", S.AFTER_CALL_WORK, S.AVAILABLE, "wrapup_done", 7.0),
                         WALL0)
    assert [type(e) for e in done] == [ev.WrapUpEnded, ev.AgentStateChanged]
    missed = router_events("acme", acd.MissedInARow("a1", "c1", "sales", 2, 3.0), WALL0)
    assert missed == [ev.OfferMissed(tenant="acme", at=WALL0 + 3.0, agent="a1", queue="sales", call_id="c1",
                                     in_a_row=2)]
