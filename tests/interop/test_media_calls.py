"""Media through Hatif with real peers: SIPp's G.711 and RFC 2833 captures into the echo test, and a
recorded call between two baresip phones, each playing its own tone."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from peers import Baresip, Sipp, free_port

from hatif_server import RunningHatif

PORT_MIN, PORT_MAX = 44000, 46000


class LoopbackCounter:
    """Counts UDP datagrams on `lo` by (source port, destination port), from a raw packet socket.

    What SIPp sends and what comes back to it are counted on the wire, not by Hatif's own counters.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.2)
        self.counts: dict[tuple[int, int], int] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, meta = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue  # on lo each datagram shows twice: count it once, as it arrives
            ip = frame[14:]
            if len(ip) < 28 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            src, dst = struct.unpack_from("!HH", ip, ihl)
            self.counts[(src, dst)] = self.counts.get((src, dst), 0) + 1

    def between(self, src: range | int, dst: range | int) -> int:
        def inside(port: int, r: range | int) -> bool:
            return port in r if isinstance(r, range) else port == r
        return sum(n for (s, d), n in self.counts.items() if inside(s, src) and inside(d, dst))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


ECHO_CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: {pmin}
  port_max: {pmax}
  cache: {cache}
logging:
  level: warning
tenants:
  - name: default
    endpoints:
      - {{name: sipp, host: 127.0.0.1, port: {uac}}}
    dialplan:
      - {{match: '^600$', to: 'app:echo'}}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="counting packets on lo needs a raw socket (root)")
def test_sipp_pcap_into_echo_test(tmp_path: Path) -> None:
    port, uac_port = free_port(tcp=False), free_port(tcp=False)
    text = ECHO_CONFIG.format(port=port, uac=uac_port, pmin=PORT_MIN, pmax=PORT_MAX, cache=tmp_path)
    counter = LoopbackCounter()
    try:
        with RunningHatif(text) as h:
            with Sipp("uac_pcap", target=f"127.0.0.1:{port}", local_port=uac_port, service="600", max_calls=1,
                      recv_timeout_ms=20_000) as uac:
                result = uac.wait(60)
                assert result.ok, result.describe()
                media_port = uac.media_port
            time.sleep(0.3)
            finished = h.call(lambda: list(h.h.control.finished))
    finally:
        counter.close()
    hatif_ports = range(PORT_MIN, PORT_MAX)
    sent = counter.between(range(media_port, media_port + 4), hatif_ports)
    returned = counter.between(hatif_ports, range(media_port, media_port + 4))
    assert sent > 200, counter.counts  # g711a.pcap (about 4.5 s at 50 packets/s) and the DTMF events
    assert abs(returned - sent) <= 0.02 * sent, (sent, returned)
    assert [f.digits for f in finished] == [("1",)]  # dtmf_2833_1.pcap: digit 1, reported once


RECORD_CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: {pmin}
  port_max: {pmax}
  record: true
  recordings: {recordings}
  cache: {recordings}
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "1001", password: "amira-secret-1"}}
      - {{username: "1002", password: "reza-secret-22"}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
"""


def band_share(samples: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[np.abs(freqs - freq) < 40].sum() / (spectrum.sum() or 1.0))


@pytest.fixture
def recorded_hatif(tmp_path: Path) -> Iterator[RunningHatif]:
    text = RECORD_CONFIG.format(port=free_port(tcp=False), pmin=PORT_MIN, pmax=PORT_MAX, recordings=tmp_path)
    with RunningHatif(text) as h:
        yield h


def test_recorded_call_between_two_baresip_phones(recorded_hatif: RunningHatif) -> None:
    h = recorded_hatif
    host, port = h.address("udp")
    with Baresip("1001", domain=f"{host}:{port}", password="amira-secret-1", regint=60, tone_hz=440) as a, \
            Baresip("1002", domain=f"{host}:{port}", password="reza-secret-22", regint=60, tone_hz=1000) as b:
        assert a.registered(10) and b.registered(10)
        a.dial("1002")
        a.wait_event("CALL_ESTABLISHED", 10)
        started = time.monotonic()
        b.wait_event("CALL_ESTABLISHED", 10)
        time.sleep(3.0)
        a.hangup()
        a.wait_event("CALL_CLOSED", 10)
        ended = time.monotonic()
        b.wait_event("CALL_CLOSED", 10)
        h.wait_idle(10)
    finished = h.call(lambda: list(h.h.control.finished))
    assert len(finished) == 1 and finished[0].recording is not None and finished[0].sha256
    with wave.open(str(finished[0].recording)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        seconds = w.getnframes() / 8000
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(seconds - (ended - started)) < 0.1, (seconds, ended - started)
    left, right = data[4000:-4000, 0], data[4000:-4000, 1]  # skip the edges (buffer fill, hang-up)
    assert band_share(left, 440) > 0.5 and band_share(left, 1000) < 0.01  # the caller's side only
    assert band_share(right, 1000) > 0.5 and band_share(right, 440) < 0.01  # the callee's side only


GREETING_CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
media:
  port_min: {pmin}
  port_max: {pmax}
  cache: {cache}
  greeting:
    en: "Welcome to Hatif. Goodbye."
    ar: "مرحبا بكم في هاتف. مع السلامة."
    fa: "به هاتف خوش آمدید. خدانگهدار."
logging:
  level: warning
tenants:
  - name: default
    users:
      - {{username: "1001", password: "amira-secret-1", language: ar}}
      - {{username: "1002", password: "reza-secret-22", language: fa}}
      - {{username: "1005", password: "sara-secret-55", language: en}}
    dialplan:
      - {{match: '^601$', to: 'app:greeting'}}
"""


@pytest.mark.parametrize("user,password", [("1001", "amira-secret-1"), ("1002", "reza-secret-22"),
                                           ("1005", "sara-secret-55")])
def test_greeting_in_the_callers_language_then_hang_up(tmp_path: Path, user: str, password: str) -> None:
    text = GREETING_CONFIG.format(port=free_port(tcp=False), pmin=PORT_MIN, pmax=PORT_MAX, cache=tmp_path)
    with RunningHatif(text) as h:
        host, port = h.address("udp")
        with Baresip(user, domain=f"{host}:{port}", password=password, regint=60) as phone:
            assert phone.registered(10)
            phone.dial("601")
            phone.wait_event("CALL_ESTABLISHED", 10)
            t0 = time.monotonic()
            phone.wait_event("CALL_CLOSED", 20)  # Hatif hangs up once the greeting is spoken
            spoken = time.monotonic() - t0
            h.wait_idle(10)
            heard = phone.recordings("dec")
            assert heard, "baresip recorded nothing"
            with wave.open(str(heard[-1])) as w:
                audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    assert 1.0 < spoken < 10.0, spoken
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 300, f"the greeting was silent (rms {rms:.0f})"
