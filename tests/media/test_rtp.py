"""RTP and RTCP packets and receive statistics (RFC 3550 §5, §6, Appendix A)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.media.rtp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpOther,
    RtcpPacket,
    RtpError,
    RtpPacket,
    RtpReceiveStats,
    SdesChunk,
    SenderReport,
    SourceDescription,
    is_rtcp,
    ntp_from_unix,
    parse_rtcp,
    payload_bounds,
    peek_header,
    rewrite_header,
    serialize_rtcp,
    set_payload_type,
)

# V=2, no padding/extension/CSRC; M=1, PT=0; seq 0x1234; ts 0x0000A0B0; SSRC 0xDEADBEEF; payload "abc".
SIMPLE = bytes.fromhex("80 80 1234 0000a0b0 deadbeef") + b"abc"


def test_parse_fixed_header() -> None:
    p = RtpPacket.parse(SIMPLE)
    assert (p.version, p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (2, 0, True, 0x1234, 0xA0B0,
                                                                                        0xDEADBEEF)
    assert p.payload == b"abc" and p.csrc == () and not p.extension and p.padding == 0
    assert p.serialize() == SIMPLE


def test_csrc_extension_and_padding() -> None:
    data = (bytes.fromhex("b2 08 0001 00000002 00000003")  # V=2 P=1 X=1 CC=2, PT=8
            + bytes.fromhex("0000000a 0000000b")  # CSRCs
            + bytes.fromhex("bede 0001 10ff0000")  # one-word extension (RFC 8285 profile)
            + b"\x01\x02" + b"\x00\x00\x03")  # payload, then 3 octets of padding
    p = RtpPacket.parse(data)
    assert p.payload_type == 8 and not p.marker
    assert p.csrc == (10, 11)
    assert p.extension_profile == 0xBEDE and p.extension_data == bytes.fromhex("10ff0000")
    assert p.payload == b"\x01\x02" and p.padding == 3
    assert p.serialize() == data
    assert payload_bounds(data) == (28, 30)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x80\x00\x00", "short packet"),
        (b"\x40" + SIMPLE[1:], "bad version 1"),
        (b"\x83" + SIMPLE[1:12] + b"\0" * 8, "CSRC count 3"),
        (b"\x90" + SIMPLE[1:12] + b"\xbe\xde", "header extension past end"),
        (b"\x90" + SIMPLE[1:12] + b"\xbe\xde\x00\x02\x00\x00\x00\x00", "header extension past end"),
        (b"\xa0" + SIMPLE[1:12] + b"ab\x00", "padding length invalid"),
        (b"\xa0" + SIMPLE[1:12] + b"ab\x04", "padding length invalid"),
    ],
)
def test_malformed_packets_name_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(RtpError, match=problem):
        RtpPacket.parse(data)


def test_fields_are_checked() -> None:
    with pytest.raises(RtpError, match="payload type"):
        RtpPacket(128, 0, 0, 0)
    with pytest.raises(RtpError, match="sequence"):
        RtpPacket(0, 65536, 0, 0)
    with pytest.raises(RtpError, match="15"):
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16)))
    with pytest.raises(RtpError, match="32-bit words"):
        RtpPacket(0, 0, 0, 0, extension_profile=1, extension_data=b"abc")


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    extension_data=st.integers(0, 4).map(lambda n: bytes(range(4 * n))),
    padding=st.integers(0, 255),
)


@settings(max_examples=150, deadline=None)
@given(packets)
def test_round_trip(p: RtpPacket) -> None:
    if p.extension_profile is None and p.extension_data:
        p = RtpPacket(p.payload_type, p.sequence, p.timestamp, p.ssrc, p.payload, p.marker, p.csrc)
    data = p.serialize()
    assert RtpPacket.parse(data) == p
    assert peek_header(data) == (p.payload_type, p.sequence, p.timestamp, p.ssrc)
    start, end = payload_bounds(data)
    assert data[start:end] == p.payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_raises_only_rtp_error(data: bytes) -> None:
    try:
        p = RtpPacket.parse(b"\x80" + data if data[:1] != b"\x80" else data)
    except RtpError:
        return
    assert RtpPacket.parse(p.serialize()) == p


def test_relay_helpers_patch_in_place() -> None:
    buf = bytearray(SIMPLE)
    rewrite_header(buf, sequence=70000, timestamp=-1, ssrc=0x01020304)  # out-of-range values wrap
    assert peek_header(buf) == (0, 70000 & 0xFFFF, 0xFFFFFFFF, 0x01020304)
    set_payload_type(buf, 101)
    assert buf[1] == 0x80 | 101  # marker kept
    set_payload_type(memoryview(buf), 8, marker=False)
    p = RtpPacket.parse(buf)
    assert (p.payload_type, p.marker, p.payload) == (8, False, b"abc")
    with pytest.raises(RtpError, match="short packet"):
        peek_header(b"\x80" * 11)
    with pytest.raises(RtpError, match="bad version 3"):
        peek_header(b"\xc0" + bytes(11))


def test_rtcp_demultiplexing() -> None:
    assert not is_rtcp(SIMPLE)
    assert is_rtcp(ReceiverReport(1).serialize())
    assert not is_rtcp(RtpPacket(127, 0, 0, 0, marker=True).serialize())  # M+PT = 255
    assert not is_rtcp(b"\x80")


# -- RTCP -------------------------------------------------------------------------------------------------

BLOCK = ReportBlock(ssrc=0x11223344, fraction_lost=25, cumulative_lost=-3, highest_sequence=0x0001FFFF,
                    jitter=37, last_sr=0xAABBCCDD, delay_since_last_sr=65536)


def test_receiver_report_bytes() -> None:
    data = ReceiverReport(0xCAFEBABE, (BLOCK,)).serialize()
    assert data == bytes.fromhex(
        "81 c9 0007 cafebabe" "11223344 19fffffd 0001ffff 00000025 aabbccdd 00010000"
    )
    assert parse_rtcp(data) == [ReceiverReport(0xCAFEBABE, (BLOCK,))]


def test_compound_round_trip() -> None:
    compound: list[RtcpPacket] = [
        SenderReport(1, ntp_from_unix(1_700_000_000.5), 160, 10, 1600, (BLOCK, BLOCK)),
        SourceDescription((SdesChunk(1, ((1, b"hatif@example.org"), (6, b"hatif"))), SdesChunk(2, ()))),
        Goodbye((1, 2), "call ended"),
        RtcpOther(204, 3, b"NAME\x00\x00\x00\x01"),
    ]
    data = serialize_rtcp(compound)
    assert len(data) % 4 == 0
    parsed = parse_rtcp(data)
    assert parsed == compound
    sdes = parsed[1]
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "hatif@example.org"
    assert sdes.chunks[1].cname is None
    sr = parsed[0]
    assert isinstance(sr, SenderReport) and sr.ntp_timestamp >> 32 == 1_700_000_000 + 2_208_988_800
    assert sr.ntp_timestamp & 0xFFFFFFFF == 1 << 31


@pytest.mark.parametrize("text", [b"", b"a", b"ab", b"abc", b"abcd"])
def test_sdes_chunk_alignment(text: bytes) -> None:
    packet = SourceDescription((SdesChunk(7, ((1, text),)), SdesChunk(8, ((1, b"x"),))))
    data = packet.serialize()
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [packet]


def test_padding_on_last_packet() -> None:
    rr = ReceiverReport(5).serialize()
    padded = bytearray(rr + b"\x00\x00\x00\x04")
    padded[0] |= 0x20
    struct.pack_into("!H", padded, 2, 2)
    assert parse_rtcp(bytes(padded)) == [ReceiverReport(5)]
    with pytest.raises(RtcpError, match="other than the last"):
        parse_rtcp(bytes(padded) + rr)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x81\xc9\x00", "short packet"),
        (b"\x41\xc9\x00\x01\x00\x00\x00\x01", "bad version 1"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "length past end"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "report count 1"),
        (b"\x80\xc8\x00\x01\x00\x00\x00\x01", "short SR"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "padding length invalid"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x03ab", "runs past the end"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x02ab", "no terminating null"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "BYE source count 2"),
        (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09ab\x00", "BYE reason"),
    ],
)
def test_malformed_rtcp_names_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(RtcpError, match=problem):
        parse_rtcp(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_rtcp_garbage_raises_only_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(b"\x80" + data)
    except RtcpError:
        return
    assert packets


# -- receive statistics -----------------------------------------------------------------------------------


def feed(stats: RtpReceiveStats, seqs: list[int], ssrc: int = 1, start: float = 0.0) -> list[bool]:
    return [stats.update(ssrc, s & 0xFFFF, (s * 160) & 0xFFFFFFFF, start + i * 0.02) for i, s in enumerate(seqs)]


def test_probation_then_counting() -> None:
    stats = RtpReceiveStats()
    assert feed(stats, [100, 101, 102]) == [False, True, True]  # valid after MIN_SEQUENTIAL in a row (A.1)
    assert (stats.received, stats.expected, stats.lost, stats.extended_highest) == (2, 2, 0, 102)


def test_probation_restarts_on_out_of_order() -> None:
    stats = RtpReceiveStats()
    assert feed(stats, [10, 20, 21, 22]) == [False, False, True, True]


def test_loss_and_wrap_around() -> None:
    stats = RtpReceiveStats()
    seqs = [s for s in range(65530, 65546) if s not in (65534, 65537)]
    assert all(feed(stats, seqs)[1:])
    assert stats.extended_highest == 65545  # one cycle: 1 << 16 | 9
    assert stats.expected == 65545 - 65531 + 1
    assert stats.lost == 2
    block = stats.report_block(now=1.0)
    assert block is not None
    assert block.highest_sequence == 0x10009 and block.cumulative_lost == 2
    assert block.fraction_lost == (2 << 8) // 15
    # The next interval has no loss: fraction 0, cumulative unchanged.
    feed(stats, list(range(65546, 65556)), start=1.0)
    block = stats.report_block(now=2.0)
    assert block is not None and block.fraction_lost == 0 and block.cumulative_lost == 2


def test_duplicates_make_loss_negative() -> None:
    stats = RtpReceiveStats()
    feed(stats, [1, 2, 3, 3, 3, 2])
    assert stats.received == 5 and stats.expected == 2 and stats.lost == -3  # base is 2, after probation
    block = stats.report_block(now=0.0)
    assert block is not None and block.cumulative_lost == -3 and block.fraction_lost == 0


def test_large_jump_needs_a_second_packet() -> None:
    stats = RtpReceiveStats()
    feed(stats, [1, 2, 3])
    assert stats.update(1, 20000, 0, 1.0) is False  # a stray is not counted
    assert stats.extended_highest == 3
    assert stats.update(1, 20001, 160, 1.02) is True  # ... but two in sequence mean the sender restarted
    assert (stats.extended_highest, stats.received, stats.lost) == (20001, 1, 0)


def test_ssrc_change_resets() -> None:
    stats = RtpReceiveStats()
    feed(stats, [1, 2, 3, 5])
    assert stats.lost == 1
    assert feed(stats, [900, 901, 902], ssrc=2) == [False, True, True]
    assert (stats.ssrc, stats.ssrc_changes, stats.lost, stats.received) == (2, 1, 0, 2)
    assert stats.jitter == 0.0


def test_jitter_constant_delay_is_zero_and_alternating_converges() -> None:
    stats = RtpReceiveStats()
    for i in range(50):
        stats.update(1, i, i * 160, 10.0 + i * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    stats = RtpReceiveStats()
    for i in range(400):  # every other packet 5 ms late: |D| = 40 timestamp units each time (§6.4.1)
        stats.update(1, i, i * 160, i * 0.02 + (0.005 if i % 2 else 0.0))
    assert stats.jitter == pytest.approx(40.0, rel=1e-3)


def test_jitter_across_timestamp_wrap() -> None:
    stats = RtpReceiveStats()
    base = 0xFFFFFFFF - 160 * 10
    for i in range(30):
        stats.update(1, i, (base + i * 160) & 0xFFFFFFFF, i * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_lsr_and_dlsr() -> None:
    stats = RtpReceiveStats()
    assert stats.report_block(0.0) is None
    feed(stats, [1, 2, 3])
    ntp = 0x0123456789ABCDEF
    stats.on_sender_report(ntp, now=5.0)
    block = stats.report_block(now=6.5)
    assert block is not None
    assert block.last_sr == 0x456789AB and block.delay_since_last_sr == int(1.5 * 65536)
