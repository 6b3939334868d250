"""Agent work states: the rules a request must pass (`hatif.acd.states`), the router's missed offers in a row, and
wrap-up made visible; with a fake clock, no I/O."""

from __future__ import annotations

import pytest

from hatif.acd import MISSED, AgentProfile, AgentState, AgentStateChanged, MissedInARow, QueueConfig, Router
from hatif.acd.model import Offer, QueueMembership
from hatif.acd.states import STEPS, StateRefused, StateRequest, StateRules, Step, WorkState, apply, check

S, W = AgentState, WorkState
RULES = StateRules(("break", "lunch"), require_reason=True)
MEMBER = ("sales", "support")


def ask(state: WorkState, reason: str | None = None, queues: tuple[str, ...] | None = None,
        by: str = "a1") -> StateRequest:
    return StateRequest("a1", state, by, reason, queues)


def refused(request: StateRequest, current: AgentState = S.AVAILABLE, rules: StateRules = RULES,
            member: tuple[str, ...] | None = MEMBER) -> StateRefused:
    with pytest.raises(StateRefused) as info:
        check(request, rules, member, current)
    return info.value


def test_the_table_answers_every_request_in_every_state() -> None:
    assert {(w, s) for w in WorkState for s in AgentState} == set(STEPS)


def test_a_reason_is_required_where_the_tenant_says_so() -> None:
    e = refused(ask(W.NOT_READY))
    assert e.code == "reason_required" and "one of: break, lunch" in e.message
    # Where it is not required the tenant's first reason is taken.
    assert check(ask(W.NOT_READY), StateRules(("break", "lunch")), MEMBER, S.AVAILABLE).reason == "break"


def test_an_unknown_reason_is_refused_naming_the_allowed_ones() -> None:
    e = refused(ask(W.NOT_READY, "nap"))
    assert e.code == "unknown_reason"
    assert e.message == "'nap' is not a not-ready reason of this tenant; one of: break, lunch"
    assert check(ask(W.NOT_READY, "nap"), StateRules(()), MEMBER, S.AVAILABLE).reason == "nap"  # no list: any


def test_a_reason_goes_only_with_not_ready() -> None:
    assert refused(ask(W.AVAILABLE, "lunch")).code == "reason_not_allowed"


def test_queues_must_be_the_agents_own_and_are_chosen_at_login() -> None:
    e = refused(ask(W.LOGGED_IN, queues=("billing",)), S.LOGGED_OUT)
    assert e.code == "unknown_queue" and "'billing'" in e.message and "sales, support" in e.message
    assert refused(ask(W.LOGGED_IN, queues=("sales", "sales")), S.LOGGED_OUT).code == "invalid_queues"
    assert refused(ask(W.AVAILABLE, queues=("sales",)), S.NOT_READY).code == "queues_not_allowed"
    assert check(ask(W.LOGGED_IN), RULES, MEMBER, S.LOGGED_OUT).queues == MEMBER  # all of its queues
    assert check(ask(W.LOGGED_IN, queues=("support",)), RULES, MEMBER, S.LOGGED_OUT).queues == ("support",)


def test_an_unknown_agent_and_states_that_refuse_the_request() -> None:
    assert refused(ask(W.AVAILABLE), member=None).code == "unknown_agent"
    e = refused(ask(W.AVAILABLE), S.LOGGED_OUT)
    assert e.code == "logged_out" and "log in first" in e.message
    e = refused(ask(W.LOGGED_OUT), S.ON_CALL)
    assert e.code == "on_call" and "once the call is over" in e.message


def test_a_supervisor_forces_any_state_with_the_same_rules() -> None:
    r = Router([QueueConfig("sales"), QueueConfig("support")])
    profile, members = AgentProfile("a1"), (QueueMembership("sales"), QueueMembership("support", 2))

    def force(state: WorkState, reason: str | None = None, queues: tuple[str, ...] | None = None) -> None:
        request = check(ask(state, reason, queues, by="sup1"), RULES, MEMBER, r.agent_state("a1"))
        assert request.forced
        apply(r, request, profile, members, 1.0)

    force(W.NOT_READY, "lunch")  # logged out: logs in not ready
    status = r.agent_status("a1")
    assert (status.state, status.reason, status.queues) == (S.NOT_READY, "lunch", ("sales", "support"))
    force(W.AVAILABLE)
    assert r.agent_state("a1") is S.AVAILABLE
    force(W.LOGGED_OUT)
    force(W.LOGGED_IN, queues=("support",))
    assert r.agent_status("a1").queues == ("support",)
    assert not ask(W.AVAILABLE).forced
    r.check_invariants()


def test_a_request_applied_twice_changes_nothing_the_second_time() -> None:
    r = Router([QueueConfig("sales")])
    profile, members = AgentProfile("a1"), (QueueMembership("sales"),)
    login = check(ask(W.LOGGED_IN), RULES, MEMBER[:1], S.LOGGED_OUT)
    assert apply(r, login, profile, members, 0.0)
    assert apply(r, login, profile, members, 0.5) == []
    pause = check(ask(W.NOT_READY, "lunch"), RULES, MEMBER[:1], S.AVAILABLE)
    assert apply(r, pause, profile, members, 1.0)
    assert apply(r, pause, profile, members, 2.0) == []  # the echo of the same request
    assert STEPS[W.AVAILABLE, S.AVAILABLE] is Step.NOTHING


