"""SRTP with SDES keys through a real Hatif (issue 18): a baresip phone with `mediaenc=srtp-mand`
(RTP/SAVP, `a=crypto`) calling a plain baresip phone, and a scripted caller whose SRTP is libsrtp
(pylibsrtp) so the test can tamper with a packet and replay one: audio both ways, and what fails
authentication is dropped, counted and reaches no one."""

from __future__ import annotations

import base64
import time
import wave
from pathlib import Path

import numpy as np
import pylibsrtp
from peers import Baresip, free_port
from scripted_call import Callee, RtpSocket, SipPeer, band_share, call, pump, sdp_body, tone_frames

from hatif.calls.api import CallEvent
from hatif.media.srtp import new_key
from hatif_server import RunningHatif

PORT_MIN, PORT_MAX = 48000, 49000

USERS_CONFIG = """
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
    users:
      - {{username: "1001", password: "amira-secret-1"}}
      - {{username: "1002", password: "reza-secret-22"}}
    endpoints:
      - {{name: caller, host: 127.0.0.1, port: {caller}}}
      - {{name: callee, host: 127.0.0.1, port: {callee}, srtp: mandatory}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
      - {{match: '^2000$', to: 'endpoint:callee'}}
"""


def test_baresip_with_mandatory_srtp_talks_to_a_plain_phone(tmp_path: Path) -> None:
    text = USERS_CONFIG.format(port=free_port(tcp=False), pmin=PORT_MIN, pmax=PORT_MAX, recordings=tmp_path,
                               caller=free_port(tcp=False), callee=free_port(tcp=False))
    with RunningHatif(text) as h:
        events: list[CallEvent] = []
        h.call(lambda: h.h.control.listeners.append(events.append))
        host, port = h.address("udp")
        with Baresip("1001", domain=f"{host}:{port}", password="amira-secret-1", regint=60, tone_hz=440,
                     extra_account_params=["mediaenc=srtp-mand"], extra_config={"module": "srtp.so"}) as a, \
                Baresip("1002", domain=f"{host}:{port}", password="reza-secret-22", regint=60, tone_hz=1000) as b:
            assert a.registered(10) and b.registered(10)
            a.dial("1002")
            a.wait_event("CALL_ESTABLISHED", 10)
            b.wait_event("CALL_ESTABLISHED", 10)
            time.sleep(0.5)

            def legs() -> list[tuple[str, str | None, str]]:
                call = next(iter(h.h.control.calls.values()))
                return [(leg.direction, leg.media.srtp.suite if leg.media.srtp else None,
                         leg.remote_sdp.audio().proto if leg.remote_sdp else "") for leg in call.legs]
            keyed = h.call(legs)
            time.sleep(2.5)
            a.hangup()
            a.wait_event("CALL_CLOSED", 10)
            b.wait_event("CALL_CLOSED", 10)
            h.wait_idle(10)
            heard_by_a, heard_by_b = a.recordings("dec"), b.recordings("dec")
            assert heard_by_a and heard_by_b
            audio_a = _wav(heard_by_a[-1])
            audio_b = _wav(heard_by_b[-1])
    assert keyed == [("inbound", "AES_CM_128_HMAC_SHA1_80", "RTP/SAVP"), ("outbound", None, "RTP/AVP")], keyed
    assert band_share(audio_a[4000:-2000], 1000) > 0.5, "the SRTP phone did not hear the plain one"
    assert band_share(audio_b[4000:-2000], 440) > 0.5, "the plain phone did not hear the SRTP one"
    caller_leg = next(e.leg_id for e in events if e.kind == "call.started")
    rtp = next(e.data["rtp"] for e in events if e.kind == "leg.ended" and e.leg_id == caller_leg)
    assert rtp["received"] > 100 and rtp["dropped_auth"] == 0, rtp  # type: ignore[index]


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def session(key: bytes, inbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind,
                                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))


