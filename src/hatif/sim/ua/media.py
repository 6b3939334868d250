"""RTP for the simulator's user agent: one socket per user agent, one 20 ms clock for every stream.

Optional (`UserAgent(rtp=True)`): frames of silence or a tone go to the far side of every answered call, so
that media anchoring and recording see packets; packets received are counted.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

import numpy as np

from ...media.g711 import alaw_encode, ulaw_encode
from ...sip.transport import Addr, Peer, UdpListener

CODECS = ("PCMU", "PCMA", "telephone-event")
FRAME = 0.020  # seconds of audio per RTP packet (ptime 20)
SAMPLES_PER_FRAME = 160


@dataclass(slots=True)
class Stream:
    remote: Addr
    payload_type: int
    payload: bytes  # one second of audio (50 frames) in the stream's codec, cycled
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    sequence: int = field(default_factory=lambda: secrets.randbits(16))
    timestamp: int = field(default_factory=lambda: secrets.randbits(32))
    frame: int = 0
    sent: int = 0
    received: int = 0


class CallMedia:
    """RTP for every answered call of one user agent: a frame per stream each 20 ms, packets counted in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, send: bool, tone_hz: float | None) -> None:
        self.loop = loop
        self.send_enabled = send
        self.udp = UdpListener(loop, host, 0, self._receive)
        self.port = self.udp.local[1]
        self.streams: dict[Addr, Stream] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._next = 0.0
        t = np.arange(8000) / 8000.0
        signal = (np.sin(2 * np.pi * tone_hz * t) * 8000).astype(np.int16) if tone_hz else np.zeros(8000, np.int16)
        self._second = {0: ulaw_encode(signal), 8: alaw_encode(signal)}

    def start(self, remote: Addr, payload_type: int) -> Stream:
        stream = Stream(remote, payload_type, self._second.get(payload_type, self._second[0]))
        self.streams[remote] = stream
        if self.send_enabled and self._timer is None:
            self._next = self.loop.time()
            self._tick()
        return stream

    def stop(self, stream: Stream | None) -> None:
        if stream is not None and self.streams.get(stream.remote) is stream:
            del self.streams[stream.remote]

    def _tick(self) -> None:
        self._timer = None
        if not self.streams:
            return
        for s in self.streams.values():
            at = (s.frame % 50) * SAMPLES_PER_FRAME
            header = bytes((0x80, s.payload_type)) + s.sequence.to_bytes(2, "big") + s.timestamp.to_bytes(4, "big")
            self.udp.send(header + s.ssrc.to_bytes(4, "big") + s.payload[at:at + SAMPLES_PER_FRAME], s.remote)
            s.sequence = (s.sequence + 1) & 0xFFFF
            s.timestamp = (s.timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
            s.frame += 1
            s.sent += 1
        now = self.loop.time()
        self._next += FRAME
        if self._next < now - 10 * FRAME:
            self._next = now  # the loop stalled: do not burst to catch up
        self._timer = self.loop.call_at(self._next, self._tick)

    def _receive(self, data: bytes, peer: Peer) -> None:
        stream = self.streams.get(peer.addr)
        if stream is not None and len(data) >= 12 and data[0] >> 6 == 2:
            stream.received += 1

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.streams.clear()
        self.udp.close()
