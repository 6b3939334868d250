"""The ACD over real calls: 50 SIPp callers into one queue served by 5 virtual agents (SIP user agents).

The callers wait with a patience of a few seconds; the agents answer after a short ring, talk a second or two
and hang up; one agent lets its phone ring out once. Checked from every side: SIPp's own results, the agents'
phones (never two calls at once), the router's events (offers only to available agents, wrap-up kept, a
missed ring makes the agent not ready) and the queue log in the store (everyone who entered was answered or
abandoned).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from peers import Sipp, free_port

from hatif.acd.model import AgentState, AgentStateChanged, Offer
from hatif.sim.ua import Answer, IncomingCall, UserAgent
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

SCENARIO = Path(__file__).parent.parent / "interop" / "scenarios" / "uac_queue_caller.xml"
AGENTS = ["a1", "a2", "a3", "a4", "a5"]
PASSWORD = "agent-secret-123"
WRAPUP = 1.0
CALLERS = 50

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 34000
  port_max: 35998
  cache: {tmp}
security:
  flood_limit: 100000
logging:
  level: warning
tenants:
  - name: default
    users:
{users}
    endpoints:
      - {{name: callers, host: 127.0.0.1, port: {callers}}}
    dialplan:
      - {{match: '^800$', to: 'queue:line'}}
    queues:
      - {{name: line, strategy: longest_idle, ring_timeout: 2, wrapup: {wrapup}, announce_every: 0,
         service_level: 5}}
    agents:
{agents}
"""


class Phones:
    """The agents' phones: answer after a short ring, talk briefly; `a5` lets its first call ring out."""

    def __init__(self) -> None:
        self.active: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.rng = random.Random(7)
        self.missed_once = False
        self.lock = threading.Lock()

    def policy(self, agent: str) -> Any:
        def decide(call: IncomingCall) -> Answer:
            if agent == "a5" and not self.missed_once:
                self.missed_once = True
                return Answer(after=5.0, hang_up_after=1.0)  # rings past the queue's 2 s ring timeout
            return Answer(after=self.rng.uniform(0.1, 0.4), hang_up_after=self.rng.uniform(0.8, 2.0))
        return decide

    def hooks(self, agent: str) -> dict[str, Any]:
        def answered(call: IncomingCall) -> None:
            self.active[agent] += 1
            self.answered[agent] += 1
            self.most[agent] = max(self.most[agent], self.active[agent])

        def ended(call: IncomingCall) -> None:
            if call.answered is not None:
                self.active[agent] -= 1
        return {"on_answered": answered, "on_ended": ended}


@pytest.fixture
def hatif(tmp_path: Path) -> Any:
    callers = free_port(tcp=False)
    users = "\n".join(f'      - {{username: "{a}", password: "{PASSWORD}"}}' for a in AGENTS)
    agents = "\n".join(f'      - {{user: "{a}", queues: [line], login: true}}' for a in AGENTS)
    text = CONFIG.format(port=free_port(tcp=False), callers=callers, tmp=tmp_path, users=users, agents=agents,
                         wrapup=WRAPUP)
    with RunningHatif(text) as h:
        h.callers_port = callers  # type: ignore[attr-defined]
        yield h


def test_fifty_callers_five_agents(hatif: RunningHatif, tmp_path: Path) -> None:
    phones = Phones()
    host, port = hatif.address("udp")
    scenario = tmp_path / "caller.xml"
    scenario.write_text(SCENARIO.read_text().replace("PATIENCE", "5000"))

    async def run() -> Any:
        uas = [UserAgent((host, port), user=a, password=PASSWORD, timers=Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0),
                         answer=phones.policy(a), **phones.hooks(a)) for a in AGENTS]
        for ua in uas:
            await ua.open()
            registration = await ua.register(expires=300)
            assert registration.ok, registration
        try:
            with Sipp(scenario, target=f"{host}:{port}", local_port=hatif.callers_port,  # type: ignore[attr-defined]
                      service="800", rate=5, max_calls=CALLERS, call_limit=CALLERS, recv_timeout_ms=30_000) as sipp:
                result = await asyncio.to_thread(sipp.wait, 120)
            await asyncio.sleep(WRAPUP + 0.5)
        finally:
            for ua in uas:
                await ua.close(timeout=5)
        return result

    result = asyncio.run(run())
    assert result.ok and result.successful == CALLERS, result.describe()
    assert hatif.wait_idle(15) == {"transactions": hatif.counts()["transactions"], "calls": 0, "dialogs": 0}

    acd = hatif.h.services.acd["default"]
    events = hatif.call(lambda: list(acd.events))
    hatif.call(acd.router.check_invariants)
    log = hatif.h.services.store.queue_events("default", queue="line")

    # The queue log adds up: everyone who entered was answered, abandoned, called back or overflowed.
    kinds = Counter(e.event for e in log)
    assert kinds["entered"] == CALLERS
    assert kinds["entered"] == kinds["answered"] + kinds["abandoned"] + kinds["callback_requested"] + \
        kinds["overflowed"], kinds
    assert kinds["answered"] >= 10 and kinds["abandoned"] >= 1, kinds  # the queue was busy enough to lose some
    assert kinds["completed"] == kinds["answered"]
    per_call = defaultdict(list)
    for e in log:
        per_call[e.call_id].append(e.event)
    assert all(v[0] == "entered" and ("answered" in v) != ("abandoned" in v) for v in per_call.values()), per_call

    # No agent's phone ever had two calls at once; every answered call was answered by someone.
    assert max(phones.most.values()) == 1, phones.most
    assert sum(phones.answered.values()) >= kinds["answered"]

    # Offers go to available agents only; wrap-up is kept; the missed ring made a5 not ready.
    changes = [e for e in events if isinstance(e, AgentStateChanged)]
    assert all(c.old is AgentState.AVAILABLE for c in changes if c.new is AgentState.RINGING), changes
    last: dict[str, AgentStateChanged] = {}
    offers = 0
    for e in events:  # the router reports each offer right after the agent's move from AVAILABLE to RINGING
        if isinstance(e, AgentStateChanged):
            last[e.agent] = e
        elif isinstance(e, Offer):
            offers += 1
            assert all(last[a].old is AgentState.AVAILABLE and last[a].new is AgentState.RINGING
                       for a in e.agents), (e, last)
    assert offers >= kinds["answered"]
    wrapups: dict[str, float] = {}
    for c in changes:
        if c.new is AgentState.AFTER_CALL_WORK:
            wrapups[c.agent] = c.at
        elif c.new is AgentState.RINGING and c.agent in wrapups:
            assert c.at - wrapups.pop(c.agent) >= WRAPUP - 1e-6, c
    missed = [c for c in changes if c.agent == "a5" and c.new is AgentState.NOT_READY]
    assert missed and missed[0].reason == "missed"
    assert not any(c.agent == "a5" and c.new is AgentState.RINGING and c.at > missed[0].at for c in changes)
