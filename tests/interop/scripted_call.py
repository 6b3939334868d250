"""A scripted call through a real Hatif, for media tests that need to own every RTP packet.

Two trusted endpoints (a caller and a callee), each a plain UDP socket speaking just enough SIP (INVITE,
200, ACK, re-INVITE, BYE), and RTP sockets the test drives packet by packet, with an independent
attacker socket on 127.0.0.2. Hatif's own SIP parser reads the responses; nothing of Hatif's media
code is used on this side, so what arrives is what Hatif sent.
"""

from __future__ import annotations

import random
import secrets
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hatif.media.g711 import ulaw_decode, ulaw_encode
from hatif.sip.message import Request, Response, parse_message
from hatif.sip.sdp import SessionDescription

FRAME = 160
LOOPBACK = "127.0.0.1"
ATTACKER_HOST = "127.0.0.2"


def tone_frames(freq: float, count: int = 50, amplitude: float = 8000.0) -> list[bytes]:
    """`count` consecutive 20 ms PCMU frames of a sine (50 frames of 20 ms hold whole periods of most tones)."""
    n = np.arange(count * FRAME)
    samples = (amplitude * np.sin(2 * np.pi * freq * n / 8000)).astype(np.int16)
    return [ulaw_encode(samples[i * FRAME:(i + 1) * FRAME]) for i in range(count)]


