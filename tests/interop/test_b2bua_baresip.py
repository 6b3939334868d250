"""Two baresip phones register to Hatif with digest auth and call each other by extension through it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from peers import Baresip, free_port

from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    users:
      - {{username: "1001", password: "amira-secret-1", display_name: "Amira Haddad"}}
      - {{username: "1002", password: "reza-secret-22", display_name: "Reza Karimi"}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
"""


@pytest.fixture
def hatif() -> Iterator[RunningHatif]:
    with RunningHatif(CONFIG.format(port=free_port(tcp=False))) as h:
        yield h


def phone(h: RunningHatif, user: str, password: str, tone: int) -> Baresip:
    host, port = h.address("udp")
    return Baresip(user, domain=f"{host}:{port}", password=password, regint=60, tone_hz=tone)


def test_register_call_and_hangup_from_either_side(hatif: RunningHatif) -> None:
    with phone(hatif, "1001", "amira-secret-1", 440) as a, phone(hatif, "1002", "reza-secret-22", 1000) as b:
        assert a.registered(10), a.log_tail()
        assert b.registered(10), b.log_tail()
        bindings = hatif.call(lambda: hatif.h.sip.registry.count())
        assert bindings == 2

        for caller, callee in ((a, b), (b, a)):
            for hangup_side in ("caller", "callee"):
                ca, ce = caller.mark(), callee.mark()
                caller.dial("1002" if caller is a else "1001")
                est_a = caller.wait_event("CALL_ESTABLISHED", 10, since=ca)
                est_b = callee.wait_event("CALL_ESTABLISHED", 10, since=ce)
                assert est_a and est_b
                assert hatif.counts()["calls"] == 1
                (caller if hangup_side == "caller" else callee).hangup()
                caller.wait_event("CALL_CLOSED", 10, since=ca)
                callee.wait_event("CALL_CLOSED", 10, since=ce)
                counts = hatif.wait_idle(timeout=10)
                assert counts["calls"] == 0 and counts["dialogs"] == 0, counts
        stats = hatif.call(lambda: dict(hatif.h.control.stats))
        assert stats["answered"] == 4


def test_wrong_password_is_refused_and_counted(hatif: RunningHatif) -> None:
    with phone(hatif, "1001", "not-the-password", 440) as bad:
        assert not bad.registered(10)
    failures = hatif.call(lambda: hatif.h.sip.stats["auth_failures"])
    assert failures >= 1
    assert hatif.call(lambda: hatif.h.sip.registry.count()) == 0
