"""Issue 18: media that cannot be hijacked, tried as an attacker would on a live call through Hatif.

A scripted caller and callee (trusted endpoints, `scripted_call`) talk through a real Hatif with
recording on: the caller a 440 Hz tone, the callee 1000 Hz. An independent attacker socket on
127.0.0.2 sends a 3 kHz tone to the caller's media port: before the caller's first packet, mid-call
with a random SSRC, with the caller's own SSRC and its next sequence numbers, and as a flood of 10,000
packets. None of it may reach the callee, the recording or an application's DTMF; the caller keeps
>= 99 % of its packets; the attacker hears nothing. A caller whose NAT rebinds keeps talking within 1 s,
and a re-INVITE to a new address moves the media while a stranger racing it stays out.
"""

from __future__ import annotations

import random
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from peers import free_port
from scripted_call import (
    ATTACKER_HOST,
    Callee,
    Dialog,
    RtpSocket,
    SipPeer,
    band_share,
    call,
    ok,
    pump,
    sdp_body,
    tone_frames,
)

from hatif.calls.api import CallEvent
from hatif.sip.message import Request, Response
from hatif_server import RunningHatif

PORT_MIN, PORT_MAX = 47000, 48000
TICK = 0.02

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: {pmin}
  port_max: {pmax}
  record: true
  recordings: {recordings}
  cache: {recordings}
logging:
  level: warning
