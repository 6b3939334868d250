"""An agent whose queue calls ring an outside mobile through a trunk (a SIPp callee stands in for it)."""

from __future__ import annotations

from pathlib import Path

from peers import Sipp, free_port

from hatif_server import RunningHatif

SCENARIO = Path(__file__).parent.parent / "interop" / "scenarios" / "uac_queue_caller.xml"

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 38000
  port_max: 38998
  cache: {tmp}
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "m1", password: "agent-secret-123"}}
    endpoints:
      - {{name: callers, host: 127.0.0.1, port: {callers}}}
      - {{name: carrier, host: 127.0.0.1, port: {carrier}, trusted: false}}
    dialplan:
      - {{match: '^800$', to: 'queue:line'}}
      - {{match: '^\\+9665\\d{{8}}$', to: 'endpoint:carrier'}}
    queues:
      - {{name: line, ring_timeout: 5, wrapup: 0, announce_every: 0}}
    agents:
      - {{user: m1, queues: [line], login: true, device: "+966501234567"}}
"""


def test_queue_call_rings_the_agents_mobile(tmp_path: Path) -> None:
    callers, carrier = free_port(tcp=False), free_port(tcp=False)
    scenario = tmp_path / "caller.xml"
    scenario.write_text(SCENARIO.read_text().replace("PATIENCE", "3000"))
    with RunningHatif(CONFIG.format(port=free_port(tcp=False), tmp=tmp_path, callers=callers, carrier=carrier)) as h:
        host, port = h.address("udp")
        with Sipp("uas", local_port=carrier, max_calls=1, trace_messages=True) as mobile:
            with Sipp(scenario, target=f"{host}:{port}", local_port=callers, service="800", max_calls=1,
                      recv_timeout_ms=20_000) as caller:
                assert caller.wait(30).successful == 1
            assert mobile.wait(10).successful == 1
            invite = next(m for m in mobile.message_path.read_text().split("-----") if "INVITE sip:" in m)
        assert h.wait_idle(10)["calls"] == 0
        log = [(e.event, e.agent) for e in h.h.services.store.queue_events("default", queue="line")]
    assert "INVITE sip:+966501234567@" in invite
    assert ("answered", "m1") in log and ("completed", "m1") in log
