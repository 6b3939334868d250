"""SDP parsing and serializing (RFC 4566) and the offer/answer model (RFC 3264)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.sip.sdp import (
    Attribute,
    Connection,
    Media,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    make_answer,
    make_offer,
    negotiated,
    with_media_address,
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# What SIPp's built-in uac scenario sends.
SIPP = sdp("v=0", "o=user1 53655765 2353687637 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
           "m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")
# A baresip-style offer: session attributes, b=, rtcp, ssrc and other attributes we do not read.
BARESIP = sdp("v=0", "o=- 1406851476 2934556470 IN IP4 192.168.1.20", "s=-", "c=IN IP4 192.168.1.20", "t=0 0",
              "a=tool:baresip 3.10.1", "m=audio 10000 RTP/AVP 0 8 101", "b=AS:80", "a=rtpmap:0 PCMU/8000",
              "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=rtcp:10001",
              "a=sendrecv", "a=label:1", "a=ssrc:1234567 cname:a1b2c3", "a=ptime:20")
# An Asterisk-style answer preferring PCMA, with maxptime.
ASTERISK = sdp("v=0", "o=- 1732350000 1732350002 IN IP4 203.0.113.10", "s=Asterisk", "c=IN IP4 203.0.113.10",
               "t=0 0", "m=audio 14380 RTP/AVP 8 0 101", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
               "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=maxptime:150",
               "a=sendrecv")
# The example of RFC 4566 §5, with every optional session line.
RFC4566 = sdp("v=0", "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5", "s=SDP Seminar",
              "i=A Seminar on the session description protocol", "u=http://www.example.com/seminars/sdp.pdf",
              "e=j.doe@example.com (Jane Doe)", "c=IN IP4 224.2.17.12/127", "t=2873397496 2873404696",
              "a=recvonly", "m=audio 49170 RTP/AVP 0", "m=video 51372 RTP/AVP 99", "a=rtpmap:99 h263-1998/90000")
# A Linphone-style IPv6 offer with audio and video, per-media connection, ICE and RTCP lines.
LINPHONE6 = sdp("v=0", "o=alice 3710 1299 IN IP6 2001:db8::10", "s=Talk", "c=IN IP6 2001:db8::10", "t=0 0",
                "a=ice-ufrag:Fw5a", "a=ice-pwd:Xt9zQ2", "m=audio 7078 RTP/AVP 96 0 8 97", "c=IN IP6 2001:db8::11",
                "b=AS:64", "a=rtpmap:96 opus/48000/2", "a=rtpmap:97 telephone-event/8000", "a=rtcp:7079",
                "a=candidate:1 1 UDP 2130706431 2001:db8::11 7078 typ host", "a=sendrecv",
                "m=video 9078 RTP/AVP 98", "a=rtpmap:98 VP8/90000", "a=rtcp-fb:98 nack pli")


@pytest.mark.parametrize("data", [SIPP, BARESIP, ASTERISK, RFC4566, LINPHONE6],
                         ids=["sipp", "baresip", "asterisk", "rfc4566", "linphone-ipv6"])
def test_real_world_descriptions_round_trip_byte_for_byte(data: bytes) -> None:
    sd = SessionDescription.parse(data)
    assert sd.serialize() == data
    assert SessionDescription.parse(sd.serialize()) == sd


def test_typed_fields_of_the_rfc_4566_example() -> None:
    sd = SessionDescription.parse(RFC4566)
    assert sd.version == 0
    assert sd.origin == Origin("jdoe", "2890844526", 2890842807, "IN", "IP4", "10.47.16.5")
    assert sd.session_name == "SDP Seminar"
    assert sd.connection == Connection("IN", "IP4", "224.2.17.12/127") and sd.connection.host == "224.2.17.12"
    assert sd.timing == (Timing(2873397496, 2873404696),)
    assert sd.attributes == (Attribute("recvonly"),) and sd.direction == "recvonly"
    assert [line[0] for line in sd.lines] == ["i", "u", "e"]
    audio, video = sd.media
    assert (audio.kind, audio.port, audio.proto, audio.formats) == ("audio", 49170, "RTP/AVP", ("0",))
    assert audio.rtpmap == {0: RtpMap(0, "PCMU", 8000)}  # a static type needs no rtpmap (RFC 3551)
    assert video.rtpmap == {99: RtpMap(99, "h263-1998", 90000)}


def test_media_views() -> None:
    sd = SessionDescription.parse(LINPHONE6)
    audio = sd.audio()
    assert audio.connection == Connection("IN", "IP6", "2001:db8::11")
    assert audio.rtpmap[96] == RtpMap(96, "opus", 48000, 2)
    assert audio.lines == (("b", "AS:64"),)
    assert audio.attribute("rtcp") == "7079" and audio.attribute("fmtp") is None
    assert SessionDescription.parse(BARESIP).audio().fmtp(101) == "0-15"
    assert SessionDescription.parse(ASTERISK).audio().ptime == 20


def test_lf_line_endings_blank_lines_and_unknown_lines_are_kept() -> None:
    text = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\ny=0100000001\nm=audio 5004 RTP/AVP 8\n" \
           "i=voice\nb=TIAS:64000\nx=vendor\na=recvonly\n\n"
    sd = SessionDescription.parse(text)
    assert sd.lines == (("y", "0100000001"),)
    assert sd.media[0].lines == (("i", "voice"), ("b", "TIAS:64000"), ("x", "vendor"))
    assert sd.serialize() == text.rstrip("\n").replace("\n", "\r\n").encode() + b"\r\n"


def test_timing_with_repeats_and_port_counts() -> None:
    data = sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4 h", "t=3034423619 3042462419", "r=604800 3600 0 90000",
               "t=0 0", "z=2882844526 -1h", "m=audio 49170/2 RTP/AVP 0")
    sd = SessionDescription.parse(data)
    assert sd.timing == (Timing(3034423619, 3042462419, ("604800 3600 0 90000",)), Timing(0, 0))
    assert sd.media[0].port_count == 2 and sd.lines == (("z", "2882844526 -1h"),)
    assert sd.serialize() == data


def test_ipv6_connection() -> None:
    sd = SessionDescription.parse(LINPHONE6)
    n = negotiated(sd)
    assert (n.address, n.port) == ("2001:db8::11", 7078)  # the media's own c= wins over the session's
    answer = make_answer(sd, "2001:db8::99", 40000, 5, 1)
    text = answer.serialize().decode()
    assert "o=hatif 5 1 IN IP6 2001:db8::99\r\n" in text and "c=IN IP6 2001:db8::99\r\n" in text


@pytest.mark.parametrize("data,needle", [
    (b"", "starts with v=0"),
    (b"v=1\r\n", "line 1.*v=0"),
    (b"v=0\r\nbad line\r\n", "line 2.*not <type>=<value>"),
    (b"v=0\r\nV=0\r\n", "line 2"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio x RTP/AVP 0\r\n", "line 4.*media port"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "line 4.*media port"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio\r\n", "line 4.*media line"),
    (b"v=0\r\ns=-\r\n", "origin"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\n", "session name"),
    (b"v=0\r\no=- 1 IN IP4 h\r\ns=-\r\n", "line 2.*6 fields"),
    (b"v=0\r\no=- 1 x IN IP4 h\r\ns=-\r\n", "line 2.*version"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\no=- 1 1 IN IP4 h\r\n", "line 3.*second origin"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\n", "line 4.*connection"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=now 0\r\n", "line 4.*timing"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=7d 1h 0\r\n", "line 4.*r= without a t="),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n", "line 5.*session part"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", "line 5.*rtpmap"),
    (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\na=:x\r\n", "line 4.*attribute without a name"),
])
def test_errors_name_the_line(data: bytes, needle: str) -> None:
    with pytest.raises(SdpError, match=needle):
        SessionDescription.parse(data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: "v=0\r\n" + t)))
def test_garbage_raises_only_sdp_error(data: bytes | str) -> None:
    try:
        SessionDescription.parse(data)
    except SdpError:
        pass


# -- generated descriptions ---------------------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._+", min_size=1, max_size=8)
VALUE = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=16)
SESSION_RANK = {"i": 0, "u": 1, "e": 2, "p": 3, "b": 4, "z": 5, "k": 6, "y": 7}  # RFC 4566 §5 order
MEDIA_RANK = {"i": 0, "b": 1, "k": 2, "y": 3}
CONNECTIONS = st.builds(Connection, st.just("IN"), st.sampled_from(["IP4", "IP6"]), TOKEN)
ATTRIBUTES = st.lists(st.one_of(
    st.builds(Attribute, TOKEN.filter(lambda name: name != "rtpmap"), st.none() | VALUE),
    st.builds(lambda pt, name, rate: Attribute("rtpmap", f"{pt} {name}/{rate}"),
              st.integers(0, 127), TOKEN.filter(lambda t: "/" not in t), st.integers(1, 96000)),
), max_size=5).map(tuple)


def ordered_lines(types: str, rank: dict[str, int]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    lines = st.lists(st.tuples(st.sampled_from(types), VALUE), max_size=4)
    return lines.map(lambda ls: tuple(sorted(ls, key=lambda line: rank[line[0]])))


MEDIA = st.builds(Media, TOKEN, st.integers(0, 65535), st.sampled_from(["RTP/AVP", "RTP/SAVP", "udp"]),
                  st.lists(TOKEN, max_size=4).map(tuple), st.none() | st.integers(1, 8), st.none() | CONNECTIONS,
                  ATTRIBUTES, ordered_lines("ibky", MEDIA_RANK))
DESCRIPTIONS = st.builds(
    SessionDescription,
    st.builds(Origin, TOKEN, TOKEN, st.integers(0, 2**64), st.just("IN"), st.sampled_from(["IP4", "IP6"]), TOKEN),
    VALUE, st.none() | CONNECTIONS,
    st.lists(st.builds(Timing, st.integers(0, 2**40), st.integers(0, 2**40), st.lists(VALUE, max_size=2).map(tuple)),
             max_size=2).map(tuple),
    ATTRIBUTES, st.lists(MEDIA, max_size=3).map(tuple), ordered_lines("iuepbzky", SESSION_RANK))


@settings(max_examples=150, deadline=None)
@given(DESCRIPTIONS)
def test_generated_descriptions_round_trip(sd: SessionDescription) -> None:
    data = sd.serialize()
    back = SessionDescription.parse(data)
    assert back == sd
    assert back.serialize() == data


# -- offer/answer -------------------------------------------------------------------------------------


def test_negotiated_view_of_an_offer() -> None:
    n = negotiated(SessionDescription.parse(BARESIP))
    assert n.payload_type == 0 and n.codec == "PCMU" and n.clock_rate == 8000 and n.dtmf_payload_type == 101
    assert (n.address, n.port, n.direction, n.ptime) == ("192.168.1.20", 10000, "sendrecv", 20)
    sipp = negotiated(SessionDescription.parse(SIPP))
    assert (sipp.codec, sipp.dtmf_payload_type, sipp.ptime) == ("PCMU", None, 20)
    assert negotiated(SessionDescription.parse(ASTERISK)).codec == "PCMA"


def test_answer_takes_the_first_offered_codec_we_support() -> None:
    answer = make_answer(SessionDescription.parse(ASTERISK), "192.0.2.1", 20000, 77, 3)
    n = negotiated(answer)
    assert (n.payload_type, n.codec, n.dtmf_payload_type, n.address, n.port) == (8, "PCMA", 101, "192.0.2.1", 20000)
    assert answer.origin == Origin("hatif", "77", 3, "IN", "IP4", "192.0.2.1")
    assert answer.audio().formats == ("8", "101") and answer.audio().fmtp(101) == "0-16"
    only_pcmu = make_answer(SessionDescription.parse(ASTERISK), "192.0.2.1", 20000, 77, 3, supported=("PCMU",))
    assert negotiated(only_pcmu).codec == "PCMU" and negotiated(only_pcmu).dtmf_payload_type is None


def test_pcma_only_offer() -> None:
    offer = SessionDescription.parse(sdp("v=0", "o=- 1 1 IN IP4 10.0.0.5", "s=-", "c=IN IP4 10.0.0.5", "t=0 0",
                                         "m=audio 4000 RTP/AVP 8", "a=rtpmap:8 pcma/8000"))
    n = negotiated(make_answer(offer, "10.0.0.1", 30000, 1, 1))
    assert (n.payload_type, n.codec, n.dtmf_payload_type) == (8, "PCMA", None)


def test_no_common_codec_is_an_error() -> None:
    g729 = SessionDescription.parse(sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4 10.0.0.5", "t=0 0",
                                        "m=audio 4000 RTP/AVP 18 96", "a=rtpmap:18 G729/8000",
                                        "a=rtpmap:96 PCMU/16000", "a=rtpmap:101 telephone-event/8000"))
    with pytest.raises(SdpError, match=r"no common codec.*RTP/AVP 18 96"):
        make_answer(g729, "10.0.0.1", 30000, 1, 1)
    srtp = SessionDescription.parse(SIPP.replace(b"RTP/AVP", b"RTP/SAVP"))
    with pytest.raises(SdpError, match="no active RTP/AVP audio"):
        make_answer(srtp, "10.0.0.1", 30000, 1, 1)
    with pytest.raises(SdpError, match="codec 'G729' not supported"):
        make_answer(SessionDescription.parse(SIPP), "10.0.0.1", 30000, 1, 1, supported=("G729",))


def test_telephone_event_payload_type_is_echoed() -> None:
    offer = SessionDescription.parse(LINPHONE6)  # opus first (not ours), telephone-event on 97
    answer = make_answer(offer, "2001:db8::99", 40000, 1, 1)
    audio = answer.media[0]
    assert audio.formats == ("0", "97") and audio.fmtp(97) == "0-16"
    assert audio.rtpmap[97] == RtpMap(97, "telephone-event", 8000)
    assert negotiated(answer).dtmf_payload_type == 97


@pytest.mark.parametrize("offered,answered", [
    ("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive")])
def test_hold_directions_are_mirrored(offered: str, answered: str) -> None:
    offer = SessionDescription.parse(BARESIP.replace(b"a=sendrecv", f"a={offered}".encode()))
    assert negotiated(offer).direction == offered
    assert negotiated(make_answer(offer, "10.0.0.1", 30000, 1, 2)).direction == answered


def test_session_level_direction_and_rfc_2543_hold() -> None:
    offer = SessionDescription.parse(SIPP.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n"))
    assert negotiated(offer).direction == "sendonly"  # inherited from the session (RFC 3264 §5.1)
    assert negotiated(make_answer(offer, "10.0.0.1", 30000, 1, 1)).direction == "recvonly"
    old_hold = SessionDescription.parse(SIPP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"))
    assert negotiated(old_hold).direction == "sendonly"  # RFC 3264 §8.4: send nothing to 0.0.0.0
    assert negotiated(make_answer(old_hold, "10.0.0.1", 30000, 1, 1)).direction == "recvonly"


def test_multiple_media_rejected_streams_keep_port_zero() -> None:
    offer = SessionDescription.parse(
        sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN IP4 10.0.0.5", "t=0 0", "m=audio 0 RTP/AVP 0",
            "m=video 5002 RTP/AVP 31", "m=audio 5000 RTP/AVP 8 0", "m=audio 5004 RTP/AVP 0"))
    answer = make_answer(offer, "10.0.0.1", 30000, 1, 1)
    assert [(m.kind, m.port) for m in answer.media] == [("audio", 0), ("video", 0), ("audio", 30000), ("audio", 0)]
    assert answer.media[1].formats == ("31",)  # a rejected stream still lists a format (RFC 3264 §6)
    assert negotiated(answer).codec == "PCMA"
    back = SessionDescription.parse(answer.serialize())
    assert back == answer


def test_offer_and_answer_between_two_hatifs() -> None:
    offer = make_offer("10.0.0.1", 20000, 42, 1, ("PCMA", "PCMU", "telephone-event"), ptime=30, direction="sendonly")
    text = offer.serialize().decode()
    assert "m=audio 20000 RTP/AVP 8 0 101\r\n" in text and "a=fmtp:101 0-16\r\n" in text
    assert "a=ptime:30\r\n" in text and text.endswith("a=sendonly\r\n")
    assert SessionDescription.parse(text) == offer
    n = negotiated(make_answer(offer, "10.0.0.2", 20002, 43, 1))
    assert (n.codec, n.dtmf_payload_type, n.direction, n.address, n.port) == ("PCMA", 101, "recvonly", "10.0.0.2",
                                                                              20002)
    with pytest.raises(SdpError, match="codec 'G722' not supported"):
        make_offer("10.0.0.1", 20000, 1, 1, ("G722",))
    with pytest.raises(SdpError, match="besides telephone-event"):
        make_offer("10.0.0.1", 20000, 1, 1, ("telephone-event",))
    with pytest.raises(SdpError, match="direction 'hold'"):
        make_offer("10.0.0.1", 20000, 1, 1, direction="hold")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 65535), st.permutations(["PCMU", "PCMA", "telephone-event"]),
       st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]))
def test_offer_answer_agree(port: int, codecs: list[str], direction: str) -> None:
    offer = make_offer("10.1.2.3", port, 7, 1, tuple(codecs), direction=direction)
    assert SessionDescription.parse(offer.serialize()) == offer
    seen, answer = negotiated(offer), negotiated(make_answer(offer, "10.9.9.9", 1000, 8, 1))
    assert seen.port == port and seen.direction == direction
    assert answer.codec == next(c for c in codecs if c != "telephone-event")
    assert answer.dtmf_payload_type == 101 and answer.direction == {"sendonly": "recvonly", "recvonly": "sendonly"}.get(
        direction, direction)


# -- anchoring ----------------------------------------------------------------------------------------


def test_with_media_address_rewrites_address_port_and_version() -> None:
    sd = with_media_address(SessionDescription.parse(BARESIP), "192.0.2.5", 30000)
    n = negotiated(sd)
    assert (n.address, n.port, n.codec, n.dtmf_payload_type) == ("192.0.2.5", 30000, "PCMU", 101)
    assert sd.origin == Origin("-", "1406851476", 2934556471, "IN", "IP4", "192.0.2.5")
    text = sd.serialize().decode()
    assert "192.168.1.20" not in text and "a=rtcp:" not in text  # the phone's addresses are not ours
    assert "a=ssrc:1234567 cname:a1b2c3\r\n" in text and "b=AS:80\r\n" in text and "a=tool:baresip" in text
    assert with_media_address(sd, "192.0.2.5", 30000, version=9).origin.session_version == 9


def test_with_media_address_ipv6_per_media_connection_and_other_streams() -> None:
    sd = with_media_address(SessionDescription.parse(LINPHONE6), "2001:db8::99", 40000)
    audio, video = sd.media
    assert sd.connection == audio.connection == Connection("IN", "IP6", "2001:db8::99")
    assert audio.port == 40000 and video.port == 0  # nothing would carry the video: disabled
    assert not any(a.name.startswith(("ice-", "candidate", "rtcp")) and a.name != "rtcp-fb"
                   for a in (*sd.attributes, *audio.attributes))
    v4 = with_media_address(sd, "192.0.2.7", 40002)
    assert v4.origin.addrtype == "IP4" and negotiated(v4).address == "192.0.2.7"
    no_audio = SessionDescription.parse(sdp("v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=video 5000 RTP/AVP 31"))
    with pytest.raises(SdpError, match="no active audio"):
        with_media_address(no_audio, "192.0.2.7", 40002)
    with pytest.raises(SdpError, match="no connection address"):
        negotiated(SessionDescription.parse(SIPP.replace(b"c=IN IP4 127.0.0.1\r\n", b"")))
