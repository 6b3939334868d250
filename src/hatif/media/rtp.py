"""RTP and RTCP packets and receive statistics, sans-IO (RFC 3550).

* `RtpPacket`: the fixed header, CSRC list, header extension and padding of RFC 3550 §5.1 and §5.3.1,
  with `parse` and `serialize`.
* Relay hot path (tens of thousands of packets a second): `peek_header`, `payload_bounds`,
  `rewrite_header` and `set_payload_type` read or patch a packet in place with `struct`, building no
  object; `is_rtcp` tells RTCP from RTP on a multiplexed port (RFC 5761 §4).
* RTCP (RFC 3550 §6.4-§6.6): sender and receiver reports with their report blocks, SDES, BYE, other
  packet types kept opaque, and compound packets (§6.1), by `parse_rtcp` and `serialize_rtcp`.
* `RtpReceiveStats`: sequence validation and extension (Appendix A.1), expected and lost packets (A.3),
  interarrival jitter (§6.4.1, A.8), and the report block a receiver sends. Arrival times are passed in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import MediaError

__all__ = [
    "Goodbye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpOther",
    "RtcpPacket",
    "RtpError",
    "RtpPacket",
    "RtpReceiveStats",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "is_rtcp",
    "ntp_from_unix",
    "parse_rtcp",
    "payload_bounds",
    "peek_header",
    "rewrite_header",
    "serialize_rtcp",
    "set_payload_type",
]

VERSION = 2
HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_PEEK = struct.Struct("!xBHII")
_REWRITE = struct.Struct("!HII")
_EXTENSION = struct.Struct("!HH")  # profile, length in 32-bit words
_WORD = struct.Struct("!I")
_RTCP_HEADER = struct.Struct("!BBHI")  # V/P/count, packet type, length in words - 1, SSRC
_SR_INFO = struct.Struct("!QIII")  # NTP timestamp, RTP timestamp, packet count, octet count
_REPORT_BLOCK = struct.Struct("!IIIIII")

SR, RR, SDES, BYE = 200, 201, 202, 203  # RFC 3550 §12.1
SDES_CNAME = 1  # RFC 3550 §6.5.1
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01 (RFC 3550 §4)


class RtpError(MediaError, ValueError):
    """An RTP packet that does not follow RFC 3550 §5.1; the text names the field."""


class RtcpError(MediaError, ValueError):
    """An RTCP packet or compound that does not follow RFC 3550 §6; the text names the field."""


# -- RTP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). `padding` is the number of padding octets, 0 for none."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None  # the 16 bits "defined by profile" of §5.3.1
    extension_data: bytes = b""  # a whole number of 32-bit words
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} is not in 0..127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise RtpError(f"sequence number {self.sequence} is not in 0..65535")
        if not (0 <= self.timestamp <= 0xFFFFFFFF and 0 <= self.ssrc <= 0xFFFFFFFF):
            raise RtpError("timestamp or SSRC does not fit 32 bits")
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs: the CC field holds at most 15")
        if len(self.extension_data) % 4 or len(self.extension_data) > 0xFFFF * 4:
            raise RtpError("header extension data is not a whole number of 32-bit words (at most 65535)")
        if not 0 <= self.padding <= 255:
            raise RtpError(f"padding of {self.padding} octets: the count must fit one octet")

    @property
    def version(self) -> int:
        return VERSION

    @property
    def extension(self) -> bool:
        """The X bit: a header extension follows the CSRC list."""
        return self.extension_profile is not None

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; raises `RtpError` naming what is wrong."""
        start, end = payload_bounds(data)
        b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        cc = b0 & 0x0F
        csrc = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE) if cc else ()
        profile: int | None = None
        ext = b""
        if b0 & 0x10:
            at = HEADER_SIZE + 4 * cc
            profile, _ = _EXTENSION.unpack_from(data, at)
            ext = bytes(data[at + 4 : start])
        return cls(b1 & 0x7F, sequence, timestamp, ssrc, bytes(data[start:end]), bool(b1 & 0x80), csrc,
                   profile, ext, len(data) - end)

    def serialize(self) -> bytes:
        b0 = VERSION << 6 | (0x20 if self.padding else 0) | len(self.csrc)
        extension = b""
        if self.extension_profile is not None:
            b0 |= 0x10
            extension = _EXTENSION.pack(self.extension_profile, len(self.extension_data) // 4) + self.extension_data
        header = _HEADER.pack(b0, (0x80 if self.marker else 0) | self.payload_type, self.sequence, self.timestamp,
                              self.ssrc)
        csrc = struct.pack(f"!{len(self.csrc)}I", *self.csrc) if self.csrc else b""
        padding = bytes(self.padding - 1) + bytes((self.padding,)) if self.padding else b""
        return b"".join((header, csrc, extension, self.payload, padding))


def peek_header(buf: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """`(payload_type, sequence, timestamp, ssrc)` of an RTP packet, read in place (RFC 3550 §5.1)."""
    if len(buf) < HEADER_SIZE:
        raise RtpError(f"short packet: {len(buf)} octets, the fixed header needs {HEADER_SIZE}")
    if buf[0] >> 6 != VERSION:
        raise RtpError(f"bad version {buf[0] >> 6}, expected {VERSION}")
    b1, sequence, timestamp, ssrc = _PEEK.unpack_from(buf)
    return b1 & 0x7F, sequence, timestamp, ssrc


def payload_bounds(buf: bytes | bytearray | memoryview) -> tuple[int, int]:
    """`(start, end)` of the payload: after CSRCs and header extension, before padding (§5.1, §5.3.1)."""
    size = len(buf)
    if size < HEADER_SIZE:
        raise RtpError(f"short packet: {size} octets, the fixed header needs {HEADER_SIZE}")
    b0 = buf[0]
    if b0 >> 6 != VERSION:
        raise RtpError(f"bad version {b0 >> 6}, expected {VERSION}")
    start = HEADER_SIZE + 4 * (b0 & 0x0F)
    if start > size:
        raise RtpError(f"CSRC count {b0 & 0x0F} runs past the end of a {size}-octet packet")
    if b0 & 0x10:
        if start + 4 > size:
            raise RtpError("header extension past end: no room for its profile and length")
        start += 4 + 4 * _EXTENSION.unpack_from(buf, start)[1]
        if start > size:
            raise RtpError(f"header extension past end: it ends at octet {start} of {size}")
    end = size
    if b0 & 0x20:
        pad = buf[size - 1]
        if pad == 0 or pad > size - start:
            raise RtpError(f"padding length invalid: {pad} octets with {size - start} after the header")
        end -= pad
    return start, end


def rewrite_header(buf: bytearray | memoryview, sequence: int, timestamp: int, ssrc: int) -> None:
    """Overwrite sequence number, timestamp and SSRC in place, as a relay or translator does (§7.1)."""
    _REWRITE.pack_into(buf, 2, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def set_payload_type(buf: bytearray | memoryview, payload_type: int, marker: bool | None = None) -> None:
    """Overwrite the payload type in place, keeping the marker bit unless `marker` is given."""
    keep = buf[1] & 0x80 if marker is None else (0x80 if marker else 0)
    buf[1] = keep | (payload_type & 0x7F)


def is_rtcp(buf: bytes | bytearray | memoryview) -> bool:
    """RTCP or RTP on one port: RTCP packet types 192-223 sit where RTP's M+PT is 64-95 (RFC 5761 §4)."""
    return len(buf) >= 2 and 192 <= buf[1] <= 223


# -- RTCP ---------------------------------------------------------------------------------------------


def ntp_from_unix(seconds: float) -> int:
    """A 64-bit NTP timestamp (RFC 3550 §4) from seconds since the Unix epoch."""
    return int((seconds + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1): what the sender of the report saw of source `ssrc`."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point, lost/expected since the previous report
    cumulative_lost: int  # signed 24 bits: duplicates can make it negative
    highest_sequence: int  # extended: cycles << 16 | highest sequence number
    jitter: int  # timestamp units
    last_sr: int  # middle 32 bits of the last SR's NTP timestamp, 0 if none
    delay_since_last_sr: int  # units of 1/65536 s

    def serialize(self) -> bytes:
        lost = (self.fraction_lost & 0xFF) << 24 | (self.cumulative_lost & 0xFFFFFF)
        return _REPORT_BLOCK.pack(self.ssrc, lost, self.highest_sequence, self.jitter, self.last_sr,
                                  self.delay_since_last_sr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR, packet type 200 (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific, a whole number of words

    def serialize(self) -> bytes:
        body = _SR_INFO.pack(self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count)
        return _rtcp(SR, len(self.reports), self.ssrc, body, *(r.serialize() for r in self.reports),
                     self.extension)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR, packet type 201 (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def serialize(self) -> bytes:
        return _rtcp(RR, len(self.reports), self.ssrc, *(r.serialize() for r in self.reports), self.extension)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk (RFC 3550 §6.5): a source and its items as `(type, value)`."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The canonical name (§6.5.1), if the chunk has one."""
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        out = bytearray(_WORD.pack(self.ssrc))
        for kind, value in self.items:
            if len(value) > 255:
                raise RtcpError(f"SDES item {kind} is {len(value)} octets, at most 255 fit")
            out += bytes((kind, len(value))) + value
        out += bytes(4 - len(out) % 4)  # the null item, then zeros up to the next word (§6.5)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES, packet type 202 (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...]

    def serialize(self) -> bytes:
        body = b"".join(c.serialize() for c in self.chunks)
        return _pack_rtcp(SDES, len(self.chunks), body)


@dataclass(frozen=True, slots=True)
class Goodbye:
    """BYE, packet type 203 (RFC 3550 §6.6)."""

    sources: tuple[int, ...]
    reason: str = ""

    def serialize(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes((len(text),)) + text
            body += bytes(-len(body) % 4)
        return _pack_rtcp(BYE, len(self.sources), body)


@dataclass(frozen=True, slots=True)
class RtcpOther:
    """A packet type this module does not interpret (APP, feedback, XR ...), kept whole (§6.1)."""

    packet_type: int
    count: int
    body: bytes  # everything after the 4-octet header, without padding

    def serialize(self) -> bytes:
        return _pack_rtcp(self.packet_type, self.count, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpOther


def _pack_rtcp(packet_type: int, count: int, body: bytes) -> bytes:
    if count > 31:
        raise RtcpError(f"count {count} does not fit the 5-bit RC/SC field")
    if len(body) % 4:
        raise RtcpError(f"packet type {packet_type} body is {len(body)} octets, not whole 32-bit words")
    return struct.pack("!BBH", VERSION << 6 | count, packet_type, len(body) // 4) + body


def _rtcp(packet_type: int, count: int, ssrc: int, *parts: bytes) -> bytes:
    return _pack_rtcp(packet_type, count, _WORD.pack(ssrc) + b"".join(parts))


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """A compound RTCP packet (§6.1): the packets back to back, in the order given."""
    return b"".join(p.serialize() for p in packets)


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP packet (§6.1, validity checks of Appendix A.2).

    Every packet must be version 2 and fit exactly; padding is allowed on the last one only. The
    first packet need not be SR or RR, so that reduced-size RTCP (RFC 5506) is accepted too.
    """
    data = bytes(data)
    packets: list[RtcpPacket] = []
    at, size = 0, len(data)
    while at < size:
        if size - at < 4:
            raise RtcpError(f"short packet: {size - at} octets left at offset {at}, a header needs 4")
        b0, packet_type, words = struct.unpack_from("!BBH", data, at)
        end = at + 4 + 4 * words
        if b0 >> 6 != VERSION:
            raise RtcpError(f"bad version {b0 >> 6} in RTCP packet at offset {at}")
        if end > size:
            raise RtcpError(f"RTCP length past end: packet at offset {at} claims {end - at} of {size - at} octets")
        body_end = end
        if b0 & 0x20:
            if end != size:
                raise RtcpError("padding on an RTCP packet other than the last of the compound")
            pad = data[end - 1]
            if pad == 0 or pad > end - at - 4:
                raise RtcpError(f"padding length invalid: {pad} octets in a {end - at}-octet packet")
            body_end -= pad
        packets.append(_parse_one(packet_type, b0 & 0x1F, data[at + 4 : body_end]))
        at = end
    if not packets:
        raise RtcpError("empty RTCP compound")
    return packets


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type in (SR, RR):
        fixed = 4 + (_SR_INFO.size if packet_type == SR else 0)
        if len(body) < fixed:
            raise RtcpError(f"short {'SR' if packet_type == SR else 'RR'}: {len(body) + 4} octets")
        if len(body) < fixed + 24 * count:
            raise RtcpError(f"report count {count} runs past the end of a {len(body) + 4}-octet report")
        ssrc = _WORD.unpack_from(body)[0]
        reports = tuple(_parse_block(body, fixed + 24 * i) for i in range(count))
        extension = body[fixed + 24 * count :]
        if packet_type == RR:
            return ReceiverReport(ssrc, reports, extension)
        ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 4)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, extension)
    if packet_type == SDES:
        return SourceDescription(_parse_sdes(count, body))
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise RtcpError(f"BYE source count {count} runs past the end of the packet")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = ""
        if len(body) > 4 * count:
            length = body[4 * count]
            if 4 * count + 1 + length > len(body):
                raise RtcpError(f"BYE reason of {length} octets runs past the end of the packet")
            reason = body[4 * count + 1 : 4 * count + 1 + length].decode("utf-8", "replace")
        return Goodbye(sources, reason)
    return RtcpOther(packet_type, count, body)


def _parse_block(body: bytes, at: int) -> ReportBlock:
    ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(body, at)
    cumulative = lost & 0xFFFFFF
    if cumulative & 0x800000:
        cumulative -= 1 << 24
    return ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


def _parse_sdes(count: int, body: bytes) -> tuple[SdesChunk, ...]:
    chunks: list[SdesChunk] = []
    at = 0
    for _ in range(count):
        if at + 4 > len(body):
            raise RtcpError(f"SDES chunk {len(chunks) + 1} of {count} runs past the end of the packet")
        ssrc = _WORD.unpack_from(body, at)[0]
        at += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if at >= len(body):
                raise RtcpError(f"SDES chunk for SSRC {ssrc:#010x} has no terminating null item")
            kind = body[at]
            if kind == 0:
                at = (at + 4) & ~3  # skip the null octet and the zeros up to the next word
                break
            if at + 2 > len(body) or at + 2 + body[at + 1] > len(body):
                raise RtcpError(f"SDES item {kind} for SSRC {ssrc:#010x} runs past the end of the packet")
            length = body[at + 1]
            items.append((kind, body[at + 2 : at + 2 + length]))
            at += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


# -- receive statistics ---------------------------------------------------------------------------------

MAX_DROPOUT = 3000  # Appendix A.1: a forward jump larger than this is a restart or garbage
MAX_MISORDER = 100  # ... a backward jump smaller than this is a late or duplicate packet
MIN_SEQUENTIAL = 2  # ... a new source is valid after this many packets in sequence
_SEQ_MOD = 1 << 16


class RtpReceiveStats:
    """What a receiver knows of one source (RFC 3550 Appendix A.1, A.3, A.8; §6.4.1).

    Feed every packet to `update` with its arrival time in seconds. A packet from another SSRC resets
    everything: the new source is counted from scratch (and `ssrc_changes` goes up).
    """

    __slots__ = ("_bad_seq", "_base_seq", "_cycles", "_expected_prior", "_jitter", "_lsr", "_max_seq",
                 "_probation", "_received_prior", "_sr_at", "_transit", "clock_rate", "received", "ssrc",
                 "ssrc_changes")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.ssrc_changes = 0
        self._new_source(0)

    def _new_source(self, sequence: int) -> None:
        self._init_seq(sequence)
        self._max_seq = (sequence - 1) % _SEQ_MOD
        self._probation = MIN_SEQUENTIAL
        self._transit: float | None = None
        self._jitter = 0.0
        self._lsr = 0
        self._sr_at: float | None = None

    def _init_seq(self, sequence: int) -> None:
        """Appendix A.1 `init_seq`: counting starts again from `sequence`."""
        self._base_seq = sequence
        self._max_seq = sequence
        self._bad_seq = _SEQ_MOD + 1  # matches no sequence number
        self._cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(self, ssrc: int, sequence: int, timestamp: int, arrival: float) -> bool:
        """Account one packet; False when it is not (yet) counted: probation, or a wild jump (A.1)."""
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
            self.ssrc = ssrc
            self._new_source(sequence)
        if not self._update_seq(sequence):
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _update_seq(self, seq: int) -> bool:
        """Appendix A.1 `update_seq`."""
        udelta = (seq - self._max_seq) % _SEQ_MOD
        if self._probation:
            if seq == (self._max_seq + 1) % _SEQ_MOD:  # packets must be in sequence while on probation
                self._probation -= 1
                self._max_seq = seq
                if self._probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self._probation = MIN_SEQUENTIAL - 1
                self._max_seq = seq
            return False
        if udelta < MAX_DROPOUT:  # in order, with a permissible gap
            if seq < self._max_seq:
                self._cycles += _SEQ_MOD
            self._max_seq = seq
        elif udelta <= _SEQ_MOD - MAX_MISORDER:  # a very large jump
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) % _SEQ_MOD
                return False
            self._init_seq(seq)  # two in sequence after the jump: the sender restarted its numbering
        # else: a duplicate or late packet, counted as received (which is why loss can go negative)
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        """Interarrival jitter J += (|D| - J)/16 in timestamp units (§6.4.1, A.8)."""
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            # D = (Rj - Ri) - (Sj - Si), with the timestamp difference taken modulo 2^32 so wraps cancel.
            d = transit - self._transit
            d -= round(d / 2**32) * 2**32
            self._jitter += (abs(d) - self._jitter) / 16
        self._transit = transit

    @property
    def extended_highest(self) -> int:
        """Cycles and highest sequence number seen, as in the report block (A.3)."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.extended_highest - self._base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost: expected minus received; negative when duplicates came (A.3)."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter estimate in timestamp units (§6.4.1)."""
        return self._jitter

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        """Remember an SR from this source, for LSR and DLSR in the next report block (§6.4.1)."""
        self._lsr = (ntp_timestamp >> 16) & 0xFFFFFFFF
        self._sr_at = now

    def report_block(self, now: float) -> ReportBlock | None:
        """The reception report for this source, and start a new interval for `fraction_lost` (A.3)."""
        if self.ssrc is None or not self.received:
            return None
        expected_interval = self.expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = self.expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        cumulative = max(-0x800000, min(0x7FFFFF, self.lost))
        dlsr = 0 if self._sr_at is None else int((now - self._sr_at) * 65536) & 0xFFFFFFFF
        return ReportBlock(self.ssrc, min(fraction, 255), cumulative, self.extended_highest & 0xFFFFFFFF,
                           int(self._jitter), self._lsr, dlsr)