def test_a_scripted_srtp_caller_and_callee_with_a_tampered_and_a_replayed_packet(tmp_path: Path) -> None:
    """Both legs SRTP: the caller offers RTP/SAVP; the callee endpoint has `srtp: mandatory`, so Hatif offers
    it RTP/SAVP with its own key. Every packet is checked by libsrtp on the far side."""
    caller_port, callee_port = free_port(tcp=False), free_port(tcp=False)
    text = USERS_CONFIG.format(port=free_port(tcp=False), pmin=PORT_MIN, pmax=PORT_MAX, recordings=tmp_path,
                               caller=caller_port, callee=callee_port)
    caller_key, callee_key = new_key(), new_key()
    crypto = f"a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(caller_key).decode()}"

    def callee_answer(port: int, invite: object) -> bytes:
        offer = invite.body.decode()  # type: ignore[attr-defined]
        assert "RTP/SAVP" in offer and "a=crypto:1 AES_CM_128_HMAC_SHA1_80" in offer
        answered["key"] = base64.b64decode(offer.split("inline:")[1].split()[0])
        return sdp_body(port, "RTP/SAVP", (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
                                           f"{base64.b64encode(callee_key).decode()}",))
    answered: dict[str, bytes] = {}
    with RunningHatif(text) as h:
        events: list[CallEvent] = []
        h.call(lambda: h.h.control.listeners.append(events.append))
        caller = SipPeer(h.address("udp"), caller_port)
        caller_rtp, callee_rtp = RtpSocket(), RtpSocket()
        callee = Callee(h.address("udp"), callee_rtp.port, callee_port, callee_answer)
        dialog = call(caller, "2000", sdp_body(caller_rtp.port, "RTP/SAVP", (crypto,)), callee.answer)
        hatif_to_caller = dialog.answer.audio().crypto
        assert [(c.tag, c.suite) for c in hatif_to_caller] == [(7, "AES_CM_128_HMAC_SHA1_80")]
        caller_out, caller_in = session(caller_key, False), session(hatif_to_caller[0].key, True)
        callee_out, callee_in = session(callee_key, False), session(answered["key"], True)
        ours, theirs = tone_frames(440), tone_frames(1000)
        protected: list[bytes] = []

        def keep(packet: bytes) -> bytes:
            protected.append(caller_out.protect(packet))
            return protected[-1]
        t0 = time.monotonic()
        for i in range(100):
            caller_rtp.send(dialog.media, ours[i % 50], protect=keep)
            callee_rtp.send(callee.media, theirs[i % 50], protect=callee_out.protect)
            if i == 60:
                tampered = bytearray(protected[-1])
                tampered[30] ^= 0x40  # one bit of the encrypted payload
                caller_rtp.sock.sendto(bytes(tampered), dialog.media)
                caller_rtp.sock.sendto(protected[10], dialog.media)  # a replay
            pump([caller_rtp, callee_rtp], t0 + (i + 1) * 0.02)
        pump([caller_rtp, callee_rtp], time.monotonic() + 0.2)
        assert dialog.bye().status == 200
        callee.take_bye()
        h.wait_idle(10)
        at_callee = [callee_in.unprotect(p) for _, _, p in callee_rtp.received.packets]  # raises unless authentic
        at_caller = [caller_in.unprotect(p) for _, _, p in caller_rtp.received.packets]
        finished = h.call(lambda: list(h.h.control.finished))
    assert [p[12:] for p in at_callee] == [ours[i % 50] for i in range(100)]  # nothing more, nothing less
    assert len(at_caller) >= 99 and {p[12:] for p in at_caller} <= set(theirs)
    ended = [e.data["rtp"] for e in events if e.kind == "leg.ended"]
    assert sorted(r["dropped_auth"] for r in ended) == [0, 2], ended  # type: ignore[index]
    with wave.open(str(finished[-1].recording)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert band_share(data[1600:-1600, 0], 440) > 0.5 and band_share(data[1600:-1600, 1], 1000) > 0.5
    caller_rtp.close()
    callee_rtp.close()
    caller.close()
    callee.close()
