"""The demo's live stream against a real Hatif: agents register and answer, callers arrive and are connected
by their caller ID, patience ends unanswered calls, and stop() leaves nothing behind, in bounded time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers import free_port

from hatif.sim.stream import DemoStream, DemoStreamError
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

TIMERS = Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0)
AGENTS = (("1001", "agent-pass-1"), ("1002", "agent-pass-2"))

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: 10
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
  registration: {{min_expires: 10}}
security:
  flood_limit: 100000
media:
  port_min: {pmin}
  port_max: {pmax}
  cache: {cache}
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "1001", password: "agent-pass-1"}}
      - {{username: "1002", password: "agent-pass-2"}}
    endpoints:
      - {{name: demo-callers, host: 127.0.0.1, port: {caller_port}, trusted: true}}
    dialplan:
      - {{match: '^800$', to: 'user:1001'}}
      - {{match: '^801$', to: 'user:1002'}}
      - {{match: '^600$', to: 'app:echo'}}
"""


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.caller_port = free_port(tcp=False)
        pmin = 39400  # RTP ports of this file's servers (outside free_port's range, which fragments)
        self.hatif = RunningHatif(CONFIG.format(port=free_port(tcp=False), pmin=pmin, pmax=pmin + 199, cache=tmp,
                                                caller_port=self.caller_port))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("cache"))
    with r.hatif:
        yield r


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition()` every 50 ms for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return bool(condition())


def calls_and_dialogs_left(h: RunningHatif, timeout: float = 5.0) -> dict[str, int]:
    """Like `RunningHatif.wait_idle`, without waiting for finished transactions to linger out (Timer J, K)."""
    deadline = time.monotonic() + timeout
    counts = h.counts()
    while (counts["calls"] or counts["dialogs"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = h.counts()
    return {"calls": counts["calls"], "dialogs": counts["dialogs"]}


def registered(h: RunningHatif, user: str) -> bool:
    def read() -> bool:
        return bool(h.h.sip.registry.lookup(("default", user), h.loop.time()))
    return h.call(read)


def test_agents_answer_callers_and_stop_cleans_up(rig: Rig) -> None:
    # Two callers a second on average dial 800 and 801 (straight to agents 1001 and 1002) for 5 s; agents
    # ring 0.1-0.3 s and talk 0.6 s on average. Callers are patient, so nearly every call is answered.
    stream = DemoStream(rig.hatif.address(), agents=AGENTS, numbers=("800", "801"), calls_per_hour=7200,
                        mean_handle=0.6, max_handle=2.0, answer_delay=(0.1, 0.3), mean_patience=30.0,
                        caller_port=rig.caller_port, local_host="127.0.0.1", max_call=10.0, timers=TIMERS, seed=5)

    async def scenario() -> tuple[float, int, int]:
        await stream.start()
        assert await until(lambda: stream.stats.agents_registered == 2, 3.0), stream.stats
        assert registered(rig.hatif, "1001") and registered(rig.hatif, "1002")
        await asyncio.sleep(5.0)
        during = stream.stats
        assert during.placed >= 4, during
        assert during.answered >= 3, during  # connected to an agent, matched by the caller's own caller ID
        assert during.agent_calls >= during.answered
        assert during.in_progress <= 20
        started = time.monotonic()
        await stream.stop(timeout=3.0)
        return time.monotonic() - started, during.placed, stream.stats.in_progress

    took, placed, left = asyncio.run(scenario())
    assert took < 4.0, took
    assert left == 0
    after = stream.stats
    assert after.placed >= placed
    assert after.answered + after.abandoned + after.rejected + after.failed == after.placed, after
    assert after.failed <= 2, after  # at most a call or two cut by stop() as it was being set up
    assert calls_and_dialogs_left(rig.hatif) == {"calls": 0, "dialogs": 0}
    assert not registered(rig.hatif, "1001") and not registered(rig.hatif, "1002")


def test_callers_give_up_when_no_agent_takes_them(rig: Rig) -> None:
    # 600 is the echo test: Hatif answers at once at SIP level, no agent ever takes the call, so each
    # caller hangs up when its patience (0.3 s on average) runs out, and counts as abandoned.
    stream = DemoStream(rig.hatif.address(), agents=(), numbers=("600",), calls_per_hour=10_000,
                        mean_patience=0.3, caller_port=rig.caller_port, local_host="127.0.0.1", max_call=5.0,
                        timers=TIMERS, seed=2, rtp=False)

    async def scenario() -> None:
        await stream.start()
        await until(lambda: stream.stats.abandoned >= 3, 5.0)
        await stream.stop(timeout=2.0)

    asyncio.run(scenario())
    s = stream.stats
    assert s.abandoned >= 3 and s.answered == 0 and s.agent_calls == 0, s
    assert calls_and_dialogs_left(rig.hatif) == {"calls": 0, "dialogs": 0}


def test_a_server_gone_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens at the server's address: registrations and INVITEs go unanswered. The stream keeps
    # going, and stop() still ends within its bound.
    nobody = free_port(tcp=False)
    stream = DemoStream(("127.0.0.1", nobody), agents=AGENTS[:1], numbers=("800",), calls_per_hour=36_000,
                        local_host="127.0.0.1", timers=TIMERS, seed=3, rtp=False)

    async def scenario() -> float:
        await stream.start()
        await asyncio.sleep(0.8)
        started = time.monotonic()
        await stream.stop(timeout=1.0)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took < 2.0, took
    s = stream.stats
    assert s.agents_registered == 0 and s.answered == 0 and s.in_progress == 0, s


def test_bad_settings_and_a_busy_port_are_named() -> None:
    with pytest.raises(DemoStreamError, match="number"):
        DemoStream(("127.0.0.1", 5060), agents=AGENTS, numbers=())
    with pytest.raises(DemoStreamError, match="calls_per_hour"):
        DemoStream(("127.0.0.1", 5060), agents=AGENTS, numbers=("800",), calls_per_hour=0)
    with pytest.raises(DemoStreamError, match="answer_delay"):
        DemoStream(("127.0.0.1", 5060), agents=AGENTS, numbers=("800",), answer_delay=(3.0, 1.0))
    with pytest.raises(DemoStreamError, match="1001"):
        DemoStream(("127.0.0.1", 5060), agents=(AGENTS[0], AGENTS[0]), numbers=("800",))

    async def busy() -> None:
        first = DemoStream(("127.0.0.1", 9), agents=(), numbers=("800",), calls_per_hour=1,
                           local_host="127.0.0.1", rtp=False)
        await first.start()
        port = first.caller_address[1]
        try:
            second = DemoStream(("127.0.0.1", 9), agents=(), numbers=("800",), caller_port=port,
                                local_host="127.0.0.1", rtp=False)
            with pytest.raises(DemoStreamError, match=str(port)):
                await second.start()
        finally:
            await first.stop(timeout=0.5)

    asyncio.run(busy())
