"""SIPp scenarios that walk an IVR: a call with RFC 4733 digits and speech at set times.

SIPp replays a pcap's RTP packets as they are, so the same digit file played twice would carry the same RTP
timestamp, which a receiver rightly takes for a repeat of one event (RFC 4733 §2.5.1.1). Each digit here gets
a pcap file of its own, made with Hatif's `DtmfSender` with a fresh timestamp and sequence numbers, wrapped
in Ethernet/IPv4/UDP as SIPp's `play_pcap_audio` reads it. Speech is SIPp's own `g711a.pcap` (4.5 s).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from pathlib import Path

from hatif.media.dtmf import DtmfSender

SPEECH = Path("/usr/share/sip-tester/g711a.pcap")
SPEECH_SECONDS = 4.6
_counter = itertools.count(1)

Step = tuple[str, str | int]
"""("pause", ms), ("digits", "1001#"), ("speak", times) or ("bye", "")/("wait_bye", "") to end."""


def _udp_frame(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, 40000, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def write_dtmf_pcap(path: Path, digit: str) -> Path:
    """One digit, 100 ms long, as a pcap SIPp can play (timestamps unique per file)."""
    n = next(_counter)
    sender = DtmfSender(ssrc=0x5151_0000 + n)
    packets = sender.packets(digit, 100, timestamp=160_000 * n, sequence=(1000 * n) & 0xFFFF)
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for scheduled in packets:
        frame = _udp_frame(scheduled.packet.serialize())
        sec = int(scheduled.at)
        usec = int((scheduled.at - sec) * 1_000_000)
        out += struct.pack("<IIII", 1_700_000_000 + sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


_INVITE = """
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]ivr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:CALLER@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]ivr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_BYE = """
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:CALLER@[local_ip]:[local_port]>;tag=[pid]ivr[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

_WAIT_BYE = """
  <recv request="BYE" timeout="90000"/>
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
"""


def _play(path: Path) -> str:
    return f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n'


def scenario(folder: Path, name: str, caller: str, steps: Sequence[Step]) -> Path:
    """Write a SIPp uac scenario calling as `caller` and carrying out `steps`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    body = [_INVITE.replace("CALLER", caller)]
    for kind, value in steps:
        if kind == "pause":
            body.append(f'  <pause milliseconds="{int(value)}"/>\n')
        elif kind == "digits":
            for digit in str(value):
                label = {"#": "pound", "*": "star"}.get(digit, digit)
                pcap = write_dtmf_pcap(folder / f"{name}-{next(_counter)}-{label}.pcap", digit)
                body.append(_play(pcap))
                body.append('  <pause milliseconds="350"/>\n')
        elif kind == "speak":
            for _ in range(int(value)):
                body.append(_play(SPEECH))
                body.append(f'  <pause milliseconds="{int(SPEECH_SECONDS * 1000)}"/>\n')
        elif kind == "bye":
            body.append(_BYE.replace("CALLER", caller))
        elif kind == "wait_bye":
            body.append(_WAIT_BYE)
        else:
            raise ValueError(f"unknown step {kind!r}")
    xml = ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
           f'<scenario name="ivr walk {name}">\n{"".join(body)}</scenario>\n')
    path = folder / f"{name}.xml"
    path.write_text(xml)
    return path
