"""The waiting caller's keys, over real calls: 1 asks for a callback (made when an agent frees up), 2 leaves
a message in the queue's mailbox. Callers are SIPp sending RFC 4733 digits; the agent is a virtual SIP phone;
the called-back customer is a SIPp callee behind a trunk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ivr_walk import scenario
from peers import Sipp, free_port

from hatif.sim.ua import Answer, UserAgent
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 36000
  port_max: 36998
  cache: {tmp}
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "a1", password: "agent-secret-123"}}
    endpoints:
      - {{name: caller-cb, host: 127.0.0.1, port: {cb}}}
      - {{name: caller-vm, host: 127.0.0.1, port: {vm}}}
      - {{name: customer, host: 127.0.0.1, port: {customer}, trusted: false}}
    dialplan:
      - {{match: '^800$', to: 'queue:line'}}
      - {{match: '^555\\d+$', to: 'endpoint:customer'}}
    mailboxes:
      - {{name: line, max_seconds: 5, min_seconds: 0.5}}
    queues:
      - {{name: line, ring_timeout: 5, wrapup: 0, announce_every: 60, mailbox: line, callback_key: "1",
         voicemail_key: "2"}}
    agents:
      - {{user: a1, queues: [line], login: true}}
"""


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_callback_and_voicemail_keys(tmp_path: Path) -> None:
    cb, vm, customer = free_port(tcp=False), free_port(tcp=False), free_port(tcp=False)
    text = CONFIG.format(port=free_port(tcp=False), tmp=tmp_path, cb=cb, vm=vm, customer=customer)
    with RunningHatif(text) as h:
        acd = h.h.services.acd["default"]
        assert h.call(lambda: acd.set_not_ready("a1", "break"))  # nobody free: callers wait
        host, port = h.address("udp")
        calls = tmp_path / "scenarios"
        # Key 1 during the first announcement: Hatif confirms the callback and hangs up.
        want_callback = scenario(calls, "callback", "5550001", [("pause", 1500), ("digits", "1"), ("wait_bye", "")])
        # Key 2: a message for the queue's mailbox; recording ends at the mailbox's 5 s maximum.
        leave_message = scenario(calls, "message", "5550002", [("pause", 1500), ("digits", "2"), ("speak", 2),
                                                              ("wait_bye", "")])
        with Sipp(want_callback, target=f"{host}:{port}", local_port=cb, service="800", max_calls=1,
                  recv_timeout_ms=60_000) as c1, \
                Sipp(leave_message, target=f"{host}:{port}", local_port=vm, service="800", max_calls=1,
                     recv_timeout_ms=60_000) as c2:
            assert c1.wait(60).successful == 1
            assert c2.wait(60).successful == 1
        messages = h.h.services.store.voicemails("default", "line")
        assert [m.caller for m in messages] == ["5550002"] and 4.0 <= messages[0].seconds <= 5.1

        async def agent_answers() -> None:
            async with UserAgent((host, port), user="a1", password="agent-secret-123",
                                 timers=Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0),
                                 answer=Answer(after=0.2, hang_up_after=9.0)) as ua:
                assert (await ua.register(expires=120)).ok
                with Sipp("uas", local_port=customer, max_calls=1) as callee:
                    assert h.call(lambda: acd.set_ready("a1"))  # the agent frees up: the callback is placed
                    result = await asyncio.to_thread(callee.wait, 40)
                    assert result.successful == 1, result.describe()

        asyncio.run(agent_answers())
        assert wait_for(lambda: h.counts()["calls"] == 0, 15)

        def logged() -> list[str]:
            return [e.event for e in h.h.services.store.queue_events("default", queue="line")]
        assert wait_for(lambda: "completed" in logged(), 5)  # the queue log is written in batches
        events = logged()
    assert events.count("entered") == 2
    assert "callback_requested" in events and "callback_made" in events and "callback_answered" in events
    assert events.index("callback_requested") < events.index("callback_made") < events.index("callback_answered")
    assert events.count("abandoned") == 1  # the caller who chose voicemail left the line
    assert events[-1] == "completed"
