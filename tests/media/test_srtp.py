"""SRTP on engine legs (issue 18): relay between an SRTP leg and a plain one both ways, and a tampered,
forged or replayed packet dropped and counted before anything reads it. The peer is libsrtp through
pylibsrtp, independent of the engine's own contexts."""

from __future__ import annotations

import asyncio
import base64
import struct
from pathlib import Path

import pylibsrtp
import pytest
import uvloop
from test_engine import FRAME, Phone, engine_with, tone

from hatif.media.g711 import ulaw_encode
from hatif.media.srtp import Srtp, SrtpError, new_key
from hatif.sip.sdp import Crypto, SessionDescription, chosen_crypto, make_answer, make_offer


@pytest.fixture
def run() -> object:
    def runner(coro: object) -> object:
        return uvloop.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]
    return runner


P80, P32 = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32


def session(key: bytes, inbound: bool, suite: int = P80) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_INBOUND if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=suite))


@pytest.mark.parametrize("suite,profile", [("AES_CM_128_HMAC_SHA1_80", P80), ("AES_CM_128_HMAC_SHA1_32", P32)])
def test_srtp_leg_relays_to_a_plain_leg_and_drops_what_fails_authentication(
        run: object, tmp_path: Path, suite: str, profile: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        a, b = engine.open_leg(), engine.open_leg()
        pa, pb = Phone(loop), Phone(loop)
        hatif_key, phone_key = new_key(), new_key()
        a.srtp = Srtp(suite, hatif_key, phone_key)
        a.set_remote("127.0.0.1", pa.port)
        b.set_remote("127.0.0.1", pb.port)
        engine.bridge(a, b)
        to_hatif, from_hatif = session(phone_key, inbound=False, suite=profile), session(hatif_key, True, profile)
        sent, protected = [], []
        for i in range(20):
            plain = pa.packet(ulaw_encode(tone(440, 1, start=i)))
            sent.append(plain)
            protected.append(to_hatif.protect(plain))
            pa.sock.sendto(protected[-1], ("127.0.0.1", a.local_port))
            pb.send_to(b, ulaw_encode(tone(1000, 1, start=i)))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        assert pb.received == sent  # decrypted: header and payload exactly as the phone sent them
        assert len(pa.received) == 20
        heard = [from_hatif.unprotect(p) for p in pa.received]  # raises if not authentic
        assert all(len(p) == 12 + FRAME for p in heard)
        # A tampered packet, a forged one and a replay, all from the latched address: none gets through.
        good = to_hatif.protect(pa.packet(ulaw_encode(tone(440, 1))))
        tampered = bytearray(good)
        tampered[20] ^= 0x01
        forged = pa.packet(b"\x00" * FRAME) + b"\x00" * 10
        for bad in (bytes(tampered), forged, protected[3]):
            pa.sock.sendto(bad, ("127.0.0.1", a.local_port))
        await asyncio.sleep(0.1)
        assert len(pb.received) == 20 and a.dropped_auth == 3 and a.stats()["dropped_auth"] == 3
        assert engine.stats()["dropped_auth"] == 3
        pa.close()
        pb.close()
        engine.close()

    run(main())  # type: ignore[operator]


def test_a_played_frame_goes_out_protected(run: object, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone = Phone(loop)
        key = new_key()
        leg.srtp = Srtp("AES_CM_128_HMAC_SHA1_80", key, new_key())
        leg.set_remote("127.0.0.1", phone.port)
        leg.send_frame(tone(440, 1))
        await asyncio.sleep(0.05)
        assert len(phone.received) == 1 and len(phone.received[0]) == 12 + FRAME + 10
        plain = session(key, inbound=True).unprotect(phone.received[0])
        assert struct.unpack_from("!I", plain, 8)[0] == leg.ssrc
        phone.close()
        engine.close()

    run(main())  # type: ignore[operator]


def test_srtp_refuses_what_it_cannot_key() -> None:
    with pytest.raises(SrtpError, match="suite"):
        Srtp("F8_128_HMAC_SHA1_80", new_key(), new_key())
    with pytest.raises(SrtpError, match="30 octets"):
        Srtp("AES_CM_128_HMAC_SHA1_80", b"short", new_key())


KEY = bytes(range(30))
OFFER = ("v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
         "m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
         "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode() + "\r\n"
         "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode() + "|2^20|1:4\r\n"
         "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" + base64.b64encode(KEY).decode() + "|2^31\r\n"
         "a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(KEY).decode() + "\r\n"
         "a=crypto:x nonsense\r\n")


def test_sdes_crypto_lines_are_read_and_the_first_usable_is_answered() -> None:
    offer = SessionDescription.parse(OFFER)
    lines = offer.audio().crypto
    assert [c.tag for c in lines] == [1, 2, 3, 4]  # the unreadable line is ignored (RFC 4568 §7.1.2)
    assert [c.usable for c in lines] == [False, False, True, True]  # AES-256 and an MKI are not taken
    assert lines[2].lifetime == "2^31" and lines[1].mki == "1:4"
    assert Crypto.parse(lines[1].value()) == lines[1]
    chosen = chosen_crypto(offer.audio())
    assert chosen is not None and (chosen.tag, chosen.suite, chosen.key) == (3, "AES_CM_128_HMAC_SHA1_32", KEY)
    ours = new_key()
    answer = make_answer(offer, "10.0.0.1", 30000, 1, 1, srtp_key=ours)
    audio = SessionDescription.parse(answer.serialize()).audio()
    assert audio.proto == "RTP/SAVP" and [(c.tag, c.suite, c.key) for c in audio.crypto] == [
        (3, "AES_CM_128_HMAC_SHA1_32", ours)]


def test_an_offer_with_sdes() -> None:
    key = new_key()
    for proto in ("RTP/SAVP", "RTP/AVP"):
        offer = SessionDescription.parse(make_offer("10.0.0.1", 30000, 1, 1, srtp_key=key, proto=proto).serialize())
        assert offer.audio().proto == proto
        assert [(c.tag, c.suite, c.key) for c in offer.audio().crypto] == [(1, "AES_CM_128_HMAC_SHA1_80", key)]
    plain = make_offer("10.0.0.1", 30000, 1, 1)
    assert plain.audio().proto == "RTP/AVP" and plain.audio().crypto == ()
