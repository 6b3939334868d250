"""The ACD router with a fake clock: agent states, the line, overflow, callbacks, and its invariants."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from hatif.acd import (
    AGENT_TRANSITIONS,
    MISSED,
    REJECTED,
    VOICEMAIL,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    AgentTrigger,
    CallAbandoned,
    CallAnswered,
    CallbackAnswered,
    CallbackFailed,
    CallbackMade,
    CallbackRequested,
    CallCompleted,
    CallEntered,
    CallExited,
    CallOffered,
    CallOverflowed,
    CallRejected,
    CallTransferred,
    CancelOffer,
    InvalidAgentTransition,
    InvalidCallState,
    LanguageMode,
    MoveToQueue,
    Offer,
    Overflow,
    OverflowRule,
    PlaceCallback,
    QueueConfig,
    QueueMembership,
    Reject,
    RejectReason,
    RequirementsWidened,
    Router,
    RouterOutput,
    RoutingError,
    SendToVoicemail,
    SkillRequirement,
    StickyAgent,
    Strategy,
    ToVoicemail,
    UnknownAgent,
    UnknownCall,
    UnknownQueue,
    WidenSkills,
)

S = AgentState


def agent(agent_id: str, languages: tuple[str, ...] = (), **skills: int) -> AgentProfile:
    return AgentProfile(agent_id, skills, frozenset(languages))


def only(out: list[RouterOutput], cls: type) -> list[RouterOutput]:
    return [o for o in out if isinstance(o, cls)]


def offered_to(out: list[RouterOutput]) -> list[tuple[str, tuple[str, ...]]]:
    return [(o.call_id, o.agents) for o in out if isinstance(o, Offer)]


def talk(r: Router, call_id: str, agent_id: str, now: float) -> None:
    """Answer the offer ringing `agent_id` with `call_id`."""
    assert r.agent_call(agent_id) == call_id
    r.offer_answered(call_id, agent_id, now)


# --- agent states --------------------------------------------------------------------------------

def test_transition_table_matches_the_agent_model() -> None:
    assert AGENT_TRANSITIONS[S.RINGING, AgentTrigger.RING_TIMEOUT] is S.NOT_READY
    assert AGENT_TRANSITIONS[S.ON_CALL, AgentTrigger.HANG_UP] is S.AFTER_CALL_WORK
    assert (S.ON_CALL, AgentTrigger.LOG_OUT) not in AGENT_TRANSITIONS
    # Only an AVAILABLE agent can be offered a call.
    assert [s for (s, t) in AGENT_TRANSITIONS if t is AgentTrigger.OFFER] == [S.AVAILABLE]
    # Every state but ON_CALL can be logged out of; LOGGED_OUT is left only by logging in.
    assert {s for (s, t) in AGENT_TRANSITIONS if t is AgentTrigger.LOG_OUT} == set(S) - {S.ON_CALL, S.LOGGED_OUT}
    assert {t for (s, t) in AGENT_TRANSITIONS if s is S.LOGGED_OUT} == {AgentTrigger.LOG_IN_READY,
                                                                         AgentTrigger.LOG_IN_NOT_READY}


def test_call_lifecycle_events_and_wrapup_timer() -> None:
    r = Router([QueueConfig("support", wrapup=30.0)])
    assert r.agent_login(agent("a1"), ["support"], 0.0) == [AgentStateChanged("a1", S.LOGGED_OUT, S.AVAILABLE,
                                                                             "login", 0.0)]
    assert r.enqueue("c1", "support", 10.0) == [
        CallEntered("c1", "support", 1, 0, 10.0),
        AgentStateChanged("a1", S.AVAILABLE, S.RINGING, "offer", 10.0),
        CallOffered("c1", "support", ("a1",), 10.0),
        Offer("c1", "support", ("a1",), 15.0),
    ]
    assert r.next_deadline() == 25.0  # ring timeout
    assert r.offer_answered("c1", "a1", 13.0) == [
        AgentStateChanged("a1", S.RINGING, S.ON_CALL, "answer", 13.0),
        CallAnswered("c1", "support", "a1", 3.0, 13.0),
    ]
    assert r.next_deadline() is None
    assert r.tick(40.0) == []
    assert r.call_ended("c1", 73.0) == [
        CallCompleted("c1", "support", "a1", 60.0, 73.0),
        AgentStateChanged("a1", S.ON_CALL, S.AFTER_CALL_WORK, "hang_up", 73.0),
    ]
    assert r.next_deadline() == 103.0
    assert r.tick(102.9) == []
    r.extend_wrapup("a1", 10.0, 100.0)
    assert r.next_deadline() == 113.0
    assert r.tick(112.0) == []
    assert r.tick(120.0) == [AgentStateChanged("a1", S.AFTER_CALL_WORK, S.AVAILABLE, "wrapup_done", 113.0)]
    r.check_invariants()


def test_wrapup_without_end_waits_for_the_agent() -> None:
    r = Router([QueueConfig("q", wrapup=None)])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("c1", "q", 1.0)
    talk(r, "c1", "a1", 2.0)
    r.call_ended("c1", 3.0)
    r.enqueue("c2", "q", 4.0)
    assert r.next_deadline() is None and r.agent_state("a1") is S.AFTER_CALL_WORK
    assert offered_to(r.wrapup_done("a1", 500.0)) == [("c2", ("a1",))]


def test_missed_ring_makes_agent_not_ready_and_offers_the_next() -> None:
    r = Router([QueueConfig("q", ring_timeout=15.0)])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.agent_login(agent("a2"), ["q"], 1.0)
    assert offered_to(r.enqueue("c1", "q", 5.0)) == [("c1", ("a1",))]
    out = r.tick(20.0)
    assert out[0] == CancelOffer("c1", ("a1",), "ring timeout")
    assert AgentStateChanged("a1", S.RINGING, S.NOT_READY, MISSED, 20.0) in out
    assert offered_to(out) == [("c1", ("a2",))]
    assert r.next_deadline() == 35.0
    assert r.agent_state("a1") is S.NOT_READY
    r.check_invariants()


def test_rejected_offer_goes_to_next_agent() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.agent_login(agent("a2"), ["q"], 1.0)
    r.enqueue("c1", "q", 5.0)
    out = r.offer_rejected("c1", "a1", 6.0)
    assert out[0] == AgentStateChanged("a1", S.RINGING, S.NOT_READY, REJECTED, 6.0)
    assert offered_to(out) == [("c1", ("a2",))]
    with pytest.raises(InvalidCallState, match="not offered to agent 'a1'"):
        r.offer_answered("c1", "a1", 7.0)
    # The phone itself gave up ringing (before the router's timer): missed, and on to the next agent.
    r.agent_login(agent("a3"), ["q"], 8.0)
    out = r.offer_timeout("c1", "a2", 9.0)
    assert out[0] == AgentStateChanged("a2", S.RINGING, S.NOT_READY, MISSED, 9.0)
    assert offered_to(out) == [("c1", ("a3",))]


def test_invalid_changes_are_refused_and_name_the_agent() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("a1"), ["q"], 0.0)
    with pytest.raises(InvalidAgentTransition, match="'a1' is available: cannot wrapup done"):
        r.wrapup_done("a1", 1.0)
    r.enqueue("c1", "q", 1.0)
    talk(r, "c1", "a1", 2.0)
    with pytest.raises(InvalidAgentTransition, match="'a1' is on_call: cannot log out"):
        r.agent_logout("a1", 3.0)
    with pytest.raises(RoutingError, match="already logged in"):
        r.agent_login(agent("a1"), ["q"], 3.0)
    with pytest.raises(UnknownQueue, match="'nowhere'"):
        r.enqueue("c2", "nowhere", 3.0)
    with pytest.raises(UnknownQueue):
        r.agent_login(agent("a2"), ["q", "nowhere"], 3.0)
    assert r.agent_state("a2") is S.LOGGED_OUT
    with pytest.raises(UnknownAgent, match="'ghost'"):
        r.agent_set_ready("ghost", 3.0)
    with pytest.raises(UnknownCall, match="'c9'"):
        r.abandon("c9", 3.0)
    with pytest.raises(InvalidCallState, match="already in queue 'q'"):
        r.enqueue("c1", "q", 3.0)
    with pytest.raises(InvalidCallState, match="cannot abandon call 'c1': it is connected"):
        r.abandon("c1", 3.0)
    r.check_invariants()  # refused requests changed nothing


def test_break_asked_during_a_call_starts_after_wrapup() -> None:
    r = Router([QueueConfig("q", wrapup=10.0)])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("c1", "q", 1.0)
    talk(r, "c1", "a1", 2.0)
    assert r.agent_set_not_ready("a1", "lunch", 3.0) == []
    r.call_ended("c1", 4.0)
    r.enqueue("c2", "q", 5.0)
    assert r.tick(14.0) == [AgentStateChanged("a1", S.AFTER_CALL_WORK, S.NOT_READY, "lunch", 14.0)]
    assert offered_to(r.agent_set_ready("a1", 60.0)) == [("c2", ("a1",))]


def test_agent_logging_out_while_ringing_passes_the_call_on() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("c1", "q", 1.0)
    r.agent_login(agent("a2"), ["q"], 2.0)
    out = r.agent_logout("a1", 3.0)
    assert out[0] == AgentStateChanged("a1", S.RINGING, S.LOGGED_OUT, "log_out", 3.0)
    assert CancelOffer("c1", ("a1",), "agent logged out") in out
    assert offered_to(out) == [("c1", ("a2",))]
    r.check_invariants()


# --- the line ------------------------------------------------------------------------------------

def test_vip_first_then_first_come_first_served() -> None:
    r = Router([QueueConfig("q")])
    assert only(r.enqueue("c1", "q", 1.0), CallEntered) == [CallEntered("c1", "q", 1, 0, 1.0)]
    assert only(r.enqueue("c2", "q", 2.0), CallEntered) == [CallEntered("c2", "q", 2, 0, 2.0)]
    assert only(r.enqueue("vip", "q", 3.0, priority=5), CallEntered) == [CallEntered("vip", "q", 1, 5, 3.0)]
    assert r.position("c1") == 2 and r.position("c2") == 3
    order = [offered_to(r.agent_login(agent("a1"), ["q"], 10.0))[0][0]]
    for now in (11.0, 12.0):
        talk(r, order[-1], "a1", now)
        order.append(offered_to(r.call_ended(order[-1], now + 0.5))[0][0])
    assert order == ["vip", "c1", "c2"]


def test_skill_levels_decide_who_fits() -> None:
    q = QueueConfig("billing", requirements=(SkillRequirement("billing", 5),))
    r = Router([q])
    r.agent_login(agent("novice", billing=3), ["billing"], 0.0)
    r.agent_login(agent("expert", billing=7), ["billing"], 5.0)
    assert offered_to(r.enqueue("c1", "billing", 10.0)) == [("c1", ("expert",))]
    assert offered_to(r.enqueue("c2", "billing", 11.0)) == []  # the novice is idle but does not fit
    assert r.queue_status("billing", 12.0).waiting == 2
    r.check_invariants()


def test_agent_of_two_queues_takes_the_longest_waiting_call() -> None:
    r = Router([QueueConfig("a"), QueueConfig("b")])
    r.enqueue("b1", "b", 1.0)
    r.enqueue("a1", "a", 2.0)
    assert offered_to(r.agent_login(agent("x"), ["a", "b"], 3.0)) == [("b1", ("x",))]


def test_lower_penalty_is_offered_first() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("backup"), [QueueMembership("q", penalty=2)], 0.0)
    r.agent_login(agent("main"), [QueueMembership("q", penalty=0)], 100.0)
    assert offered_to(r.enqueue("c1", "q", 101.0)) == [("c1", ("main",))]
    assert offered_to(r.enqueue("c2", "q", 102.0)) == [("c2", ("backup",))]


def test_abandon_reports_position_and_wait_and_frees_the_ringing_agent() -> None:
    r = Router([QueueConfig("q")])
    r.enqueue("c1", "q", 0.0)
    r.enqueue("c2", "q", 1.0)
    r.enqueue("c3", "q", 2.0)
    assert r.abandon("c2", 10.0) == [CallAbandoned("c2", "q", 2, 9.0, 10.0)]
    assert r.position("c3") == 2
    r.agent_login(agent("a1"), ["q"], 11.0)  # rings with c1
    out = r.abandon("c1", 12.0)
    assert out[:3] == [CancelOffer("c1", ("a1",), "abandoned"),
                       AgentStateChanged("a1", S.RINGING, S.AVAILABLE, "cancel_offer", 12.0),
                       CallAbandoned("c1", "q", 1, 12.0, 12.0)]
    assert offered_to(out) == [("c3", ("a1",))]
    r.check_invariants()


def test_max_length_turns_callers_away_but_callbacks_free_their_line() -> None:
    r = Router([QueueConfig("q", max_length=2)])
    r.enqueue("c1", "q", 0.0)
    r.enqueue("c2", "q", 1.0)
    assert r.enqueue("c3", "q", 2.0) == [CallRejected("c3", "q", RejectReason.QUEUE_FULL, 2.0),
                                         Reject("c3", "q", RejectReason.QUEUE_FULL)]
    assert r.request_callback("c1", 3.0) == [CallbackRequested("c1", "q", 1, 3.0, 3.0)]
    assert only(r.enqueue("c3", "q", 4.0), CallEntered) == [CallEntered("c3", "q", 3, 0, 4.0)]
    status = r.queue_status("q", 5.0)
    assert (status.waiting, status.callbacks, status.longest_wait) == (2, 1, 4.0)


def test_join_and_leave_when_empty() -> None:
    r = Router([QueueConfig("closed", join_when_empty=False),
                QueueConfig("leaving", leave_when_empty=True)])
    assert only(r.enqueue("c1", "closed", 0.0), Reject) == [Reject("c1", "closed", RejectReason.NO_AGENTS)]
    r.agent_login(agent("a1"), ["closed", "leaving"], 1.0, not_ready_reason="training")
    assert only(r.enqueue("c2", "closed", 2.0), CallEntered)  # a logged-in agent, even on a break, counts
    r.enqueue("c3", "leaving", 3.0)
    out = r.agent_logout("a1", 10.0)
    assert CallExited("c3", "leaving", RejectReason.NO_AGENTS, 7.0, 10.0) in out
    assert Reject("c3", "leaving", RejectReason.NO_AGENTS) in out
    assert r.position("c2") == 1  # "closed" does not empty itself
    r.check_invariants()


def test_max_wait_sends_the_caller_out() -> None:
    r = Router([QueueConfig("q", max_wait=300.0)])
    r.enqueue("c1", "q", 0.0)
    r.enqueue("c2", "q", 100.0)
    assert r.tick(300.0) == [CallExited("c1", "q", RejectReason.MAX_WAIT, 300.0, 300.0),
                             Reject("c1", "q", RejectReason.MAX_WAIT)]
    assert r.next_deadline() == 400.0


# --- overflow ------------------------------------------------------------------------------------

def test_overflow_widens_skills_after_a_while() -> None:
    q = QueueConfig("spanish", requirements=(SkillRequirement("spanish", 8), SkillRequirement("billing", 2)),
                    overflow=(OverflowRule(30.0, WidenSkills((SkillRequirement("spanish", 4),))),))
    r = Router([q])
    r.agent_login(agent("learner", spanish=5), ["spanish"], 0.0)
    assert offered_to(r.enqueue("c1", "spanish", 0.0)) == []
    assert r.next_deadline() == 30.0
    out = r.tick(30.0)
    assert out[0] == RequirementsWidened("c1", "spanish", 1, 30.0)
    assert offered_to(out) == [("c1", ("learner",))]
    r.check_invariants()


def test_overflow_moves_the_call_to_another_queue() -> None:
    first = QueueConfig("first", overflow=(OverflowRule(60.0, MoveToQueue("second")),))
    r = Router([first, QueueConfig("second")])
    r.agent_login(agent("a2"), ["second"], 0.0)
    r.agent_set_not_ready("a2", "meeting", 0.0)
    r.enqueue("c1", "first", 0.0)
    r.enqueue("c0", "second", 10.0)
    out = r.tick(60.0)
    assert out == [CallOverflowed("c1", "first", "second", 60.0, 60.0), Overflow("c1", "first", "second"),
                   CallEntered("c1", "second", 2, 0, 60.0)]
    out = r.agent_set_ready("a2", 70.0)
    assert offered_to(out) == [("c0", ("a2",))]  # the moved call queues behind those already there
    talk(r, "c0", "a2", 71.0)
    out = r.call_ended("c0", 80.0)
    talk(r, "c1", "a2", 81.0)
    assert r.queue_status("first", 81.0).waiting == 0


def test_overflow_to_voicemail() -> None:
    q = QueueConfig("q", overflow=(OverflowRule(5.0, WidenSkills()), OverflowRule(120.0, SendToVoicemail())))
    r = Router([q])
    r.enqueue("c1", "q", 0.0)
    assert r.tick(5.0) == [RequirementsWidened("c1", "q", 1, 5.0)]
    assert r.tick(200.0) == [CallOverflowed("c1", "q", VOICEMAIL, 120.0, 120.0), ToVoicemail("c1", "q")]
    with pytest.raises(UnknownCall):
        r.position("c1")


def test_queue_configuration_errors_name_the_queue() -> None:
    with pytest.raises(ValueError, match=r"queue 'q': overflow rule 0 .* never run"):
        QueueConfig("q", overflow=(OverflowRule(5.0, SendToVoicemail()), OverflowRule(9.0, WidenSkills())))
    with pytest.raises(ValueError, match="in order of `after`"):
        QueueConfig("q", overflow=(OverflowRule(9.0, WidenSkills()), OverflowRule(5.0, WidenSkills())))
    with pytest.raises(ValueError, match="unknown queue 'elsewhere'"):
        Router([QueueConfig("q", overflow=(OverflowRule(5.0, MoveToQueue("elsewhere")),))])
    with pytest.raises(ValueError, match="proficiency 11"):
        agent("a", sales=11)


# --- sticky agent and language -------------------------------------------------------------------

def test_sticky_agent_is_offered_first_while_remembered() -> None:
    r = Router([QueueConfig("q", sticky=StickyAgent(memory=3600.0))])
    r.agent_login(agent("a1"), ["q"], 0.0, not_ready_reason="late")
    r.agent_login(agent("a2"), ["q"], 0.0)
    r.enqueue("c1", "q", 10.0, customer_id="cust")
    talk(r, "c1", "a2", 11.0)
    r.call_ended("c1", 20.0)
    r.agent_set_ready("a1", 20.0)  # both available; a2 since 20.0, a1 since 20.0 but logged first
    assert offered_to(r.enqueue("c2", "q", 100.0, customer_id="cust")) == [("c2", ("a2",))]
    r.offer_rejected("c2", "a2", 101.0)  # goes to a1
    r.abandon("c2", 102.0)
    r.agent_set_ready("a2", 103.0)
    # Forgotten after an hour: longest idle (a1) again.
    assert offered_to(r.enqueue("c3", "q", 3700.0, customer_id="cust")) == [("c3", ("a1",))]


def test_sticky_wait_keeps_the_call_for_its_agent_then_releases_it() -> None:
    r = Router([QueueConfig("q", sticky=StickyAgent(memory=3600.0, wait=20.0))])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("x", "q", 1.0, customer_id="cust")
    talk(r, "x", "a1", 2.0)
    r.call_ended("x", 3.0)
    r.enqueue("busy", "q", 4.0)
    talk(r, "busy", "a1", 5.0)
    r.agent_login(agent("a2"), ["q"], 6.0)
    assert offered_to(r.enqueue("c1", "q", 10.0, customer_id="cust")) == []  # kept for a1
    r.check_invariants()
    assert offered_to(r.call_ended("busy", 15.0)) == [("c1", ("a1",))]
    talk(r, "c1", "a1", 16.0)
    assert offered_to(r.enqueue("c2", "q", 20.0, customer_id="cust")) == []
    assert r.next_deadline() == 40.0
    assert offered_to(r.tick(40.0)) == [("c2", ("a2",))]


def test_language_required() -> None:
    r = Router([QueueConfig("q", language=LanguageMode.REQUIRE)])
    r.agent_login(agent("en", ("en",)), ["q"], 0.0)
    r.agent_login(agent("ar", ("ar", "en")), ["q"], 1.0)
    assert offered_to(r.enqueue("c1", "q", 2.0, language="ar")) == [("c1", ("ar",))]
    assert offered_to(r.enqueue("c2", "q", 3.0, language="ar")) == []  # "en" is idle but speaks no Arabic
    assert offered_to(r.enqueue("c3", "q", 4.0, language="en")) == [("c3", ("en",))]
    talk(r, "c1", "ar", 5.0)
    assert offered_to(r.call_ended("c1", 6.0)) == [("c2", ("ar",))]


def test_language_preferred() -> None:
    r = Router([QueueConfig("q", language=LanguageMode.PREFER)])
    r.agent_login(agent("en", ("en",)), ["q"], 0.0)
    r.agent_login(agent("fa", ("fa",)), ["q"], 1.0)
    assert offered_to(r.enqueue("c1", "q", 2.0, language="fa")) == [("c1", ("fa",))]
    assert offered_to(r.enqueue("c2", "q", 3.0, language="fa")) == [("c2", ("en",))]


# --- callbacks and transfers ---------------------------------------------------------------------

def test_callback_keeps_its_place_and_is_placed_when_an_agent_frees() -> None:
    r = Router([QueueConfig("q", callback_timeout=45.0)])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("busy", "q", 0.0)
    talk(r, "busy", "a1", 0.0)
    r.enqueue("c1", "q", 1.0, customer_id="cust-1")
    r.enqueue("c2", "q", 2.0)
    assert r.request_callback("c1", 3.0) == [CallbackRequested("c1", "q", 1, 2.0, 3.0)]
    with pytest.raises(InvalidCallState, match="cannot abandon callback 'c1'"):
        r.abandon("c1", 4.0)
    out = r.call_ended("busy", 50.0)
    assert out[-3:] == [AgentStateChanged("a1", S.AVAILABLE, S.RINGING, "callback", 50.0),
                        CallbackMade("c1", "q", "a1", 49.0, 50.0),
                        PlaceCallback("c1", "q", "a1", "cust-1", 45.0)]
    assert r.callback_answered("c1", 60.0) == [AgentStateChanged("a1", S.RINGING, S.ON_CALL, "answer", 60.0),
                                               CallbackAnswered("c1", "q", "a1", 60.0)]
    assert offered_to(r.call_ended("c1", 90.0)) == [("c2", ("a1",))]
    r.check_invariants()


def test_callback_that_fails_or_times_out_frees_the_agent() -> None:
    r = Router([QueueConfig("q", callback_timeout=45.0)])
    r.enqueue("c1", "q", 0.0)
    r.enqueue("c2", "q", 1.0)
    r.enqueue("c3", "q", 2.0)
    r.request_callback("c1", 3.0)
    r.request_callback("c2", 4.0)
    assert only(r.agent_login(agent("a1"), ["q"], 10.0), PlaceCallback)
    out = r.callback_failed("c1", 20.0)
    assert out[0] == CallbackFailed("c1", "q", "a1", "no answer", 20.0)
    assert only(out, PlaceCallback) == [PlaceCallback("c2", "q", "a1", None, 45.0)]
    out = r.tick(65.0)
    assert out[0] == CallbackFailed("c2", "q", "a1", "timeout", 65.0)
    assert offered_to(out) == [("c3", ("a1",))]
    r.check_invariants()


def test_callback_requested_while_ringing_keeps_the_place() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("a1"), ["q"], 0.0)
    r.enqueue("c1", "q", 1.0)
    r.enqueue("c2", "q", 2.0)
    out = r.request_callback("c1", 3.0)
    assert CancelOffer("c1", ("a1",), "callback requested") in out
    assert only(out, PlaceCallback) == [PlaceCallback("c1", "q", "a1", None, 60.0)]


def test_transfer_to_another_queue() -> None:
    r = Router([QueueConfig("sales", wrapup=5.0), QueueConfig("billing")])
    r.agent_login(agent("s"), ["sales"], 0.0)
    r.agent_login(agent("b"), ["billing"], 0.0)
    r.enqueue("c1", "sales", 1.0)
    talk(r, "c1", "s", 2.0)
    out = r.transfer_to_queue("c1", "billing", 32.0)
    assert out[:2] == [CallTransferred("c1", "sales", "s", "billing", 30.0, 32.0),
                       CallEntered("c1", "billing", 1, 0, 32.0)]
    assert offered_to(out) == [("c1", ("b",))]
    assert r.agent_state("s") is S.AFTER_CALL_WORK
    assert only(r.offer_answered("c1", "b", 33.0), CallAnswered) == [CallAnswered("c1", "billing", "b", 1.0, 33.0)]
    out = r.call_ended("c1", 40.0, transferred_to="+15551234")
    assert out[0] == CallTransferred("c1", "billing", "b", "+15551234", 7.0, 40.0)


def test_check_invariants_finds_broken_bookkeeping() -> None:
    r = Router([QueueConfig("q")])
    r.agent_login(agent("a1"), ["q"], 0.0, not_ready_reason="late")
    r.enqueue("c1", "q", 1.0)
    r.check_invariants()
    r._agents["a1"].state = S.AVAILABLE  # break it on purpose: available, yet in no pool while c1 waits
    with pytest.raises(AssertionError, match="'a1' \\(available\\): pool membership"):
        r.check_invariants()


def test_transfer_into_a_sticky_queue_is_not_kept_for_the_transferring_agent() -> None:
    sticky = StickyAgent(memory=3600.0, wait=30.0)
    r = Router([QueueConfig("a", sticky=sticky), QueueConfig("b", sticky=sticky)])
    r.agent_login(agent("x"), ["a", "b"], 0.0)
    r.agent_login(agent("y"), ["b"], 0.5)
    r.enqueue("c1", "a", 1.0, customer_id="k")
    talk(r, "c1", "x", 2.0)
    assert offered_to(r.transfer_to_queue("c1", "b", 10.0)) == [("c1", ("y",))]


# --- invariants under a random walk ---------------------------------------------------------------

QUEUES = [
    QueueConfig("sales", strategy=Strategy.LONGEST_IDLE, requirements=(SkillRequirement("sales", 5),),
                overflow=(OverflowRule(20.0, WidenSkills((SkillRequirement("sales", 2),))),
                          OverflowRule(60.0, MoveToQueue("general"))),
                sticky=StickyAgent(memory=600.0, wait=10.0), wrapup=5.0),
    QueueConfig("support", strategy=Strategy.RING_ALL, language=LanguageMode.REQUIRE, max_wait=90.0,
                max_length=6, wrapup=None, leave_when_empty=True),
    QueueConfig("general", strategy=Strategy.ROUND_ROBIN, language=LanguageMode.PREFER,
                overflow=(OverflowRule(45.0, SendToVoicemail()),), wrapup=0.0),
    QueueConfig("vip", strategy=Strategy.RANDOM, join_when_empty=False, sticky=StickyAgent(600.0),
                callback_timeout=20.0),
    QueueConfig("tech", strategy=Strategy.BEST_SKILL_MATCH, requirements=(SkillRequirement("tech", 3),)),
    QueueConfig("fair", strategy=Strategy.FEWEST_CALLS),
]


class Ledger:
    """An independent account of the router's outputs: agent states, who holds which call, the counts."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.state: dict[str, AgentState] = {}
        self.holds: dict[str, str] = {}  # agent -> call ringing it or on it
        self.offers: dict[str, set[str]] = {}  # call -> agents ringing
        self.placing: dict[str, str] = {}  # callback call -> agent
        self.connected: dict[str, str] = {}  # call -> agent
        self.waiting: set[str] = set()  # callers on a line (callbacks excluded)
        self.counts: dict[str, Counter[str]] = {q.name: Counter() for q in QUEUES}
        self.seen: Counter[str] = Counter()  # outputs by type

    def take(self, out: list[RouterOutput]) -> None:
        rung: set[str] = set()
        for o in out:
            self.seen[type(o).__name__] += 1
            if isinstance(o, AgentStateChanged):
                assert self.state.get(o.agent, S.LOGGED_OUT) is o.old, o
                self.state[o.agent] = o.new
                if o.new is S.RINGING:
                    assert o.old is S.AVAILABLE
                    rung.add(o.agent)
                if o.old is S.RINGING and o.new is S.NOT_READY and o.agent in self.holds:
                    # declined, or the phone rang out: no CancelOffer, the shell knows
                    assert o.reason in (REJECTED, MISSED)
                    call = self.holds.pop(o.agent)
                    self.offers[call].discard(o.agent)
            elif isinstance(o, (Offer, PlaceCallback)):
                agents = o.agents if isinstance(o, Offer) else (o.agent,)
                for a in agents:
                    assert a in rung, f"{o} rings {a}, who did not turn from AVAILABLE to RINGING"
                    assert a not in self.holds, f"{a} already holds {self.holds[a]}"
                    self.holds[a] = o.call_id
                if isinstance(o, Offer):
                    self.offers[o.call_id] = set(agents)
                    self.seen["ring-all offer"] += len(agents) > 1
                else:
                    self.placing[o.call_id] = o.agent
            elif isinstance(o, CancelOffer):
                for a in o.agents:
                    assert self.holds.pop(a) == o.call_id
                    self.offers.get(o.call_id, set()).discard(a)
                self.placing.pop(o.call_id, None)
            elif isinstance(o, CallAnswered):
                self.offers[o.call_id].discard(o.agent)
                self.connected[o.call_id] = o.agent
                self.waiting.discard(o.call_id)
                self.counts[o.queue]["answered"] += 1
            elif isinstance(o, CallbackAnswered):
                del self.placing[o.call_id]
                self.connected[o.call_id] = o.agent
            elif isinstance(o, CallbackFailed):
                del self.placing[o.call_id]
            elif isinstance(o, (CallCompleted, CallTransferred)):
                assert self.holds.pop(o.agent) == o.call_id
                del self.connected[o.call_id]
            elif isinstance(o, CallEntered):
                self.waiting.add(o.call_id)
                self.counts[o.queue]["entered"] += 1
            elif isinstance(o, CallAbandoned):
                self.waiting.discard(o.call_id)
                self.counts[o.queue]["abandoned"] += 1
            elif isinstance(o, CallbackRequested):
                self.waiting.discard(o.call_id)
                self.counts[o.queue]["callbacks"] += 1
            elif isinstance(o, CallOverflowed):
                self.waiting.discard(o.call_id)
                self.counts[o.queue]["overflowed"] += 1
            elif isinstance(o, CallExited):
                self.waiting.discard(o.call_id)
                self.counts[o.queue]["exited"] += 1
        for call, agents in list(self.offers.items()):
            if not agents:
                del self.offers[call]
        for a, call in self.holds.items():
            assert self.state[a] in (S.RINGING, S.ON_CALL), (a, call, self.state[a])

    def check(self, now: float) -> None:
        self.router.check_invariants()
        for a, s in self.state.items():
            assert self.router.agent_state(a) is s
        for q in QUEUES:
            c = self.counts[q.name]
            waiting = self.router.queue_status(q.name, now).waiting
            assert c["entered"] == (c["answered"] + c["abandoned"] + c["callbacks"] + c["overflowed"]
                                    + c["exited"] + waiting), (q.name, c, waiting)


