"""Concurrent relayed G.711 calls on one core, Hatif beside Debian's rtpengine, recording off and on.

    .venv/bin/python bench/rtp_relay.py [--max-calls 2000] [--step-seconds 10] [--only hatif|rtpengine]

Hatif issue 3: the highest number of concurrent calls a relay carries on one core with packet loss under
0.1% and added jitter p99 under 5 ms. The relay under test is pinned to CPU 0 (`taskset -c 0`); the load
generator (`bench/rtpload.c`, see `bench/rtpload.py` for how it measures) to CPU 1; this script too
waits on CPU 1. Four series, each stepping the load up until a step fails:

- `hatif`: Hatif's media engine (`hatif.media.engine`) on uvloop in a child process of this script
  (`--serve-hatif`), driven over its stdin/stdout with one JSON line per command. Per call two legs,
  `set_remote` to the generator's caller and callee sockets, `bridge` (relay both ways).
- `hatif_recorded`: the same, each bridge recording a stereo WAV (decoded G.711, 16-bit, both parties).
- `rtpengine`: Debian's `rtpengine` (package rtpengine-daemon), userspace only (`--table=-1`), one
  worker thread (`--num-threads=1`), the whole process pinned to CPU 0; per call an ng `offer` from the
  caller's SDP and an `answer` from the callee's, `delete` after the step.
- `rtpengine_recorded`: the same with `record call: yes` and `--recording-method=pcap`, the recording
  rtpengine does itself in userspace without its kernel module: every RTP packet of the call appended
  to one pcap file per call (raw packets, not decoded audio: lighter work than Hatif's WAV).

Each step sets up N calls, runs warm-up (1 s, not counted) + `--step-seconds` + 0.5 s drain, and prints
one line. Calls start spread out, as calls arriving over time do: Hatif bridges them one after another
over the first 0.8 s of the warm-up (`--spread`; with 0 every bridge, and so every recorder's
once-a-second flush, falls in the same 20 ms tick); rtpengine gets one ng offer/answer after another.
A failed step is tried once more (the machine is shared: one hiccup of another process must not decide
the figure); a series stops at its second failure. When the generator ran out (its own sockets dropped
packets, a send failed, or it used over 90% of its core) the step says GENERATOR-LIMITED and the series
stops there, its figure then a lower bound; when the generator fell behind its schedule although the
relay had CPU to spare, something else had the machine: the step says DISTURBED and is tried again (at
most 4 tries in all). The run starts by measuring the
generator's own ceiling. Final lines: `rtp_relay_hatif: N calls (recording off)`,
`rtp_relay_hatif_recorded: N calls`, `rtp_relay_rtpengine: N calls`, `rtp_relay_rtpengine_recorded:
N calls`, `rtp_relay_ratio: X.XX (Hatif/rtpengine)` and the same ratio with recording on. A figure,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))

from peers import free_port

from rtpengine_ng import OFFER_FLAGS, NgError, Rtpengine, sdp_audio, sdp_media_address
from rtpload import LoadResult, LoadRun, build, ceiling, describe

ROOT = Path(__file__).resolve().parents[1]
LOADS = (100, 200, 400, 600, 800, 1000, 1200, 1500, 2000)
RELAY_CPU, GENERATOR_CPU = 0, 1
WARMUP = 1.0
PORT_MIN, PORT_MAX = 10000, 19999
"""Both relays take their RTP ports here (one at a time): below Linux's ephemeral range, where the
generator's thousands of sockets are bound, and below the 20000-32000 the test suite hands out."""

Pairs = list[tuple[int, int]]


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def raise_file_limit() -> None:
    """Every call costs 2 sockets in the generator and 2 (Hatif) or 4 (rtpengine: RTP + RTCP) in the relay."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads (proc(5), /proc/pid/stat fields 14-15)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the relays ------------------------------------------------------------------------------------------


class Relay(Protocol):
    name: str
    pid: int

    def setup(self, remotes: Pairs) -> Pairs:
        """One call per (caller port, callee port) on 127.0.0.1; returns the relay's (port facing the
        caller, port facing the callee) of each call."""
        ...

    def teardown(self) -> str:
        """End every call; returns the relay's own counters, for the step line."""
        ...

    def close(self) -> None: ...


