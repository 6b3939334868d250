"""The leg and call state machines of `hatif.calls.state`: no socket, no loop, no clock.

Each test feeds events and times in and checks the commands that come out, as `tests/sip/test_transaction.py`
does for the transactions. The paths are those the interop tests drive over SIPp, plus the races a real
network produces only now and then: a CANCEL crossing the 200, re-INVITEs crossing (glare).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.calls.state import (
    CALL_ACCEPTS,
    LEG_TRANSITIONS,
    Answered,
    BridgeLegs,
    CallMachine,
    CallOver,
    CallState,
    CancelTimer,
    Changed,
    Emit,
    Ended,
    HangupLeg,
    JoinRoom,
    LeaveRoom,
    LegMachine,
    LegPhase,
    PartyHold,
    PlayMusic,
    PlayRingback,
    Progress,
    Refused,
    ReinviteDone,
    Retransmit,
    SendRequest,
    SendResponse,
    StartTimer,
    StopPlaying,
    Unbridge,
    cause_of,
)


def of(cmds: Sequence[object], kind: type) -> list[object]:
    return [c for c in cmds if isinstance(c, kind)]


def sent(cmds: Sequence[object]) -> list[str]:
    """The requests and responses in `cmds`, as "INVITE" or "180"."""
    out: list[str] = []
    for c in cmds:
        if isinstance(c, SendRequest):
            out.append(c.method if c.direction is None else f"{c.method}:{c.direction}")
        elif isinstance(c, SendResponse):
            out.append(str(c.status))
    return out


def inbound_answered(now: float = 0.0) -> LegMachine:
    leg = LegMachine("inbound", now)
    leg.answer(now)
    leg.ack(now)
    return leg


def outbound_answered(now: float = 0.0) -> LegMachine:
    leg = LegMachine("outbound", now)
    leg.invite(30.0, now)
    leg.provisional(180, now)
    leg.accepted(now)
    return leg


# -- inbound legs ----------------------------------------------------------------------------------------


def test_inbound_rings_then_answers_and_retransmits_the_200_until_the_ack() -> None:
    leg = LegMachine("inbound", 0.0, t1=0.5, t2=4.0)
    out = leg.ring(0.1)
    assert sent(out) == ["180"] and leg.state is LegPhase.RINGING
    assert of(out, Emit) == [Emit("leg.ringing", {"early": False})]
    out = leg.answer(1.0)
    assert sent(out) == ["200"] and leg.state is LegPhase.ANSWERED
    assert StartTimer("2xx", 0.5) in out and Answered() in out
    assert leg.answered_at == 1.0 and not leg.acked
    assert leg.timer_fired("2xx", 1.5) == [Retransmit(), StartTimer("2xx", 1.0)]
    assert leg.timer_fired("2xx", 2.5) == [Retransmit(), StartTimer("2xx", 2.0)]
    assert leg.timer_fired("2xx", 4.5) == [Retransmit(), StartTimer("2xx", 4.0)]
    assert leg.timer_fired("2xx", 8.5) == [Retransmit(), StartTimer("2xx", 4.0)]  # capped at T2
    assert leg.ack(9.0) == [CancelTimer("2xx")]
    assert leg.acked and leg.timers == frozenset()


def test_inbound_without_ack_within_64_t1_is_hung_up() -> None:
    leg = LegMachine("inbound", 0.0, t1=0.1, t2=0.4)
    leg.answer(0.0)
    out = leg.timer_fired("2xx", 6.4)
    assert sent(out) == ["BYE"] and Ended("no_ack") in out
    assert leg.state is LegPhase.ENDING and leg.cause == "no_ack"
    leg.bye_done(6.5)
    assert leg.state is LegPhase.ENDED


def test_inbound_early_media_is_a_183() -> None:
    leg = LegMachine("inbound", 0.0)
    out = leg.ring(0.0, early_media=True)
    assert out[0] == SendResponse(183, "Session Progress", early_media=True)
    assert leg.state is LegPhase.EARLY
    assert leg.ring(0.1) == []  # once early, a ring is absorbed (as before: no 180 after a 183)
    assert sent(leg.answer(0.2)) == ["200"]


def test_inbound_ring_twice_sends_a_second_180_but_never_after_the_answer() -> None:
    leg = LegMachine("inbound", 0.0)
    assert sent(leg.ring(0.0)) == ["180"]
    assert sent(leg.ring(0.1)) == ["180"]
    leg.answer(0.2)
    assert leg.ring(0.3) == []


def test_inbound_reject_names_the_cause() -> None:
    leg = LegMachine("inbound", 0.0)
    out = leg.reject(486, 1.0, "Busy Here")
    assert out[0] == SendResponse(486, "Busy Here")
    assert Ended("busy") in out and leg.state is LegPhase.ENDED and leg.status == 486
    assert leg.ended_at == 1.0
    assert leg.reject(500, 2.0) == []  # one final response only


def test_inbound_reject_with_an_explicit_cause() -> None:
    leg = LegMachine("inbound", 0.0)
    assert Ended("voicemail_full") in leg.reject(480, 0.0, cause="voicemail_full")


def test_inbound_cancel_before_the_answer_is_487() -> None:
    leg = LegMachine("inbound", 0.0)
    leg.ring(0.0)
    out = leg.cancel(1.0)
    assert sent(out) == ["487"] and Ended("cancelled") in out
    assert leg.state is LegPhase.ENDED
    assert leg.answer(1.1) == []  # the application's answer comes too late: nothing is sent


def test_cancel_racing_our_200_is_absorbed() -> None:
    """RFC 3261 §9.2: a CANCEL after the final response has no effect on the INVITE."""
    leg = LegMachine("inbound", 0.0)
    leg.answer(1.0)
    assert leg.cancel(1.01) == []
    assert leg.state is LegPhase.ANSWERED
    leg.ack(1.02)
    assert leg.state is LegPhase.ANSWERED


def test_inbound_hangup_before_the_answer_is_a_final_response() -> None:
    assert sent(LegMachine("inbound", 0.0).hangup("normal", 0.0)) == ["480"]
    assert sent(LegMachine("inbound", 0.0).hangup("busy", 0.0)) == ["486"]
    out = LegMachine("inbound", 0.0).hangup("no_answer", 0.0)
    assert out[0] == SendResponse(480, "No Answer")


def test_inbound_bye_from_the_party_ends_the_leg() -> None:
    leg = inbound_answered()
    out = leg.bye(5.0)
    assert out == [Ended("normal")] and leg.state is LegPhase.ENDED and leg.ended_at == 5.0


def test_outbound_only_events_do_nothing_inbound() -> None:
    leg = LegMachine("inbound", 0.0)
    assert leg.invite(30.0, 0.0) == []
    assert leg.provisional(180, 0.0) == []
    assert leg.accepted(0.0) == []
    assert leg.failed(486, 0.0) == []
    assert leg.timed_out(0.0) == []
    assert leg.give_up("cancelled", 0.0) == []
    assert leg.state is LegPhase.CALLING


def test_inbound_only_events_do_nothing_outbound() -> None:
    leg = LegMachine("outbound", 0.0)
    assert leg.ring(0.0) == []
    assert leg.answer(0.0) == []
    assert leg.reject(486, 0.0) == []
    assert leg.cancel(0.0) == []
    assert leg.state is LegPhase.CALLING


# -- outbound legs ---------------------------------------------------------------------------------------


def test_outbound_invite_arms_the_ring_timeout() -> None:
    leg = LegMachine("outbound", 0.0)
    assert leg.invite(20.0, 0.0) == [SendRequest("INVITE"), StartTimer("ring", 20.0)]
    assert leg.timers == {"ring"}


def test_outbound_rings_then_early_then_answers() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(20.0, 0.0)
    assert leg.provisional(100, 0.1) == []  # 100 Trying is hop by hop: nothing for the call
    out = leg.provisional(180, 0.2)
    assert leg.state is LegPhase.RINGING and Progress(False) in out
    assert Emit("leg.ringing", {"early": False, "status": 180}) in out
    out = leg.provisional(183, 0.3, early_media=True)
    assert leg.state is LegPhase.EARLY and Progress(True) in out
    out = leg.provisional(180, 0.4)  # a 180 after early media: still early
    assert leg.state is LegPhase.EARLY and Progress(True) in out
    out = leg.accepted(1.0)
    assert out == [CancelTimer("ring"), Emit("leg.answered"), Answered()]
    assert leg.state is LegPhase.ANSWERED and leg.answered_at == 1.0
    assert leg.timers == frozenset()


@pytest.mark.parametrize(("status", "cause"), [(486, "busy"), (600, "busy"), (480, "unavailable"),
                                               (487, "cancelled"), (408, "no_answer"), (504, "no_answer"),
                                               (603, "rejected"), (403, "rejected"), (500, "failed"),
                                               (404, "failed")])
def test_outbound_failure_causes(status: int, cause: str) -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(20.0, 0.0)
    out = leg.failed(status, 1.0, "why")
    assert Ended(cause) in out and CancelTimer("ring") in out
    assert leg.state is LegPhase.ENDED and leg.status == status and leg.reason == "why"
    assert cause_of(status) == cause


@pytest.mark.parametrize("status", [401, 407])
def test_outbound_challenge_counts_as_unavailable(status: int) -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(20.0, 0.0)
    assert Ended("unavailable") in leg.failed(status, 1.0, "Unauthorized")
    assert (leg.status, leg.reason) == (480, "Temporarily Unavailable")


def test_outbound_timer_b_means_unreachable() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(20.0, 0.0)
    out = leg.timed_out(32.0)
    assert Ended("unreachable") in out and (leg.status, leg.reason) == (408, "Request Timeout")
    assert leg.state is LegPhase.ENDED


def test_ring_timeout_cancels_after_a_provisional() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.provisional(180, 0.5)
    out = leg.timer_fired("ring", 5.0)
    assert sent(out) == ["CANCEL"] and Ended("no_answer") in out
    assert leg.state is LegPhase.ENDING and (leg.status, leg.reason) == (480, "No Answer")
    assert leg.failed(487, 5.1) == []  # the 487 to our CANCEL: quietly over
    assert leg.state is LegPhase.ENDED and leg.cause == "no_answer"


def test_ring_timeout_without_a_provisional_waits_to_cancel() -> None:
    """RFC 3261 §9.1: no CANCEL before a provisional response; it goes when one comes."""
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    out = leg.timer_fired("ring", 5.0)
    assert sent(out) == [] and Ended("no_answer") in out and leg.state is LegPhase.ENDING
    assert leg.provisional(180, 5.5) == [SendRequest("CANCEL")]
    assert leg.provisional(180, 5.6) == []  # one CANCEL only
    leg.failed(487, 5.7)
    assert leg.state is LegPhase.ENDED


def test_give_up_without_any_response_ends_on_timer_b() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    out = leg.give_up("cancelled", 1.0)
    assert Ended("cancelled") in out and sent(out) == []
    assert leg.timed_out(33.0) == []
    assert leg.state is LegPhase.ENDED and leg.cause == "cancelled"


def test_200_racing_our_cancel_gets_a_bye() -> None:
    """RFC 3261 §9.1: the callee answered as Hatif cancelled: the 2xx is ACKed (by the shell) and BYEd."""
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.provisional(180, 0.1)
    out = leg.give_up("cancelled", 1.0)
    assert sent(out) == ["CANCEL"]
    assert leg.accepted(1.01) == [SendRequest("BYE")]
    assert leg.accepted(1.02) == []  # a retransmitted 2xx: no second BYE
    assert leg.state is LegPhase.ENDING and leg.answered_at is None
    leg.bye_done(1.1)
    assert leg.state is LegPhase.ENDED and leg.cause == "cancelled"


def test_200_before_any_provisional_after_giving_up_gets_a_bye_and_no_cancel() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.give_up("cancelled", 1.0)
    assert leg.accepted(1.5) == [SendRequest("BYE")]
    assert leg.provisional(180, 1.6) == []  # a late 180 no longer asks for a CANCEL
    leg.bye_done(1.7)
    assert leg.state is LegPhase.ENDED


def test_a_2xx_with_unusable_sdp_is_hung_up_at_once() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    out = leg.accepted(1.0, usable=False)
    assert sent(out) == ["BYE"] and Ended("failed") in out
    assert leg.answered_at is None and leg.state is LegPhase.ENDING


def test_outbound_hangup_while_ringing_is_a_cancel() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.provisional(180, 0.1)
    assert sent(leg.hangup("cancelled", 1.0)) == ["CANCEL"]


def test_hangup_of_an_answered_leg_is_a_bye_once() -> None:
    leg = outbound_answered()
    out = leg.hangup("normal", 3.0)
    assert out == [SendRequest("BYE"), Ended("normal")]
    assert leg.hangup("normal", 3.1) == []
    assert leg.state is LegPhase.ENDING
    assert leg.bye(3.2) == []  # BYEs crossed
    assert leg.state is LegPhase.ENDED


def test_late_responses_after_the_end_are_absorbed() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.failed(486, 1.0)
    assert leg.provisional(180, 1.1) == []
    assert leg.accepted(1.2) == []
    assert leg.failed(486, 1.3) == []
    assert leg.timed_out(40.0) == []
    assert leg.state is LegPhase.ENDED and leg.cause == "busy"


# -- hold, resume, glare ---------------------------------------------------------------------------------


def test_hatif_holds_and_resumes() -> None:
    leg = outbound_answered()
    assert leg.hold(1.0) == [SendRequest("INVITE", "sendonly")]
    assert leg.state is LegPhase.HELD and leg.held and leg.reinvite_pending
    out = leg.reinvite_answered(200, 1.1)
    assert out == [Emit("leg.held", {"by": "hatif", "accepted": True}), ReinviteDone("sendonly", True)]
    assert not leg.reinvite_pending
    assert leg.resume(2.0) == [SendRequest("INVITE", "sendrecv")]
    assert leg.state is LegPhase.ANSWERED and not leg.held
    out = leg.reinvite_answered(200, 2.1)
    assert Emit("leg.resumed", {"by": "hatif", "accepted": True}) in out
    assert ReinviteDone("sendrecv", True) in out


def test_hold_refused_by_the_party_is_reported_not_accepted() -> None:
    leg = inbound_answered()
    leg.hold(1.0)
    out = leg.reinvite_answered(488, 1.1)
    assert ReinviteDone("sendonly", False) in out
    assert Emit("leg.held", {"by": "hatif", "accepted": False}) in out


def test_hold_twice_and_resume_unheld_are_refused() -> None:
    leg = inbound_answered()
    leg.hold(1.0)
    leg.reinvite_answered(200, 1.1)
    assert leg.hold(1.2) == [ReinviteDone("sendonly", False)]
    leg.resume(1.3)
    leg.reinvite_answered(200, 1.4)
    assert leg.resume(1.5) == [ReinviteDone("sendrecv", False)]


def test_hold_before_the_answer_is_refused() -> None:
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    assert leg.hold(1.0) == [ReinviteDone("sendonly", False)]
    assert not leg.held and leg.state is LegPhase.CALLING


def test_resume_while_the_hold_is_unanswered_waits_its_turn() -> None:
    leg = inbound_answered()
    assert sent(leg.hold(1.0)) == ["INVITE:sendonly"]
    assert leg.resume(1.05) == []  # one re-INVITE at a time in a dialog (RFC 3261 §14.1)
    out = leg.reinvite_answered(200, 1.1)
    assert ReinviteDone("sendonly", True) in out and out[-1] == SendRequest("INVITE", "sendrecv")
    out = leg.reinvite_answered(200, 1.2)
    assert ReinviteDone("sendrecv", True) in out and not leg.reinvite_pending


def test_the_party_holds_and_resumes() -> None:
    leg = inbound_answered()
    assert leg.offer(1.0) == []
    out = leg.party_hold(True, 1.0)
    assert out == [Emit("leg.held", {"by": "party"}), PartyHold(True)]
    assert leg.state is LegPhase.HELD and leg.remote_held and not leg.held
    assert leg.party_hold(True, 1.5) == []  # the same direction again: no change
    out = leg.party_hold(False, 2.0)
    assert out == [Emit("leg.resumed", {"by": "party"}), PartyHold(False)]
    assert leg.state is LegPhase.ANSWERED


def test_held_both_ways_stays_held_until_both_resume() -> None:
    leg = outbound_answered()
    leg.hold(1.0)
    leg.reinvite_answered(200, 1.1)
    leg.party_hold(True, 2.0)
    assert leg.state is LegPhase.HELD
    leg.party_hold(False, 3.0)
    assert leg.state is LegPhase.HELD  # Hatif still holds it
    leg.party_hold(True, 3.5)
    leg.resume(4.0)
    assert leg.state is LegPhase.HELD  # the party still holds us
    leg.reinvite_answered(200, 4.1)
    leg.party_hold(False, 5.0)
    assert leg.state is LegPhase.ANSWERED


@pytest.mark.parametrize(("direction", "low", "high"), [("outbound", 2.1, 4.0), ("inbound", 0.0, 2.0)])
def test_glare_answers_491_and_retries_after_the_rfc_wait(direction: str, low: float, high: float) -> None:
    """RFC 3261 §14.1-14.2: re-INVITEs crossing; the owner of the Call-ID waits 2.1-4 s, the other 0-2 s."""
    leg = outbound_answered() if direction == "outbound" else inbound_answered()
    leg.hold(1.0)
    assert leg.offer(1.01) == [SendResponse(491, "Request Pending")]  # theirs crossed ours
    out = leg.reinvite_answered(491, 1.02, jitter=0.0)
    assert out == [StartTimer("glare", low)]
    assert leg.reinvite_pending and leg.timers == {"glare"}
    assert leg.offer(1.5) == []  # while ours waits, theirs goes through
    assert leg.timer_fired("glare", 1.02 + low) == [SendRequest("INVITE", "sendonly")]
    out = leg.reinvite_answered(200, 5.0)
    assert ReinviteDone("sendonly", True) in out
    late = outbound_answered() if direction == "outbound" else inbound_answered()
    late.hold(0.0)
    assert late.reinvite_answered(491, 0.0, jitter=0.999) == [StartTimer("glare", pytest.approx(high, abs=0.01))]


def test_pending_reinvites_are_answered_false_when_the_leg_ends() -> None:
    leg = inbound_answered()
    leg.hold(1.0)
    leg.resume(1.1)
    out = leg.bye(1.2)
    assert of(out, ReinviteDone) == [ReinviteDone("sendonly", False), ReinviteDone("sendrecv", False)]
    assert not leg.reinvite_pending
    assert leg.reinvite_answered(200, 1.3) == []


def test_offer_on_an_ended_leg_is_481() -> None:
    leg = outbound_answered()
    leg.hangup("normal", 1.0)
    assert leg.offer(1.1) == [SendResponse(481)]


def test_ending_cancels_every_timer() -> None:
    leg = LegMachine("inbound", 0.0)
    leg.answer(0.0)
    leg.hold(0.1)
    leg.reinvite_answered(491, 0.2)
    assert leg.timers == {"2xx", "glare"}
    out = leg.hangup("normal", 0.3)
    assert set(of(out, CancelTimer)) == {CancelTimer("2xx"), CancelTimer("glare")}
    assert leg.timers == frozenset()


def test_a_timer_the_table_does_not_know_is_absorbed() -> None:
    leg = inbound_answered()
    assert leg.timer_fired("nonsense", 1.0) == []
    assert leg.timer_fired("ring", 1.0) == []  # no ring timer on an answered leg
    assert leg.state is LegPhase.ANSWERED


def test_state_properties() -> None:
    assert LegPhase.ANSWERED.up and LegPhase.HELD.up and not LegPhase.EARLY.up
    assert LegPhase.ENDING.over and LegPhase.ENDED.over and not LegPhase.HELD.over


def test_the_table_never_leaves_ended() -> None:
    assert not [key for key in LEG_TRANSITIONS if key[0] is LegPhase.ENDED]


# -- properties: any sequence of events ------------------------------------------------------------------

EVENTS = st.sampled_from([
    "ring", "ring_early", "answer", "reject", "cancel", "ack", "invite", "provisional", "early", "accepted",
    "unusable", "failed", "timed_out", "give_up", "hangup", "bye", "bye_done", "hold", "resume", "answered",
    "glare", "offer", "party_hold", "party_resume", "timer_ring", "timer_2xx", "timer_glare",
])


def feed(leg: LegMachine, event: str, now: float) -> list[object]:
    calls = {
        "ring": lambda: leg.ring(now), "ring_early": lambda: leg.ring(now, True), "answer": lambda: leg.answer(now),
        "reject": lambda: leg.reject(486, now), "cancel": lambda: leg.cancel(now), "ack": lambda: leg.ack(now),
        "invite": lambda: leg.invite(5.0, now), "provisional": lambda: leg.provisional(180, now),
        "early": lambda: leg.provisional(183, now, True), "accepted": lambda: leg.accepted(now),
        "unusable": lambda: leg.accepted(now, usable=False), "failed": lambda: leg.failed(486, now),
        "timed_out": lambda: leg.timed_out(now), "give_up": lambda: leg.give_up("cancelled", now),
        "hangup": lambda: leg.hangup("normal", now), "bye": lambda: leg.bye(now),
        "bye_done": lambda: leg.bye_done(now), "hold": lambda: leg.hold(now), "resume": lambda: leg.resume(now),
        "answered": lambda: leg.reinvite_answered(200, now), "glare": lambda: leg.reinvite_answered(491, now),
        "offer": lambda: leg.offer(now), "party_hold": lambda: leg.party_hold(True, now),
        "party_resume": lambda: leg.party_hold(False, now), "timer_ring": lambda: leg.timer_fired("ring", now),
        "timer_2xx": lambda: leg.timer_fired("2xx", now), "timer_glare": lambda: leg.timer_fired("glare", now),
    }
    return list(calls[event]())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["inbound", "outbound"]), st.lists(EVENTS, max_size=40))
def test_any_event_sequence_keeps_the_leg_defined(direction: str, events: list[str]) -> None:
    """Whatever arrives in whatever order: a defined state, one `Ended` at most, the end is terminal, and
    no timer is left armed once the leg is over."""
    leg = LegMachine("inbound" if direction == "inbound" else "outbound", 0.0)
    ended = 0
    answered = 0
    for i, event in enumerate(events):
        before = leg.state
        out = feed(leg, event, float(i))
        assert leg.state in LegPhase
        ended += len(of(out, Ended))
        answered += len(of(out, Answered))
        if before is LegPhase.ENDED:
            assert leg.state is LegPhase.ENDED
            assert not [c for c in out if not isinstance(c, ReinviteDone | SendResponse)]
        if before.over:
            assert leg.state.over
            assert not of(out, Answered) and not of(out, Ended)
        if leg.state.over:
            assert leg.timers == frozenset()
            assert not leg.reinvite_pending
        assert leg.held <= leg.state.up or not leg.state.up
    assert ended <= 1 and answered <= 1
    assert (ended == 1) == leg.state.over
    if leg.state.over:
        assert leg.cause
        assert leg.ended_at is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=30))
def test_every_reinvite_asked_for_is_answered_once(events: list[str]) -> None:
    leg = outbound_answered()
    asked = done = 0
    for i, event in enumerate(events):
        out = feed(leg, event, float(i))
        if event in ("hold", "resume"):
            asked += 1
        done += len(of(out, ReinviteDone))
    done += len(of(leg.hangup("normal", 99.0), ReinviteDone))
    assert done == asked


# -- the call: bridges -----------------------------------------------------------------------------------


def call_of(*legs: str) -> CallMachine:
    call = CallMachine()
    for i, leg in enumerate(legs):
        call.add_leg(leg, f"party-{leg}", caller=i == 0)
    return call


def test_a_new_call_is_parked() -> None:
    assert call_of("caller").state is CallState.PARKED


def test_bridge_and_unbridge() -> None:
    call = call_of("caller", "agent")
    out = call.bridge("caller", "agent", 1.0)
    assert BridgeLegs("caller", "agent") in out and Changed() in out
    assert call.state is CallState.BRIDGED and call.partner == {"caller": "agent", "agent": "caller"}
    out = call.unbridge("agent", 2.0)
    assert Unbridge("agent") in out and call.state is CallState.PARKED


def test_bridge_moves_a_leg_from_its_old_partner() -> None:
    call = call_of("caller", "a", "b")
    call.bridge("caller", "a", 0.0)
    out = call.bridge("caller", "b", 1.0)
    assert out[0] == Unbridge("caller") and BridgeLegs("caller", "b") in out
    assert call.partner == {"caller": "b", "b": "caller"}


def test_bridge_refuses_ended_or_identical_legs() -> None:
    call = call_of("caller", "agent")
    assert of(call.bridge("caller", "caller", 0.0), Refused)
    call.leg_ended("agent", "normal", 0.0)
    assert of(call.bridge("caller", "agent", 0.0), Refused)


def test_early_media_bridge_is_not_recorded() -> None:
    call = call_of("caller", "callee")
    assert BridgeLegs("caller", "callee", False) in call.bridge("caller", "callee", 0.0, record=False)


# -- blind transfer --------------------------------------------------------------------------------------


def test_blind_transfer_answered() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    out = call.transfer("caller", "2001", 1.0)
    assert Unbridge("caller") in out and HangupLeg("agent", "transferred") in out
    assert Emit("transfer", {"target": "2001", "how": "blind"}, "caller") in out
    assert PlayRingback("caller") in out
    assert call.state is CallState.TRANSFERRING
    call.leg_ended("agent", "transferred", 1.1)
    assert call.state is CallState.TRANSFERRING
    out = call.target_answered("caller", "expert", 2.0)
    assert BridgeLegs("caller", "expert") in out and StopPlaying("caller") in out
    assert call.state is CallState.BRIDGED


def test_blind_transfer_of_an_unbridged_leg() -> None:
    call = call_of("caller", "expert")
    out = call.transfer("caller", "2001", 0.0)
    assert not of(out, HangupLeg) and PlayRingback("caller") in out


def test_blind_transfer_target_busy_leaves_the_party_alone() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.transfer("caller", "2001", 1.0)
    out = call.target_failed("caller", 2.0, "expert")
    assert StopPlaying("caller") in out and not of(out, BridgeLegs)
    assert call.state is CallState.PARKED


def test_blind_transfer_target_not_callable() -> None:
    call = call_of("caller", "agent")
    call.transfer("caller", "9999", 0.0)
    assert call.target_failed("caller", 0.1) == [StopPlaying("caller"), Changed()]


def test_caller_hangs_up_while_the_transfer_target_rings() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.transfer("caller", "2001", 1.0)
    call.leg_ended("agent", "transferred", 1.1)
    out = call.leg_ended("caller", "normal", 1.5)
    assert HangupLeg("expert", "normal") in out  # the caller's end ends every other leg
    assert call.state is CallState.PARKED
    out = call.target_answered("caller", "expert", 2.0)
    assert HangupLeg("expert", "cancelled") in out and not of(out, BridgeLegs)


def test_blind_transfer_refused_during_a_consultation() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    assert of(call.transfer("caller", "2001", 1.1), Refused)


def test_transfer_of_an_ended_leg_is_refused() -> None:
    call = call_of("caller", "agent")
    call.leg_ended("agent", "normal", 0.0)
    assert of(call.transfer("agent", "2001", 0.1), Refused)


# -- attended transfer -----------------------------------------------------------------------------------


def consulting() -> CallMachine:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    call.consult_answered("agent", "expert", "2001", 2.0)
    return call


def test_consult_puts_the_party_aside_with_music() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    out = call.consult("agent", 1.0)
    assert out == [Unbridge("agent"), PlayMusic("caller"), PlayRingback("agent")]
    assert call.state is CallState.CONSULTING and call.held_aside == {"agent": "caller"}
    out = call.consult_answered("agent", "expert", "2001", 2.0)
    assert BridgeLegs("agent", "expert") in out
    assert Emit("transfer", {"target": "2001", "how": "consult"}, "agent") in out
    assert call.state is CallState.CONSULTING and call.partner["agent"] == "expert"


def test_attended_transfer_completed() -> None:
    call = consulting()
    out = call.complete("agent", 3.0)
    assert Unbridge("agent") in out and BridgeLegs("caller", "expert") in out
    assert HangupLeg("agent", "transferred") in out
    assert Emit("transfer", {"how": "attended", "to": "party-expert"}, "caller") in out
    assert call.state is CallState.BRIDGED and call.partner["caller"] == "expert"
    assert call.held_aside == {}
    call.leg_ended("agent", "transferred", 3.1)
    assert call.partner == {"caller": "expert", "expert": "caller"}


def test_consult_cancelled_brings_the_agent_back() -> None:
    call = consulting()
    out = call.cancel_consult("agent", 3.0)
    assert HangupLeg("expert", "normal") in out and BridgeLegs("caller", "agent") in out
    assert StopPlaying("caller") in out
    assert call.state is CallState.BRIDGED and call.partner["agent"] == "caller"


def test_consult_target_busy_then_cancelled() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    out = call.consult_failed("agent", 2.0, "expert")
    assert HangupLeg("expert", "cancelled") in out
    assert StopPlaying("agent") in out
    assert call.state is CallState.CONSULTING  # the agent decides what follows
    assert of(call.complete("agent", 2.5), Refused)  # nobody to hand the caller to
    out = call.cancel_consult("agent", 3.0)
    assert BridgeLegs("caller", "agent") in out and call.state is CallState.BRIDGED


def test_consult_target_busy_then_another_target() -> None:
    call = call_of("caller", "agent", "busy", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    call.leg_ended("busy", "busy", 1.5)
    call.consult_failed("agent", 1.5, "busy")
    out = call.consult("agent", 2.0)
    assert out == [PlayRingback("agent")]  # the caller still waits, still with music
    assert call.held_aside == {"agent": "caller"}
    call.consult_answered("agent", "expert", "2002", 3.0)
    assert BridgeLegs("caller", "expert") in call.complete("agent", 4.0)


def test_consult_failed_while_ringing_hangs_up_the_target() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    assert HangupLeg("expert", "cancelled") in call.consult_failed("agent", 2.0, "expert")


def test_caller_hangs_up_during_the_consultation() -> None:
    call = consulting()
    out = call.leg_ended("caller", "normal", 3.0)
    assert HangupLeg("agent", "normal") in out and HangupLeg("expert", "normal") in out
    assert call.held_aside == {}
    assert of(call.complete("agent", 3.1), Refused)
    for leg in ("agent", "expert"):
        out = call.leg_ended(leg, "normal", 3.2)
    assert CallOver() in out and call.over


def test_caller_hangs_up_while_the_consulted_party_rings() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    call.leg_ended("caller", "normal", 1.5)
    assert call.held_aside == {}
    out = call.consult_answered("agent", "expert", "2001", 2.0)
    assert BridgeLegs("agent", "expert") in out  # the agent still talks to whom it called


def test_agent_hanging_up_during_the_consultation_completes_the_transfer() -> None:
    call = consulting()
    out = call.leg_ended("agent", "normal", 3.0)
    assert BridgeLegs("caller", "expert") in out
    assert call.state is CallState.BRIDGED and call.held_aside == {}


def test_agent_hanging_up_before_the_consulted_party_answers() -> None:
    call = call_of("caller", "agent", "expert")
    call.bridge("caller", "agent", 0.0)
    call.consult("agent", 1.0)
    out = call.leg_ended("agent", "normal", 1.5)
    assert StopPlaying("caller") in out and call.state is CallState.PARKED
    out = call.consult_answered("agent", "expert", "2001", 2.0)
    assert HangupLeg("expert", "cancelled") in out


def test_cancel_consult_after_the_waiting_party_left() -> None:
    call = consulting()
    call.leg_ended("caller", "normal", 3.0)
    assert of(call.cancel_consult("agent", 3.1), Refused)


def test_complete_and_cancel_refused_without_a_consultation() -> None:
    call = call_of("caller", "agent")
    call.bridge("caller", "agent", 0.0)
    assert of(call.complete("agent", 1.0), Refused)
    assert of(call.cancel_consult("agent", 1.0), Refused)
    assert call.state is CallState.BRIDGED


def test_consult_from_an_ended_leg_is_refused() -> None:
    call = call_of("caller", "agent")
    call.leg_ended("agent", "normal", 0.0)
    assert of(call.consult("agent", 0.1), Refused)


# -- hold, conferences, the end --------------------------------------------------------------------------


def test_hatif_hold_plays_music_and_resume_stops_it() -> None:
    call = call_of("caller", "agent")
    assert call.hold("agent", 0.0) == [PlayMusic("agent")]
    assert call.hold("agent", 0.0, music=False) == []
    assert call.resume("agent", 1.0) == [StopPlaying("agent")]


def test_party_hold_plays_music_to_its_partner() -> None:
    call = call_of("caller", "agent")
    call.bridge("caller", "agent", 0.0)
    assert call.party_hold("agent", True, 1.0) == [PlayMusic("caller")]
    assert call.party_hold("agent", False, 2.0) == [StopPlaying("caller")]
    assert call.party_hold("caller", True, 2.0) == [PlayMusic("agent")]


def test_party_hold_of_an_unbridged_leg_does_nothing() -> None:
    assert call_of("caller").party_hold("caller", True, 0.0) == []


def test_conference_add_and_remove() -> None:
    call = call_of("caller", "agent")
    call.bridge("caller", "agent", 0.0)
    out = call.join("caller", "room", 1.0)
    assert out == [Unbridge("caller"), StopPlaying("caller"), JoinRoom("caller", "room")]
    assert call.state is CallState.CONFERENCED
    call.join("agent", "room", 1.1)
    assert call.rooms == {"caller": "room", "agent": "room"}
    assert call.leave("agent", 2.0) == [LeaveRoom("agent", "room")]
    assert call.leave("agent", 2.1) == []
    assert call.state is CallState.CONFERENCED
    out = call.leg_ended("caller", "normal", 3.0)
    assert LeaveRoom("caller", "room") in out and call.state is CallState.PARKED


def test_joining_another_room_leaves_the_first() -> None:
    call = call_of("caller")
    call.join("caller", "a", 0.0)
    out = call.join("caller", "b", 1.0)
    assert LeaveRoom("caller", "a") in out and JoinRoom("caller", "b") in out


def test_an_ended_leg_joins_no_conference() -> None:
    call = call_of("caller")
    call.leg_ended("caller", "normal", 0.0)
    assert of(call.join("caller", "room", 0.1), Refused)


def test_the_callers_end_ends_every_other_leg_with_its_cause() -> None:
    call = call_of("caller", "a", "b")
    call.bridge("caller", "a", 0.0)
    out = call.leg_ended("caller", "rtp_timeout", 1.0)
    assert HangupLeg("a", "rtp_timeout") in out and HangupLeg("b", "rtp_timeout") in out
    assert CallOver() not in out
    call.leg_ended("a", "rtp_timeout", 1.1)
    assert CallOver() in call.leg_ended("b", "rtp_timeout", 1.2)
    assert call.leg_ended("b", "normal", 1.3) == []  # reported once


def test_a_partner_ending_leaves_the_caller_alone() -> None:
    call = call_of("caller", "agent")
    call.bridge("caller", "agent", 0.0)
    out = call.leg_ended("agent", "normal", 1.0)
    assert Unbridge("agent") in out and not of(out, HangupLeg) and call.state is CallState.PARKED


def test_call_accepts_table_names_known_events() -> None:
    assert set(CALL_ACCEPTS) == {"transfer", "consult", "complete", "cancel_consult"}
    assert CALL_ACCEPTS["complete"] == {CallState.CONSULTING}


CALL_EVENTS = st.tuples(
    st.sampled_from(["bridge", "unbridge", "transfer", "target_answered", "target_failed", "consult",
                     "consult_answered", "consult_failed", "complete", "cancel_consult", "join", "leave",
                     "party_hold", "end"]),
    st.sampled_from(["caller", "agent", "expert", "other"]),
    st.sampled_from(["caller", "agent", "expert", "other"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CALL_EVENTS, max_size=40))
def test_any_call_event_sequence_keeps_the_relations_consistent(events: list[tuple[str, str, str]]) -> None:
    """Partners are mutual and live, a waiting party is live and not bridged, ended legs hold no relation,
    and the call ends exactly once, when its last leg does."""
    call = call_of("caller", "agent", "expert", "other")
    over = 0
    for i, (event, a, b) in enumerate(events):
        now = float(i)
        out: list[object]
        if event == "bridge":
            out = list(call.bridge(a, b, now))
        elif event == "unbridge":
            out = list(call.unbridge(a, now))
        elif event == "transfer":
            out = list(call.transfer(a, "2001", now))
        elif event == "target_answered":
            out = list(call.target_answered(a, b, now))
        elif event == "target_failed":
            out = list(call.target_failed(a, now, b))
        elif event == "consult":
            out = list(call.consult(a, now))
        elif event == "consult_answered":
            out = list(call.consult_answered(a, b, "2001", now))
        elif event == "consult_failed":
            out = list(call.consult_failed(a, now, b))
        elif event == "complete":
            out = list(call.complete(a, now))
        elif event == "cancel_consult":
            out = list(call.cancel_consult(a, now))
        elif event == "join":
            out = list(call.join(a, "room", now))
        elif event == "leave":
            out = list(call.leave(a, now))
        elif event == "party_hold":
            out = list(call.party_hold(a, True, now))
        else:
            out = list(call.leg_ended(a, "normal", now))
        over += len(of(out, CallOver))
        assert call.state in CallState
        for x, y in call.partner.items():
            assert call.partner.get(y) == x and x != y
            assert x in call.live and y in call.live
        for agent, waiting in call.held_aside.items():
            assert waiting in call.live and waiting not in call.partner and agent != waiting
        assert all(leg in call.live for leg in call.rooms)
        assert all(leg in call.live for leg in call.transferring)
        assert not [c for c in out if isinstance(c, BridgeLegs) and (c.a not in call.live or c.b not in call.live)]
    assert over == (1 if call.over else 0)
    assert call.over == (not call.live)


# -- the table, state by state ---------------------------------------------------------------------------

LEG_EVENT_OF = {  # the table's event name behind each `feed` event
    "ring": "ring", "ring_early": "ring", "answer": "answer", "reject": "reject", "cancel": "cancel",
    "ack": "ack", "invite": "invite", "provisional": "provisional", "early": "provisional",
    "accepted": "accepted", "unusable": "accepted", "failed": "failed", "timed_out": "timed_out",
    "give_up": "give_up", "hangup": "hangup", "bye": "bye", "bye_done": "bye_done", "hold": "hold",
    "resume": "resume", "answered": "reinvite_answered", "glare": "reinvite_answered", "offer": "offer",
    "party_hold": "party_hold", "party_resume": "party_resume", "timer_ring": "timer:ring",
    "timer_2xx": "timer:2xx", "timer_glare": "timer:glare",
}

# How to bring a leg of each direction into each state, from a fresh machine.
PATHS: dict[tuple[str, LegPhase], list[str]] = {
    ("inbound", LegPhase.CALLING): [],
    ("inbound", LegPhase.RINGING): ["ring"],
    ("inbound", LegPhase.EARLY): ["ring_early"],
    ("inbound", LegPhase.ANSWERED): ["answer", "ack"],
    ("inbound", LegPhase.HELD): ["answer", "ack", "party_hold"],
    ("inbound", LegPhase.ENDING): ["answer", "ack", "hangup"],
    ("inbound", LegPhase.ENDED): ["cancel"],
    ("outbound", LegPhase.CALLING): ["invite"],
    ("outbound", LegPhase.RINGING): ["invite", "provisional"],
    ("outbound", LegPhase.EARLY): ["invite", "early"],
    ("outbound", LegPhase.ANSWERED): ["invite", "provisional", "accepted"],
    ("outbound", LegPhase.HELD): ["invite", "provisional", "accepted", "party_hold"],
    ("outbound", LegPhase.ENDING): ["invite", "provisional", "give_up"],
    ("outbound", LegPhase.ENDED): ["invite", "failed"],
}


def leg_in(direction: str, state: LegPhase) -> LegMachine:
    leg = LegMachine("inbound" if direction == "inbound" else "outbound", 0.0)
    for i, event in enumerate(PATHS[(direction, state)]):
        feed(leg, event, float(i))
    assert leg.state is state
    return leg


@pytest.mark.parametrize(("direction", "state"), list(PATHS))
def test_every_state_is_reachable(direction: str, state: LegPhase) -> None:
    assert leg_in(direction, state).state is state


@pytest.mark.parametrize(("direction", "state"), list(PATHS))
@pytest.mark.parametrize("event", sorted(LEG_EVENT_OF))
def test_events_the_table_does_not_name_are_absorbed(direction: str, state: LegPhase, event: str) -> None:
    """A pair missing from `LEG_TRANSITIONS` changes nothing: at most a refusal comes out (a hold that
    cannot be sent is answered False, a re-INVITE on an ended dialog 481)."""
    if (state, LEG_EVENT_OF[event]) in LEG_TRANSITIONS:
        return
    leg = leg_in(direction, state)
    out = feed(leg, event, 50.0)
    assert leg.state is state
    assert not [c for c in out if not isinstance(c, ReinviteDone | SendResponse)]
    assert not [c for c in of(out, SendResponse) if isinstance(c, SendResponse) and c.status != 481]
    assert all(isinstance(c, ReinviteDone) and not c.accepted for c in of(out, ReinviteDone))


@pytest.mark.parametrize(("direction", "state"), list(PATHS))
@pytest.mark.parametrize("event", sorted(LEG_EVENT_OF))
def test_events_with_a_fixed_next_state_go_there(direction: str, state: LegPhase, event: str) -> None:
    """Where the table names the next state (not None), the machine ends up there, for the direction the
    event belongs to."""
    key = (state, LEG_EVENT_OF[event])
    to = LEG_TRANSITIONS.get(key)
    if to is None:
        return
    inbound_only = {"ring", "ring_early", "answer", "reject", "cancel"}
    outbound_only = {"invite", "provisional", "early", "accepted", "unusable", "failed", "timed_out", "give_up"}
    if (direction == "outbound" and event in inbound_only) or (direction == "inbound" and event in outbound_only):
        return
    if event in ("timer_ring", "timer_glare", "timer_2xx", "answered", "glare"):
        return  # timers and re-INVITE answers need their setup: tested one by one above
    leg = leg_in(direction, state)
    feed(leg, event, 50.0)
    assert leg.state is to


def test_retransmissions_of_the_200_cover_64_t1() -> None:
    """RFC 3261 §13.3.1.4: T1, 2*T1, ... capped at T2, and the leg gives up at 64*T1 without an ACK."""
    t1, t2 = 0.5, 4.0
    leg = LegMachine("inbound", 0.0, t1=t1, t2=t2)
    out = leg.answer(0.0)
    [first] = of(out, StartTimer)
    assert isinstance(first, StartTimer)
    now, delay, sends = 0.0, first.delay, 0
    while True:
        now += delay
        out = leg.timer_fired("2xx", now)
        if of(out, Ended):
            break
        sends += len(of(out, Retransmit))
        [timer] = of(out, StartTimer)
        assert isinstance(timer, StartTimer) and timer.delay <= t2
        delay = timer.delay
    assert now >= 64 * t1 and sends == 10  # 0.5 1 2 4 4 4 4 4 4 4 (s), as for a 2xx over UDP
    assert leg.cause == "no_ack"


def test_an_ack_after_the_hangup_is_absorbed() -> None:
    leg = LegMachine("inbound", 0.0)
    leg.answer(0.0)
    leg.hangup("normal", 0.1)
    assert leg.ack(0.2) == []
    assert not leg.acked


def test_an_outbound_leg_needs_no_ack() -> None:
    leg = outbound_answered()
    assert leg.acked and leg.timer_fired("2xx", 10.0) == []


def test_the_answer_to_a_held_offer_arrives_held() -> None:
    """A party that answers (or offers) sendonly holds from the start: the shell sets `remote_held`
    before the answer, and the answered leg is held."""
    leg = LegMachine("outbound", 0.0)
    leg.invite(5.0, 0.0)
    leg.remote_held = True
    leg.accepted(1.0)
    assert leg.state is LegPhase.HELD
    assert leg.party_hold(False, 2.0) == [Emit("leg.resumed", {"by": "party"}), PartyHold(False)]
    assert leg.state is LegPhase.ANSWERED


def test_hold_while_the_party_holds_keeps_held_and_sends_the_offer() -> None:
    leg = inbound_answered()
    leg.party_hold(True, 1.0)
    assert leg.hold(2.0) == [SendRequest("INVITE", "sendonly")]
    assert leg.state is LegPhase.HELD


def test_a_timed_out_reinvite_is_not_accepted() -> None:
    leg = inbound_answered()
    leg.hold(1.0)
    out = leg.reinvite_answered(408, 33.0)
    assert ReinviteDone("sendonly", False) in out
    assert leg.held  # Hatif's intent stands: the music plays, a resume is still possible
    assert leg.resume(34.0) == [SendRequest("INVITE", "sendrecv")]


def test_a_second_491_waits_again() -> None:
    leg = outbound_answered()
    leg.hold(1.0)
    leg.reinvite_answered(491, 1.1, jitter=0.5)
    leg.timer_fired("glare", 4.2)
    assert leg.reinvite_answered(491, 4.3, jitter=0.5) == [StartTimer("glare", pytest.approx(3.05))]
    assert leg.reinvite_pending


def test_glare_then_the_party_hangs_up() -> None:
    leg = outbound_answered()
    leg.hold(1.0)
    leg.reinvite_answered(491, 1.1)
    out = leg.bye(1.5)
    assert CancelTimer("glare") in out and ReinviteDone("sendonly", False) in out
    assert leg.timer_fired("glare", 4.0) == []


# -- a world: leg machines and a call machine, wired as the shells wire them -----------------------------


class World:
    """Leg machines under one call machine, the commands of each fed to the other as `leg.py` and
    `call.py` do: a call's `HangupLeg` hangs a leg up, a leg's `Ended` reaches the call. Still no socket,
    no loop, no clock: what went on the wire is kept in `wire`, what played in `playing`."""

    def __init__(self) -> None:
        self.call = CallMachine()
        self.legs: dict[str, LegMachine] = {}
        self.wire: list[tuple[str, str]] = []
        self.playing: dict[str, str] = {}
        self.bridged: set[frozenset[str]] = set()
        self.events: list[tuple[str, str | None]] = []
        self.now = 0.0

    def tick(self, seconds: float = 0.1) -> float:
        self.now += seconds
        return self.now

    def add(self, name: str, direction: str, *, caller: bool = False) -> LegMachine:
        leg = LegMachine("inbound" if direction == "inbound" else "outbound", self.now)
        self.legs[name] = leg
        self.call.add_leg(name, f"party-{name}", caller=caller)
        return leg

    def caller_answered(self) -> None:
        self.add("caller", "inbound", caller=True)
        self.leg("caller", self.legs["caller"].answer(self.tick()))
        self.leg("caller", self.legs["caller"].ack(self.tick()))

    def dial(self, name: str) -> None:
        """A new outbound leg: INVITE, then 180 (as the shell feeds what comes back)."""
        leg = self.add(name, "outbound")
        self.leg(name, leg.invite(20.0, self.tick()))
        self.leg(name, leg.provisional(180, self.tick()))

    def answers(self, name: str) -> None:
        self.leg(name, self.legs[name].accepted(self.tick()))

    def busy(self, name: str) -> None:
        self.leg(name, self.legs[name].failed(486, self.tick(), "Busy Here"))

    def hangs_up(self, name: str) -> None:
        self.leg(name, self.legs[name].bye(self.tick()))

    def leg(self, name: str, cmds: Sequence[object]) -> None:
        for c in cmds:
            if isinstance(c, SendRequest | SendResponse):
                self.wire.append((name, sent([c])[0]))
            elif isinstance(c, Emit):
                self.events.append((c.kind, name))
            elif isinstance(c, Ended):
                self.run(self.call.leg_ended(name, c.cause, self.now))
            elif isinstance(c, PartyHold):
                self.run(self.call.party_hold(name, c.held, self.now))

    def run(self, cmds: Sequence[object]) -> None:
        for c in cmds:
            if isinstance(c, BridgeLegs):
                self.bridged.add(frozenset((c.a, c.b)))
                self.playing.pop(c.a, None)
                self.playing.pop(c.b, None)
            elif isinstance(c, Unbridge):
                self.bridged = {pair for pair in self.bridged if c.leg not in pair}
            elif isinstance(c, PlayMusic):
                self.playing[c.leg] = "music"
            elif isinstance(c, PlayRingback):
                self.playing[c.leg] = "ringback"
            elif isinstance(c, StopPlaying):
                self.playing.pop(c.leg, None)
            elif isinstance(c, HangupLeg):
                self.leg(c.leg, self.legs[c.leg].hangup(c.cause, self.now))
            elif isinstance(c, Emit):
                self.events.append((c.kind, c.leg))

    def talking(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.bridged

    def sent_to(self, name: str) -> list[str]:
        return [what for who, what in self.wire if who == name]


def direct_call() -> World:
    w = World()
    w.caller_answered()
    w.dial("agent")
    w.answers("agent")
    w.run(w.call.bridge("caller", "agent", w.tick()))
    return w


def test_world_direct_call_and_the_callers_bye() -> None:
    w = direct_call()
    assert w.talking("caller", "agent")
    w.hangs_up("caller")
    assert w.sent_to("agent")[-1] == "BYE"
    assert w.legs["agent"].state is LegPhase.ENDING and w.call.live == {}
    assert w.call.over


def test_world_blind_transfer() -> None:
    w = direct_call()
    w.run(w.call.transfer("caller", "2001", w.tick()))
    assert w.sent_to("agent")[-1] == "BYE" and w.legs["agent"].cause == "transferred"
    assert w.playing["caller"] == "ringback" and w.call.state is CallState.TRANSFERRING
    w.dial("expert")
    w.answers("expert")
    w.run(w.call.target_answered("caller", "expert", w.tick()))
    assert w.talking("caller", "expert") and "caller" not in w.playing
    assert ("transfer", "caller") in w.events
    w.hangs_up("expert")
    assert w.call.state is CallState.PARKED and not w.call.over  # the caller's application decides


def test_world_blind_transfer_to_a_busy_target() -> None:
    w = direct_call()
    w.run(w.call.transfer("caller", "2001", w.tick()))
    w.dial("expert")
    w.busy("expert")
    w.run(w.call.target_failed("caller", w.tick(), "expert"))
    assert w.call.state is CallState.PARKED and "caller" not in w.playing
    assert w.legs["expert"].cause == "busy" and w.sent_to("expert") == ["INVITE"]


def test_world_attended_transfer() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    assert w.playing == {"caller": "music", "agent": "ringback"}
    w.dial("expert")
    w.answers("expert")
    w.run(w.call.consult_answered("agent", "expert", "2001", w.tick()))
    assert w.talking("agent", "expert") and w.playing == {"caller": "music"}
    w.run(w.call.complete("agent", w.tick()))
    assert w.talking("caller", "expert") and not w.playing
    assert w.sent_to("agent")[-1] == "BYE" and w.legs["agent"].cause == "transferred"
    assert w.call.state is CallState.BRIDGED


def test_world_consult_cancelled() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.answers("expert")
    w.run(w.call.consult_answered("agent", "expert", "2001", w.tick()))
    w.run(w.call.cancel_consult("agent", w.tick()))
    assert w.talking("caller", "agent") and not w.playing
    assert w.sent_to("expert")[-1] == "BYE" and w.legs["expert"].state is LegPhase.ENDING


def test_world_consult_target_busy() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.busy("expert")
    w.run(w.call.consult_failed("agent", w.tick(), "expert"))
    assert w.playing == {"caller": "music"}  # the caller still waits
    w.run(w.call.cancel_consult("agent", w.tick()))
    assert w.talking("caller", "agent") and not w.playing


def test_world_consult_target_does_not_answer_in_time() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.leg("expert", w.legs["expert"].timer_fired("ring", w.tick(20.0)))
    assert w.sent_to("expert")[-1] == "CANCEL" and w.legs["expert"].cause == "no_answer"
    w.run(w.call.consult_failed("agent", w.tick(), "expert"))
    w.leg("expert", w.legs["expert"].failed(487, w.tick()))
    assert w.legs["expert"].state is LegPhase.ENDED
    assert w.call.state is CallState.CONSULTING


def test_world_caller_hangs_up_during_the_consultation() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.answers("expert")
    w.run(w.call.consult_answered("agent", "expert", "2001", w.tick()))
    w.hangs_up("caller")
    assert w.sent_to("agent")[-1] == "BYE" and w.sent_to("expert")[-1] == "BYE"
    assert w.call.over and w.call.held_aside == {}
    for name in ("agent", "expert"):
        w.legs[name].bye_done(w.tick())
        assert w.legs[name].state is LegPhase.ENDED


def test_world_caller_hangs_up_while_the_consulted_party_rings() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.hangs_up("caller")
    assert w.sent_to("expert")[-1] == "CANCEL"  # ringing: the caller's end cancels it
    assert w.sent_to("agent")[-1] == "BYE"


def test_world_agent_hangs_up_during_the_consultation() -> None:
    w = direct_call()
    w.run(w.call.consult("agent", w.tick()))
    w.dial("expert")
    w.answers("expert")
    w.run(w.call.consult_answered("agent", "expert", "2001", w.tick()))
    w.hangs_up("agent")
    assert w.talking("caller", "expert") and not w.playing


def test_world_hold_from_both_sides() -> None:
    w = direct_call()
    agent = w.legs["agent"]
    w.leg("agent", agent.hold(w.tick()))
    w.run(w.call.hold("agent", w.now))
    assert w.sent_to("agent")[-1] == "INVITE:sendonly" and w.playing["agent"] == "music"
    w.leg("agent", agent.reinvite_answered(200, w.tick()))
    assert ("leg.held", "agent") in w.events
    caller = w.legs["caller"]
    assert caller.offer(w.tick()) == []
    w.leg("caller", caller.party_hold(True, w.now))
    assert w.playing["agent"] == "music" and caller.state is LegPhase.HELD
    w.leg("agent", agent.resume(w.tick()))
    w.run(w.call.resume("agent", w.now))
    w.leg("agent", agent.reinvite_answered(200, w.tick()))
    w.leg("caller", caller.party_hold(False, w.tick()))
    assert not w.playing and agent.state is LegPhase.ANSWERED and caller.state is LegPhase.ANSWERED


def test_world_glare_on_hold() -> None:
    w = direct_call()
    agent = w.legs["agent"]
    w.leg("agent", agent.hold(w.tick()))
    w.leg("agent", agent.offer(w.tick()))
    assert w.sent_to("agent")[-2:] == ["INVITE:sendonly", "491"]
    w.leg("agent", agent.reinvite_answered(491, w.tick(), jitter=0.0))
    w.leg("agent", agent.timer_fired("glare", w.tick(2.1)))
    assert w.sent_to("agent")[-1] == "INVITE:sendonly"
    w.leg("agent", agent.reinvite_answered(200, w.tick()))
    assert not agent.reinvite_pending and agent.state is LegPhase.HELD


def test_world_conference_of_three() -> None:
    w = World()
    for name in ("a", "b", "c"):
        w.add(name, "inbound", caller=name == "a")
        w.leg(name, w.legs[name].answer(w.tick()))
        w.run(w.call.join(name, "room", w.tick()))
    assert w.call.rooms == {"a": "room", "b": "room", "c": "room"}
    assert w.call.state is CallState.CONFERENCED
    w.hangs_up("b")
    assert w.call.rooms == {"a": "room", "c": "room"}
    w.run(w.call.leave("c", w.tick()))
    assert w.call.rooms == {"a": "room"}


def test_world_cancel_racing_the_200_of_the_callee() -> None:
    w = World()
    w.add("caller", "inbound", caller=True)
    w.leg("caller", w.legs["caller"].ring(w.tick()))
    w.dial("callee")
    w.leg("caller", w.legs["caller"].cancel(w.tick()))  # the caller gives up...
    assert w.sent_to("callee")[-1] == "CANCEL"
    w.answers("callee")  # ...as the callee answers: its 200 gets a BYE
    assert w.sent_to("callee")[-1] == "BYE"
    assert w.legs["callee"].answered_at is None and w.call.over


def test_world_the_callee_answers_as_the_callers_cancel_arrives() -> None:
    w = World()
    w.add("caller", "inbound", caller=True)
    w.dial("callee")
    w.answers("callee")
    w.leg("caller", w.legs["caller"].answer(w.tick()))
    w.run(w.call.bridge("caller", "callee", w.tick()))
    w.leg("caller", w.legs["caller"].cancel(w.tick()))  # too late: our 200 went first
    assert w.talking("caller", "callee") and w.legs["caller"].state is LegPhase.ANSWERED
