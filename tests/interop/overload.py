"""Offered load against a real `hatif serve` process: the pieces the overload test and bench/overload.py share.

A caller is SIPp running `scenarios/uac_overload.xml` against the echo test (600) from a trusted endpoint:
it ACKs a 503 (admission control's refusal) and gives up after `patience_ms` without an answer. A step
offers `rate` calls a second for `seconds`; its goodput is the answered calls (the BYE row) a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from peers import Sipp, SippResult, free_port
from server_process import HatifProcess

SCENARIO = Path(__file__).parent / "scenarios" / "uac_overload.xml"

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
media:
  port_min: {rtp_min}
  port_max: {rtp_max}
  cache: "{{workdir}}/cache"
  recordings: "{{workdir}}/recordings"
store: {{path: "{{workdir}}/hatif.db"}}
voicemail: {{folder: "{{workdir}}/voicemail"}}
logging: {{level: info}}
tenants:
  - name: default
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
    dialplan:
      - {{match: '^600$', to: 'app:echo'}}
"""


@dataclass(frozen=True, slots=True)
class Step:
    rate: float
    seconds: float
    answered: int
    refused: int
    gave_up: int  # calls SIPp failed (no answer within its patience, or anything else)

    @property
    def goodput(self) -> float:
        return self.answered / self.seconds


class Rig:
    """A Hatif process and the SIPp port of its one trusted caller."""

    def __init__(self, rtp_min: int = 40000, rtp_max: int = 49998) -> None:
        self.port = free_port(tcp=False)
        self.uac_port = free_port(tcp=False)
        self.process = HatifProcess(CONFIG.format(port=self.port, uac=self.uac_port, rtp_min=rtp_min,
                                                  rtp_max=rtp_max), self.port)

    def caller(self, rate: float, calls: int, patience_ms: int = 5000, timeout_s: float | None = None) -> Sipp:
        return Sipp(SCENARIO, target=f"127.0.0.1:{self.port}", local_port=self.uac_port, service="600",
                    rate=rate, max_calls=calls, recv_timeout_ms=patience_ms, timeout_s=timeout_s)

    def step(self, rate: float, seconds: float, patience_ms: int = 5000) -> Step:
        calls = max(1, round(rate * seconds))
        with self.caller(rate, calls, patience_ms, timeout_s=seconds + 15) as sipp:
            start = time.monotonic()
            result = sipp.wait(seconds + 30)
            elapsed = time.monotonic() - start
        # SIPp may fall behind its rate on a busy machine: the step lasted as long as it really did.
        return step_of(rate, max(seconds, elapsed), result)

    def ramp(self, rates: tuple[float, ...] = (100, 200, 400, 800, 1600), seconds: float = 2.0) -> list[Step]:
        """Short steps of rising load; the best goodput among them is the measured capacity."""
        return [self.step(rate, seconds) for rate in rates]

    def one_call(self, within: float) -> float | None:
        """Seconds until a single call completes, trying again until `within` seconds passed; None if none did."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            with self.caller(1, 1, patience_ms=2000, timeout_s=within) as sipp:
                result = sipp.wait(within + 10)
            if step_of(1, 1, result).answered == 1 and result.failed == 0:
                return time.monotonic() - start
            time.sleep(0.2)
        return None


def step_of(rate: float, seconds: float, result: SippResult) -> Step:
    bye = sum(row.messages for row in result.messages if row.label.startswith("BYE"))
    refused = sum(row.messages for row in result.messages if row.label.startswith("503"))
    return Step(rate, seconds, bye, refused, result.failed)


def capacity(steps: list[Step]) -> float:
    return max(s.goodput for s in steps)
