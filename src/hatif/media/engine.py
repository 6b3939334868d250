"""The media engine: RTP anchoring and relay, playback, recording, mixing and monitoring (asyncio shell).

Every call's audio passes through Hatif: each call leg gets an RTP port of Hatif's (from the configured
range), and the engine relays between the legs of a bridge. Two paths, by cost:

- **Relay** happens as packets arrive, in the socket's reader: one `recvfrom_into` into a buffer the leg
  owns and one `sendto` of a view of it out of the other leg's socket. No object is built per packet.
- **Everything paced** (playback, recording, mixing, DTMF time-outs) happens on **one clock** for all
  sessions: a single `call_at` every 20 ms, which runs each active player, recorder and mix once per due
  frame (catching up if the loop was late, so recordings keep time with the call). No asyncio timer per
  call exists on the media path.

Security (SECURITY.md "RTP"): a leg accepts packets only from the one source its `Latch` accepts (the
SDP's address, or with symmetric RTP the address the party really sends from, moved only after the
latched source fell silent for `latch_silence` seconds and the new one sent `latch_packets` in-sequence
packets; see `latch`); everything else is dropped and counted before anything reads it: it is never
relayed, mixed, recorded, jitter-buffered or decoded as DTMF. Hatif sends only to the SDP's address or
the latched one. Every latch and move is logged and reported through `Leg.on_latch`. A port that belongs
to no live leg is closed, and RTCP's odd port is never bound: nothing answers there. With SRTP (`srtp`)
a packet is authenticated before the latch sees it; one that fails is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import MediaError as MediaError  # re-exported: callers catch the engine's faults by family
from .dtmf import DtmfDigit, DtmfReceiver, GoertzelDetector
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .jitter import JitterBuffer
from .latch import DROPPED, MOVED, Latch
from .mixing import mix
from .prompts import Player
from .recording import MonoRecorder, StereoRecorder
from .rtp import RtpError, payload_bounds
from .srtp import Srtp

log = logging.getLogger(__name__)

Addr = tuple[str, int]
FRAME = 160
_HEADER = struct.Struct("!BBHII")
READ_BATCH = 64
BUFFER = 2048


class EngineError(MediaError, RuntimeError):
    """The engine cannot do what was asked (e.g. the RTP port range is exhausted)."""


@dataclass(slots=True)
class MediaSettings:
    host: str = "127.0.0.1"
    advertise: str | None = None
    port_min: int = 20000
    port_max: int = 30000
    tick: float = 0.02
    latch_packets: int = 4
    latch_silence: float = 0.5  # the latched source must be silent this long before another may take over
    latch_window: float = 5.0  # after the answer, how long a source the SDP does not name may be learned
    jitter_depth: int = 2
    recordings: Path = field(default_factory=lambda: Path("var/recordings"))

    @property
    def sdp_address(self) -> str:
        return self.advertise or self.host


def _text(addr: Addr | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


def decode(payload_type: int, data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    return alaw_decode(data) if payload_type == 8 else ulaw_decode(data)


def encode(payload_type: int, samples: npt.NDArray[np.int16]) -> bytes:
    return alaw_encode(samples) if payload_type == 8 else ulaw_encode(samples)


class Leg:
    """One RTP endpoint of Hatif's, facing one phone or trunk."""

    def __init__(self, engine: MediaEngine, sock: socket.socket) -> None:
        self.engine = engine
        self.sock = sock
        self.local_host, self.local_port = sock.getsockname()[:2]
        self.remote: Addr | None = None  # where this leg sends: the SDP's address, or the latched source
        settings = engine.settings
        self.latch = Latch(packets=settings.latch_packets, silence=settings.latch_silence,
                           window=settings.latch_window)
        self.on_latch: Callable[[Addr | None, Addr], None] | None = None  # (old, new) at each latch or move
        self.payload_type = 0
        self.dtmf_pt: int | None = None
        self.peer: Leg | None = None  # where received audio is relayed (self: echo)
        self.mixed = False  # received audio goes to a mix instead of the peer
        self.muted_out = False  # a player owns what this leg sends
        self.player: Callable[[], npt.NDArray[np.int16] | None] | None = None
        self.on_play_done: Callable[[], None] | None = None
        self.dtmf: DtmfReceiver | None = None
        self.inband: GoertzelDetector | None = None  # fallback when no telephone-event was negotiated
        self.on_digit: Callable[[DtmfDigit], None] | None = None
        self.jitter: JitterBuffer | None = None
        self.srtp: Srtp | None = None  # SRTP negotiated (SDES): received packets are authenticated first
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self._marker = True
        self._buf = bytearray(BUFFER)
        self._view = memoryview(self._buf)
        self.received = 0
        self.relayed = 0
        self.sent = 0
        self.dropped_source = 0
        self.dropped_invalid = 0
        self.dropped_auth = 0  # SRTP packets that failed authentication or the replay check
        self.latched = 0
        self.closed = False
        engine.loop.add_reader(sock.fileno(), self._readable)

    def __repr__(self) -> str:
        return f"<Leg {self.local_port} -> {self.remote}>"

    def set_remote(self, host: str, port: int, payload_type: int = 0, dtmf_pt: int | None = None) -> None:
        """Where this leg sends (from the phone's SDP), which (re-)arms the latch when the address is new;
        the same address again (hold, resume, a codec change) leaves the latched source as it is."""
        addr = (host, port)
        latch = self.latch
        if addr != latch.expected or latch.source is None:
            self.remote = addr
            latch.arm(addr, self.engine.loop.time())
        self.payload_type = payload_type
        self.dtmf_pt = dtmf_pt
        if self.dtmf is None and dtmf_pt is not None and self.on_digit is not None:
            self.dtmf = DtmfReceiver()

    def answered(self) -> None:
        """The call was answered: a party behind NAT starts sending now (`Latch.open_window`)."""
        self.latch.open_window(self.engine.loop.time())

    def stats(self) -> dict[str, int]:
        """This leg's packet counters: what it took, relayed and sent, and what it refused and why."""
        return {"received": self.received, "relayed": self.relayed, "sent": self.sent,
                "dropped_source": self.dropped_source, "dropped_invalid": self.dropped_invalid,
                "dropped_auth": self.dropped_auth, "latched": self.latched}

    # -- receive path (hot) ---------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self.sock
        buf = self._buf
        view = self._view
        latch = self.latch
        srtp = self.srtp
        now = self.engine.loop.time()  # once per wake-up, not per packet
        for _ in range(READ_BATCH):
            try:
                n, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if n < 12 or buf[0] >> 6 != 2 or 72 <= buf[1] & 0x7F <= 76:
                self.dropped_invalid += 1  # not RTP, or RTCP sent to the RTP port
                continue
            if srtp is not None:
                n = self._unprotect(n)
                if n == 0:
                    continue
            if addr == latch.source:
                latch.seen = now
            else:
                verdict = latch.packet(addr, (buf[2] << 8) | buf[3], now)
                if verdict == DROPPED:
                    self.dropped_source += 1
                    continue
                self._latched(verdict == MOVED)
            self.received += 1
            pt = buf[1] & 0x7F
            if self.dtmf is not None and pt == self.dtmf_pt:
                self._on_dtmf(n)
            elif self.jitter is not None and pt == self.payload_type:
                self._to_jitter(n)
            peer = self.peer
            if peer is not None and not self.mixed and not peer.muted_out and peer.remote is not None:
                out: bytes | memoryview = view[:n]
                if pt != peer.payload_type and pt == self.payload_type:
                    converted = self._transcode(n, peer.payload_type)
                    if converted is None:
                        continue
                    out = converted
                elif pt == self.dtmf_pt and pt != peer.dtmf_pt:
                    if peer.dtmf_pt is None:
                        continue  # the other side takes no RFC 4733 events
                    buf[1] = (buf[1] & 0x80) | peer.dtmf_pt
                if peer.srtp is not None:
                    protected = peer.srtp.protect(bytes(out))
                    if protected is None:
                        continue
                    out = protected
                try:
                    peer.sock.sendto(out, peer.remote)
                except OSError:
                    continue
                self.relayed += 1

    def _unprotect(self, n: int) -> int:
        """Authenticate and decrypt the SRTP packet in the buffer in place; its plain length, 0 when refused."""
        assert self.srtp is not None
        plain = self.srtp.unprotect(bytes(self._view[:n]))
        if plain is None:
            self.dropped_auth += 1
            return 0
        self._buf[:len(plain)] = plain
        return len(plain)

    def _transcode(self, n: int, to_type: int) -> bytes | None:
        """The packet with its G.711 payload converted to the other leg's law (each leg negotiates its own)."""
        try:
            start, end = payload_bounds(self._view[:n])
        except RtpError:
            self.dropped_invalid += 1
            return None
        header = bytearray(self._view[:start])
        header[1] = (header[1] & 0x80) | to_type
        return bytes(header) + encode(to_type, decode(self.payload_type, self._view[start:end]))

    def _to_jitter(self, n: int) -> None:
        assert self.jitter is not None
        seq, ts, ssrc = struct.unpack_from("!HII", self._buf, 2)
        try:
            start, end = payload_bounds(self._view[:n])  # CSRCs, header extension and padding skipped
        except RtpError:
            self.dropped_invalid += 1
            return
        self.jitter.push(seq, ts, bytes(self._view[start:end]), ssrc)

    def _latched(self, moved: bool) -> None:
        """The latch took a source (the first, or a new one): send there from now on, and tell."""
        latch = self.latch
        new = latch.source
        assert new is not None
        if latch.symmetric:
            self.remote = new  # symmetric RTP: answer where the party really sends from
        if latch.moves != self.latched:
            self.latched = latch.moves
        self.engine._on_latch(self, latch.previous, new, moved)

    def _on_dtmf(self, n: int) -> None:
        assert self.dtmf is not None
        buf = self._buf
        seq, ts = struct.unpack_from("!HI", buf, 2)
        try:
            start, end = payload_bounds(self._view[:n])
        except RtpError:
            self.dropped_invalid += 1
            return
        digits = self.dtmf.receive(seq, ts, bool(buf[1] & 0x80), bytes(buf[start:end]), self.engine.loop.time())
        self._report(digits)

    def _report(self, digits: tuple[DtmfDigit, ...]) -> None:
        if self.on_digit is not None:
            for d in digits:
                self.on_digit(d)

    # -- send path (paced by the engine's clock) ------------------------------------------------------

    def send_frame(self, samples: npt.NDArray[np.int16]) -> None:
        """Send one 20 ms frame of our own audio with this leg's SSRC, sequence and timestamp."""
        if self.remote is None or self.closed:
            return
        payload = encode(self.payload_type, samples)
        header = _HEADER.pack(0x80, self.payload_type | (0x80 if self._marker else 0), self.seq, self.ts, self.ssrc)
        self._marker = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        packet = header + payload
        if self.srtp is not None:
            protected = self.srtp.protect(packet)
            if protected is None:
                return
            packet = protected
        try:
            self.sock.sendto(packet, self.remote)
        except OSError:
            return
        self.sent += 1

    def play(self, samples: npt.NDArray[np.int16], loop: bool = False,
             on_done: Callable[[], None] | None = None) -> None:
        """Play 8 kHz samples to this leg, frame by frame on the engine's clock (replacing what played).

        `on_done` is called once when this playback ends, however it ends: played out, replaced by another
        `play`, or stopped; so whoever waits on a prompt is never left waiting."""
        previous = self.on_play_done
        self.player = Player(samples, loop=loop).next_frame
        self.on_play_done = on_done
        self.muted_out = True
        self._marker = True
        self.engine._playing.add(self)
        if previous is not None:
            previous()

    def stop_playing(self) -> None:
        done = self.on_play_done
        self.player = None
        self.on_play_done = None
        self.muted_out = False
        self.engine._playing.discard(self)
        if done is not None:
            done()

    def listen_dtmf(self, on_digit: Callable[[DtmfDigit], None]) -> None:
        """Report digits received on this leg, each once: RFC 4733 events, or, when the phone did not
        negotiate telephone-event, tones detected in the audio (Goertzel, ITU-T Q.24 checks)."""
        self.on_digit = on_digit
        if self.dtmf is None:
            self.dtmf = DtmfReceiver()
        if self.dtmf_pt is None and self.inband is None:
            self.inband = GoertzelDetector()
            self._tap()
        self.engine._dtmf_legs.add(self)

    def _inband_tick(self, recorded: bool) -> None:
        """One frame of in-band detection (skipped while a recorder owns this leg's jitter buffer)."""
        if self.inband is None or self.jitter is None or recorded:
            return
        data = self.jitter.pop()
        if data is not None and len(data) == FRAME:
            for digit in self.inband.feed(decode(self.payload_type, data)):
                self._report((DtmfDigit(digit, self.ts, 0, 0, True),))

    def _tap(self) -> JitterBuffer:
        if self.jitter is None:
            self.jitter = JitterBuffer(self.engine.settings.jitter_depth)
        return self.jitter

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        engine = self.engine
        engine._playing.discard(self)
        engine._dtmf_legs.discard(self)
        engine.stop_recording_leg(self)
        with contextlib.suppress(Exception):
            engine.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        engine._release(self)


