"""The leg shell (`calls.leg.SipLeg`) against a fake SIP port and media leg: the machine's commands become
the right SIP messages, timers and reports. No socket; the loop is never run (its timers are read off the
leg), except where a future is awaited."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from call_fakes import FakeListener, FakeSip, inbound_leg, invite, outbound_leg, sdp

from hatif.calls.leg import LegState, ServerTx, SipLeg
from hatif.calls.state import LegPhase
from hatif.sip.message import Request
from hatif.sip.transaction import ServerInviteTransaction, ServerNonInviteTransaction, Timers


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def in_dialog(leg: SipLeg, method: str, body: bytes = b"", cseq: int = 2) -> tuple[Request, ServerTx]:
    request = invite(body, call_id=leg.invite.call_id, method=method, cseq=cseq, to_tag=leg.tag)
    if method == "INVITE":
        return request, ServerInviteTransaction(request, False, Timers())
    return request, ServerNonInviteTransaction(request, False, Timers())


def answered_inbound(loop: asyncio.AbstractEventLoop) -> tuple[FakeSip, FakeListener, SipLeg]:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.answer()
    leg.on_ack(invite(call_id=leg.invite.call_id, method="ACK"))
    return sip, call, leg


def answered_outbound(loop: asyncio.AbstractEventLoop) -> tuple[FakeSip, FakeListener, SipLeg]:
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    sip.answer(0, 180)
    sip.answer(0, 200, sdp())
    return sip, call, leg


# -- inbound ---------------------------------------------------------------------------------------------


def test_inbound_rings_answers_and_retransmits_until_the_ack(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.ring()
    assert sip.statuses == [180] and leg.state is LegState.RINGING
    assert sip.responses[0].headers.get("Contact") == "<sip:hatif@127.0.0.1:5060>"
    leg.answer()
    assert sip.statuses == [180, 200] and sip.responses[1].body.startswith(b"v=0")
    assert leg.dialog is not None and leg.answered.done() and call.reports == ["answered"]
    assert "2xx" in leg._timers  # retransmitted at T1 until the ACK
    leg._timer_fired("2xx")
    assert len(sip.stateless) == 1 and sip.stateless[0] == bytes(sip.responses[1])
    leg.on_ack(invite(call_id=leg.invite.call_id, method="ACK"))
    assert "2xx" not in leg._timers and leg.acked
    assert call.kinds() == ["leg.ringing", "leg.answered"]


def test_inbound_early_media_is_a_183_with_our_sdp(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.ring(early_media=True)
    assert sip.statuses == [183] and sip.responses[0].body == leg.local_sdp.serialize()
    assert leg.phase is LegPhase.EARLY


def test_inbound_cancel_is_487_and_ends_the_leg_but_not_after_the_answer(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.on_cancel()
    assert sip.statuses == [487] and leg.ended and leg.cause == "cancelled"
    assert leg.finished.result() == "cancelled" and call.reports == ["ended:cancelled"]
    assert leg.media.closed
    sip2, _call2, up = answered_inbound(loop)
    up.on_cancel()  # crossed our 200 (RFC 3261 §9.2): absorbed
    assert sip2.statuses == [200] and not up.ended


def test_inbound_reject_sends_the_status_with_retry_after_for_503(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.reject(503, "Busy Everywhere")
    assert sip.statuses == [503] and sip.responses[0].headers.get("Retry-After") == "5"
    assert leg.ended and leg.status == 503
    leg.reject(486)  # once over, nothing more goes out
    assert sip.statuses == [503]


def test_the_partys_bye_is_answered_once_acknowledged(loop: asyncio.AbstractEventLoop) -> None:
    sip, call, leg = answered_inbound(loop)
    request, tx = in_dialog(leg, "BYE")
    leg.on_request(request, tx)
    assert leg.ended and leg.cause == "normal" and leg.dialog is None
    assert sip.statuses[-1] == 200 and call.reports[-1] == "ended:normal"
    assert call.kinds()[-1] == "leg.ended"


def test_hangup_of_an_answered_leg_is_one_bye(loop: asyncio.AbstractEventLoop) -> None:
    counted: list[int] = []
    sip, _call, leg = answered_inbound(loop)
    leg.context = dataclasses.replace(leg.context, byes=counted.append)
    leg.hangup("normal")
    leg.hangup("normal")
    assert sip.methods == ["BYE"] and leg.ended and leg.phase is LegPhase.ENDING and counted == [1]
    sip.answer(0, 200)
    assert leg.phase is LegPhase.ENDED and counted == [1, -1]


# -- outbound --------------------------------------------------------------------------------------------


def test_outbound_rings_and_answers(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    assert sip.methods == ["INVITE"] and "ring" in leg._timers
    sip.answer(0, 100)
    sip.answer(0, 180)
    assert leg.state is LegState.RINGING and call.reports == ["progress"]
    sip.answer(0, 200, sdp())
    assert leg.state is LegState.ANSWERED and leg.answered.done() and len(sip.acks) == 1
    assert "ring" not in leg._timers and leg.media.remote == ("127.0.0.1", 40000)
    sip.answer(0, 200, sdp())  # retransmitted: ACKed again, nothing else
    assert len(sip.stateless) == 1 and call.reports == ["progress", "answered"]


def test_outbound_183_with_sdp_is_early_media(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    sip.answer(0, 183, sdp())
    assert leg.phase is LegPhase.EARLY and call.events[-1] == ("leg.ringing", {"early": True, "status": 183})


@pytest.mark.parametrize(("status", "cause"), [(486, "busy"), (480, "unavailable"), (603, "rejected"),
                                               (407, "unavailable")])
def test_outbound_failures_end_the_leg_with_their_cause(loop: asyncio.AbstractEventLoop, status: int,
                                                        cause: str) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    sip.answer(0, status)
    assert leg.ended and leg.cause == cause and call.reports == [f"ended:{cause}"]


def test_giving_up_before_a_provisional_waits_to_cancel_and_a_racing_200_gets_a_bye(
        loop: asyncio.AbstractEventLoop) -> None:
    """RFC 3261 §9.1: no CANCEL before a provisional response; a 200 crossing the CANCEL is ACKed and BYEd."""
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    leg.cancel("cancelled")
    assert sip.methods == ["INVITE"] and leg.ended and call.reports == ["ended:cancelled"]
    sip.answer(0, 180)
    assert sip.methods == ["INVITE", "CANCEL"] and call.reports == ["ended:cancelled"]  # no progress told
    sip.answer(0, 200, sdp())
    assert sip.methods == ["INVITE", "CANCEL", "BYE"] and len(sip.acks) == 1
    assert leg.answered_at is None and not leg.answered.done()


def test_the_ring_timeout_cancels(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = outbound_leg(sip, loop, call)
    leg.send_invite(30.0)
    sip.answer(0, 180)
    leg._timer_fired("ring")
    assert sip.methods == ["INVITE", "CANCEL"] and leg.cause == "no_answer" and leg.status == 480


# -- hold, glare, the party's requests -------------------------------------------------------------------


def test_hold_is_a_sendonly_reinvite_and_its_answer_resolves_the_future(loop: asyncio.AbstractEventLoop) -> None:
    sip, call, leg = answered_outbound(loop)
    done = leg.hold()
    assert sip.methods == ["INVITE", "INVITE"] and b"a=sendonly" in sip.requests[1].request.body
    assert leg.held and leg.phase is LegPhase.HELD and not done.done()
    sip.answer(1, 200, sdp("recvonly"))
    assert done.result() is True and len(sip.acks) == 2
    assert call.events[-1] == ("leg.held", {"by": "hatif", "accepted": True})
    again = leg.hold()
    assert again.result() is False  # already held


def test_a_reinvite_crossing_ours_gets_491_and_ours_is_retried(loop: asyncio.AbstractEventLoop) -> None:
    """Glare (RFC 3261 §14): the party's offer while ours is out is answered 491; our own 491 waits the
    §14.1 interval (2.1-4 s for the Call-ID's owner) and goes again."""
    sip, _call, leg = answered_outbound(loop)
    done = leg.hold()
    request, tx = in_dialog(leg, "INVITE", sdp())
    leg.on_request(request, tx)
    assert sip.statuses == [491]
    sip.answer(1, 491)
    assert "glare" in leg._timers and not done.done()
    assert 2.1 <= leg._timers["glare"].when() - loop.time() <= 4.0
    leg._timer_fired("glare")
    assert sip.methods == ["INVITE", "INVITE", "INVITE"] and b"a=sendonly" in sip.requests[2].request.body
    sip.answer(2, 200, sdp())
    assert done.result() is True


def test_the_partys_hold_is_answered_and_reported(loop: asyncio.AbstractEventLoop) -> None:
    sip, call, leg = answered_inbound(loop)
    request, tx = in_dialog(leg, "INVITE", sdp("sendonly"))
    leg.on_request(request, tx)
    assert sip.statuses[-1] == 200 and b"a=recvonly" in sip.responses[-1].body
    assert leg.remote_held and leg.phase is LegPhase.HELD and call.reports[-1] == "party_hold:True"
    request, tx = in_dialog(leg, "INVITE", sdp(), cseq=3)
    leg.on_request(request, tx)
    assert not leg.remote_held and leg.phase is LegPhase.ANSWERED and call.reports[-1] == "party_hold:False"


def test_an_offer_held_from_the_start_answers_held(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call, sdp("sendonly"))
    leg.answer()
    assert leg.phase is LegPhase.HELD and leg.state is LegState.ANSWERED and leg.remote_held


def test_refer_is_202_when_the_call_takes_it_and_481_otherwise(loop: asyncio.AbstractEventLoop) -> None:
    sip, call, leg = answered_inbound(loop)
    request, tx = in_dialog(leg, "REFER")
    request.headers.add("Refer-To", "<sip:2001@127.0.0.1>")
    leg.on_request(request, tx)
    assert sip.statuses[-1] == 202 and call.reports[-1] == "refer:2001"
    call.refer_ok = False
    request, tx = in_dialog(leg, "REFER", cseq=3)
    request.headers.add("Refer-To", "<sip:2001@127.0.0.1>")
    leg.on_request(request, tx)
    assert sip.statuses[-1] == 481
    request, tx = in_dialog(leg, "REFER", cseq=4)
    leg.on_request(request, tx)
    assert sip.statuses[-1] == 400


def test_requests_after_the_end_are_481(loop: asyncio.AbstractEventLoop) -> None:
    sip, _call, leg = answered_inbound(loop)
    leg.hangup()
    request, tx = in_dialog(leg, "INVITE", sdp())
    leg.on_request(request, tx)
    assert sip.statuses[-1] == 481


def test_the_ending_leg_cancels_its_timers(loop: asyncio.AbstractEventLoop) -> None:
    sip, call = FakeSip(), FakeListener()
    leg = inbound_leg(sip, loop, call)
    leg.answer()
    handle = leg._timers["2xx"]
    leg.hangup("normal")
    assert handle.cancelled() and leg._timers == {}