class HatifRelay:
    """Hatif's media engine in a child process on CPU 0 (`--serve-hatif`), commanded by JSON lines."""

    def __init__(self, record: bool, recordings: Path, spread: float) -> None:
        self.name = "hatif_recorded" if record else "hatif"
        self.record = record
        self.recordings = recordings
        self.spread = spread
        command = [*pinned(RELAY_CPU), sys.executable, str(Path(__file__).resolve()), "--serve-hatif",
                   "--port-min", str(PORT_MIN), "--port-max", str(PORT_MAX), "--recordings", str(recordings)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                         os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True)
        self.pid = self.process.pid
        self._pending = b""
        try:
            self._command({"op": "ping"}, timeout=30.0)
        except BaseException:
            self.close()
            raise

    def _command(self, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        proc = self.process
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout.fileno(), selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise RuntimeError(f"Hatif's engine did not answer {message['op']!r} within {timeout:.0f}s")
                chunk = os.read(proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Hatif's engine exited ({proc.poll()}) during {message['op']!r}")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"Hatif's engine failed {message['op']!r}: {reply['error']}")
        return reply

    def setup(self, remotes: Pairs) -> Pairs:
        reply = self._command({"op": "setup", "remotes": remotes, "record": self.record, "spread": self.spread})
        return [(a, b) for a, b in reply["ports"]]

    def teardown(self) -> str:
        stats = self._command({"op": "teardown"})["stats"]
        for wav in self.recordings.glob("*.wav"):
            wav.unlink()
        return (f"engine received {stats['received']} relayed {stats['relayed']} "
                f"dropped_source {stats['dropped_source']} late_ticks {stats['late_ticks']}")

    def close(self) -> None:
        proc = self.process
        try:
            if proc.poll() is None:
                with contextlib.suppress(OSError, RuntimeError):
                    self._command({"op": "quit"}, timeout=10.0)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


class RtpengineRelay:
    """Debian's rtpengine, userspace only, one worker thread, pinned to CPU 0; calls set up over ng."""

    def __init__(self, record: bool, recordings: Path, ng_port: int) -> None:
        self.name = "rtpengine_recorded" if record else "rtpengine"
        self.record = record
        self.recordings = recordings
        self.daemon = Rtpengine(ng_port=ng_port, port_min=PORT_MIN, port_max=PORT_MAX,
                                cpu=RELAY_CPU if pinned(RELAY_CPU) else None, threads=1,
                                recording_dir=recordings if record else None)
        try:
            self.daemon.start()
        except BaseException:
            self.daemon.close()
            raise
        self.pid = self.daemon.pid
        self._calls: list[str] = []
        self._serial = 0

    def setup(self, remotes: Pairs) -> Pairs:
        ng = self.daemon.client
        flags = {**OFFER_FLAGS, "record call": "yes"} if self.record else OFFER_FLAGS
        ports: Pairs = []
        for caller, callee in remotes:
            self._serial += 1
            call_id = f"bench-{self._serial}"
            offer = ng.offer(call_id, "caller", sdp_audio("127.0.0.1", caller, self._serial), flags)
            self._calls.append(call_id)
            answer = ng.answer(call_id, "caller", "callee", sdp_audio("127.0.0.1", callee, self._serial), flags)
            ports.append((sdp_media_address(answer)[1], sdp_media_address(offer)[1]))
        return ports

    def teardown(self) -> str:
        failed = 0
        for call_id in self._calls:
            try:
                self.daemon.client.delete(call_id)
            except NgError:
                failed += 1
        count, self._calls = len(self._calls), []
        pcaps = list(self.recordings.rglob("*.pcap")) if self.record else []
        size = sum(p.stat().st_size for p in pcaps)
        for path in self.recordings.rglob("*"):
            if path.is_file():
                path.unlink()
        recorded = f", {len(pcaps)} pcap files {size / 1e6:.0f} MB" if self.record else ""
        return f"rtpengine deleted {count - failed}/{count} calls{recorded}"

    def close(self) -> None:
        self.daemon.close()


# -- the series ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """A series' outcome: the highest passing load, and whether that is only a lower bound."""

    calls: int
    bound: str | None = None  # why the true figure may be higher

    def text(self, what: str) -> str:
        return f"{self.calls} calls ({what}" + (f"; at least: {self.bound})" if self.bound else ")")


def run_step(relay: Relay, binary: Path, calls: int, seconds: float) -> tuple[LoadResult, float, str]:
    """N calls for warm-up + `seconds`; returns the generator's figures, the relay's CPU share over the
    measurement window, and the relay's own counters."""
    with LoadRun(binary, calls, warmup=WARMUP, seconds=seconds, cpu=GENERATOR_CPU if pinned(1) else None) as run:
        ports = run.start()
        try:
            legs = relay.setup([(ports[2 * i], ports[2 * i + 1]) for i in range(calls)])
            run.go([port for pair in legs for port in pair])
            time.sleep(WARMUP + 0.05)
            cpu0, t0 = cpu_seconds(relay.pid), time.monotonic()
            time.sleep(seconds)
            relay_cpu = (cpu_seconds(relay.pid) - cpu0) / (time.monotonic() - t0)
            result = run.result()
        finally:
            counters = relay.teardown()
    return result, relay_cpu, counters


RELAY_SPARE_CPU = 0.8
"""Below this share of its core the relay was not saturated (see `generator_trouble`)."""
ATTEMPTS = 4
"""At most this many tries of one step; two failures of the relay end the series."""


def generator_trouble(result: LoadResult, relay_cpu: float) -> str | None:
    """Why this step measured the generator or the machine rather than the relay (None: it measured the
    relay). Late sending counts only while the relay had CPU to spare: when the relay's core is saturated
    the generator also falls behind here at well under a full core, and the relay has failed anyway."""
    limit = result.generator_limit
    if limit is None and result.behind_schedule and relay_cpu < RELAY_SPARE_CPU:
        limit = (f"the generator fell behind its schedule (p99 {result.send_late_p99_us / 1000:.1f} ms late) "
                 f"while the relay used only {relay_cpu:.0%} of its core: another process had the CPU")
    return limit


def series(make: Callable[[], Relay], name: str, binary: Path, loads: Sequence[int], seconds: float,
           generator_ceiling: int) -> Figure:
    """Step the load up on one relay until it fails twice at one load (see the module docstring)."""
    out = sys.stdout
    best = 0
    relay = make()
    try:
        for calls in loads:
            failures = 0
            for attempt in range(1, ATTEMPTS + 1):
                result, relay_cpu, counters = run_step(relay, binary, calls, seconds)
                trouble = generator_trouble(result, relay_cpu)
                own = result.generator_limit is not None
                verdict = ("ok" if result.passed and trouble is None else
                           "GENERATOR-LIMITED" if own else "DISTURBED" if trouble else "FAIL")
                out.write(f"  {name:<19} {calls:5d} calls: {describe(result)}, relay {relay_cpu:.0%} cpu "
                          f"[{counters}] {verdict}" + (f" ({trouble})" if trouble else "") + "\n")
                out.flush()
                if own:
                    return Figure(best, f"the generator ran out at {calls} calls (its own ceiling measured "
                                        f"alone: {generator_ceiling} calls)")
                if trouble is None:
                    if result.passed:
                        break
                    failures += 1
                    if failures == 2:
                        return Figure(best)
                if attempt == ATTEMPTS:
                    return Figure(best, f"{calls} calls could not be measured cleanly in {ATTEMPTS} tries")
            best = calls
        return Figure(best, f"every step up to {best} calls passed; raise --max-calls") if loads else Figure(0)
    finally:
        relay.close()


def ratio(hatif: Figure | None, rtpengine: Figure | None) -> str:
    if hatif is None or rtpengine is None:
        return "n/a (not both measured)"
    if rtpengine.calls == 0:
        return "n/a (rtpengine passed no step)"
    note = ""
    if rtpengine.bound and hatif.bound:
        note = "; both figures are lower bounds"
    elif rtpengine.bound:
        note = "; an upper bound: rtpengine's figure is a lower bound"
    elif hatif.bound:
        note = "; a lower bound: Hatif's figure is a lower bound"
    return f"{hatif.calls / rtpengine.calls:.2f} (Hatif/rtpengine{note})"


def bench(args: argparse.Namespace) -> None:
    out = sys.stdout
    raise_file_limit()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {GENERATOR_CPU})  # this script waits on the generator's core, not the relay's
    else:
        out.write("  warning: one CPU only: relay and generator share it; the figures are not comparable\n")
    loads = [n for n in LOADS if n <= args.max_calls]
    if args.max_calls not in loads and args.max_calls > 0:
        loads.append(args.max_calls)
    figures: dict[str, Figure] = {}
    with tempfile.TemporaryDirectory(prefix="hatif-rtp-relay-") as tmp:
        work = Path(tmp)
        binary = build(work)
        out.write(f"rtp_relay: relay on CPU {RELAY_CPU}, generator on CPU {GENERATOR_CPU}, "
                  f"{args.step_seconds:.0f} s per step, loss < 0.1% and added jitter p99 < 5 ms to pass\n")
        out.flush()
        top = max(loads, default=0)
        probe = sorted({n for n in (500, 1000, 1500, 2000, 2500, top) if n <= max(top, 1500)})
        generator_ceiling, _ = ceiling(binary, probe, 3.0, GENERATOR_CPU if pinned(1) else None, verbose=True)
        out.write(f"rtp_relay_generator: {generator_ceiling} calls (the load generator's own ceiling on one core)\n")
        recordings = work / "recordings"
        recordings.mkdir()
        plans: list[tuple[str, Callable[[], Relay]]] = []
        if args.only in (None, "hatif"):
            spread = args.spread
            plans.append(("hatif", lambda: HatifRelay(False, recordings, spread)))
            plans.append(("hatif_recorded", lambda: HatifRelay(True, recordings, spread)))
        if args.only in (None, "rtpengine"):
            if shutil.which("rtpengine") is None:
                out.write("  rtpengine not found (install Debian package rtpengine-daemon): its series skipped\n")
            else:
                ng_port = args.ng_port or free_port(tcp=False)
                plans.append(("rtpengine", lambda: RtpengineRelay(False, recordings, ng_port)))
                plans.append(("rtpengine_recorded", lambda: RtpengineRelay(True, recordings, ng_port)))
        for name, make in plans:
            figures[name] = series(make, name, binary, loads, args.step_seconds, generator_ceiling)
    labels = {"hatif": "recording off", "hatif_recorded": "recording on, stereo WAV",
              "rtpengine": "userspace, recording off", "rtpengine_recorded": "userspace, recording on, pcap"}
    for name, figure in figures.items():
        out.write(f"rtp_relay_{name}: {figure.text(labels[name])}\n")
    if args.only is None:
        out.write(f"rtp_relay_ratio: {ratio(figures.get('hatif'), figures.get('rtpengine'))}\n")
        out.write(f"rtp_relay_ratio_recorded: "
                  f"{ratio(figures.get('hatif_recorded'), figures.get('rtpengine_recorded'))}\n")


# -- Hatif's engine, served to this script -----------------------------------------------------------------


async def serve_hatif(port_min: int, port_max: int, recordings: Path) -> None:
    """Run Hatif's media engine until stdin closes or says quit; one JSON command per line, one reply each.

    ping -> {}; setup {remotes: [[caller, callee], ...], record, spread} -> {ports: [[leg A, leg B], ...]};
    teardown -> {stats}; quit. Setup opens every leg at once and bridges the calls one after another
    over `spread` seconds, as calls arriving over time are (within the generator's uncounted warm-up).
    """
    from hatif.media.engine import Bridge, Leg, MediaEngine, MediaSettings

    loop = asyncio.get_running_loop()
    engine = MediaEngine(MediaSettings(host="127.0.0.1", port_min=port_min, port_max=port_max,
                                       recordings=recordings))
    engine.start()
    legs: list[tuple[Leg, Leg]] = []
    bridges: list[Bridge] = []
    timers: list[asyncio.TimerHandle] = []
    done: asyncio.Future[None] = loop.create_future()
    pending = bytearray()
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)

    def teardown() -> dict[str, int]:
        stats = engine.stats()
        for timer in timers:
            timer.cancel()
        for bridge in bridges:
            bridge.close()
        for leg_a, leg_b in legs:
            engine.close_leg(leg_a)
            engine.close_leg(leg_b)
        timers.clear()
        bridges.clear()
        legs.clear()
        return stats

    def bridge(leg_a: Leg, leg_b: Leg, record: Path | None) -> None:
        bridges.append(engine.bridge(leg_a, leg_b, record=record))

    def handle(message: dict[str, Any]) -> dict[str, Any] | None:
        op = message.get("op")
        if op == "ping":
            return {}
        if op == "setup":
            remotes = message["remotes"]
            spread = float(message.get("spread", 0.0))
            ports = []
            for i, (caller, callee) in enumerate(remotes):
                leg_a, leg_b = engine.open_leg(), engine.open_leg()
                leg_a.set_remote("127.0.0.1", caller, payload_type=0)
                leg_b.set_remote("127.0.0.1", callee, payload_type=0)
                legs.append((leg_a, leg_b))
                record = recordings / f"call-{len(legs)}.wav" if message.get("record") else None
                timers.append(loop.call_later(spread * i / len(remotes), bridge, leg_a, leg_b, record))
                ports.append([leg_a.local_port, leg_b.local_port])
            return {"ports": ports}
        if op == "teardown":
            return {"stats": teardown()}
        if op == "quit":
            return None
        return {"error": f"unknown op {op!r}"}

    def readable() -> None:
        try:
            data = os.read(stdin, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            if not done.done():
                done.set_result(None)
            return
        pending.extend(data)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            try:
                reply = handle(json.loads(line))
            except Exception as exc:  # an answer, not a dead engine: the bench reports it
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            if reply is None:
                if not done.done():
                    done.set_result(None)
                return
            sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
            sys.stdout.buffer.flush()

    loop.add_reader(stdin, readable)
    try:
        await done
    finally:
        loop.remove_reader(stdin)
        teardown()
        engine.close()


def serve_main(args: argparse.Namespace) -> None:
    raise_file_limit()
    coro = serve_hatif(args.port_min, args.port_max, Path(args.recordings))
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-calls", type=int, default=2000)
    ap.add_argument("--step-seconds", type=float, default=10.0)
    ap.add_argument("--only", choices=["hatif", "rtpengine"])
    ap.add_argument("--spread", type=float, default=0.8 * WARMUP,
                    help="seconds over which Hatif bridges a step's calls (0: all in one tick)")
    ap.add_argument("--ng-port", type=int, default=0, help="rtpengine's ng control port (default: a free one)")
    ap.add_argument("--serve-hatif", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port-min", type=int, default=PORT_MIN, help=argparse.SUPPRESS)
    ap.add_argument("--port-max", type=int, default=PORT_MAX, help=argparse.SUPPRESS)
    ap.add_argument("--recordings", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hatif:
        serve_main(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