class Bridge:
    """Two legs relaying to each other, optionally recorded (A left, B right)."""

    def __init__(self, engine: MediaEngine, a: Leg, b: Leg, record: Path | None) -> None:
        self.engine = engine
        self.a = a
        self.b = b
        a.peer = b
        b.peer = a
        self.recorder: StereoRecorder | None = None
        self.mix: Mix | None = None
        if record is not None:
            a._tap()
            b._tap()
            self.recorder = StereoRecorder(record, a.payload_type, b.payload_type)
            engine._recording.add(self)

    def monitor(self, supervisor: Leg, matrix: npt.NDArray[np.int32]) -> Mix:
        """Put a supervisor in the call with a mixing matrix (listen, whisper, barge: see `mixing`)."""
        if self.mix is not None:
            self.mix.close()
        self.mix = Mix(self.engine, [self.a, self.b, supervisor], matrix, shared_taps=self.recorder is not None)
        return self.mix

    def stop_monitor(self) -> None:
        if self.mix is not None:
            self.mix.close()
            self.mix = None
            self.a.peer, self.b.peer = self.b, self.a

    def close(self) -> str | None:
        """Stop relaying and recording; returns the recording's SHA-256 when there was one."""
        self.stop_monitor()
        self.engine._recording.discard(self)
        if self.a.peer is self.b:
            self.a.peer = None
        if self.b.peer is self.a:
            self.b.peer = None
        if self.recorder is not None:
            return self.recorder.close()
        return None


