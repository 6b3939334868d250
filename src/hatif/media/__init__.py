"""Hatif's media: the sans-IO cores (RTP and RTCP, G.711, DTMF, jitter buffer) under the media engine.

`rtp`, `g711`, `dtmf` and `jitter` never touch a socket or a clock: bytes and arrival times in, packets,
samples and digits out. The engine drives them from one 20 ms clock for every session.
"""

from .dtmf import DtmfDigit, DtmfError, DtmfReceiver, DtmfSender, GoertzelDetector, TelephoneEvent, dtmf_tone
from .g711 import alaw_decode, alaw_encode, alaw_to_ulaw, ulaw_decode, ulaw_encode, ulaw_to_alaw
from .jitter import JitterBuffer
from .rtp import (
    RtcpError,
    RtpError,
    RtpPacket,
    RtpReceiveStats,
    is_rtcp,
    parse_rtcp,
    payload_bounds,
    peek_header,
    rewrite_header,
    serialize_rtcp,
)

__all__ = [
    "DtmfDigit",
    "DtmfError",
    "DtmfReceiver",
    "DtmfSender",
    "GoertzelDetector",
    "JitterBuffer",
    "RtcpError",
    "RtpError",
    "RtpPacket",
    "RtpReceiveStats",
    "TelephoneEvent",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "dtmf_tone",
    "is_rtcp",
    "parse_rtcp",
    "payload_bounds",
    "peek_header",
    "rewrite_header",
    "serialize_rtcp",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]
