"""SDP parsing and offer/answer (RFC 4566, RFC 3264)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.sip.sdp import SdpError, SessionDescription, make_answer, make_offer, negotiated, with_media_address

BARESIP = (
    b"v=0\r\no=- 1406851476 2934556470 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"a=tool:baresip 1.0.0\r\nm=audio 10000 RTP/AVP 0 8 101\r\nb=AS:80\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp:10001\r\n"
    b"a=sendrecv\r\na=label:1\r\na=ssrc:123 cname:x\r\n"
)
SIPP_PCAP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-11,16\r\n"
)


def test_round_trip_is_lossless() -> None:
    for data in (BARESIP, SIPP_PCAP):
        assert SessionDescription.parse(data).serialize() == data


def test_negotiated_view() -> None:
    n = negotiated(SessionDescription.parse(BARESIP))
    assert (n.payload_type, n.codec, n.dtmf_payload_type, n.address, n.port) == (0, "PCMU", 101, "127.0.0.1", 10000)
    assert negotiated(SessionDescription.parse(SIPP_PCAP)).codec == "PCMA"


def test_anchoring_rewrites_address_port_and_version() -> None:
    sd = with_media_address(SessionDescription.parse(BARESIP), "192.0.2.5", 30000)
    n = negotiated(sd)
    assert (n.address, n.port) == ("192.0.2.5", 30000)
    text = sd.serialize().decode()
    assert "o=- 1406851476 2934556471 IN IP4 192.0.2.5" in text
    assert "a=rtcp:" not in text  # the phone's RTCP port is not ours
    assert "a=rtpmap:101 telephone-event/8000" in text


def test_answer_choices() -> None:
    offer = SessionDescription.parse(SIPP_PCAP)
    ans = make_answer(offer, "127.0.0.1", 20000, 1, 1)
    n = negotiated(ans)
    assert (n.codec, n.dtmf_payload_type, n.port) == ("PCMA", 101, 20000)
    hold = SessionDescription.parse(BARESIP.replace(b"a=sendrecv", b"a=sendonly"))
    assert negotiated(make_answer(hold, "127.0.0.1", 20000, 1, 2)).direction == "recvonly"
    g729 = SessionDescription.parse(SIPP_PCAP.replace(b"RTP/AVP 8 101", b"RTP/AVP 18").replace(
        b"a=rtpmap:8 PCMA/8000\r\n", b""))
    with pytest.raises(SdpError, match="no common codec"):
        make_answer(g729, "127.0.0.1", 20000, 1, 1)


def test_ipv6_and_rejected_streams() -> None:
    data = BARESIP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP6 2001:db8::1") + b"m=video 0 RTP/AVP 96\r\n"
    sd = SessionDescription.parse(data)
    assert negotiated(sd).address == "2001:db8::1"
    ans = make_answer(sd, "::1", 20000, 1, 1)
    assert [m.port for m in ans.media] == [20000, 0]


@pytest.mark.parametrize("data,needle", [
    (b"v=1\r\n", "v=0"), (b"v=0\r\nbad line\r\n", "line 2"), (b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio x\r\n", "media"),
    (b"v=0\r\ns=-\r\n", "origin"),
])
def test_errors_name_the_line(data: bytes, needle: str) -> None:
    with pytest.raises(SdpError, match=needle):
        SessionDescription.parse(data)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 65535), st.sampled_from([("PCMU",), ("PCMA", "telephone-event"), ("PCMU", "PCMA")]),
       st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]))
def test_offer_round_trip(port: int, codecs: tuple[str, ...], direction: str) -> None:
    offer = make_offer("10.1.2.3", port, 7, 1, codecs, direction=direction)
    back = SessionDescription.parse(offer.serialize())
    assert back == offer
    assert negotiated(back).port == port and negotiated(back).direction == direction
