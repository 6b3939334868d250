"""The engine keeps a stranger's packets out of everything a leg does with what it receives: relay, DTMF,
a supervisor's mix; it tells of every latch and move, counts what it refused, and nothing answers on the
RTCP port it leaves unbound (issue 18)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import uvloop
from test_engine import FRAME, Phone, band_energy, engine_with, talk, tone

from hatif.media.dtmf import DtmfDigit, DtmfSender
from hatif.media.g711 import ulaw_encode
from hatif.media.mixing import MonitorMode, monitor_matrix


@pytest.fixture
def run() -> object:
    def runner(coro: object) -> object:
        return uvloop.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]
    return runner


def test_a_strangers_dtmf_is_never_decoded_and_every_latch_is_told(run: object, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone, stranger = Phone(loop), Phone(loop)
        latches: list[tuple[object, object]] = []
        leg.on_latch = lambda old, new: latches.append((old, new))
        leg.set_remote("127.0.0.1", phone.port, 0, 101)
        digits: list[DtmfDigit] = []
        leg.listen_dtmf(digits.append)
        sender = DtmfSender(101)
        for _ in range(5):
            phone.send_to(leg, ulaw_encode(tone(440, 1)))
        for digit in "95":  # the stranger's digits, in sequence, right between the phone's packets
            for sp in sender.packets(digit, 100, stranger.ts, stranger.seq):
                stranger.sock.sendto(sp.packet.serialize(), ("127.0.0.1", leg.local_port))
                phone.send_to(leg, ulaw_encode(tone(440, 1)))
            stranger.seq += 10
            stranger.ts += 1600
            await asyncio.sleep(0.05)
        for sp in sender.packets("5", 100, phone.ts, phone.seq):
            phone.sock.sendto(sp.packet.serialize(), ("127.0.0.1", leg.local_port))
        await asyncio.sleep(0.4)
        assert [d.digit for d in digits] == ["5"]
        assert latches == [(None, ("127.0.0.1", phone.port))]
        stats = leg.stats()
        assert stats["dropped_source"] == 10 and stats["latched"] == 0
        assert engine.stats()["dropped_source"] == stats["dropped_source"] and engine.stats()["latches"] == 1
        phone.close()
        stranger.close()
        engine.close()

    run(main())  # type: ignore[operator]


def test_a_listening_supervisor_never_hears_a_stranger(run: object, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        legs = {name: engine.open_leg() for name in ("caller", "agent", "supervisor")}
        phones = {name: Phone(loop) for name in legs}
        for name, leg in legs.items():
            leg.set_remote("127.0.0.1", phones[name].port)
        bridge = engine.bridge(legs["caller"], legs["agent"], record=tmp_path / "call.wav")
        bridge.monitor(legs["supervisor"], monitor_matrix(MonitorMode.LISTEN))
        stranger = Phone(loop)
        t0 = loop.time()
        for i in range(75):
            phones["caller"].send_to(legs["caller"], ulaw_encode(tone(440, 1, start=i)))
            phones["agent"].send_to(legs["agent"], ulaw_encode(tone(1000, 1, start=i)))
            for _ in range(3):
                stranger.send_to(legs["caller"], ulaw_encode(tone(3000, 1, start=i)))
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
        bridge.close()
        heard = phones["supervisor"].audio()[FRAME * 10:]
        assert len(heard) > 4000
        assert band_energy(heard, 440) > 0.15 and band_energy(heard, 3000) < 0.001
        assert band_energy(phones["agent"].audio(), 3000) < 0.001
        assert stranger.received == []
        assert legs["caller"].dropped_source == 225
        for p in (*phones.values(), stranger):
            p.close()
        engine.close()

    run(main())  # type: ignore[operator]


def test_nothing_answers_on_the_rtcp_port(run: object, tmp_path: Path) -> None:
    """RTCP's odd port is never bound: a packet there gets nothing (the kernel's port unreachable)."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        engine = await engine_with(tmp_path)
        leg = engine.open_leg()
        phone = Phone(loop)
        leg.set_remote("127.0.0.1", phone.port)
        await talk([(phone, leg, 440.0)], 3)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.settimeout(0.3)
        probe.connect(("127.0.0.1", leg.local_port + 1))
        probe.send(b"\x81\xc9\x00\x01" + b"\x00" * 4)  # an empty receiver report
        try:
            answer = probe.recv(2048)
        except (ConnectionRefusedError, TimeoutError):
            answer = b""
        assert answer == b""
        probe.close()
        phone.close()
        engine.close()

    run(main())  # type: ignore[operator]