class Mix:
    """Several legs mixed every tick by a matrix (who hears whom)."""

    def __init__(self, engine: MediaEngine, legs: list[Leg], matrix: npt.NDArray[np.int32],
                 shared_taps: bool = False) -> None:
        self.engine = engine
        self.legs = legs
        self.matrix = matrix
        self.shared_taps = shared_taps  # a recorder pops the same jitter buffers: take frames from it
        self._last: dict[int, npt.NDArray[np.int16]] = {}
        for leg in legs:
            leg._tap()
            leg.mixed = True
            leg.muted_out = True
        engine._mixes.add(self)

    def tick(self) -> None:
        frames = np.zeros((len(self.legs), FRAME), dtype=np.int16)
        for i, leg in enumerate(self.legs):
            payload = self._last.pop(id(leg), None) if self.shared_taps else None
            if payload is None and not self.shared_taps and leg.jitter is not None:
                data = leg.jitter.pop()
                if data is not None and len(data) == FRAME:
                    frames[i] = decode(leg.payload_type, data)
            elif payload is not None:
                frames[i] = payload
        out = mix(self.matrix, frames)
        for i, leg in enumerate(self.legs):
            if self.matrix[i].any():
                leg.send_frame(out[i])

    def feed(self, leg: Leg, data: bytes | None) -> None:
        """Frames popped by a recorder on the same legs are shared with the mix."""
        if data is not None and len(data) == FRAME:
            self._last[id(leg)] = decode(leg.payload_type, data)

    def close(self) -> None:
        self.engine._mixes.discard(self)
        for leg in self.legs:
            leg.mixed = False
            leg.muted_out = leg.player is not None


