"""100,000 randomly mutated SIP messages at Hatif's UDP listener; then real calls still complete.

Each datagram must be answered or dropped: the server reads every one (its `received` counter catches
up with what was sent), no handler raises (nothing is logged at ERROR), and afterwards the listener
still answers OPTIONS and SIPp places calls through it without a failure.
"""

from __future__ import annotations

import logging
import random
import socket
import sys
import time
from pathlib import Path

from peers import Sipp, free_port

from hatif_server import RunningHatif

sys.path.insert(0, str(Path(__file__).parents[1] / "sip"))
from mutations import corpus, mutate

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.05, t2: 0.4, t4: 0.5, d: 0.5}}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    users:
      - {{username: "1001", password: "fuzz-password-1"}}
    endpoints:
      - {{name: fuzzer, host: 127.0.0.1, port: {fuzz}}}
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
      - {{name: uas, host: 127.0.0.1, port: {uas}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:uas'}}
"""

TOTAL = 100_000
BATCH = 500


class ErrorCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def options(port: int, sock: socket.socket) -> bytes:
    sock.sendto(
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKalive\r\n"
        b"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: alive\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n" % sock.getsockname()[1],
        ("127.0.0.1", port),
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = sock.recv(65535)
        if b"alive" in data:
            return data
    raise TimeoutError("no answer to OPTIONS")


def test_mutated_messages_are_answered_or_dropped_and_calls_still_complete() -> None:
    port, fuzz_port = free_port(tcp=False), free_port(tcp=False)
    uac_port, uas_port = free_port(tcp=False), free_port(tcp=False)
    catcher = ErrorCatcher()
    logging.getLogger("hatif").addHandler(catcher)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", fuzz_port))
    try:
        with RunningHatif(CONFIG.format(port=port, fuzz=fuzz_port, uac=uac_port, uas=uas_port)) as h:
            rng = random.Random(20261123)
            seeds = corpus("127.0.0.1", port, "3999")
            sock.setblocking(False)
            answers = 0
            sent = 0
            deadline = time.monotonic() + 240
            while sent < TOTAL:
                for _ in range(BATCH):
                    data = mutate(rng, rng.choice(seeds), sent)[:65000]
                    sock.sendto(data, ("127.0.0.1", port))
                    sent += 1
                # Let the server catch up before the next batch, so the kernel drops nothing.
                while h.call(lambda: h.h.sip.stats["received"]) < sent:
                    assert time.monotonic() < deadline, "the server stopped reading"
                    time.sleep(0.002)
                while True:
                    try:
                        sock.recv(65535)
                        answers += 1
                    except BlockingIOError:
                        break
            stats = h.call(lambda: dict(h.h.sip.stats))
            # Every datagram was read (a few more arrive: answers Hatif sent to itself where a mutated Via
            # named its own address, and are dropped as strays).
            assert stats["received"] >= TOTAL, stats
            assert not h.call(lambda: h.h.sip.bans.banned(h.h.sip.now())), "the trusted fuzzer was banned"
            assert stats["parse_errors"] > TOTAL // 10  # the mutations really were broken messages
            assert stats["bad_requests_answered"] > 0  # and many of them got a 400 with a reason
            assert answers > 0
            assert not catcher.records, [r.getMessage() for r in catcher.records[:5]]
            sock.setblocking(True)
            sock.settimeout(5)
            assert options(port, sock).startswith(b"SIP/2.0 200")
            with Sipp("uas", local_port=uas_port) as uas, \
                    Sipp("uac", target=f"127.0.0.1:{port}", local_port=uac_port, service="2000", rate=50,
                         max_calls=100, recv_timeout_ms=5000) as uac:
                result = uac.wait(60)
                assert result.ok and result.successful == 100, result.describe()
                assert uas.stop().successful == 100
    finally:
        sock.close()
        logging.getLogger("hatif").removeHandler(catcher)
