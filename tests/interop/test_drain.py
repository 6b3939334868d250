"""Issue 20: a stop that finishes. SIGTERM on a real `hatif serve` process with live calls: new calls and
OPTIONS get 503, live calls run to `sip.drain_seconds`, then Hatif ends them with BYE and their CDRs and
exits; a second SIGTERM ends everything at once (CDRs still written)."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from peers import Sipp

from overload import CONFIG as OVERLOAD_CONFIG
from overload import Rig

pytestmark = [pytest.mark.slow, pytest.mark.alone]


def drain_rig(drain_seconds: float) -> Rig:
    rig = Rig(rtp_min=50000, rtp_max=51998)
    text = OVERLOAD_CONFIG.format(port=rig.port, uac=rig.uac_port, rtp_min=50000, rtp_max=51998).replace(
        "sip:\n", f"sip:\n  drain_seconds: {drain_seconds}\n", 1).replace(
        "media:\n", "media:\n  rtp_timeout: 0\n", 1)
    rig.process.config_path.write_text(text.replace("{workdir}", str(rig.process.workdir)))
    return rig


def live_calls(rig: Rig, count: int) -> Sipp:
    """`count` echo calls that would last a minute (SIPp's uac, answering Hatif's BYE when it comes)."""
    sipp = Sipp("uac", target=f"127.0.0.1:{rig.port}", local_port=rig.uac_port, service="600", rate=100,
                max_calls=count, call_limit=count, call_duration_ms=60_000)
    sipp.start()
    return sipp


def final_status(port: int, method: str) -> tuple[int, str]:
    """Send one request outside any dialog from a socket of our own; its final status and Retry-After."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(3)
        local = s.getsockname()[1]
        n = time.monotonic_ns()
        s.sendto((f"{method} sip:600@127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-drain-{n};rport\r\n"
                  f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:600@127.0.0.1:{port}>\r\n"
                  f"Call-ID: probe-{n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:probe@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n").encode(),
                 ("127.0.0.1", port))
        while True:
            data = s.recv(65535)
            status = int(data.split(b" ", 2)[1])
            if status >= 200:
                retry = next((line.split(b":", 1)[1].strip().decode() for line in data.split(b"\r\n")
                              if line.lower().startswith(b"retry-after:")), "")
                return status, retry


def test_sigterm_with_100_live_calls_refuses_new_ones_and_exits_by_the_deadline() -> None:
    rig = drain_rig(drain_seconds=4)
    with rig.process as hatif:
        assert final_status(rig.port, "OPTIONS")[0] == 200
        with live_calls(rig, 100):
            time.sleep(2.5)  # 100 calls at 100 a second, all answered
            hatif.signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            assert final_status(rig.port, "OPTIONS") == (503, "30")  # a dispatcher moves traffic away
            assert final_status(rig.port, "INVITE") == (503, "30")
            code = hatif.wait(15)
            took = time.monotonic() - signalled
        assert code == 0, hatif.log_tail()
        assert took < 4 + 4, took  # the deadline, the BYEs' answers and closing the store
        assert took >= 3.5, took  # live calls were let run to the deadline
        assert hatif.call_count() == 100
        assert hatif.leg_causes() == {"drain_deadline": 100}


def test_a_second_sigterm_ends_the_calls_at_once() -> None:
    rig = drain_rig(drain_seconds=60)
    with rig.process as hatif:
        with live_calls(rig, 20):
            time.sleep(1.5)
            hatif.signal(signal.SIGTERM)
            time.sleep(0.5)
            assert hatif.alive()
            hatif.signal(signal.SIGTERM)
            start = time.monotonic()
            code = hatif.wait(15)
            took = time.monotonic() - start
        assert code == 0, hatif.log_tail()
        assert took < 5, took
        assert hatif.call_count() == 20
        assert hatif.leg_causes() == {"shutdown": 20}
