"""SIPp -> Hatif's B2BUA -> SIPp: load, busy, no answer and CANCEL, each leaving nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import Sipp, free_port

from hatif_server import RunningHatif

SCENARIOS = Path(__file__).parent / "scenarios"

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: {ring}
  timers: {{t1: {t1}, t2: {t2}, t4: {t4}, d: {d}}}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
      - {{name: uas, host: 127.0.0.1, port: {uas}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:uas'}}
"""


class Rig:
    """A Hatif between a SIPp uac port and a SIPp uas port, both trusted endpoints."""

    def __init__(self, t1: float = 0.5, ring: float = 30.0) -> None:
        self.port, self.uac_port, self.uas_port = free_port(tcp=False), free_port(tcp=False), free_port(tcp=False)
        text = CONFIG.format(port=self.port, ring=ring, t1=t1, t2=t1 * 8, t4=t1 * 10, d=t1 * 10,
                             uac=self.uac_port, uas=self.uas_port)
        self.hatif = RunningHatif(text)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uas(self, scenario: str | Path, **kw: object) -> Sipp:
        return Sipp(scenario, local_port=self.uas_port, **kw)  # type: ignore[arg-type]

    def uac(self, scenario: str | Path, **kw: object) -> Sipp:
        return Sipp(scenario, target=self.target, local_port=self.uac_port, service="2000", **kw)  # type: ignore[arg-type]


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(t1=0.1, ring=2.0)
    with r.hatif:
        yield r


def final_scenario(tmp_path: Path, status: int) -> Path:
    path = tmp_path / f"uac_final_{status}.xml"
    path.write_text((SCENARIOS / "uac_final.xml").read_text().replace("FINAL_STATUS", str(status)))
    return path


def assert_left_nothing(rig: Rig) -> None:
    counts = rig.hatif.wait_idle(timeout=15)
    assert counts == {"transactions": 0, "calls": 0, "dialogs": 0}


@pytest.mark.slow
@pytest.mark.alone
def test_2000_calls_at_100_per_second() -> None:
    r = Rig(t1=0.5)
    with r.hatif:
        with r.uas("uas") as uas:
            with r.uac("uac", rate=100, max_calls=2000, call_limit=400, recv_timeout_ms=10_000) as uac:
                result = uac.wait(120)
            assert result.ok, result.describe()
            assert result.successful == 2000 and result.failed == 0
            assert result.unexpected == 0
            assert all(row.unexpected == 0 for row in result.messages), result.messages
            server_side = uas.stop()
        assert server_side.successful == 2000 and server_side.failed == 0, server_side.describe()
        assert all(row.unexpected == 0 for row in server_side.messages), server_side.messages
        counts = r.hatif.wait_idle(timeout=5)
        assert counts["calls"] == 0 and counts["dialogs"] == 0
        stats = r.hatif.call(lambda: dict(r.hatif.h.control.stats))
        assert stats["calls"] == 2000 and stats["answered"] == 2000


def test_busy_callee_gives_caller_486(rig: Rig, tmp_path: Path) -> None:
    with rig.uas(SCENARIOS / "uas_busy.xml") as uas:
        with rig.uac(final_scenario(tmp_path, 486), max_calls=5, rate=5, recv_timeout_ms=5000) as uac:
            result = uac.wait(30)
        assert result.ok and result.successful == 5, result.describe()
        assert uas.stop().successful == 5
    assert_left_nothing(rig)


def test_no_answer_within_ring_timeout_gives_480_and_cancels_callee(rig: Rig, tmp_path: Path) -> None:
    with rig.uas(SCENARIOS / "uas_ring.xml") as uas:
        with rig.uac(final_scenario(tmp_path, 480), max_calls=3, rate=3, call_limit=3,
                     recv_timeout_ms=8000) as uac:
            result = uac.wait(30)
        assert result.ok and result.successful == 3, result.describe()
        callee = uas.stop()
        # The callee saw a CANCEL for each call and completed its scenario (487 and ACK).
        assert callee.successful == 3, callee.describe()
    stats = rig.hatif.call(lambda: dict(rig.hatif.h.control.stats))
    assert stats["no_answer"] == 3
    assert_left_nothing(rig)


