"""Issue 11's acceptance: a queue, an agent and an IVR flow created through the HTTP API take the next SIPp call
without a restart; an invalid flow is refused with the message `hatif check-config` gives, and changes nothing.

A real server starts with a tenant that has no user, queue, agent, flow or dial plan. Through the API an
administrator then creates the agent's SIP account, a queue, the agent, a flow routing to the queue and a
dial-plan rule to the flow; the agent's phone (a SIP user agent, as the ACD's live test uses) registers with
the new account, and a SIPp caller dialing 700 goes through the flow into the queue and is answered by it.
The queue is then changed while the agent is not ready: the tenant's new ACD keeps the agent's state, and the
next caller is answered through it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from peers import Sipp, free_port

from hatif import cli
from hatif.people import PeopleService, PeopleStore, Role
from hatif.sim.ua import Answer, IncomingCall, UserAgent
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

pytestmark = [pytest.mark.interop, pytest.mark.slow]

SCENARIO = Path(__file__).parent / "scenarios" / "uac_queue_caller.xml"
PASSWORD = "agent-secret-123"
TIMERS = Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0)

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 36000
  port_max: 36998
  cache: {tmp}/cache
api:
  listen: 127.0.0.1:{api}
logging:
  level: warning
tenants:
  - name: default
    endpoints:
      - {{name: callers, host: 127.0.0.1, port: {callers}}}
"""

QUEUE = {"strategy": "longest_idle", "ring_timeout": 5, "wrapup": 0, "announce_every": 0}
FLOW = {"start": "line", "nodes": {"line": {"type": "route", "to": "queue:line", "on_fail": "bye"},
                                   "bye": {"type": "route", "to": "hangup"}}}
BAD_FLOW = {"start": "line", "nodes": {"line": {"type": "route", "to": "queue:line", "on_fail": "goodbye"},
                                       "bye": {"type": "route", "to": "hangup"}}}


@pytest.fixture
def hatif(tmp_path: Path) -> Any:
    callers, api = free_port(tcp=False), free_port()
    text = CONFIG.format(port=free_port(tcp=False), api=api, callers=callers, tmp=tmp_path)
    with RunningHatif(text) as h:
        h.callers_port = callers  # type: ignore[attr-defined]
        h.api = f"http://127.0.0.1:{api}/api/v1"  # type: ignore[attr-defined]
        yield h


def _administrator(hatif: RunningHatif) -> dict[str, str]:
    people = PeopleService(PeopleStore(hatif.h.services.store.engine))
    adel = people.add_user("default", "adel", Role.ADMINISTRATOR, "correct horse battery")
    issued = people.create_token("default", adel.id, "setup", None)
    assert issued is not None
    return {"Authorization": f"Bearer {issued.secret}"}


def _check_config(center: dict[str, Any], path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What `hatif check-config` says of `center` written to `path`, each line without `file:line: `."""
    path.write_text(yaml.safe_dump(center, sort_keys=False), encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["check-config", str(path)]) == 2
    return [line.split(": ", 1)[1] for line in capsys.readouterr().err.splitlines()]


def test_objects_created_through_the_api_take_the_next_call(hatif: RunningHatif, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    api: str = hatif.api  # type: ignore[attr-defined]
    admin = _administrator(hatif)
    route = hatif.h.sip.directory.route  # what call control asks, on the server's loop
    assert hatif.call(route, "default", "700") is None
    with httpx.Client(base_url=api, headers=admin, timeout=10) as http:
        # The SIP account, the queue and the agent.
        r = http.put("/config/users/a1", json={"password": PASSWORD})
        assert r.status_code == 201, r.text
        assert http.put("/config/queues/line", json=QUEUE).status_code == 201
        r = http.put("/config/agents/a1", json={"queues": ["line"], "login": True})
        assert r.status_code == 201, r.text

        # An invalid flow: refused with check-config's message, and nothing changes.
        r = http.put("/config/flows/main", json=BAD_FLOW)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        center = {"tenants": [{"name": "default", "endpoints": [http.get("/config/endpoints/callers").json()["body"]],
                               "users": [{"username": "a1", "password": PASSWORD}],
                               "queues": [{"name": "line", **QUEUE}],
                               "agents": [{"user": "a1", "queues": ["line"], "login": True}],
                               "flows": {"main": BAD_FLOW}}]}
        assert [p["message"] for p in error["problems"]] == _check_config(center, tmp_path / "c.yaml", capsys)
        assert error["problems"][0]["location"] == "flows.main.nodes.line.on_fail"
        assert http.get("/config/flows").json() == []

        # The valid flow and the dial-plan rule to it.
        assert http.put("/config/flows/main", json=FLOW).status_code == 201
        r = http.put("/config/dialplan", json=[{"match": "^700$", "to": "flow:main"}])
        assert r.status_code in (200, 201), r.text
    target = hatif.call(route, "default", "700")
    assert target is not None and target.name == "flow:main"

    answered: list[str] = []
    host, port = hatif.address("udp")

    def answer(call: IncomingCall) -> Answer:
        return Answer(after=0.2, hang_up_after=1.0)

    scenario = tmp_path / "caller.xml"
    scenario.write_text(SCENARIO.read_text().replace("PATIENCE", "15000"))

    def one_call() -> Any:
        with Sipp(scenario, target=f"{host}:{port}", local_port=hatif.callers_port,  # type: ignore[attr-defined]
                  service="700", max_calls=1, call_limit=1, recv_timeout_ms=20_000) as sipp:
            return sipp.wait(40)

    async def run() -> list[Any]:
        ua = UserAgent((host, port), user="a1", password=PASSWORD, timers=TIMERS, answer=answer,
                       on_answered=lambda call: answered.append(call.call_id))
        await ua.open()
        try:
            registration = await ua.register(expires=300)
            assert registration.ok, registration
            first = await asyncio.to_thread(one_call)
            await asyncio.to_thread(change_the_queue)
            second = await asyncio.to_thread(one_call)
            return [first, second]
        finally:
            await ua.close(timeout=5)

    def change_the_queue() -> None:
        """A changed queue gives the tenant a new ACD; the agent's state (here not ready) goes with it."""
        old = hatif.h.services.acd["default"]
        assert hatif.wait_idle(15)["calls"] == 0
        with httpx.Client(base_url=api, headers=admin, timeout=10) as http:
            r = http.put("/agents/a1/state", json={"state": "not_ready", "reason": "break"})
            assert r.status_code == 200, r.text
            assert http.put("/config/queues/line", json={**QUEUE, "ring_timeout": 6}).status_code == 200
            new = hatif.h.services.acd["default"]
            assert new is not old and new.settings["line"].ring_timeout == 6
            shown = http.get("/agents/a1").json()  # the new ACD answers, the agent's state kept
            assert (shown["state"], shown["reason"]) == ("not_ready", "break"), shown
            assert http.put("/agents/a1/state", json={"state": "available"}).status_code == 200

    results = asyncio.run(run())
    for result in results:
        assert result.ok and result.successful == 1, result.describe()
    assert len(answered) == 2
    kinds = [e.event for e in hatif.h.services.store.queue_events("default", queue="line")]
    assert kinds.count("entered") == 2 and kinds.count("answered") == 2, kinds
    assert hatif.wait_idle(15)["calls"] == 0
