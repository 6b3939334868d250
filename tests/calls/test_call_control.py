"""Call control against SIPp: hold and resume by re-INVITE, blind and attended transfer, REFER, conference.

Each test drives a real Hatif between SIPp instances (trusted endpoints on loopback) and acts on the live
call through the async API on Hatif's own loop, the way IVR, queues and the web do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from peers import Sipp, free_port

from hatif.calls.call import Call
from hatif.calls.leg import LegState, SipLeg
from hatif_server import RunningHatif

SCENARIOS = Path(__file__).parent.parent / "interop" / "scenarios"
T = TypeVar("T")

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: 5
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 31000
  port_max: 31998
  cache: {tmp}
  recordings: {tmp}
logging:
  level: warning
tenants:
  - name: default
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
      - {{name: agent, host: 127.0.0.1, port: {agent}}}
      - {{name: expert, host: 127.0.0.1, port: {expert}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:agent'}}
      - {{match: '^2001$', to: 'endpoint:expert'}}
      - {{match: '^3000$', to: 'app:conference:room'}}
      - {{match: '^600$', to: 'app:echo'}}
"""


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.port, self.uac_port = free_port(tcp=False), free_port(tcp=False)
        self.agent_port, self.expert_port = free_port(tcp=False), free_port(tcp=False)
        self.hatif = RunningHatif(CONFIG.format(port=self.port, uac=self.uac_port, agent=self.agent_port,
                                                expert=self.expert_port, tmp=tmp))

    def uac(self, service: str, **kw: Any) -> Sipp:
        return Sipp("uac", target=f"127.0.0.1:{self.port}", local_port=self.uac_port, service=service,
                    recv_timeout_ms=10_000, **kw)

    def agent(self, scenario: str | Path = "uas") -> Sipp:
        return Sipp(scenario, local_port=self.agent_port, max_calls=1)

    def expert(self) -> Sipp:
        return Sipp("uas", local_port=self.expert_port, max_calls=1)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.hatif.loop).result(timeout)

    def the_call(self, timeout: float = 5.0) -> Call:
        """The one live call, once its outbound leg is answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.hatif.call(lambda: list(self.hatif.h.control.calls.values()))
            if calls and any(leg.direction == "outbound" and leg.state is LegState.ANSWERED
                             for leg in calls[0].legs):
                return calls[0]
            time.sleep(0.05)
        raise AssertionError("no answered call")

    def events(self, kind: str) -> list[Any]:
        return self.hatif.call(lambda: [e for e in self.hatif.h.control.events if e.kind == kind])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    with r.hatif:
        yield r


def outbound(call: Call) -> SipLeg:
    return next(leg for leg in call.legs if leg.direction == "outbound" and not leg.ended)


def test_hold_and_resume_by_reinvite_with_music(rig: Rig) -> None:
    with rig.agent(SCENARIOS / "uas_hold.xml") as agent, rig.uac("2000", max_calls=1,
                                                                  call_duration_ms=3000) as uac:
        call = rig.the_call()
        leg = outbound(call)
        sent_before = rig.hatif.call(lambda: leg.media.sent)
        assert rig.run(call.hold(leg)) is True
        time.sleep(0.6)
        sent_on_hold = rig.hatif.call(lambda: leg.media.sent) - sent_before
        assert rig.run(call.resume(leg)) is True
        assert uac.wait(20).successful == 1
        result = agent.wait(10)
    # The callee's scenario checked a=sendonly in the first re-INVITE and a=sendrecv in the second.
    assert result.ok and result.successful == 1, result.describe()
    assert sent_on_hold >= 20  # music on hold: 50 packets/s to the held party
    assert [e.data["by"] for e in rig.events("leg.held")] == ["hatif"]
    assert [e.data["by"] for e in rig.events("leg.resumed")] == ["hatif"]
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_blind_transfer_through_the_api(rig: Rig) -> None:
    with rig.agent() as agent, rig.expert() as expert, rig.uac("2000", max_calls=1, call_duration_ms=3000) as uac:
        call = rig.the_call()
        caller = call.caller
        assert caller is not None
        assert rig.run(call.transfer(caller, "2001")) == "answered"
        assert uac.wait(20).successful == 1
        assert agent.wait(10).successful == 1  # released with a BYE
        assert expert.wait(10).successful == 1  # answered, then the caller's BYE reached it
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}
    [record] = rig.hatif.call(lambda: [e for e in rig.hatif.h.control.events if e.kind == "call.ended"])
    assert record.data["outcome"] == "answered"
    assert [e.data["how"] for e in rig.events("transfer")] == ["blind"]


def test_attended_transfer_through_the_api(rig: Rig) -> None:
    with rig.agent() as agent, rig.expert() as expert, rig.uac("2000", max_calls=1, call_duration_ms=4000) as uac:
        call = rig.the_call()
        agent_leg = outbound(call)
        consulted = rig.run(call.consult(agent_leg, "2001"))
        assert isinstance(consulted, SipLeg) and consulted.state is LegState.ANSWERED
        assert rig.hatif.call(lambda: call.partner.get(agent_leg)) is consulted  # agent talks to the expert
        assert rig.hatif.call(lambda: call.complete_transfer(agent_leg)) is True
        assert rig.hatif.call(lambda: call.partner.get(call.caller)) is consulted  # caller talks to the expert
        assert agent.wait(10).successful == 1
        assert uac.wait(20).successful == 1
        assert expert.wait(10).successful == 1
    assert [e.data["how"] for e in rig.events("transfer")] == ["consult", "attended"]
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_refer_from_the_callee_transfers_the_caller(rig: Rig) -> None:
    with rig.agent(SCENARIOS / "uas_refer.xml") as agent, rig.expert() as expert, \
            rig.uac("2000", max_calls=1, call_duration_ms=3000) as uac:
        assert uac.wait(20).successful == 1
        result = agent.wait(10)
        assert result.ok and result.successful == 1, result.describe()
        assert expert.wait(10).successful == 1
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_three_callers_in_a_conference(rig: Rig) -> None:
    with rig.uac("3000", max_calls=3, rate=10, call_limit=3, call_duration_ms=2500) as uac:
        deadline = time.monotonic() + 5
        members = 0
        while time.monotonic() < deadline and members < 3:
            members = rig.hatif.call(lambda: sum(len(r.members) for r in rig.hatif.h.control.conferences.values()))
            time.sleep(0.05)
        assert members == 3
        before = rig.hatif.call(lambda: [leg.media.sent for r in rig.hatif.h.control.conferences.values()
                                         for leg in r.members])
        time.sleep(0.5)
        after = rig.hatif.call(lambda: [leg.media.sent for r in rig.hatif.h.control.conferences.values()
                                        for leg in r.members])
        assert all(b - a >= 15 for a, b in zip(before, after, strict=True))  # the mix feeds every member
        assert uac.wait(20).successful == 3
    assert rig.hatif.call(lambda: dict(rig.hatif.h.control.conferences)) == {}
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_late_offer_gets_our_offer_in_the_200_and_takes_the_answer_from_the_ack(rig: Rig) -> None:
    with Sipp(SCENARIOS / "uac_late_offer.xml", target=f"127.0.0.1:{rig.port}", local_port=rig.uac_port,
              service="600", max_calls=1, recv_timeout_ms=10_000) as uac:
        deadline = time.monotonic() + 5
        remote = None
        while time.monotonic() < deadline and remote is None:
            remote = rig.hatif.call(lambda: next((c.caller.media.remote for c in rig.hatif.h.control.calls.values()
                                                  if c.caller is not None), None))
            time.sleep(0.05)
        result = uac.wait(20)
        media_port = uac.media_port
    assert result.ok and result.successful == 1, result.describe()  # the 200 carried an m=audio offer
    assert remote == ("127.0.0.1", media_port)  # learned from the SDP answer in the ACK
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_agent_hanging_up_during_a_consultation_completes_the_transfer(rig: Rig) -> None:
    with rig.agent() as agent, rig.expert() as expert, rig.uac("2000", max_calls=1, call_duration_ms=4000) as uac:
        call = rig.the_call()
        agent_leg = outbound(call)
        consulted = rig.run(call.consult(agent_leg, "2001"))
        assert isinstance(consulted, SipLeg)
        rig.hatif.call(lambda: agent_leg.hangup())  # as on a desk phone: hanging up hands the caller over
        assert rig.hatif.call(lambda: call.partner.get(call.caller)) is consulted
        assert rig.hatif.call(lambda: dict(call.held_aside)) == {}
        assert agent.wait(10).successful == 1
        assert uac.wait(20).successful == 1
        assert expert.wait(10).successful == 1
    assert rig.hatif.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}