def test_cancel_before_answer_gives_487_and_cancels_callee(rig: Rig) -> None:
    with rig.uas(SCENARIOS / "uas_ring.xml") as uas:
        with rig.uac(SCENARIOS / "uac_cancel.xml", max_calls=5, rate=5, recv_timeout_ms=5000) as uac:
            result = uac.wait(30)
        assert result.ok and result.successful == 5, result.describe()
        assert uas.stop().successful == 5
    stats = rig.hatif.call(lambda: dict(rig.hatif.h.control.stats))
    assert stats["cancelled"] == 5
    assert_left_nothing(rig)


def test_unreachable_callee_gives_408(tmp_path: Path) -> None:
    """The callee endpoint does not answer at all: Timer B ends the call with 408 (RFC 3261 §17.1.1.2)."""
    r = Rig(t1=0.05, ring=30.0)
    with r.hatif:
        with r.uac(final_scenario(tmp_path, 408), max_calls=1, recv_timeout_ms=8000) as uac:
            result = uac.wait(20)
        assert result.ok, result.describe()
        assert_left_nothing(r)


def test_calls_over_tcp() -> None:
    """The same call flow with both SIPp instances on TCP (Content-Length framing, connection reuse)."""
    port, uac_port, uas_port = free_port(), free_port(), free_port()
    text = f"""
sip:
  listen: ["udp:127.0.0.1:{port}", "tcp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac_port}, transport: tcp}}
      - {{name: uas, host: 127.0.0.1, port: {uas_port}, transport: tcp}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:uas'}}
"""
    with RunningHatif(text) as h:
        with Sipp("uas", local_port=uas_port, transport="t1") as uas:
            with Sipp("uac", target=f"127.0.0.1:{port}", local_port=uac_port, transport="t1", service="2000",
                      rate=50, max_calls=100, recv_timeout_ms=5000) as uac:
                result = uac.wait(60)
            assert result.ok and result.successful == 100, result.describe()
            assert uas.stop().successful == 100
        assert h.wait_idle(10) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_183_with_sdp_is_passed_on_with_anchored_media(rig: Rig) -> None:
    """Early media: the callee's 183 reaches the caller with an SDP that points at Hatif's RTP port."""
    with rig.uas(SCENARIOS / "uas_early_media.xml") as uas:
        with rig.uac("uac", max_calls=5, rate=5, recv_timeout_ms=5000, trace_messages=True) as uac:
            result = uac.wait(30)
            log = uac.message_path.read_text()
        assert result.ok and result.successful == 5, result.describe()
        assert result.message("183").messages == 5
        assert uas.stop().successful == 5
    early = [part for part in log.split("-----") if "SIP/2.0 183" in part]
    assert early and all("m=audio " in part for part in early)
    ports = {int(line.split()[1]) for part in early for line in part.splitlines() if line.startswith("m=audio")}
    assert all(20000 <= p < 30000 for p in ports)  # Hatif's default RTP range; SIPp's ports are below it
    assert_left_nothing(rig)


def test_calls_are_reported_as_typed_events_in_the_store_before_the_bus(rig: Rig) -> None:
    """SIPp calls through the B2BUA: each is, in the store's event log and on the bus alike, offered, its legs
    answered and ended, then ended, numbered one after the other in the calls stream."""
    from hatif.events import CallEnded, CallOffered, LegAnswered, LegEnded
    from hatif.store.eventlog import EventLog

    with rig.uas("uas") as uas:
        with rig.uac("uac", rate=10, max_calls=10, recv_timeout_ms=5000) as uac:
            result = uac.wait(60)
        assert result.ok and result.successful == 10, result.describe()
        uas.stop()
    assert_left_nothing(rig)

    def read() -> tuple[list[object], list[object]]:
        services = rig.hatif.h.services
        return list(services.bus.since("calls", 0)), EventLog(services.store).since("calls", 0, limit=10_000)
    on_bus, stored = rig.hatif.call(read)
    assert on_bus == stored
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))  # type: ignore[attr-defined]
    by_call: dict[str, list[type]] = {}
    for e in stored:
        by_call.setdefault(e.call_id, []).append(type(e))  # type: ignore[attr-defined]
    assert len(by_call) == 10
    for kinds in by_call.values():
        assert kinds[0] is CallOffered and kinds[-1] is CallEnded, kinds
        assert kinds.count(LegAnswered) == 2 and kinds.count(LegEnded) == 2, kinds