class MediaEngine:
    """All RTP legs of one Hatif process, and the one clock that paces them."""

    def __init__(self, settings: MediaSettings | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.settings = settings or MediaSettings()
        self.loop = loop or asyncio.get_running_loop()
        s = self.settings
        if s.port_min % 2:
            s.port_min += 1
        self._free = list(range(s.port_min, s.port_max - 1, 2))
        random.shuffle(self._free)  # RTP ports are not guessable in order
        self.legs: dict[int, Leg] = {}
        self._playing: set[Leg] = set()
        self._recording: set[Bridge] = set()
        self._mixes: set[Mix] = set()
        self._dtmf_legs: set[Leg] = set()
        self._leg_recorders: dict[Leg, MonoRecorder] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self.ticks = 0
        self.late_ticks = 0
        self.latches = 0

    # -- ports and legs -------------------------------------------------------------------------------

    def open_leg(self) -> Leg:
        """Bind an even RTP port from the range (RTCP's odd port is left unbound: nothing answers there)."""
        for _ in range(min(64, len(self._free))):
            port = self._free.pop()
            sock = socket.socket(socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((self.settings.host, port))
            except OSError:
                sock.close()
                self._free.insert(0, port)  # in use by someone else: try it again much later
                continue
            sock.setblocking(False)
            leg = Leg(self, sock)
            self.legs[port] = leg
            return leg
        raise EngineError(f"no free RTP port in {self.settings.port_min}-{self.settings.port_max}")

    def _release(self, leg: Leg) -> None:
        if self.legs.pop(leg.local_port, None) is not None:
            self._free.insert(0, leg.local_port)  # reused last, so late packets of a call find nothing

    def _on_latch(self, leg: Leg, old: Addr | None, new: Addr, moved: bool) -> None:
        self.latches += 1
        log.info("media source moved" if moved else "media source latched",
                 extra={"fields": {"port": leg.local_port, "old": _text(old), "new": _text(new),
                                   "sdp": _text(leg.latch.expected), "dropped_source": leg.dropped_source}})
        if leg.on_latch is not None:
            try:
                leg.on_latch(old, new)
            except Exception:
                log.exception("latch listener failed", extra={"fields": {"port": leg.local_port}})

    def close_leg(self, leg: Leg) -> None:
        leg.close()

    def bridge(self, a: Leg, b: Leg, record: Path | None = None) -> Bridge:
        return Bridge(self, a, b, record)

    def record_leg(self, leg: Leg, path: Path) -> MonoRecorder:
        """Record what one leg receives (mono WAV) until `stop_recording_leg`; in-band DTMF keeps working."""
        self.stop_recording_leg(leg)
        leg._tap()
        recorder = MonoRecorder(path)
        self._leg_recorders[leg] = recorder
        return recorder

    def stop_recording_leg(self, leg: Leg) -> str | None:
        recorder = self._leg_recorders.pop(leg, None)
        return recorder.close() if recorder is not None else None

    def echo(self, leg: Leg) -> None:
        """Send a leg's own audio back to it (the echo test)."""
        leg.peer = leg

    # -- the one clock --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._timer is None:
            self._t0 = self.loop.time()
            self.ticks = 0
            self._timer = self.loop.call_at(self._t0 + self.settings.tick, self._tick)

    def _tick(self) -> None:
        tick = self.settings.tick
        now = self.loop.time()
        due = int((now - self._t0) / tick) - self.ticks
        if due > 1:
            self.late_ticks += due - 1
        for _ in range(min(max(due, 1), 10)):  # catch up at most 200 ms at once
            self.ticks += 1
            self._frame(now)
        if due > 10:
            self.ticks += due - 10  # a stall longer than that is skipped, not replayed
        self._timer = self.loop.call_at(self._t0 + (self.ticks + 1) * tick, self._tick)

    def _frame(self, now: float) -> None:
        for leg in list(self._playing):
            player = leg.player
            frame = player() if player is not None else None
            if frame is None:
                leg.stop_playing()  # tells whoever waits on it
            else:
                leg.send_frame(frame)
        for bridge in self._recording:
            rec = bridge.recorder
            if rec is None:
                continue
            a_jb, b_jb = bridge.a.jitter, bridge.b.jitter
            left = a_jb.pop() if a_jb is not None else None
            right = b_jb.pop() if b_jb is not None else None
            rec.set_payload_types(bridge.a.payload_type, bridge.b.payload_type)
            rec.add(left, right)
            if bridge.mix is not None:
                bridge.mix.feed(bridge.a, left)
                bridge.mix.feed(bridge.b, right)
        for m in self._mixes:
            if m.shared_taps:
                sup = m.legs[2:]
                for leg in sup:
                    if leg.jitter is not None:
                        m.feed(leg, leg.jitter.pop())
            m.tick()
        for leg, mono in self._leg_recorders.items():
            data = leg.jitter.pop() if leg.jitter is not None else None
            samples = decode(leg.payload_type, data) if data is not None and len(data) == FRAME else None
            mono.add(samples)
            if samples is not None and leg.inband is not None:
                for digit in leg.inband.feed(samples):
                    leg._report((DtmfDigit(digit, leg.ts, 0, 0, True),))
        recorded = {id(b.a) for b in self._recording} | {id(b.b) for b in self._recording}
        recorded.update(id(leg) for leg in self._leg_recorders)
        for leg in self._dtmf_legs:
            dtmf = leg.dtmf
            if dtmf is not None and dtmf.next_deadline() is not None:
                leg._report(dtmf.poll(now))
            if leg.inband is not None:
                leg._inband_tick(id(leg) in recorded)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for bridge in list(self._recording):
            bridge.close()
        for leg in list(self.legs.values()):
            leg.close()

    def stats(self) -> dict[str, int]:
        legs = list(self.legs.values())
        return {
            "legs": len(legs),
            "received": sum(leg.received for leg in legs),
            "relayed": sum(leg.relayed for leg in legs),
            "sent": sum(leg.sent for leg in legs),
            "dropped_source": sum(leg.dropped_source for leg in legs),
            "dropped_invalid": sum(leg.dropped_invalid for leg in legs),
            "dropped_auth": sum(leg.dropped_auth for leg in legs),
            "latches": self.latches,
            "late_ticks": self.late_ticks,
            "ports_in_use": len(legs),
            "ports_free": len(self._free),
        }
