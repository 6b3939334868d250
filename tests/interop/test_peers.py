"""The interop harness proven on its own, peer to peer: SIPp against SIPp, baresip against baresip.

Before any Hatif test trusts `peers.Sipp` and `peers.Baresip`, these show that what they report is what
happened: calls counted by SIPp's statistics, failures counted as failures, baresip's events for both
ends of a call, digest authentication (RFC 3261 §22.2) checked by SIPp's `verifyauth`, and the audio
each baresip recorded.
"""

from __future__ import annotations

import socket
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from peers import (
    Baresip,
    BaresipError,
    Sipp,
    free_ports,
    netstring,
    parse_error_log,
    register_scenario,
    require,
    split_netstrings,
    uac_auth_scenario,
)

USER, PASSWORD, REALM = "alice", "s3cret", "hatif.test"

CHALLENGING_UAS = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas that challenges INVITE">
  <recv request="INVITE"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ch[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="{REALM}", nonce="n[pid]x[call_number]", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="INVITE">
    <action><verifyauth assign_to="authvalid" username="{USER}" password="{PASSWORD}"/></action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <send>
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]no[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="end"/>
  <label id="good"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]ok[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""

CHALLENGING_REGISTRAR = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar that challenges REGISTER">
  <recv request="REGISTER"/>
  <send>
    <![CDATA[
      SIP/2.0 401 Unauthorized
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      WWW-Authenticate: Digest realm="{REALM}", nonce="r[pid]x[call_number]", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
  <recv request="REGISTER">
    <action><verifyauth assign_to="authvalid" username="{USER}" password="{PASSWORD}"/></action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <send>
    <![CDATA[
      SIP/2.0 403 Forbidden
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop hide="true" next="end"/>
  <label id="good"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]reg[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:]
      Expires: 60
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""


@pytest.fixture(scope="module", autouse=True)
def programs() -> None:
    require("sipp")
    require("baresip")


@pytest.fixture
def start_sipp(tmp_path: Path) -> Iterator[Callable[..., Sipp]]:
    """`start_sipp(scenario, **options)`: a started Sipp, working in tmp_path, stopped at teardown."""
    started: list[Sipp] = []

    def start(scenario: str | Path, **options: object) -> Sipp:
        sipp = Sipp(scenario, workdir=tmp_path / f"sipp{len(started)}", **options)  # type: ignore[arg-type]
        started.append(sipp)
        return sipp.start()

    yield start
    for sipp in started:
        sipp.close()
        assert sipp.returncode is not None


@pytest.fixture
def start_baresip(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """`start_baresip(user, **options)`: a started Baresip, working in tmp_path, stopped at teardown."""
    started: list[Baresip] = []

    def start(user: str, **options: object) -> Baresip:
        agent = Baresip(user, workdir=tmp_path / f"baresip-{user}", **options)  # type: ignore[arg-type]
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        agent.close()
        assert agent.returncode is not None


def write_scenario(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(text)
    return path


def dominant_hz(wav: Path, timeout: float = 3.0) -> float:
    """The strongest frequency in a recording, once baresip has closed the file (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        with wave.open(str(wav), "rb") as w:
            rate, frames = w.getframerate(), w.readframes(w.getnframes())
        if len(frames) >= rate or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)[rate // 5 :]
    assert samples.size >= rate // 2, f"{wav} holds only {samples.size} samples"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


# --- helpers that need no outside program -------------------------------------------------------------


def test_require_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="sipp not found: install Debian package sip-tester"):
        require("sipp")
    with pytest.raises(RuntimeError, match="baresip not found: install Debian package baresip-core"):
        require("baresip")


def test_free_ports_are_distinct_runs_that_bind() -> None:
    ports = free_ports(6, span=3)
    taken = [p + i for p in ports for i in range(3)]
    assert len(set(taken)) == len(taken)
    for port in taken:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", port))


def test_netstrings_round_trip_and_split_across_reads() -> None:
    stream = netstring(b'{"a":1}') + netstring(b"") + netstring(b"x,y:z")
    assert stream == b'7:{"a":1},0:,5:x,y:z,'
    frames, rest = split_netstrings(stream[:-3])
    assert frames == [b'{"a":1}', b""] and rest == b"5:x,y"
    frames, rest = split_netstrings(rest + stream[-3:])
    assert frames == [b"x,y:z"] and rest == b""
    with pytest.raises(ValueError, match="does not end with ','"):
        split_netstrings(b"3:abcd,")


def test_error_log_entries_split_on_timestamps() -> None:
    text = (
        "The following events occurred:\n"
        "2026-01-02\t10:00:00.1\t1.1: Call-Id: 1@h, receive timeout: aborting call"
        "2026-01-02\t10:00:00.2\t1.2: Aborting call on unexpected message for Call-Id '2@h'\n"
    )
    assert parse_error_log(text) == (
        "Call-Id: 1@h, receive timeout: aborting call",
        "Aborting call on unexpected message for Call-Id '2@h'",
    )


# --- SIPp against SIPp --------------------------------------------------------------------------------


@pytest.mark.alone
def test_sipp_uac_to_sipp_uas_200_calls_at_100_cps(start_sipp: Callable[..., Sipp]) -> None:
    uas = start_sipp("uas")
    uac = start_sipp("uac", target=uas.address, rate=100, max_calls=200, call_limit=200, timeout_s=15)
    result = uac.wait(20)
    assert result.ok, result.describe()
    assert (result.returncode, result.created, result.successful, result.failed) == (0, 200, 200, 0)
    assert result.failed_reasons == {} and result.unexpected == 0 and result.errors == ()
    assert result.message("INVITE").messages == 200
    assert result.message("BYE").messages == 200
    assert result.message("180").messages == 200
    server = uas.stop()
    assert (server.created, server.successful, server.failed, server.current) == (200, 200, 0, 0)
    assert server.message("----------> INVITE").messages == 200
    assert server.message("----------> BYE").messages == 200
    assert int(server.counters["IncomingCall(C)"]) == 200


def test_sipp_uac_to_a_dead_port_counts_failed_calls(start_sipp: Callable[..., Sipp]) -> None:
    (dead,) = free_ports(1)
    uac = start_sipp("uac", target=f"127.0.0.1:{dead}", rate=10, max_calls=5, recv_timeout_ms=800, timeout_s=10)
    result = uac.wait(15)
    assert not result.ok
    assert (result.returncode, result.created, result.successful, result.failed) == (1, 5, 0, 5)
    assert result.failed_reasons == {"FailedTimeoutOnRecv": 5}
    assert len(result.errors) == 5 and all("receive timeout" in e for e in result.errors)
    assert result.message("INVITE").messages == 5
    assert result.message("100").timeouts == 5


@pytest.mark.parametrize(
    ("scenario", "password", "succeeds"),
    [("auth", PASSWORD, True), ("auth", "wrong", False), ("uac", PASSWORD, False)],
    ids=["auth-scenario", "wrong-password", "builtin-uac-cannot-authenticate"],
)
def test_sipp_uac_digest_authentication(
    start_sipp: Callable[..., Sipp], tmp_path: Path, scenario: str, password: str, succeeds: bool
) -> None:
    uas = start_sipp(write_scenario(tmp_path, "challenge", CHALLENGING_UAS))
    script: str | Path = write_scenario(tmp_path, "uac_auth", uac_auth_scenario(USER)) if scenario == "auth" else "uac"
    uac = start_sipp(
        script, target=uas.address, max_calls=1, auth_user=USER, auth_password=password, recv_timeout_ms=3000
    )
    result = uac.wait(10)
    assert result.ok is succeeds, result.describe()
    if succeeds:
        assert (result.successful, result.total("INVITE"), result.total("BYE")) == (1, 2, 1)
        assert uas.stop(grace=2).successful == 1
    else:
        assert result.failed == 1 and result.unexpected == 1
        refused = "403 Forbidden" if scenario == "auth" else "401 Unauthorized"
        assert any(refused in e for e in result.errors), result.errors
        # Neither call completes at the uas: after its 403 the aborting uac sends a BYE it does not expect,
        # and after the built-in uac's ACK it still waits for an authenticated INVITE.
        server = uas.stop(grace=0.5)
        assert (server.created, server.successful) == (1, 0)


@pytest.mark.parametrize(("password", "succeeds"), [(PASSWORD, True), ("wrong", False)])
def test_sipp_register_scenario(start_sipp: Callable[..., Sipp], tmp_path: Path, password: str, succeeds: bool) -> None:
    registrar = start_sipp(write_scenario(tmp_path, "registrar", CHALLENGING_REGISTRAR))
    client = start_sipp(
        write_scenario(tmp_path, "register", register_scenario(expires=60)),
        target=registrar.address,
        service=USER,
        auth_user=USER,
        auth_password=password,
        max_calls=1,
        recv_timeout_ms=3000,
    )
    result = client.wait(10)
    assert result.ok is succeeds, result.describe()
    assert result.successful == (1 if succeeds else 0)


# --- baresip against baresip --------------------------------------------------------------------------


@pytest.mark.parametrize("hangup_by", ["caller", "callee"])
def test_baresip_calls_baresip_and_either_side_hangs_up(start_baresip: Callable[..., Baresip], hangup_by: str) -> None:
    alice = start_baresip("alice", tone_hz=440)
    bob = start_baresip("bob", tone_hz=1000, answermode="auto")
    alice.dial(bob.uri)
    placed = alice.wait_event("CALL_ESTABLISHED", 5)
    answered = bob.wait_event("CALL_ESTABLISHED", 5)
    assert placed["id"] == answered["id"]
    assert (placed["direction"], answered["direction"]) == ("outgoing", "incoming")
    assert placed["peeruri"] == bob.uri and answered["peeruri"] == alice.uri
    assert "ESTABLISHED" in bob.command("listcalls").data
    time.sleep(1.2)  # let each side hear a second of the other's tone
    (bob if hangup_by == "callee" else alice).hangup()
    for agent in (alice, bob):
        closed = agent.wait_event("CALL_CLOSED", 5, call_id=placed["id"])
        assert closed["id"] == placed["id"]
    assert "(0)" in alice.command("listcalls").data
    assert abs(dominant_hz(bob.last_recording("dec")) - 440) < 15
    assert abs(dominant_hz(alice.last_recording("dec")) - 1000) < 15


def test_baresip_manual_answer(start_baresip: Callable[..., Baresip]) -> None:
    alice = start_baresip("alice")
    bob = start_baresip("bob", answermode="manual")
    alice.dial(bob.uri)
    ringing = bob.wait_event("CALL_INCOMING", 5)
    assert ringing["peeruri"] == alice.uri
    alice.wait_event("CALL_RINGING", 5)
    assert not [e for e in bob.events if e["type"] == "CALL_ESTABLISHED"]
    mark = bob.mark()
    bob.answer()
    assert bob.wait_event("CALL_ESTABLISHED", 5, since=mark)["id"] == ringing["id"]
    alice.wait_event("CALL_ESTABLISHED", 5, call_id=ringing["id"])
    alice.hangup()
    bob.wait_event("CALL_CLOSED", 5, since=mark)
    with pytest.raises(TimeoutError, match="CALL_INCOMING"):
        bob.wait_event("CALL_INCOMING", 0.2, since=bob.mark())


@pytest.mark.parametrize(("password", "registered"), [(PASSWORD, True), ("wrong", False)])
def test_baresip_registers_with_digest_auth(
    start_sipp: Callable[..., Sipp],
    start_baresip: Callable[..., Baresip],
    tmp_path: Path,
    password: str,
    registered: bool,
) -> None:
    registrar = start_sipp(write_scenario(tmp_path, "registrar", CHALLENGING_REGISTRAR))
    agent = start_baresip(USER, domain=registrar.address, password=password, regint=60)
    assert agent.registered(8) is registered, agent.events
    outcome = agent.wait_event(("REGISTER_OK", "REGISTER_FAIL"), 1)
    assert outcome["type"] == ("REGISTER_OK" if registered else "REGISTER_FAIL")
    assert outcome["accountaor"] == f"sip:{USER}@{registrar.address}"


def test_sipp_uac_calls_baresip_and_hears_the_echo(
    start_sipp: Callable[..., Sipp], start_baresip: Callable[..., Baresip]
) -> None:
    bob = start_baresip("bob", tone_hz=700)
    uac = start_sipp(
        "uac",
        target=f"127.0.0.1:{bob.sip_port}",
        service="bob",
        max_calls=1,
        call_duration_ms=1500,
        rtp_echo=True,
        recv_timeout_ms=3000,
    )
    result = uac.wait(10)
    assert result.ok, result.describe()
    established = bob.wait_event("CALL_ESTABLISHED", 2)
    assert bob.wait_event("CALL_CLOSED", 2, call_id=established["id"])["id"] == established["id"]
    assert abs(dominant_hz(bob.last_recording("dec")) - 700) < 15


def test_baresip_command_failure_and_stop(start_baresip: Callable[..., Baresip]) -> None:
    agent = start_baresip("carol")
    assert agent.command("listcalls").ok
    refused = agent.command("no-such-command")
    assert not refused.ok and "no-such-command" in refused.data
    assert agent.stop() == 0
    with pytest.raises(BaresipError):
        agent.command("listcalls", timeout=1)
