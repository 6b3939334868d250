"""The call shell (`calls.call.Call`) over legs on a fake SIP port and a fake host: the call machine's
commands become media bridges, music, hang-ups and conference mixes. No socket; a loop only runs where the
API awaits an answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from call_fakes import FakeHost, FakeMedia, FakeSip, inbound_leg, invite, sdp

from hatif.calls.call import Call
from hatif.calls.leg import SipLeg
from hatif.calls.state import CallState


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


class Rig:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sip = FakeSip()
        self.host = FakeHost(loop, self.sip)
        self.call = Call(self.host, "default", "1001", None, "2000", "en")  # type: ignore[arg-type]
        self.caller = inbound_leg(self.sip, loop, self.call)
        self.call.add_leg(self.caller, caller=True)
        self.caller.answer()
        self.caller.on_ack(invite(call_id=self.caller.invite.call_id, method="ACK"))

    def place(self, target: str) -> SipLeg:
        leg = self.host.dial(self.call, target)
        assert isinstance(leg, SipLeg)
        return leg

    def answers(self, leg: SipLeg) -> None:
        index = self.sip.index_of(leg)
        self.sip.answer(index, 180)
        self.sip.answer(index, 200, sdp())

    def busy(self, leg: SipLeg) -> None:
        self.sip.answer(self.sip.index_of(leg), 486)

    def agent(self) -> SipLeg:
        agent = self.place("2000")
        self.answers(agent)
        self.call.bridge(self.caller, agent)
        return agent

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def soon(self, action: object) -> None:
        self.loop.call_soon(action)  # type: ignore[arg-type]


def media(leg: SipLeg) -> FakeMedia:
    assert isinstance(leg.media, FakeMedia)
    return leg.media


def test_bridge_joins_media_and_reports(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent = r.agent()
    assert r.call.partner == {r.caller: agent, agent: r.caller}
    assert r.host.media.bridges == [(r.caller.media, agent.media)]
    assert r.call.machine.state is CallState.BRIDGED
    r.call.unbridge(agent)
    assert r.call.partner == {} and r.call.bridges == {}
    assert [k for k in r.host.kinds() if k.startswith("call.")] == ["call.bridged", "call.unbridged"]


def test_an_ended_leg_is_not_bridged(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent = r.place("2000")
    r.busy(agent)
    assert r.call.bridge(r.caller, agent) is None and r.host.media.bridges == []


def test_blind_transfer_to_a_target_that_answers(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent = r.agent()

    async def go() -> object:
        task = asyncio.ensure_future(r.call.transfer(r.caller, "2001"))
        await asyncio.sleep(0)
        assert agent.ended and agent.cause == "transferred"  # released with a BYE
        assert media(r.caller).playing is not None  # ringback meanwhile
        assert r.call.machine.state is CallState.TRANSFERRING
        [expert] = [leg for leg in r.call.legs if leg.party == "2001"]
        r.answers(expert)
        return await task

    assert r.run(go()) == "answered"
    expert = r.call.legs[-1]
    assert r.call.partner_of(r.caller) is expert and media(r.caller).playing is None
    assert [e[2]["how"] for e in r.host.events if e[0] == "transfer"] == ["blind"]


def test_blind_transfer_to_a_busy_target_leaves_the_party_alone(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    r.agent()

    async def go() -> object:
        task = asyncio.ensure_future(r.call.transfer(r.caller, "2001"))
        await asyncio.sleep(0)
        r.busy(r.call.legs[-1])
        return await task

    assert r.run(go()) == "busy"
    assert r.call.machine.state is CallState.PARKED and media(r.caller).playing is None


def test_transfer_to_no_one_callable_fails_at_once(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    r.agent()
    assert r.run(r.call.transfer(r.caller, "nobody")) == "failed"
    assert r.call.machine.state is CallState.PARKED and media(r.caller).playing is None


def consulting(r: Rig) -> tuple[SipLeg, SipLeg]:
    agent = r.agent()

    async def go() -> object:
        task = asyncio.ensure_future(r.call.consult(agent, "2001"))
        await asyncio.sleep(0)
        assert media(r.caller).playing is not None  # the caller waits with music
        r.answers(r.call.legs[-1])
        return await task

    expert = r.run(go())
    assert isinstance(expert, SipLeg)
    return agent, expert


def test_attended_transfer_completed(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent, expert = consulting(r)
    assert r.call.partner_of(agent) is expert and r.call.held_aside == {agent: r.caller}
    assert r.call.complete_transfer(agent) is True
    assert r.call.partner_of(r.caller) is expert and agent.ended and agent.cause == "transferred"
    assert media(r.caller).playing is None
    assert [e[2]["how"] for e in r.host.events if e[0] == "transfer"] == ["consult", "attended"]
    assert r.call.complete_transfer(agent) is False  # nothing left to complete


def test_consult_cancelled_brings_the_agent_back(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent, expert = consulting(r)
    assert r.call.cancel_consult(agent) is True
    assert r.call.partner_of(r.caller) is agent and expert.ended and r.call.held_aside == {}


def test_the_agent_hanging_up_while_consulting_completes_the_transfer(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent, expert = consulting(r)
    agent.hangup()
    assert r.call.partner_of(r.caller) is expert and r.call.held_aside == {}


def test_blind_transfer_is_refused_while_a_party_waits_aside(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent, _ = consulting(r)
    assert r.run(r.call.transfer(agent, "2002")) == "failed"
    assert r.call.held_aside == {agent: r.caller}


def test_the_callers_end_ends_every_leg_and_the_call_once(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent, expert = consulting(r)
    r.caller.hangup()
    assert agent.ended and expert.ended and r.host.ended_calls == [r.call] and r.call.finished
    assert set(r.host.detached) == {r.caller, agent, expert}


def test_hold_plays_music_once_the_party_is_held(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent = r.agent()

    async def go() -> object:
        task = asyncio.ensure_future(r.call.hold(agent))
        await asyncio.sleep(0)
        r.sip.answer(len(r.sip.requests) - 1, 200, sdp("recvonly"))
        return await task

    assert r.run(go()) is True and media(agent).playing is not None and agent.held


def test_the_partys_hold_plays_music_to_its_partner(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    agent = r.agent()
    r.call.on_remote_hold(agent, True)
    assert media(r.caller).playing is not None
    r.call.on_remote_hold(agent, False)
    assert media(r.caller).playing is None


def test_conference_join_and_the_legs_end_leaves_the_room(loop: asyncio.AbstractEventLoop) -> None:
    r = Rig(loop)
    room = r.call.join_conference(r.caller, "room")
    assert room.members == [r.caller] and r.call.machine.state is CallState.CONFERENCED
    r.caller.hangup()
    assert r.host.conferences == {}
    assert [k for k in r.host.kinds() if k.startswith("conference.")] == ["conference.joined", "conference.left"]
