"""`hatif simulate --mode live` against a real queue: virtual callers wait for the ACD to put them through
to virtual agents, and the figures printed agree with the queue log Hatif stored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from peers import free_port

from hatif.cli import main
from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: 37000
  port_max: 37998
  cache: {tmp}
security:
  flood_limit: 100000
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "a1", password: "agent-secret-123"}}
      - {{username: "a2", password: "agent-secret-123"}}
      - {{username: "a3", password: "agent-secret-123"}}
    endpoints:
      - {{name: sim, host: 127.0.0.1, port: {callers}}}
    dialplan:
      - {{match: '^800$', to: 'queue:line'}}
    queues:
      - {{name: line, ring_timeout: 5, wrapup: 0.5, announce_every: 0}}
    agents:
      - {{user: a1, queues: [line], login: true}}
      - {{user: a2, queues: [line], login: true}}
      - {{user: a3, queues: [line], login: true}}
"""


def test_live_simulation_through_a_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    callers = free_port(tcp=False)
    with RunningHatif(CONFIG.format(port=free_port(tcp=False), callers=callers, tmp=tmp_path)) as h:
        host, port = h.address("udp")
        code = main(["simulate", "--mode", "live", "--server", f"{host}:{port}", "--number", "800",
                     "--agents", "a1:agent-secret-123,a2:agent-secret-123,a3:agent-secret-123",
                     "--caller-port", str(callers), "--wait-for-agent", "--calls", "15", "--calls-per-hour", "3600",
                     "--handle", "1.0", "--patience", "8", "--answer-delay", "0.1,0.3", "--t1", "0.1",
                     "--answer-within", "5", "--quiet"])
        assert h.wait_idle(15)["calls"] == 0
        log = Counter(e.event for e in h.h.services.store.queue_events("default", queue="line"))
    out = capsys.readouterr().out
    assert code == 0, out
    for figure in ("SL 5s", "ASA", "abandoned", "occupancy"):  # service level, answer speed, abandonment, occupancy
        assert figure in out, out
    assert log["entered"] == 15
    assert log["entered"] == log["answered"] + log["abandoned"] + log["callback_requested"] + log["overflowed"]
    assert log["answered"] >= 10, log  # three agents, a second each: nearly everyone is served