def band_share(samples: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[np.abs(freqs - freq) < 40].sum() / (spectrum.sum() or 1.0))


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def udp(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((host, port))
    s.setblocking(False)
    return s


@dataclass
class Received:
    """What one RTP socket got: (arrival time, source, packet)."""

    packets: list[tuple[float, tuple[str, int], bytes]] = field(default_factory=list)

    def payloads(self) -> list[bytes]:
        return [p[12:] for _, _, p in self.packets if len(p) > 12]

    def audio(self) -> np.ndarray:
        frames = [p[12:] for _, _, p in self.packets if len(p) > 12 and p[1] & 0x7F == 0]
        return ulaw_decode(b"".join(frames)) if frames else np.zeros(0, np.int16)


class RtpSocket:
    """An RTP socket that sends a stream (its own SSRC, sequence and timestamp) and keeps what it hears."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.sock = udp(host)
        self.port = self.sock.getsockname()[1]
        self.received = Received()
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.sent = 0

    def send(self, to: tuple[str, int], payload: bytes, pt: int = 0, marker: bool = False,
             protect: Callable[[bytes], bytes] | None = None) -> bytes:
        packet = rtp(pt, self.seq, self.ts, self.ssrc, payload, marker)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        self.sock.sendto(protect(packet) if protect is not None else packet, to)
        self.sent += 1
        return packet

    def drain(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            self.received.packets.append((time.monotonic(), addr, data))

    def close(self) -> None:
        self.sock.close()


def pump(sockets: list[RtpSocket], until: float) -> None:
    """Receive on all sockets until `until` (time.monotonic)."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([s.sock for s in sockets], [], [], left)
        for s in sockets:
            if s.sock in ready:
                s.drain()
    for s in sockets:
        s.drain()


def sdp_body(port: int, proto: str = "RTP/AVP", extra: tuple[str, ...] = ()) -> bytes:
    lines = ["v=0", f"o=peer {random.getrandbits(31)} 1 IN IP4 {LOOPBACK}", "s=-", f"c=IN IP4 {LOOPBACK}", "t=0 0",
             f"m=audio {port} {proto} 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
             "a=fmtp:101 0-16", "a=ptime:20", *extra, "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


class SipPeer:
    """A trusted endpoint's SIP socket: sends requests and answers Hatif's, with bounded waits."""

    def __init__(self, hatif: tuple[str, int], port: int = 0) -> None:
        self.hatif = hatif
        self.sock = udp(port=port)
        self.port = self.sock.getsockname()[1]
        self.sock.setblocking(True)

    def send(self, data: bytes, to: tuple[str, int] | None = None) -> None:
        self.sock.sendto(data, to or self.hatif)

    def receive(self, accept: Callable[[Request | Response], bool], timeout: float = 5.0) -> Request | Response:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching SIP message")
            self.sock.settimeout(left)
            data, _ = self.sock.recvfrom(65535)
            msg = parse_message(data)
            if isinstance(msg, Request) and msg.method in ("OPTIONS", "NOTIFY"):
                continue
            if accept(msg):
                return msg

    def close(self) -> None:
        self.sock.close()


def _request(method: str, uri: str, peer: SipPeer, call_id: str, from_tag: str, to: str, cseq: int,
             body: bytes = b"", user: str = "caller") -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    head = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP {LOOPBACK}:{peer.port};branch={branch};rport",
            f"From: <sip:{user}@{LOOPBACK}:{peer.port}>;tag={from_tag}", f"To: {to}", f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}", f"Contact: <sip:{user}@{LOOPBACK}:{peer.port}>", "Max-Forwards: 70"]
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Dialog:
    """The caller's side of the call: enough to ACK, re-INVITE and BYE."""

    peer: SipPeer
    call_id: str
    from_tag: str
    to: str
    uri: str
    cseq: int
    answer: SessionDescription

    @property
    def media(self) -> tuple[str, int]:
        audio = self.answer.audio()
        connection = audio.connection or self.answer.connection
        assert connection is not None
        return connection.host, audio.port

    def _transact(self, method: str, body: bytes = b"") -> Response:
        self.cseq += 1
        self.peer.send(_request(method, self.uri, self.peer, self.call_id, self.from_tag, self.to, self.cseq, body))
        cseq = self.cseq

        def final(m: Request | Response) -> bool:
            return isinstance(m, Response) and m.status >= 200 and m.cseq.seq == cseq
        resp = self.peer.receive(final)
        assert isinstance(resp, Response)
        return resp

    def reinvite(self, body: bytes) -> Response:
        resp = self._transact("INVITE", body)
        self.peer.send(_request("ACK", self.uri, self.peer, self.call_id, self.from_tag, self.to, self.cseq))
        if resp.body:
            self.answer = SessionDescription.parse(resp.body)
        return resp

    def bye(self) -> Response:
        return self._transact("BYE")


def call(caller: SipPeer, number: str, offer: bytes, answer_incoming: Callable[[], None] | None = None,
         timeout: float = 10.0) -> Dialog:
    """INVITE `number` at Hatif from `caller` with `offer`, wait for the 200, ACK it."""
    call_id = secrets.token_hex(10) + "@peer"
    from_tag = secrets.token_hex(4)
    uri = f"sip:{number}@{caller.hatif[0]}:{caller.hatif[1]}"
    caller.send(_request("INVITE", uri, caller, call_id, from_tag, f"<{uri}>", 1, offer))
    if answer_incoming is not None:
        answer_incoming()

    def final(m: Request | Response) -> bool:
        return isinstance(m, Response) and m.status >= 200 and m.cseq.method == "INVITE"
    resp = caller.receive(final, timeout)
    assert isinstance(resp, Response) and resp.status == 200, resp
    contact = resp.contacts[0].uri
    to = resp.headers.get("To") or ""
    dialog = Dialog(caller, call_id, from_tag, to, str(contact), 1, SessionDescription.parse(resp.body))
    caller.send(_request("ACK", dialog.uri, caller, call_id, from_tag, to, 1))
    return dialog


def ok(req: Request, status: int = 200, body: bytes = b"", contact: str | None = None) -> bytes:
    """A response to one of Hatif's requests (RFC 3261 §8.2.6), with a To tag of ours."""
    lines = [f"SIP/2.0 {status} OK"]
    for name, value in req.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            lines.append(f"{name}: {value}")
        elif name == "To":
            lines.append(f"To: {value}" + ("" if "tag=" in value else ";tag=peer1"))
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Callee:
    """The callee endpoint: answers Hatif's INVITE with 200 and its SDP, and BYEs with 200."""

    def __init__(self, hatif: tuple[str, int], rtp_port: int, sip_port: int = 0,
                 answer: Callable[[int, Request], bytes] | None = None) -> None:
        self.sip = SipPeer(hatif, sip_port)
        self.rtp_port = rtp_port
        self.invite: Request | None = None
        self.offer: SessionDescription | None = None
        self._answer = answer or (lambda port, _invite: sdp_body(port))

    def answer(self) -> None:
        def invite(m: Request | Response) -> bool:
            return isinstance(m, Request) and m.method == "INVITE"
        req = self.sip.receive(invite)
        assert isinstance(req, Request)
        self.invite = req
        self.offer = SessionDescription.parse(req.body)
        self.sip.send(bytes(self._response(req, 200, self._answer(self.rtp_port, req))), self._source(req))

    @staticmethod
    def _source(req: Request) -> tuple[str, int]:
        via = req.top_via
        return via.host, via.port or 5060

    def _response(self, req: Request, status: int, body: bytes = b"") -> bytes:
        return ok(req, status, body, f"<sip:callee@{LOOPBACK}:{self.sip.port}>")

    @property
    def media(self) -> tuple[str, int]:
        assert self.offer is not None
        audio = self.offer.audio()
        connection = audio.connection or self.offer.connection
        assert connection is not None
        return connection.host, audio.port

    def take_bye(self, timeout: float = 5.0) -> None:
        def bye(m: Request | Response) -> bool:
            return isinstance(m, Request) and m.method in ("BYE", "ACK")
        while True:
            req = self.sip.receive(bye, timeout)
            assert isinstance(req, Request)
            if req.method == "BYE":
                self.sip.send(self._response(req, 200), self._source(req))
                return

    def close(self) -> None:
        self.sip.close()