def test_not_ready_during_a_call_starts_after_it_and_is_shown_pending() -> None:
    r = Router([QueueConfig("sales", wrapup=10.0)])
    profile, members = AgentProfile("a1"), (QueueMembership("sales"),)
    apply(r, check(ask(W.LOGGED_IN), RULES, ("sales",), S.LOGGED_OUT), profile, members, 0.0)
    r.enqueue("c1", "sales", 1.0)
    r.offer_answered("c1", "a1", 2.0)
    apply(r, check(ask(W.NOT_READY, "lunch"), RULES, ("sales",), S.ON_CALL), profile, members, 3.0)
    status = r.agent_status("a1")
    assert (status.state, status.pending_reason) == (S.ON_CALL, "lunch")
    r.call_ended("c1", 4.0)
    status = r.agent_status("a1")
    assert (status.state, status.wrapup_queue, status.wrapup_until) == (S.AFTER_CALL_WORK, "sales", 14.0)
    r.tick(14.0)
    assert (r.agent_state("a1"), r.agent_status("a1").reason) == (S.NOT_READY, "lunch")


def test_wrapup_is_shown_and_ended_by_an_available_request() -> None:
    r = Router([QueueConfig("sales", wrapup=30.0)])
    profile, members = AgentProfile("a1"), (QueueMembership("sales"),)
    apply(r, check(ask(W.LOGGED_IN), RULES, ("sales",), S.LOGGED_OUT), profile, members, 0.0)
    r.enqueue("c1", "sales", 1.0)
    r.offer_answered("c1", "a1", 2.0)
    r.call_ended("c1", 5.0)
    assert r.agent_status("a1").wrapup_until == 35.0
    done = check(ask(W.AVAILABLE), RULES, ("sales",), S.AFTER_CALL_WORK)
    out = apply(r, done, profile, members, 6.0)
    assert AgentStateChanged("a1", S.AFTER_CALL_WORK, S.AVAILABLE, "wrapup_done", 6.0) in out
    assert r.agent_status("a1").wrapup_until is None


def test_wrapup_until_the_agent_says_done_has_no_end() -> None:
    r = Router([QueueConfig("sales", wrapup=None)])
    r.agent_login(AgentProfile("a1"), ["sales"], 0.0)
    r.enqueue("c1", "sales", 1.0)
    r.offer_answered("c1", "a1", 2.0)
    r.call_ended("c1", 3.0)
    status = r.agent_status("a1")
    assert (status.state, status.wrapup_queue, status.wrapup_until) == (S.AFTER_CALL_WORK, "sales", None)


def test_missed_offers_in_a_row_make_the_agent_not_ready_at_the_limit() -> None:
    r = Router([QueueConfig("q", ring_timeout=10.0)], missed_limit=2)
    r.agent_login(AgentProfile("a1"), ["q"], 0.0)
    r.agent_login(AgentProfile("a2"), ["q"], 1.0)
    r.enqueue("c1", "q", 2.0)  # to a1, idle longest
    out = r.tick(12.0)
    # The first miss: a1 is available again, after the call went on to a2.
    assert AgentStateChanged("a1", S.RINGING, S.AVAILABLE, MISSED, 12.0) in out
    assert MissedInARow("a1", "c1", "q", 1, 12.0) in out
    assert [o.agents for o in out if isinstance(o, Offer)] == [("a2",)]
    assert r.agent_status("a1").missed_in_a_row == 1
    r.offer_answered("c1", "a2", 13.0)
    r.enqueue("c2", "q", 14.0)  # a1 is the only one free
    out = r.offer_timeout("c2", "a1", 20.0)  # the phone gave up: the second miss in a row
    assert out[0] == AgentStateChanged("a1", S.RINGING, S.NOT_READY, MISSED, 20.0)
    assert MissedInARow("a1", "c2", "q", 2, 20.0) in out
    assert r.agent_status("a1").missed_in_a_row == 0
    r.check_invariants()


def test_answering_starts_the_count_of_misses_again() -> None:
    r = Router([QueueConfig("q", ring_timeout=10.0, wrapup=0.0)], missed_limit=2)
    r.agent_login(AgentProfile("a1"), ["q"], 0.0)
    r.enqueue("c1", "q", 1.0)
    r.tick(11.0)  # missed once; the same call comes back to a1, the only agent
    assert r.agent_state("a1") is S.RINGING and r.agent_status("a1").missed_in_a_row == 1
    r.offer_answered("c1", "a1", 12.0)
    assert r.agent_status("a1").missed_in_a_row == 0
    r.call_ended("c1", 13.0)
    r.enqueue("c2", "q", 14.0)
    r.tick(24.0)
    assert r.agent_state("a1") is S.RINGING  # one miss since the answer: still under the limit
    r.check_invariants()


def test_the_limit_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="missed_limit must be at least 1"):
        Router([QueueConfig("q")], missed_limit=0)