OPERATIONS, WEIGHTS = zip(*[("login", 2), ("logout", 1), ("ready", 4), ("break", 1), ("enqueue", 5), ("abandon", 1),
                            ("answer", 6), ("reject", 1), ("timeout", 1), ("end", 4), ("transfer", 1), ("callback", 1),
                            ("callback_result", 2), ("wrapup", 2), ("time", 2)], strict=True)


def random_walk(seed: int, steps: int) -> Ledger:
    rng = random.Random(seed)
    router = Router(QUEUES, rng=random.Random(seed))
    ledger = Ledger(router)
    names = [f"a{i}" for i in range(8)]
    now = 0.0
    calls = 0
    for _ in range(steps):
        op = rng.choices(OPERATIONS, WEIGHTS)[0]
        out: list[RouterOutput] = []
        logged_in = [a for a in names if ledger.state.get(a, S.LOGGED_OUT) is not S.LOGGED_OUT]
        try:
            if op == "login" and len(logged_in) < len(names):
                a = rng.choice([a for a in names if a not in logged_in])
                skills = {s: rng.randint(1, 10) for s in rng.sample(["sales", "tech", "billing"], rng.randint(0, 3))}
                profile = AgentProfile(a, skills, frozenset(rng.sample(["en", "ar", "fa"], rng.randint(1, 2))))
                member = [QueueMembership(q.name, rng.choice((0, 0, 0, 1))) for q in QUEUES if rng.random() < 0.6]
                out = router.agent_login(profile, member, now, None if rng.random() < 0.8 else "late")
            elif op == "logout" and logged_in:
                out = router.agent_logout(rng.choice(logged_in), now)
            elif op == "ready" and logged_in:
                out = router.agent_set_ready(rng.choice(logged_in), now)
            elif op == "break" and logged_in:
                out = router.agent_set_not_ready(rng.choice(logged_in), "break", now)
            elif op == "enqueue":
                calls += 1
                out = router.enqueue(f"c{calls}", rng.choice(QUEUES).name, now, priority=rng.choice([0, 0, 1]),
                                     language=rng.choice([None, "en", "ar", "fa"]),
                                     customer_id=rng.choice([None, "k1", "k2", "k3"]))
            elif op == "abandon" and ledger.waiting:
                out = router.abandon(rng.choice(sorted(ledger.waiting)), now)
            elif op in ("answer", "reject", "timeout") and ledger.offers:
                call = rng.choice(sorted(ledger.offers))
                a = rng.choice(sorted(ledger.offers[call]))
                respond = {"answer": router.offer_answered, "reject": router.offer_rejected,
                           "timeout": router.offer_timeout}[op]
                out = respond(call, a, now)
            elif op == "end" and ledger.connected:
                out = router.call_ended(rng.choice(sorted(ledger.connected)), now)
            elif op == "transfer" and ledger.connected:
                out = router.transfer_to_queue(rng.choice(sorted(ledger.connected)), rng.choice(QUEUES).name, now)
            elif op == "callback" and ledger.waiting:
                out = router.request_callback(rng.choice(sorted(ledger.waiting)), now)
            elif op == "callback_result" and ledger.placing:
                call = rng.choice(sorted(ledger.placing))
                out = router.callback_answered(call, now) if rng.random() < 0.7 else router.callback_failed(call, now)
            elif op == "wrapup" and logged_in:
                a = rng.choice(logged_in)
                if ledger.state[a] is S.AFTER_CALL_WORK:
                    out = router.wrapup_done(a, now)
            elif op == "time":
                now += rng.expovariate(1 / 8.0)
                out = router.tick(now)
        except InvalidAgentTransition as e:
            # Only logging out an agent on a call may be refused in this walk.
            assert e.trigger is AgentTrigger.LOG_OUT and e.state is S.ON_CALL, e
        ledger.take(out)
        ledger.check(now)
        deadline = router.next_deadline()
        assert deadline is None or deadline > now
    return ledger


def test_invariants_hold_under_random_walks() -> None:
    seen: Counter[str] = Counter()
    for seed in range(12):
        ledger = random_walk(seed, 400)
        totals = sum((c for c in ledger.counts.values()), Counter())
        assert totals["entered"] > 50 and totals["answered"] > 10
        seen += ledger.seen
    # The walks really exercise the router: every kind of event and action came out of it.
    kinds = {cls.__name__ for cls in (AgentStateChanged, CallEntered, CallRejected, CallOffered, CallAnswered,
                                      CallAbandoned, CallCompleted, CallTransferred, CallOverflowed, CallExited,
                                      RequirementsWidened, CallbackRequested, CallbackMade, CallbackAnswered,
                                      CallbackFailed, Offer, CancelOffer, PlaceCallback, Overflow, ToVoicemail,
                                      Reject)}
    assert kinds <= set(seen), kinds - set(seen)
    assert seen["ring-all offer"] > 0 and seen["Offer"] > 300


def test_random_walk_is_deterministic() -> None:
    assert random_walk(3, 200).counts == random_walk(3, 200).counts