tenants:
  - name: default
    endpoints:
      - {{name: caller, host: 127.0.0.1, port: {caller}, symmetric_rtp: true}}
      - {{name: callee, host: 127.0.0.1, port: {callee}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:callee'}}
      - {{match: '^700$', to: 'app:echo'}}
"""

CALLER_TONE, CALLEE_TONE, ATTACK_TONE = 440.0, 1000.0, 3000.0


class Setup:
    def __init__(self, h: RunningHatif, caller: SipPeer, callee_port: int) -> None:
        self.h = h
        self.caller = caller
        self.callee_port = callee_port
        self.events: list[CallEvent] = []


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    caller_port = free_port(tcp=False)
    callee_port = free_port(tcp=False)
    sip_port = free_port(tcp=False)
    text = CONFIG.format(port=sip_port, pmin=PORT_MIN, pmax=PORT_MAX, recordings=tmp_path, caller=caller_port,
                         callee=callee_port)
    caller = SipPeer(("127.0.0.1", sip_port), caller_port)  # Hatif trusts it by its source address
    with RunningHatif(text) as h:
        s = Setup(h, caller, callee_port)
        h.call(lambda: h.h.control.listeners.append(s.events.append))
        yield s
    caller.close()


def callee_for(s: Setup, rtp_port: int) -> Callee:
    return Callee(s.caller.hatif, rtp_port, s.callee_port)


def attack_packet(ssrc: int, seq: int, ts: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def events_of(s: Setup, kind: str) -> list[CallEvent]:
    return [e for e in s.events if e.kind == kind]


@pytest.mark.parametrize("attack", ["before_first_packet", "random_ssrc", "own_ssrc", "flood"])
def test_an_attacker_on_another_address_gets_nothing_in_or_out(setup: Setup, attack: str) -> None:
    s = setup
    caller_rtp, callee_rtp, attacker = RtpSocket(), RtpSocket(), RtpSocket(ATTACKER_HOST)
    callee = callee_for(s, callee_rtp.port)
    dialog = call(s.caller, "2000", sdp_body(caller_rtp.port), callee.answer)
    to_caller_leg, to_callee_leg = dialog.media, callee.media
    ours, theirs, bad = tone_frames(CALLER_TONE), tone_frames(CALLEE_TONE), tone_frames(ATTACK_TONE)
    a_ssrc, a_seq, a_ts = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
    attack_sent = 0
    ticks = 150
    caller_starts = 15 if attack == "before_first_packet" else 0  # the attacker leads by 0.3 s
    t0 = time.monotonic()
    for i in range(ticks):
        if i >= caller_starts:
            caller_rtp.send(to_caller_leg, ours[i % 50])
        callee_rtp.send(to_callee_leg, theirs[i % 50])
        if attack == "before_first_packet" or (attack in ("random_ssrc", "own_ssrc") and i >= 50):
            for _ in range(2):
                if attack == "own_ssrc":  # the caller's SSRC, its next sequence numbers and timestamps
                    packet = attack_packet(caller_rtp.ssrc, caller_rtp.seq + _, caller_rtp.ts + 160 * _, bad[i % 50])
                else:
                    packet = attack_packet(a_ssrc, a_seq, a_ts, bad[i % 50])
                    a_seq, a_ts = a_seq + 1, a_ts + 160
                attacker.sock.sendto(packet, to_caller_leg)
                attack_sent += 1
        elif attack == "flood" and 50 <= i < 150:
            for k in range(100):  # 10,000 packets over 2 s, in sequence, with the caller's SSRC
                attacker.sock.sendto(attack_packet(caller_rtp.ssrc, a_seq, a_ts, bad[k % 50]), to_caller_leg)
                a_seq, a_ts = a_seq + 1, a_ts + 160
                attack_sent += 1
        pump([caller_rtp, callee_rtp, attacker], t0 + (i + 1) * TICK)
    pump([caller_rtp, callee_rtp, attacker], time.monotonic() + 0.2)
    assert dialog.bye().status == 200
    callee.take_bye()
    s.h.wait_idle(10)

    heard = callee_rtp.received.payloads()
    bad_set, our_set = set(bad), set(ours)
    assert sum(p in bad_set for p in heard) == 0, "attacker packets reached the callee"
    assert sum(p in our_set for p in heard) >= 0.99 * caller_rtp.sent, (len(heard), caller_rtp.sent)
    assert attacker.received.packets == [], "the attacker received packets"
    assert len(caller_rtp.received.packets) >= 0.99 * callee_rtp.sent
    finished = s.h.call(lambda: list(s.h.h.control.finished))
    assert finished and finished[-1].recording is not None
    with wave.open(str(finished[-1].recording)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = data[1600:-1600, 0], data[1600:-1600, 1]
    assert band_share(left, CALLER_TONE) > 0.5 and band_share(left, ATTACK_TONE) < 0.001
    assert band_share(right, ATTACK_TONE) < 0.001
    ended = [e for e in events_of(s, "leg.ended") if e.data["rtp"]["received"]]  # type: ignore[index]
    dropped = sum(e.data["rtp"]["dropped_source"] for e in ended)  # type: ignore[index]
    assert attack_sent * 0.9 <= dropped <= attack_sent, (dropped, attack_sent)  # a flood may overrun the socket
    store = s.h.h.services.store  # the refused packets are in the call's CDR, as the API serves it
    deadline = time.monotonic() + 5
    while (record := store.call("default", finished[-1].call_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record is not None and int(record.variables.get("rtp_dropped_source", "0")) == dropped
    latched = events_of(s, "media.latched")
    assert {e.data["new"] for e in latched} == {f"127.0.0.1:{caller_rtp.port}", f"127.0.0.1:{callee_rtp.port}"}
    assert all(e.data["old"] is None for e in latched)
    for sock in (caller_rtp, callee_rtp, attacker):
        sock.close()
    callee.close()


def test_a_caller_whose_nat_rebinds_keeps_talking_within_a_second(setup: Setup) -> None:
    s = setup
    caller_rtp, callee_rtp = RtpSocket(), RtpSocket()
    callee = callee_for(s, callee_rtp.port)
    dialog = call(s.caller, "2000", sdp_body(caller_rtp.port), callee.answer)
    ours, theirs = tone_frames(CALLER_TONE), tone_frames(CALLEE_TONE)
    rebound = RtpSocket()
    rebound.ssrc, rebound.seq, rebound.ts = caller_rtp.ssrc, caller_rtp.seq, caller_rtp.ts
    switched_at = 0.0
    first_seq = 0
    t0 = time.monotonic()
    for i in range(150):
        if i < 50:
            caller_rtp.send(dialog.media, ours[i % 50])
        else:
            if i == 50:
                rebound.seq, rebound.ts = caller_rtp.seq, caller_rtp.ts
                first_seq = rebound.seq
                switched_at = time.monotonic()
            rebound.send(dialog.media, ours[i % 50])
        callee_rtp.send(callee.media, theirs[i % 50])
        pump([caller_rtp, callee_rtp, rebound], t0 + (i + 1) * TICK)
    assert dialog.bye().status == 200
    callee.take_bye()
    s.h.wait_idle(10)
    after = [(t, struct.unpack_from("!H", p, 2)[0]) for t, _, p in callee_rtp.received.packets if t >= switched_at
             and p[12:] in set(ours) and (struct.unpack_from("!H", p, 2)[0] - first_seq) & 0xFFFF < 200]
    assert after, "nothing from the rebound port reached the callee"
    assert after[0][0] - switched_at < 1.0
    back = [t for t, _, _ in rebound.received.packets]
    assert back and back[0] - switched_at < 1.0
    assert len(after) >= 100 - 50  # at most one second lost
    moved = [e for e in events_of(s, "media.latched") if e.data["old"] is not None]
    assert [(e.data["old"], e.data["new"]) for e in moved] == [
        (f"127.0.0.1:{caller_rtp.port}", f"127.0.0.1:{rebound.port}")]
    for sock in (caller_rtp, callee_rtp, rebound):
        sock.close()
    callee.close()


def test_a_reinvite_moves_the_media_and_a_stranger_racing_it_stays_out(setup: Setup) -> None:
    s = setup
    caller_rtp, callee_rtp, attacker = RtpSocket(), RtpSocket(), RtpSocket(ATTACKER_HOST)
    callee = callee_for(s, callee_rtp.port)
    dialog: Dialog = call(s.caller, "2000", sdp_body(caller_rtp.port), callee.answer)
    ours, theirs, bad = tone_frames(CALLER_TONE), tone_frames(CALLEE_TONE), tone_frames(ATTACK_TONE)
    moved = RtpSocket()
    moved.ssrc = caller_rtp.ssrc
    a_seq = random.getrandbits(16)

    def run(sender: RtpSocket, ticks: int, attack: bool) -> None:
        nonlocal a_seq
        t0 = time.monotonic()
        for i in range(ticks):
            sender.send(dialog.media, ours[i % 50])
            callee_rtp.send(callee.media, theirs[i % 50])
            if attack:
                for _ in range(3):
                    attacker.sock.sendto(struct.pack("!BBHII", 0x80, 0, a_seq & 0xFFFF, 0, 7) + bad[i % 50],
                                         dialog.media)
                    a_seq += 1
            pump([caller_rtp, callee_rtp, moved, attacker], t0 + (i + 1) * TICK)

    run(caller_rtp, 50, attack=False)
    for _ in range(20):  # the stranger starts racing just before the re-INVITE
        attacker.sock.sendto(struct.pack("!BBHII", 0x80, 0, a_seq & 0xFFFF, 0, 7) + bad[0], dialog.media)
        a_seq += 1
    assert dialog.reinvite(sdp_body(moved.port)).status == 200
    moved.seq, moved.ts = caller_rtp.seq, caller_rtp.ts
    reinvited = time.monotonic()
    run(moved, 100, attack=True)
    pump([caller_rtp, callee_rtp, moved, attacker], time.monotonic() + 0.2)
    assert dialog.bye().status == 200
    callee.take_bye()
    s.h.wait_idle(10)
    heard = callee_rtp.received.payloads()
    assert sum(p in set(bad) for p in heard) == 0
    assert sum(p in set(ours) for p in heard) >= 0.99 * (caller_rtp.sent + moved.sent)
    assert attacker.received.packets == []
    back = [t for t, _, _ in moved.received.packets]
    assert len(back) >= 95 and back[0] - reinvited < 0.5
    late_to_old = [t for t, _, _ in caller_rtp.received.packets if t > reinvited + 0.1]
    assert late_to_old == []
    latched = [(e.data["old"], e.data["new"]) for e in events_of(s, "media.latched")]
    assert (f"127.0.0.1:{caller_rtp.port}", f"127.0.0.1:{moved.port}") in latched
    for sock in (caller_rtp, callee_rtp, moved, attacker):
        sock.close()
    callee.close()


def dtmf_packets(sock: RtpSocket, digit: int) -> list[bytes]:
    """An RFC 4733 event for `digit`: four updates and three end packets, one timestamp (§2.5)."""
    out = []
    ts = sock.ts
    for k in range(7):
        end = k >= 4
        duration = 160 * min(k + 1, 5)
        payload = struct.pack("!BBH", digit, (0x80 if end else 0) | 10, duration)
        out.append(struct.pack("!BBHII", 0x80, 101 | (0x80 if k == 0 else 0), sock.seq & 0xFFFF, ts, sock.ssrc)
                   + payload)
        sock.seq = (sock.seq + 1) & 0xFFFF
    sock.ts = (sock.ts + 160 * 6) & 0xFFFFFFFF
    return out


def test_a_strangers_dtmf_never_drives_an_application(setup: Setup) -> None:
    s = setup
    got: list[str] = []

    async def digits(call: object, argument: str) -> None:
        await call.answer()  # type: ignore[attr-defined]
        got.append(await call.collect(max_digits=3, timeout=3.0, inter_digit=1.5, terminators=""))  # type: ignore[attr-defined]

    s.h.call(lambda: s.h.h.control.register_app("echo", digits))  # 700 collects digits instead of echoing
    caller_rtp, attacker = RtpSocket(), RtpSocket(ATTACKER_HOST)
    call(s.caller, "700", sdp_body(caller_rtp.port))
    media = s.h.call(lambda: next(iter(s.h.h.control.calls.values())).caller.media)
    to_leg = ("127.0.0.1", media.local_port)
    silence = tone_frames(0.0)
    t0 = time.monotonic()
    for i in range(120):
        if i == 40:
            for p in dtmf_packets(caller_rtp, 5):
                caller_rtp.sock.sendto(p, to_leg)
        else:
            caller_rtp.send(to_leg, silence[0])
        if i % 10 == 0:  # the stranger presses 9 with its own SSRC and 1 with the caller's
            for p in dtmf_packets(attacker, 9):
                attacker.sock.sendto(p, to_leg)
            spoof = RtpSocket(ATTACKER_HOST)
            spoof.sock.close()
            spoof.ssrc, spoof.seq, spoof.ts = caller_rtp.ssrc, caller_rtp.seq, caller_rtp.ts
            for p in dtmf_packets(spoof, 1):
                attacker.sock.sendto(p, to_leg)
        pump([caller_rtp, attacker], t0 + (i + 1) * TICK)

    def bye(m: Request | Response) -> bool:
        return isinstance(m, Request) and m.method == "BYE"
    req = s.caller.receive(bye, 6.0)  # the application returned: Hatif hangs up
    assert isinstance(req, Request)
    s.caller.send(ok(req))
    s.h.wait_idle(10)
    assert got == ["5"]
    assert attacker.received.packets == []
    caller_rtp.close()
    attacker.close()

