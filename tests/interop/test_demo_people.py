"""The demo's people: on its first start the shipped demo gets an administrator, a supervisor and an agent per
phone user, who sign in over HTTP with the demo's password; the line the demo prints says where and as whom."""

from __future__ import annotations

from pathlib import Path

import httpx
from peers import free_port

from demo_config import demo_yaml
from hatif.app import DEMO_PASSWORD, _demo_people
from hatif_server import RunningHatif


def test_the_demo_says_who_signs_in_and_they_can(tmp_path: Path) -> None:
    with RunningHatif(demo_yaml(tmp_path, sip_port=free_port(tcp=False), api_port=free_port())) as hatif:
        line = _demo_people(hatif.h)
        again = _demo_people(hatif.h)  # a second start adds no one
        assert line is not None and line == again
        url = hatif.h.services.api.url if hatif.h.services.api else ""
        assert line.startswith(f"{url}/api/v1/docs")
        assert "sign in as admin, supervisor, 1001-1005 · password hatif-demo" in line
        assert "2001" not in line  # the virtual agents are not people
        with httpx.Client(base_url=url, timeout=10) as client:
            for name, role in (("admin", "administrator"), ("supervisor", "supervisor"), ("1003", "agent")):
                r = client.post("/api/v1/session", json={"tenant": "default", "name": name,
                                                         "password": DEMO_PASSWORD})
                assert r.status_code == 200, r.text
                assert r.json()["user"]["role"] == role, r.text
                client.cookies.clear()
