"""Common clients work on the shipped defaults; bans stop attackers, not customers (issue 10, points 1 and 2).

Every server here runs `examples/demo.yaml` as shipped but for ports and folders (`demo_config`): MD5 digest
by default, the flood limit of 16 unproven requests in 2 s, 10 failed authentications a minute. The clients
are outside programs used as their users use them: SIPp's own `[authentication]` with `-au/-ap`, and
sipvicious' `svcrack` and `svwar` (Debian `sipvicious`).

sipvicious 0.3.3 ignores its own `-b` (binding address) option, so svcrack and svwar always send from
127.0.0.1; the customers' SIPp therefore sends from 127.0.0.2 and the flooder from 127.0.0.3.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from peers import Sipp, free_port, register_scenario, require, uac_auth_scenario

from demo_config import DEMO_PASSWORD, demo_data, demo_yaml
from hatif_server import RunningHatif

pytestmark = pytest.mark.interop


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(text)
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[RunningHatif]:
    with RunningHatif(demo_yaml(tmp_path, sip_port=free_port(), api_port=free_port())) as h:
        yield h


def target(h: RunningHatif) -> str:
    host, port = h.address("udp")
    return f"{host}:{port}"


def sipvicious(tool: str, *args: str, timeout: float = 60.0) -> str:
    """Run svcrack/svwar to completion (bounded) and return what it printed."""
    done = subprocess.run([require(tool), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return done.stdout + done.stderr


def banned(h: RunningHatif) -> dict[str, float]:
    """Banned address -> the server-clock time its ban began."""
    def read() -> dict[str, float]:
        sip = h.h.sip
        return {addr: until - sip.bans.ban_time for addr, until in sip.bans.banned(sip.now())}
    return h.call(read)


def test_sipp_registers_and_calls_with_its_own_authentication(demo: RunningHatif, tmp_path: Path) -> None:
    with Sipp(write(tmp_path, "register", register_scenario(expires=120, domain="hatif.local")),
              target=target(demo), service="1001", auth_user="1001", auth_password=DEMO_PASSWORD, max_calls=1,
              recv_timeout_ms=3000) as reg:
        registered = reg.wait(15)
    assert registered.ok and registered.successful == 1, registered.describe()
    assert demo.call(lambda: demo.h.sip.registry.count()) == 1
    with Sipp(write(tmp_path, "uac_auth", uac_auth_scenario("1001")), target=target(demo), service="600",
              auth_user="1001", auth_password=DEMO_PASSWORD, rate=10, max_calls=20, call_duration_ms=200,
              recv_timeout_ms=5000) as uac:
        result = uac.wait(30)
    assert result.ok and result.successful == 20, result.describe()
    assert result.total("INVITE") == 40  # each call: challenged once (MD5, the first challenge), then accepted
    assert demo.call(lambda: demo.h.sip.stats["auth_failures"]) == 0


def test_svcrack_finds_the_password_in_its_word_list(demo: RunningHatif, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("123456\npassword\n1002\nhatif-demo\nqwerty\n")
    host, port = demo.address("udp")
    out = sipvicious("svcrack", "-u", "1002", "-d", str(words), "-p", str(port), "-P", str(free_port()), host)
    assert re.search(r"\|\s*1002\s*\|\s*hatif-demo\s*\|", out), out
    assert banned(demo) == {}  # three wrong guesses are not ten


@pytest.mark.slow
@pytest.mark.alone
def test_customers_served_while_scanners_are_banned(demo: RunningHatif, tmp_path: Path) -> None:
    host, port = demo.address("udp")
    customers = Sipp(write(tmp_path, "uac_auth", uac_auth_scenario("1001")), target=target(demo), service="600",
                     auth_user="1001", auth_password=DEMO_PASSWORD, rate=100, max_calls=2000, call_limit=400,
                     call_duration_ms=100, recv_timeout_ms=10_000, local_ip="127.0.0.2")
    with customers:
        time.sleep(2.0)
        # svwar, from 127.0.0.1: every extension, real or not, draws the same challenge.
        war = sipvicious("svwar", "-e1000-1010", "-p", str(port), "-P", str(free_port()), host)
        assert "found nothing" in war and "1001" not in war, war
        # svcrack with a wrong word list, from 127.0.0.1: silenced after at most 10 failures.
        wrong = tmp_path / "wrong.txt"
        wrong.write_text("".join(f"guess{i}\n" for i in range(40)))
        crack = sipvicious("svcrack", "-u", "1003", "-d", str(wrong), "-p", str(port), "-P", str(free_port()),
                           "--maximumtime", "3", host)
        assert "found nothing" in crack, crack
        failures = demo.call(lambda: demo.h.sip.stats["auth_failures"])
        assert 1 <= failures <= 10 and "127.0.0.1" in banned(demo)
        # An unauthenticated INVITE flood (SIPp's built-in uac, no credentials) from 127.0.0.3.
        flood_start = demo.call(lambda: demo.h.sip.now())
        with Sipp("uac", target=target(demo), service="600", rate=50, max_calls=150, local_ip="127.0.0.3",
                  recv_timeout_ms=1000, timeout_s=5) as flood:
            flooded = flood.wait(15)
        assert flooded.successful == 0
        bans = banned(demo)
        assert "127.0.0.3" in bans and bans["127.0.0.3"] - flood_start < 2.0, bans
        result = customers.wait(120)
    assert result.ok, result.describe()
    assert result.successful == 2000 and result.failed == 0 and result.unexpected == 0
    assert "127.0.0.2" not in banned(demo)
    assert demo.call(lambda: demo.h.sip.stats["rate_limited"]) == 0


@pytest.mark.alone
def test_a_flood_of_authenticated_requests_is_rate_limited_not_banned(tmp_path: Path) -> None:
    """Past the generous per-user rate, requests get 503 with Retry-After; the address is never banned."""
    data = demo_data(tmp_path, sip_port=free_port(), api_port=free_port())
    data["security"].update({"user_request_rate": 5, "user_request_burst": 5})
    with RunningHatif(yaml.safe_dump(data, allow_unicode=True)) as h:
        with Sipp(write(tmp_path, "uac_auth", uac_auth_scenario("1001")), target=target(h), service="600",
                  auth_user="1001", auth_password=DEMO_PASSWORD, rate=50, max_calls=60, call_duration_ms=100,
                  recv_timeout_ms=3000, local_ip="127.0.0.2") as uac:
            result = uac.wait(30)
        assert 0 < result.successful < 60 and result.failed > 0
        assert any("503" in e for e in result.errors), result.errors[:3]
        assert h.call(lambda: h.h.sip.stats["rate_limited"]) > 0
        assert banned(h) == {}


def test_the_sipp_scenarios_shipped_for_users_are_the_tested_ones() -> None:
    """examples/sipp/ (quoted in the README) holds exactly the scenarios the tests above run."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "sipp"
    assert (examples / "call-as-1001.xml").read_text() == uac_auth_scenario("1001")
    assert (examples / "register.xml").read_text() == register_scenario(expires=300, domain="hatif.local")
