"""The highest call rate SIPp uac -> Hatif -> SIPp uas sustains with under 0.1% failed calls, on one core.

    .venv/bin/python bench/b2bua_rate.py [--seconds 6] [--rates 200,400,...]

Hatif runs as `hatif serve` pinned to CPU 0 (taskset), both SIPp instances to CPU 1, all on 127.0.0.1.
Each step places `rate x seconds` calls with SIPp's built-in `uac` scenario (INVITE, 100, 180, 200, ACK,
BYE, 200) through Hatif's B2BUA to SIPp's built-in `uas`. A step passes when fewer than 0.1% of the calls
fail and SIPp's own cumulative call rate reached 95% of the rate asked for. Prints one line per step, then
`b2bua_rate: N calls/s` (the highest passing step). A figure, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from peers import Sipp, free_port  # noqa: E402

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: 30
logging:
  level: warning
store: {{path: "{tmp}/hatif.db"}}
voicemail: {{folder: "{tmp}/voicemail"}}
tenants:
  - name: default
    domains: [hatif.local]
    endpoints:
      - {{name: uac, host: 127.0.0.1, port: {uac}}}
      - {{name: uas, host: 127.0.0.1, port: {uas}}}
    dialplan:
      - {{match: '^2000$', to: 'endpoint:uas'}}
"""


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def wait_udp(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return  # bound by Hatif
        finally:
            s.close()
        time.sleep(0.05)
    raise RuntimeError(f"Hatif did not bind udp {port}")


def step(rate: int, seconds: float, hatif_port: int, uac_port: int) -> tuple[int, int, float]:
    """Run one rate; returns (created, failed, achieved rate)."""
    calls = int(rate * seconds)
    uac = Sipp("uac", target=f"127.0.0.1:{hatif_port}", local_port=uac_port, rate=rate, max_calls=calls,
               call_limit=max(rate * 4, 100), service="2000", recv_timeout_ms=10_000,
               timeout_s=seconds * 3 + 30, extra_args=["-max_recv_loops", "10000", "-max_sched_loops", "10000"])
    uac.args = (*pinned(1), *uac.args)
    with uac:
        uac.start()
        result = uac.wait(seconds * 3 + 60)
    # SIPp's own cumulative call rate (calls created over its run time), as it prints on its screen.
    achieved = float(result.counters.get("CallRate(C)", "0") or 0)
    return result.created, result.failed, achieved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rates", default="200,400,600,800,1000,1200,1400,1600,2000")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    hatif_port, uac_port = free_port(tcp=False), free_port(tcp=False)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="hatif-bench-") as tmp:
        uas = Sipp("uas", extra_args=["-max_recv_loops", "10000"])
        uas.args = (*pinned(1), *uas.args)
        config = Path(tmp) / "bench.yaml"
        config.write_text(CONFIG.format(port=hatif_port, uac=uac_port, uas=uas.local_port, tmp=tmp))
        command = [*pinned(0), str(Path(sys.executable).parent / "hatif"), "serve", "--config", str(config),
                   "--log-level", "warning"]
        hatif = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        best = 0
        try:
            wait_udp(hatif_port)
            with uas:
                uas.start()
                for rate in rates:
                    created, failed, achieved = step(rate, args.seconds, hatif_port, uac_port)
                    ratio = failed / created if created else 1.0
                    passed = created > 0 and ratio < 0.001 and achieved >= rate * 0.95
                    out.write(f"  rate {rate:5d}/s: {created} calls, {failed} failed ({ratio:.3%}), "
                              f"{achieved:.0f} calls/s achieved {'ok' if passed else 'FAIL'}\n")
                    out.flush()
                    if not passed:
                        break
                    best = rate
                    time.sleep(2)
        finally:
            hatif.terminate()
            try:
                hatif.wait(10)
            except subprocess.TimeoutExpired:
                hatif.kill()
                hatif.wait(5)
    out.write(f"b2bua_rate: {best} calls/s (SIPp uac -> Hatif on one core -> SIPp uas, <0.1% failed)\n")


if __name__ == "__main__":
    main()
