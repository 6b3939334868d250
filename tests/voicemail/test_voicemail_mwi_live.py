"""A message left over SIP lights the owner's phone: Hatif sends an RFC 3842 NOTIFY to every registered phone
of the mailbox's recipients, with the new count."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ivr_walk import scenario
from peers import Sipp, free_port

from hatif.sim.ua import UserAgent
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 38400
  port_max: 38798
  cache: {tmp}
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "1001", password: "owner-secret-123"}}
    endpoints:
      - {{name: caller, host: 127.0.0.1, port: {caller}}}
    dialplan:
      - {{match: '^701$', to: 'voicemail:1001'}}
    mailboxes:
      - {{name: "1001", owner: "1001", max_seconds: 5, min_seconds: 0.5}}
"""


def test_new_message_sends_message_summary_to_the_owner(tmp_path: Path) -> None:
    caller = free_port(tcp=False)
    with RunningHatif(CONFIG.format(port=free_port(tcp=False), tmp=tmp_path, caller=caller)) as h:
        host, port = h.address("udp")
        call = scenario(tmp_path / "scenarios", "leave", "0551234567", [("speak", 2), ("wait_bye", "")])

        async def run() -> list[bytes]:
            async with UserAgent((host, port), user="1001", password="owner-secret-123",
                                 timers=Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0)) as phone:
                assert (await phone.register(expires=120)).ok
                with Sipp(call, target=f"{host}:{port}", local_port=caller, service="701", max_calls=1,
                          recv_timeout_ms=40_000) as sipp:
                    result = await asyncio.to_thread(sipp.wait, 40)
                    assert result.successful == 1, result.describe()
                deadline = time.monotonic() + 5
                while not phone.notifications and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                return [n.body for n in phone.notifications]

        bodies = asyncio.run(run())
        stored = h.h.services.store.voicemails("default", "1001")
    assert len(stored) == 1 and stored[0].caller == "0551234567"
    assert bodies, "no message-summary NOTIFY reached the owner's phone"
    text = bodies[-1].decode()
    assert "Messages-Waiting: yes" in text and "Voice-Message: 1/0" in text
