"""Issue 11's acceptance test for agent states: two `hatif serve` processes sharing PostgreSQL and NATS; an agent
state set through the HTTP API of one is seen by the router of the other (its own `GET /api/v1/agents/{name}`,
which reads that process's router) within 100 ms. Skipped, with the reason, only when PostgreSQL or NATS does not
answer on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from peers import free_port
from server_process import HatifProcess
from test_shared_bus import NATS, shared  # noqa: F401  (the fixture: a schema and a broker space of its own)

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.alone]

TOKEN = "agent-states-token-0123456789"

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{sip}"]
store:
  url: "{url}"
  journal: "{{workdir}}/journal"
bus:
  url: "{nats}"
  space: "{space}"
api:
  listen: "127.0.0.1:{api}"
  tokens: [{{token: "{token}", tenant: default}}]
tenants:
  - name: default
    domains: [hatif.local]
    users:
      - {{username: "a1", password: "agent-secret-123"}}
    queues:
      - {{name: sales, wrapup: 5}}
      - {{name: support}}
    agents:
      - {{user: "a1", queues: [sales, support]}}
    not_ready_reasons: [break, lunch]
    require_reason: true
"""


class Api:
    """One kept-alive HTTP connection to a server's API (so that polling measures the server, not TCP setup)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.conn.request(method, f"/api/v1{path}", json.dumps(body) if body is not None else None, headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def close(self) -> None:
        self.conn.close()


def _server(url: str, space: str) -> tuple[HatifProcess, int]:
    sip, api = free_port(tcp=False), free_port()
    text = CONFIG.format(sip=sip, url=url, nats=NATS, space=space, api=api, token=TOKEN)
    return HatifProcess(text, sip), api


def _seen(api: Api, state: str, reason: str | None, timeout: float = 2.0) -> float | None:
    """When (wall clock) the agent's state on `api`'s server was seen to be `state` (with `reason`), polled for
    `timeout` s at most."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded
        status, body = api.send("GET", "/agents/a1")
        assert status == 200, body
        if body["state"] == state and body["reason"] == reason:
            return time.time()
        time.sleep(0.001)
    return None


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_state_set_through_one_server_is_seen_by_the_others_router_within_100_ms(
        shared: tuple[str, str], tmp_path: Path) -> None:  # noqa: F811  (the fixture imported above)
    url, space = shared
    (a, a_port), (b, b_port) = _server(url, space), _server(url, space)
    changes: list[tuple[dict[str, Any], str, str | None]] = [
        ({"state": "logged_in", "queues": ["sales"]}, "available", "login"),
        ({"state": "not_ready", "reason": "lunch"}, "not_ready", "lunch"),
        ({"state": "available"}, "available", "set_ready"),
        ({"state": "not_ready", "reason": "break"}, "not_ready", "break"),
        ({"state": "logged_out"}, "logged_out", None),
    ]
    delays: list[tuple[float, float]] = []  # (from the first router's change, from sending the PUT), seconds
    with a, b:
        api_a, api_b = Api(a_port), Api(b_port)
        try:
            status, body = api_b.send("GET", "/agents/a1")
            assert status == 200 and body["state"] == "logged_out", body
            for request, state, reason in changes:
                sent = time.time()
                status, body = api_a.send("PUT", "/agents/a1/state", request)
                assert status == 200 and body["state"] == state and body["reason"] == reason, body
                applied = _wall(body["since"])  # when the first server's router made the change (to the ms)
                seen = _seen(api_b, state, reason)
                assert seen is not None, f"{request} never reached the second server:\n{b.log_tail()}"
                delays.append((seen - applied, seen - sent))
            status, body = api_b.send("PUT", "/agents/a1/state", {"state": "not_ready", "reason": "nap"})
            assert status == 422 and body["error"]["code"] == "unknown_reason", body
            assert "break, lunch" in body["error"]["message"]
            status, body = api_b.send("PUT", "/agents/a1/state", {"state": "logged_in"})  # the other way round
            assert status == 200 and body["queues"] == ["sales", "support"], body
            assert _seen(api_a, "available", "login") is not None
            status, body = api_a.send("GET", "/agents/a1")
            assert body["queues"] == ["sales", "support"], body
        finally:
            api_a.close()
            api_b.close()
    for (request, _, _), (crossing, total) in zip(changes, delays, strict=True):
        print(f"{request['state']:>10}: in the second server's router {crossing * 1000:.1f} ms after the first's "
              f"({total * 1000:.1f} ms after the PUT was sent)")
    assert max(crossing for crossing, _ in delays) < 0.1, delays
