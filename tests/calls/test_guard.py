"""Issue 20: no call lives forever. RTP inactivity, RFC 4028 session timers and the maximum call length,
each against SIPp callers of the echo test on a real Hatif (short limits configured for the test)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import Sipp, free_port

from hatif.calls.api import CallEvent
from hatif.store.records import CallRecord
from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
  min_se: 2
  session_expires: {session_expires}
media:
  port_min: 32000
  port_max: 32998
  rtp_timeout: {rtp_timeout}
logging:
  level: warning
tenants:
  - name: default
    max_call_seconds: {max_call}
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
    dialplan:
      - {{match: '^600$', to: 'app:echo'}}
"""

INVITE = """
  <send retrans="100">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]g[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, BYE, CANCEL, UPDATE
      {headers}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
      a={direction}

    ]]>
  </send>
  <recv response="100" optional="true"/>
"""

ANSWERED = """
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]g[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

OUR_BYE = """
  <send retrans="100">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]g[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"""


def answer(method: str) -> str:
    """Receive a request from Hatif (its BYE, UPDATE or re-INVITE) and answer 200 as a phone would."""
    body = """
  <recv request="{method}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Session-Expires:]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
"""
    return body.replace("{method}", method)


def scenario(tmp: Path, name: str, parts: str) -> Path:
    path = tmp / f"{name}.xml"
    path.write_text(f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">{parts}</scenario>\n')
    return path


class Rig:
    def __init__(self, rtp_timeout: float = 0, session_expires: int = 1800, max_call: float | None = None) -> None:
        self.port, self.uac_port = free_port(tcp=False), free_port(tcp=False)
        self.hatif = RunningHatif(CONFIG.format(port=self.port, uac=self.uac_port, rtp_timeout=rtp_timeout,
                                                session_expires=session_expires,
                                                max_call="null" if max_call is None else max_call))
        self.records: list[CallRecord] = []
        self.events: list[CallEvent] = []

    def __enter__(self) -> Rig:
        self.hatif.__enter__()

        def hook() -> None:
            self.hatif.h.control.on_record.append(self.records.append)
            self.hatif.h.control.listeners.append(self.events.append)
        self.hatif.call(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.hatif.__exit__(*exc)

    def uac(self, path: Path, **kw: object) -> Sipp:
        return Sipp(path, target=f"127.0.0.1:{self.port}", local_port=self.uac_port, service="600",
                    max_calls=1, **kw)  # type: ignore[arg-type]

    def record(self, timeout: float = 10.0) -> CallRecord:
        deadline = time.monotonic() + timeout
        while not self.records and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.records, "no call detail record"
        return self.records[0]

    def timeouts(self) -> list[str]:
        return [str(e.data.get("cause")) for e in self.events if e.kind == "leg.timeout"]


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_a_caller_without_rtp_is_ended_at_the_timeout(tmp: Path) -> None:
    """The caller's RTP never comes (or stopped) and it never sends BYE: Hatif ends the call with a BYE."""
    path = scenario(tmp, "silent", INVITE.format(headers="Subject: silent", direction="sendrecv") + ANSWERED
                    + answer("BYE"))
    with Rig(rtp_timeout=1.5) as rig:
        start = time.monotonic()
        with rig.uac(path) as uac:
            result = uac.wait(15)
        took = time.monotonic() - start
        assert result.ok, result.describe()  # SIPp got Hatif's BYE and answered it
        record = rig.record()
        assert 1.2 < took < 6, took
        assert record.legs[0].cause == "rtp_timeout", record
        assert rig.timeouts() == ["rtp_timeout"]
        assert rig.hatif.wait_idle(5) == {"transactions": 0, "calls": 0, "dialogs": 0}


def test_a_held_call_without_rtp_is_not_ended(tmp: Path) -> None:
    """A caller that put Hatif on hold (sendonly) may rightly send nothing: no RTP timeout."""
    path = scenario(tmp, "held", INVITE.format(headers="Subject: held", direction="sendonly") + ANSWERED
                    + '<pause milliseconds="3500"/>' + OUR_BYE)
    with Rig(rtp_timeout=1.0) as rig:
        with rig.uac(path) as uac:
            result = uac.wait(15)
        assert result.ok, result.describe()
        record = rig.record()
        assert record.legs[0].cause == "normal", record
        assert rig.timeouts() == []


def test_session_refreshes_by_hatif_keep_a_long_call_up(tmp: Path) -> None:
    """Session-Expires 2 s with Hatif as the refresher: an UPDATE every second keeps the call up for 5 s."""
    parts = (INVITE.format(headers="Supported: timer\n      Session-Expires: 2;refresher=uas", direction="sendrecv")
             + ANSWERED + answer("UPDATE") + answer("UPDATE") + answer("UPDATE") + answer("UPDATE")
             + '<pause milliseconds="500"/>' + OUR_BYE)
    path = scenario(tmp, "refreshed", parts)
    with Rig() as rig:
        with rig.uac(path, trace_messages=True) as uac:
            result = uac.wait(20)
            messages = uac.message_path.read_text()
        assert result.ok, result.describe()
        assert result.total("----------> UPDATE") == 4 or messages.count("UPDATE sip:") >= 4
        assert "Session-Expires: 2;refresher=uas" in messages  # the 200 said who refreshes
        record = rig.record()
        assert record.legs[0].cause == "normal", record
        assert record.duration >= 3.5
        assert rig.timeouts() == []


def test_a_session_not_refreshed_by_the_caller_expires(tmp: Path) -> None:
    """The caller is the refresher (Session-Expires 3 s, refresher=uac) and never refreshes: Hatif sends
    BYE before the interval ends (RFC 4028 §10: interval minus a third) with cause session_expired."""
    parts = (INVITE.format(headers="Supported: timer\n      Session-Expires: 3;refresher=uac", direction="sendrecv")
             + ANSWERED + answer("BYE"))
    path = scenario(tmp, "expired", parts)
    with Rig() as rig:
        start = time.monotonic()
        with rig.uac(path) as uac:
            result = uac.wait(20)
        took = time.monotonic() - start
        assert result.ok, result.describe()
        assert 1.5 < took < 4.5, took
        assert rig.record().legs[0].cause == "session_expired"
        assert rig.timeouts() == ["session_expired"]


def test_a_session_interval_below_min_se_gets_422(tmp: Path) -> None:
    parts = INVITE.format(headers="Supported: timer\n      Session-Expires: 1", direction="sendrecv") + """
  <recv response="422"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]g[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""
    path = scenario(tmp, "too_small", parts)
    with Rig() as rig:
        with rig.uac(path, trace_messages=True) as uac:
            result = uac.wait(10)
            messages = uac.message_path.read_text()
        assert result.ok, result.describe()
        assert "Min-SE: 2" in messages
        assert rig.hatif.counts()["calls"] == 0


def test_a_call_longer_than_its_tenant_allows_is_ended(tmp: Path) -> None:
    path = scenario(tmp, "long", INVITE.format(headers="Subject: long", direction="sendrecv") + ANSWERED
                    + answer("BYE"))
    with Rig(max_call=1.5) as rig:
        start = time.monotonic()
        with rig.uac(path) as uac:
            result = uac.wait(15)
        assert result.ok, result.describe()
        assert 1.2 < time.monotonic() - start < 5
        assert rig.record().legs[0].cause == "max_duration"
        assert rig.timeouts() == ["max_duration"]


REINVITE_ANSWER = """
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Session-Expires:]
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 2 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK"/>
"""


def test_a_party_without_update_is_refreshed_by_reinvite(tmp: Path) -> None:
    """The caller's Allow has no UPDATE: Hatif refreshes with a re-INVITE carrying its SDP unchanged."""
    headers = "Supported: timer\n      Session-Expires: 2;refresher=uas"
    invite = INVITE.format(headers=headers, direction="sendrecv").replace(", UPDATE", "")
    path = scenario(tmp, "reinvited", invite + ANSWERED + REINVITE_ANSWER + REINVITE_ANSWER + OUR_BYE)
    with Rig() as rig:
        with rig.uac(path) as uac:
            result = uac.wait(20)
        assert result.ok, result.describe()
        record = rig.record()
        assert record.legs[0].cause == "normal", record
        assert record.duration >= 1.5
        assert rig.timeouts() == []
