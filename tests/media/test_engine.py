"""The media engine over real UDP sockets on 127.0.0.1: relay, latching, echo, play, DTMF, recording,
and monitoring (listen, whisper, barge) checked with tones and an FFT on what every leg receives."""

from __future__ import annotations

import asyncio
import socket
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import uvloop

from hatif.media.dtmf import DtmfDigit, DtmfSender, dtmf_tone
from hatif.media.engine import Leg, MediaEngine, MediaSettings
from hatif.media.g711 import ulaw_decode, ulaw_encode
from hatif.media.mixing import MonitorMode, monitor_matrix

FRAME = 160


def tone(freq: float, frames: int, amplitude: float = 8000.0, start: int = 0) -> np.ndarray:
    n = np.arange(start * FRAME, (start + frames) * FRAME)
    return (amplitude * np.sin(2 * np.pi * freq * n / 8000)).astype(np.int16)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


def band_energy(samples: np.ndarray, freq: float) -> float:
    """Share of the signal's energy within ±40 Hz of `freq`."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    total = spectrum.sum() or 1.0
    return float(spectrum[np.abs(freqs - freq) < 40].sum() / total)


class Phone:
    """A UDP socket that sends a G.711 tone every 20 ms and keeps what it receives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._read)
        self.seq = 1000
        self.ts = 0

    def _read(self) -> None:
        while True:
            try:
                self.received.append(self.sock.recv(2048))
            except BlockingIOError:
                return

    def packet(self, payload: bytes, pt: int = 0, marker: bool = False) -> bytes:
        head = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), self.seq & 0xFFFF, self.ts, 0x1234 + self.port)
        self.seq += 1
        self.ts += FRAME
        return head + payload

    def send_to(self, leg: Leg, payload: bytes, pt: int = 0, marker: bool = False) -> None:
        self.sock.sendto(self.packet(payload, pt, marker), ("127.0.0.1", leg.local_port))

    def audio(self) -> np.ndarray:
        """What this phone heard, decoded (PCMU packets only)."""
        frames = [p[12:] for p in self.received if len(p) > 12 and p[1] & 0x7F == 0]
        return ulaw_decode(b"".join(frames)) if frames else np.zeros(0, np.int16)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def talk(legs_and_phones: list[tuple[Phone, Leg, float]], frames: int) -> None:
    """Each phone sends its tone to its leg, paced at 20 ms."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(frames):
        for phone, leg, freq in legs_and_phones:
            phone.send_to(leg, ulaw_encode(tone(freq, 1, start=i)))
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))


@pytest.fixture
def run() -> object:
    def runner(coro: object) -> object:
        return uvloop.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]
    return runner


async def engine_with(tmp_path: Path) -> MediaEngine:
    engine = MediaEngine(MediaSettings(port_min=41000, port_max=43000, recordings=tmp_path))
    engine.start()
    return engine


def test_relay_and_latching(run: object, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        a, b = engine.open_leg(), engine.open_leg()
        pa, pb, stranger = Phone(loop), Phone(loop), Phone(loop)
        a.set_remote("127.0.0.1", pa.port)
        b.set_remote("127.0.0.1", pb.port)
        engine.bridge(a, b)
        for _ in range(10):
            pa.send_to(a, b"\xff" * FRAME)
        # A stranger's packets are dropped until it sends 4 in sequence (then it is latched: symmetric RTP).
        for _ in range(3):
            stranger.send_to(a, b"\x00" * FRAME)
        await asyncio.sleep(0.6)  # the latched source must be silent for latch_silence (0.5 s) first
        assert len(pb.received) == 10
        assert a.dropped_source == 3
        stranger.seq += 5  # out of sequence: starts counting again
        for _ in range(4):
            stranger.send_to(a, b"\x00" * FRAME)
        await asyncio.sleep(0.2)
        assert a.remote == ("127.0.0.1", stranger.port) and a.latched == 1
        assert len(pb.received) == 11  # the 4th in-sequence packet latched and was relayed
        for p in (pa, pb, stranger):
            p.close()
        engine.close()
        assert engine.legs == {}

    run(main())  # type: ignore[operator]


def test_echo_play_and_dtmf(run: object, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone = Phone(loop)
        leg.set_remote("127.0.0.1", phone.port, 0, 101)
        digits: list[DtmfDigit] = []
        leg.listen_dtmf(digits.append)
        engine.echo(leg)
        await talk([(phone, leg, 700.0)], 25)
        await asyncio.sleep(0.1)
        assert len(phone.received) == 25
        assert abs(peak_hz(phone.audio()) - 700) < 20
        # RFC 4733 digits with their redundant end packets: each reported once.
        sender = DtmfSender(101)
        for digit in "19#":
            for sp in sender.packets(digit, 100, phone.ts, phone.seq):
                phone.sock.sendto(sp.packet.serialize(), ("127.0.0.1", leg.local_port))
            phone.seq += 10
            phone.ts += 1600
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert [d.digit for d in digits] == ["1", "9", "#"]
        # Playback is paced by the engine's clock: 1 s of tone is 50 packets, about a second long.
        phone.received.clear()
        engine.echo(leg)
        leg.peer = None
        done = asyncio.Event()
        t0 = loop.time()
        leg.play(tone(1200, 50), on_done=done.set)
        await asyncio.wait_for(done.wait(), 3)
        elapsed = loop.time() - t0
        await asyncio.sleep(0.05)
        assert len(phone.received) == 50
        assert 0.9 < elapsed < 1.3
        assert abs(peak_hz(phone.audio()) - 1200) < 20
        phone.close()
        engine.close()

    run(main())  # type: ignore[operator]


def test_inband_dtmf_when_no_telephone_event(run: object, tmp_path: Path) -> None:
    """A phone that did not negotiate RFC 4733 sends its digits as tones: Goertzel finds each once."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone = Phone(loop)
        leg.set_remote("127.0.0.1", phone.port, 0, None)
        digits: list[str] = []
        leg.listen_dtmf(lambda d: digits.append(d.digit))
        audio = np.concatenate([np.concatenate([dtmf_tone(d, 100), np.zeros(800, np.int16)]) for d in "47*0"])
        t0 = loop.time()
        for i in range(len(audio) // FRAME):
            phone.send_to(leg, ulaw_encode(audio[i * FRAME : (i + 1) * FRAME]))
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
        await asyncio.sleep(0.2)
        phone.close()
        engine.close()
        return digits

    assert run(main()) == ["4", "7", "*", "0"]  # type: ignore[operator]


def test_recording_is_stereo_and_keeps_time(run: object, tmp_path: Path) -> None:
    path = tmp_path / "call.wav"

    async def main() -> tuple[float, str | None]:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        a, b = engine.open_leg(), engine.open_leg()
        caller, agent = Phone(loop), Phone(loop)
        a.set_remote("127.0.0.1", caller.port)
        b.set_remote("127.0.0.1", agent.port)
        t0 = loop.time()
        bridge = engine.bridge(a, b, record=path)
        await talk([(caller, a, 440.0), (agent, b, 1000.0)], 100)
        sha = bridge.close()
        duration = loop.time() - t0
        caller.close()
        agent.close()
        engine.close()
        return duration, sha

    duration, sha = run(main())  # type: ignore[operator]
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        wav_seconds = w.getnframes() / 8000
    assert abs(wav_seconds - duration) < 0.1
    left, right = data[1600:-1600, 0], data[1600:-1600, 1]  # skip jitter-buffer fill and the tail
    assert abs(peak_hz(left) - 440) < 15 and band_energy(left, 1000) < 0.01
    assert abs(peak_hz(right) - 1000) < 15 and band_energy(right, 440) < 0.01
    assert sha is not None and len(sha) == 64


@pytest.mark.parametrize("mode", list(MonitorMode))
def test_monitoring(run: object, tmp_path: Path, mode: MonitorMode) -> None:
    freqs = {"caller": 440.0, "agent": 1000.0, "supervisor": 1700.0}

    async def main() -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        legs = {name: engine.open_leg() for name in freqs}
        phones = {name: Phone(loop) for name in freqs}
        for name in freqs:
            legs[name].set_remote("127.0.0.1", phones[name].port)
        bridge = engine.bridge(legs["caller"], legs["agent"], record=tmp_path / f"{mode.value}.wav")
        bridge.monitor(legs["supervisor"], monitor_matrix(mode))
        await talk([(phones[n], legs[n], f) for n, f in freqs.items()], 75)
        bridge.close()
        heard = {n: phones[n].audio()[1600:] for n in freqs}
        for p in phones.values():
            p.close()
        engine.close()
        return heard

    heard = run(main())  # type: ignore[operator]
    expected = {
        MonitorMode.LISTEN: {"caller": {"agent"}, "agent": {"caller"}, "supervisor": {"caller", "agent"}},
        MonitorMode.WHISPER: {"caller": {"agent"}, "agent": {"caller", "supervisor"},
                              "supervisor": {"caller", "agent"}},
        MonitorMode.BARGE: {"caller": {"agent", "supervisor"}, "agent": {"caller", "supervisor"},
                            "supervisor": {"caller", "agent"}},
    }[mode]
    for listener, sources in expected.items():
        audio = heard[listener]
        assert len(audio) > 4000, f"{listener} heard almost nothing"
        for source, freq in freqs.items():
            share = band_energy(audio, freq)
            if source in sources:
                assert share > 0.15, f"{mode.value}: {listener} should hear {source} ({share:.3f})"
            else:
                assert share < 0.01, f"{mode.value}: {listener} must not hear {source} ({share:.3f})"


def test_whoever_waits_on_a_playback_is_told_however_it_ends(run: object, tmp_path: Path) -> None:
    """Played out, replaced by another prompt, or stopped: each playback's `on_done` runs exactly once."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone = Phone(loop)
        leg.set_remote("127.0.0.1", phone.port, 0)
        ended: list[str] = []
        leg.play(tone(440, 5 * 160).astype(np.int16), on_done=lambda: ended.append("short"))
        await asyncio.sleep(0.3)  # five frames play out on the clock
        leg.play(tone(440, 500 * 160).astype(np.int16), on_done=lambda: ended.append("replaced"))
        leg.play(tone(440, 500 * 160).astype(np.int16), on_done=lambda: ended.append("stopped"))
        leg.stop_playing()
        leg.stop_playing()  # nothing left to tell
        assert ended == ["short", "replaced", "stopped"]
        engine.close()
        phone.close()

    run(main())  # type: ignore[operator]
