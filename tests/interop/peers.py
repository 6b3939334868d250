"""Outside SIP programs as test peers: SIPp (Debian `sip-tester`) and baresip (Debian `baresip-core`).

The product is only as real as programs no one here wrote say it is (ARCHITECTURE.md, "Testing"). This
module starts them as child processes on 127.0.0.1, drives them, reads back what they saw, and always
stops them. Every wait is bounded; nothing here uses asyncio, so tests and `bench/` scripts can use it
from plain threads. Import it as `peers`: `tests/conftest.py` puts this folder on `sys.path`, and a bench
script does `sys.path.insert(0, "<repo>/tests/interop")`.

`Sipp` runs one `sipp` process in the foreground (never `-bg`), with a built-in scenario (`-sn uac`) or
an XML file (`-sf`), and parses its final statistics (`-trace_stat` CSV, `-trace_screen` screen,
`-trace_err` log) into a `SippResult`.

`Baresip` runs one headless baresip user agent with its own config folder (`-f DIR`) and drives it over
the `ctrl_tcp` module: netstring-framed JSON commands and events.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

DEBIAN_PACKAGES: Mapping[str, str] = {"sipp": "sip-tester", "baresip": "baresip-core"}
"""The Debian package that ships each outside program; `scripts/setup` installs them."""


def which(program: str) -> str | None:
    """The full path of `program` on PATH, or None."""
    return shutil.which(program)


def require(program: str) -> str:
    """The full path of `program`; a missing program is a broken setup, so this raises, never skips."""
    path = shutil.which(program)
    if path is None:
        package = DEBIAN_PACKAGES.get(program)
        hint = f"install Debian package {package}" if package else "it is not on PATH"
        raise RuntimeError(f"{program} not found: {hint}")
    return path


# --- free ports on loopback ---------------------------------------------------------------------------

_PORT_LOW, _PORT_HIGH = 10000, 19990
"""Below Linux's ephemeral range (32768-60999), so outgoing connections never take a port handed out here,
and below Hatif's default RTP range (20000-30000), so a server under test never takes one either."""

_random = random.SystemRandom()
_reserved: set[int] = set()
_reserved_lock = threading.Lock()


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(*, udp: bool = True, tcp: bool = True, span: int = 1) -> int:
    """A port `p` such that `p .. p+span-1` are free on 127.0.0.1 for the protocols asked.

    A port is never handed out twice by one process, so several calls give distinct ports even before
    anything binds them.
    """
    if span < 1 or not (udp or tcp):
        raise ValueError(f"free_port needs span >= 1 and a protocol, got span={span} udp={udp} tcp={tcp}")
    kinds = [k for k, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if wanted]
    for _ in range(1000):
        base = _random.randrange(_PORT_LOW, _PORT_HIGH - span)
        ports = range(base, base + span)
        with _reserved_lock:
            if any(p in _reserved for p in ports):
                continue
            if all(_bindable(p, kind) for p in ports for kind in kinds):
                _reserved.update(ports)
                return base
    raise RuntimeError(f"no run of {span} free port(s) on {LOOPBACK} in {_PORT_LOW}-{_PORT_HIGH}")


def release_port(port: int, span: int = 1) -> None:
    """Let `free_port` hand out `port .. port+span-1` again (once whoever had them has closed them)."""
    with _reserved_lock:
        _reserved.difference_update(range(port, port + span))


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1."""
    return free_port(udp=True, tcp=False)


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1."""
    return free_port(udp=False, tcp=True)


def free_ports(count: int, *, udp: bool = True, tcp: bool = True, span: int = 1) -> list[int]:
    """`count` distinct, non-overlapping free ports (see `free_port`)."""
    return [free_port(udp=udp, tcp=tcp, span=span) for _ in range(count)]


def _port_bound(port: int, proto: Literal["udp", "tcp"]) -> bool:
    """Whether some socket on this host is bound to local `port` (read from /proc/net, Linux)."""
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


# --- processes ----------------------------------------------------------------------------------------


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _end_process(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code (negative: killed by a signal)."""
    if proc.poll() is None:
        proc.terminate()
        if _wait(proc, grace) is None:
            log.warning("%s (pid %d) ignored SIGTERM; killing it", proc.args, proc.pid)
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit * 4))
            data = f.read()
    except OSError:
        return f"(no {path.name})"
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip() and not _STATUS_LINE.match(line)]
    return "\n".join(lines)[-limit:]


_STATUS_LINE = re.compile(r"^\s*\[\d+:\d\d:\d\d\] audio=")
"""baresip's `menu` module prints this status line ten times a second during a call."""


# --- SIPp ---------------------------------------------------------------------------------------------

SippTransport = Literal["u1", "un", "t1", "tn"]

SIPP_EXIT_CODES: Mapping[int, str] = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command (e.g. -timeout reached)",
    99: "normal exit without any call processed",
    255: "fatal error (e.g. -timeout reached with -timeout_error)",
    254: "fatal error binding a socket",
}
"""SIPp's documented exit codes (`sipp -h`, "Exit codes")."""

_PCAP_DIR = Path("/usr/share/sip-tester")
"""Where Debian puts the pcap files that the built-in `uac_pcap` scenario plays as `pcap/<name>`."""


@dataclass(frozen=True, slots=True)
class SippMessageStat:
    """One row of SIPp's scenario screen: a message (or pause) and its counters."""

    label: str
    """As SIPp prints it, spaces collapsed: `INVITE ---------->` (sent by a uac), `----------> INVITE`
    (received by a uas), `200 <----------` (received), `Pause [ 0ms]`."""
    messages: int
    retransmissions: int
    timeouts: int
    unexpected: int


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run reports at its end."""

    returncode: int
    created: int
    """Calls created (`TotalCallCreated`), incoming and outgoing."""
    successful: int
    failed: int
    current: int
    """Calls still running when SIPp stopped."""
    failed_reasons: Mapping[str, int]
    """The non-zero `Failed*` cumulative counters, e.g. `{"FailedTimeoutOnRecv": 5}`."""
    unexpected: int
    """Calls failed on an unexpected message (`FailedUnexpectedMessage`)."""
    retransmissions: int
    counters: Mapping[str, str]
    """Every column of the last `-trace_stat` row, as SIPp wrote it."""
    messages: tuple[SippMessageStat, ...]
    errors: tuple[str, ...]
    """Entries of the `-trace_err` log: unexpected messages, receive timeouts, aborted calls."""
    output: str
    """The tail of SIPp's own output, for failure messages."""

    @property
    def ok(self) -> bool:
        """SIPp exited 0 and no call failed."""
        return self.returncode == 0 and self.failed == 0

    def message(self, label: str) -> SippMessageStat:
        """The screen row whose label starts with `label` (`"INVITE"`, `"----------> BYE"`)."""
        for row in self.messages:
            if row.label.startswith(label):
                return row
        raise KeyError(f"no SIPp screen row starts with {label!r}; rows: {[r.label for r in self.messages]}")

    def total(self, label: str) -> int:
        """Messages counted over every screen row whose label starts with `label` (a scenario may send
        the same request from several places)."""
        return sum(row.messages for row in self.messages if row.label.startswith(label))

    def describe(self) -> str:
        """A paragraph for assertion messages."""
        meaning = SIPP_EXIT_CODES.get(self.returncode, "unknown")
        errors = "\n".join(self.errors[:5])
        return (
            f"sipp exited {self.returncode} ({meaning}): created={self.created} successful={self.successful} "
            f"failed={self.failed} reasons={dict(self.failed_reasons)}\nerrors:\n{errors}\noutput:\n{self.output}"
        )


def parse_stat_csv(path: Path) -> dict[str, str]:
    """The last row of a `-trace_stat` CSV (`;`-separated, one header row) as column -> value."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [row for row in csv.reader(f, delimiter=";") if row]
    if len(rows) < 2:
        raise ValueError(f"{path}: SIPp statistics file has no data row")
    return {name: value for name, value in zip(rows[0], rows[-1], strict=False) if name}


_SCREEN_HEADER = re.compile(r"Messages\s+Retrans\s+Timeout\s+Unexpected-Msg")
_ROW_LABEL = re.compile(
    r"\s*(?:\S+ (?:---------->|<----------)|(?:---------->|<----------) \S+|Pause \[[^\]]*\]|\[[^\]]*\] Pause)"
)
"""A row's label: `NAME ---------->` (uac side), `----------> NAME` (uas side), or a pause."""


def parse_screen(text: str) -> tuple[SippMessageStat, ...]:
    """The message rows of the last scenario screen in a `-trace_screen` file.

    Empty cells are blank on SIPp's screen, so each number goes to the column whose heading starts
    nearest to it.
    """
    headers = list(_SCREEN_HEADER.finditer(text))
    if not headers:
        return ()
    start = headers[-1]
    line_start = text.rfind("\n", 0, start.start()) + 1
    header_line = text[line_start : text.find("\n", start.start())]
    columns = [m.start() for m in re.finditer(r"Messages|Retrans|Timeout|Unexpected-Msg", header_line)]
    rows: list[SippMessageStat] = []
    for line in text[start.end() :].splitlines()[1:]:
        if line.startswith(("---", "Last Error")) or "Screen" in line:
            break
        label = _ROW_LABEL.match(line)
        if label is None:
            continue
        cells = [0, 0, 0, 0]
        for number in re.finditer(r"(?<!\S)\d+(?!\S)", line[label.end() :]):
            at = label.end() + number.start()
            nearest = min(range(len(columns)), key=lambda i: abs(columns[i] - at))
            cells[nearest] = int(number.group())
        name = " ".join(label.group().split())
        rows.append(SippMessageStat(name, cells[0], cells[1], cells[2], cells[3]))
    return tuple(rows)


_ERROR_ENTRY = re.compile(r"\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ")


def parse_error_log(text: str) -> tuple[str, ...]:
    """The entries of a `-trace_err` log; SIPp separates them by timestamps, not always by newlines."""
    body = text.split("The following events occurred:", 1)[-1]
    return tuple(part.strip() for part in _ERROR_ENTRY.split(body) if part.strip())


class Sipp:
    """One `sipp` process in the foreground, with its files in `workdir`.

    `scenario` is the name of a built-in scenario (`"uac"`, `"uas"`, `"uac_pcap"`) or the `Path` of an
    XML scenario file. `target` is `"host:port"` for a client scenario. Ports left as None are taken
    free on 127.0.0.1. SIPp binds `media_port` and `media_port + 2` even without `-rtp_echo`, so a free
    media port is a run of four.
    """

    def __init__(
        self,
        scenario: str | Path,
        *,
        target: str | None = None,
        local_port: int | None = None,
        media_port: int | None = None,
        control_port: int | None = None,
        transport: SippTransport = "u1",
        rate: float | None = None,
        rate_period_ms: int | None = None,
        call_limit: int | None = None,
        max_calls: int | None = None,
        call_duration_ms: int | None = None,
        service: str | None = None,
        auth_user: str | None = None,
        auth_password: str | None = None,
        rtp_echo: bool = False,
        timeout_s: float | None = None,
        timeout_error: bool = False,
        recv_timeout_ms: int | None = None,
        inject_file: Path | None = None,
        keys: Mapping[str, str] | None = None,
        trace_messages: bool = False,
        extra_args: Sequence[str] = (),
        workdir: Path | None = None,
        program: str = "sipp",
        local_ip: str = LOOPBACK,
    ) -> None:
        self.program = require(program)
        self.scenario = scenario
        self._leases: list[tuple[int, int]] = []
        self.local_port = local_port if local_port is not None else self._lease(tcp=transport.startswith("t"))
        self.media_port = media_port if media_port is not None else self._lease(tcp=False, span=4)
        self.control_port = control_port if control_port is not None else self._lease(tcp=False)
        self.transport: SippTransport = transport
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="sipp-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stat_path = self.workdir / "stat.csv"
        self.screen_path = self.workdir / "screen.log"
        self.error_path = self.workdir / "errors.log"
        self.message_path = self.workdir / "messages.log"
        self.output_path = self.workdir / "sipp.out"
        args = [self.program]
        if target is not None:
            args.append(target)
        args += ["-sf", str(scenario)] if isinstance(scenario, Path) else ["-sn", scenario]
        self.local_ip = local_ip  # another 127.0.0.x is another source address on loopback
        args += ["-i", local_ip, "-p", str(self.local_port), "-t", transport]
        args += ["-mp", str(self.media_port), "-ci", LOOPBACK, "-cp", str(self.control_port), "-nostdin"]
        args += ["-trace_stat", "-stf", str(self.stat_path), "-fd", "1"]
        args += ["-trace_screen", "-screen_file", str(self.screen_path)]
        args += ["-trace_err", "-error_file", str(self.error_path)]
        if trace_messages:
            args += ["-trace_msg", "-message_file", str(self.message_path)]
        options: list[tuple[str, object | None]] = [
            ("-r", _number(rate)),
            ("-rp", rate_period_ms),
            ("-l", call_limit),
            ("-m", max_calls),
            ("-d", call_duration_ms),
            ("-s", service),
            ("-au", auth_user),
            ("-ap", auth_password),
            ("-timeout", None if timeout_s is None else f"{round(timeout_s * 1000)}ms"),
            ("-recv_timeout", recv_timeout_ms),
            ("-inf", inject_file),
        ]
        args += [item for flag, value in options if value is not None for item in (flag, str(value))]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        if rtp_echo:
            args.append("-rtp_echo")
        if timeout_error:
            args.append("-timeout_error")
        args += extra_args
        self.args: tuple[str, ...] = tuple(args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._result: SippResult | None = None

    def _lease(self, *, tcp: bool, span: int = 1) -> int:
        port = free_port(udp=True, tcp=tcp, span=span)
        self._leases.append((port, span))
        return port

    @property
    def address(self) -> str:
        """`127.0.0.1:port` (or the `local_ip` given), where a uas scenario listens."""
        return f"{self.local_ip}:{self.local_port}"

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self, ready_timeout: float = 5.0) -> Self:
        """Start SIPp and return once its SIP port is bound (or it has already finished). `with Sipp(...)`
        starts it too; a second call returns at once."""
        if self._proc is not None:
            return self
        if self.scenario == "uac_pcap" and _PCAP_DIR.is_dir() and not (self.workdir / "pcap").exists():
            (self.workdir / "pcap").symlink_to(_PCAP_DIR)
        log.info("starting %s", " ".join(self.args))
        with self.output_path.open("wb") as out:
            self._proc = subprocess.Popen(
                self.args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        proto: Literal["udp", "tcp"] = "tcp" if self.transport.startswith("t") else "udp"
        deadline = time.monotonic() + ready_timeout
        while self._proc.poll() is None and not _port_bound(self.local_port, proto):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sipp did not bind {proto} {self.address} in {ready_timeout} s:\n{self._output()}")
            time.sleep(0.02)
        if self._proc.returncode in (254, 255) and not self.stat_path.exists():
            raise RuntimeError(f"sipp failed to start (exit {self._proc.returncode}):\n{self._output()}")
        return self

    def wait(self, timeout: float) -> SippResult:
        """Wait for SIPp to finish on its own (`-m`, `-timeout`); on `timeout` stop it and raise TimeoutError."""
        proc = self._started()
        if _wait(proc, timeout) is None:
            result = self.stop()
            raise TimeoutError(f"sipp still running after {timeout} s; stopped it.\n{result.describe()}")
        return self.result()

    def stop(self, grace: float = 8.0) -> SippResult:
        """Ask SIPp to quit as if `q` were pressed (SIGUSR1: running calls end, final stats are written);
        after `grace` seconds ask again (abort running calls), then SIGTERM, then SIGKILL."""
        proc = self._started()
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
            if _wait(proc, grace) is None:
                proc.send_signal(signal.SIGUSR1)
                if _wait(proc, 2.0) is None:
                    _end_process(proc, 2.0)
        return self.result()

    def result(self) -> SippResult:
        """The statistics of a finished run."""
        proc = self._started()
        if proc.poll() is None:
            raise RuntimeError("sipp is still running: call wait() or stop() first")
        if self._result is None:
            self._result = self._read_result(proc.returncode)
        return self._result

    def _read_result(self, returncode: int) -> SippResult:
        counters: dict[str, str] = {}
        if self.stat_path.exists():
            with contextlib.suppress(ValueError):
                counters = parse_stat_csv(self.stat_path)
        cumulative = {name[: -len("(C)")]: _int(value) for name, value in counters.items() if name.endswith("(C)")}
        reasons = {
            name: count
            for name, count in cumulative.items()
            if name.startswith("Failed") and name != "FailedCall" and count
        }
        screen = self.screen_path.read_text(errors="replace") if self.screen_path.exists() else ""
        errors = self.error_path.read_text(errors="replace") if self.error_path.exists() else ""
        return SippResult(
            returncode=returncode,
            created=_int(counters.get("TotalCallCreated", "0")),
            successful=cumulative.get("SuccessfulCall", 0),
            failed=cumulative.get("FailedCall", 0),
            current=_int(counters.get("CurrentCall", "0")),
            failed_reasons=reasons,
            unexpected=cumulative.get("FailedUnexpectedMessage", 0),
            retransmissions=cumulative.get("Retransmissions", 0),
            counters=counters,
            messages=parse_screen(screen),
            errors=parse_error_log(errors),
            output=self._output(),
        )

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("this Sipp was never started")
        return self._proc

    def _output(self) -> str:
        return _tail(self.output_path, 1500)

    def close(self) -> None:
        """Stop SIPp if it runs, give back its ports, and remove the work folder if this object made it."""
        if self._proc is not None and self._proc.poll() is None:
            self.stop(grace=2.0)
        for port, span in self._leases:
            release_port(port, span)
        self._leases.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


_TOKEN = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _token(name: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{name} {value!r} must be letters, digits or _.+- (it goes into a SIPp scenario)")
    return value


def register_scenario(expires: int = 300, domain: str | None = None) -> str:
    """A SIPp client scenario: REGISTER `[service]` (`-s`), answer a 401/407 with `-au`/`-ap` (RFC 3261
    §10.2, §22.2), expect 200. The To/From domain is `domain`, or the target `ip:port` when None.

    SIPp's built-in `uac` has no authentication step (a 401 is an unexpected message there), hence this.
    """
    where = _token("domain", domain) if domain is not None else "[remote_ip]:[remote_port]"

    def register(cseq: int, authorization: str) -> str:
        return f"""  <send retrans="500">
    <![CDATA[
      REGISTER sip:{where} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@{where}>;tag=[pid]reg[call_number]
      To: <sip:[service]@{where}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Expires: {int(expires)}
      Max-Forwards: 70{authorization}
      Content-Length: 0

    ]]>
  </send>
"""

    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="hatif register with digest">
{register(1, "")}  <recv response="200" optional="true" next="registered"/>
  <recv response="401" auth="true" optional="true" next="challenged"/>
  <recv response="407" auth="true"/>
  <label id="challenged"/>
{register(2, chr(10) + "      [authentication]")}  <recv response="200"/>
  <label id="registered"/>
</scenario>
"""


def uac_auth_scenario(from_user: str = "sipp") -> str:
    """A SIPp client scenario like the built-in `uac` (INVITE `[service]`, ACK, pause `-d`, BYE) that also
    answers a 401/407 challenge with `-au`/`-ap` (RFC 3261 §22.2) and follows Record-Route (§12.1.2).
    """
    user = _token("from_user", from_user)
    sdp = """
      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
"""
    head = f"""      From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]uac[call_number]
      Call-ID: [call_id]
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70"""

    def invite(cseq: int, authorization: str) -> str:
        return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      To: <sip:[service]@[remote_ip]:[remote_port]>
{head}
      CSeq: {cseq} INVITE{authorization}
      Content-Type: application/sdp
      Content-Length: [len]
{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
"""

    def dialog(cseq: int, done: str) -> str:
        return f"""  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
{head}
      [routes]
      CSeq: {cseq} ACK
      Content-Length: 0

    ]]>
  </send>
  <pause/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
{head}
      [routes]
      CSeq: {cseq + 1} BYE
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"{done}/>
"""

    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="hatif uac with digest">
{invite(1, "")}  <recv response="401" auth="true" optional="true" next="challenged"/>
  <recv response="407" auth="true" optional="true" next="challenged"/>
  <recv response="200" rtd="true" rrs="true"/>
{dialog(1, ' next="done"')}  <label id="challenged"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{invite(2, chr(10) + "      [authentication]")}  <recv response="200" rtd="true" rrs="true"/>
{dialog(2, "")}  <label id="done"/>
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500"/>
  <CallLengthRepartition value="100, 500, 1000, 5000, 10000"/>
</scenario>
"""


# --- baresip ------------------------------------------------------------------------------------------

AnswerMode = Literal["auto", "manual", "early"]
RecordingKind = Literal["dec", "enc"]

_MODULE_DIRS = (Path("/usr/lib/baresip/modules"), Path("/usr/local/lib/baresip/modules"))


class BaresipError(RuntimeError):
    """baresip refused a command, or died."""


@dataclass(frozen=True, slots=True)
class BaresipResponse:
    """The answer to one `ctrl_tcp` command."""

    ok: bool
    data: str


def netstring(payload: bytes) -> bytes:
    """Frame `payload` as a netstring (`<length>:<payload>,`), the framing `ctrl_tcp` speaks."""
    return b"%d:%s," % (len(payload), payload)


def split_netstrings(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete netstrings at the start of `buffer`, and the incomplete rest."""
    out: list[bytes] = []
    while buffer:
        colon = buffer.find(b":")
        if colon < 0:
            if len(buffer) > 10 or not buffer.isdigit():
                raise ValueError(f"bad netstring length prefix {buffer[:20]!r}")
            break
        if not buffer[:colon].isdigit():
            raise ValueError(f"bad netstring length prefix {buffer[:colon][:20]!r}")
        end = colon + 1 + int(buffer[:colon])
        if len(buffer) <= end:
            break
        if buffer[end : end + 1] != b",":
            raise ValueError(f"netstring of length {end - colon - 1} does not end with ','")
        out.append(buffer[colon + 1 : end])
        buffer = buffer[end + 1 :]
    return out, buffer


class Baresip:
    """One headless baresip user agent, driven over `ctrl_tcp`.

    Without `domain` the account is `sip:USER@127.0.0.1:SIP_PORT` with `regint=0`: a peer that others
    call directly at `uri`. With `domain` (`"host:port"` of a registrar) it registers every `regint`
    seconds when `regint > 0`, and `dial("1002")` goes to `sip:1002@domain`.

    It sends a sine tone (`tone_hz`, module `ausine`) or plays a WAV (`play_wav`, module `aufile`; the
    call is hung up when the file ends), and records what it hears and sends (module `sndfile`) as
    8 kHz mono WAVs, see `recordings()`. Its own files (config, accounts, log, recordings) are in
    `workdir`.
    """

    def __init__(
        self,
        user: str = "peer",
        *,
        domain: str | None = None,
        password: str | None = None,
        auth_user: str | None = None,
        regint: int = 0,
        answermode: AnswerMode = "auto",
        outbound: str | None = None,
        transport: Literal["udp", "tcp"] = "udp",
        tone_hz: int = 440,
        play_wav: Path | None = None,
        record: bool = True,
        sip_port: int | None = None,
        ctrl_port: int | None = None,
        extra_account_params: Sequence[str] = (),
        extra_config: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        program: str = "baresip",
    ) -> None:
        if regint and domain is None:
            raise ValueError("Baresip: regint > 0 needs a domain (the registrar's host:port)")
        if not 10 <= tone_hz <= 20000:
            raise ValueError(f"Baresip: tone_hz {tone_hz} is outside ausine's 10-20000 Hz")
        self.program = require(program)
        self.user = _token("user", user)
        # baresip also listens for SIP over TLS on sip_port + 1, and cannot be told not to.
        self._leases: list[tuple[int, int]] = []
        self.sip_port = sip_port if sip_port is not None else self._lease(udp=True, span=2)
        self.ctrl_port = ctrl_port if ctrl_port is not None else self._lease(udp=False)
        self.rtp_ports = (base := self._lease(udp=True, tcp=False, span=20), base + 19)
        self.domain = domain
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="baresip-")) if workdir is None else workdir
        self.recording_dir = self.workdir / "recordings"
        self.log_path = self.workdir / "baresip.log"
        self.config_text = self._config(tone_hz, play_wav, record, extra_config or {})
        self.account_line = ";".join(
            [self._account(password, auth_user, regint, answermode, outbound, transport), *extra_account_params]
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._closed = False
        self._tokens = itertools.count(1)
        self._send_lock = threading.Lock()

    def _lease(self, *, udp: bool, tcp: bool = True, span: int = 1) -> int:
        port = free_port(udp=udp, tcp=tcp, span=span)
        self._leases.append((port, span))
        return port

    @property
    def uri(self) -> str:
        """`sip:USER@127.0.0.1:SIP_PORT`: where to call this agent directly."""
        return f"sip:{self.user}@{LOOPBACK}:{self.sip_port}"

    @property
    def aor(self) -> str:
        """The account's address of record: `sip:USER@DOMAIN`, or `uri` without a domain."""
        return f"sip:{self.user}@{self.domain}" if self.domain else self.uri

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _config(self, tone_hz: int, play_wav: Path | None, record: bool, extra: Mapping[str, str]) -> str:
        module_dir = next((d for d in _MODULE_DIRS if d.is_dir()), _MODULE_DIRS[0])
        if play_wav is not None:
            with wave.open(str(play_wav), "rb") as w:
                if w.getsampwidth() != 2:
                    raise ValueError(f"{play_wav}: aufile plays 16-bit PCM WAV only")
                rate, channels = w.getframerate(), w.getnchannels()
            source, modules = f"aufile,{play_wav}", ["aufile.so"]
        else:
            # ausine only runs at 48 kHz stereo; baresip resamples to the codec's 8 kHz mono.
            source, modules, rate, channels = f"ausine,{tone_hz}", ["ausine.so"], 48000, 2
        settings: dict[str, str] = {
            "poll_method": "epoll",
            "sip_listen": f"{LOOPBACK}:{self.sip_port}",
            "net_interface": LOOPBACK,
            "rtp_ports": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_source": source,
            "ausrc_srate": str(rate),
            "ausrc_channels": str(channels),
            # A call without a player fails ("start_player failed"); aubridge is a player that needs no
            # sound card. Ring tones go to a second aubridge device.
            "audio_player": "aubridge,play",
            "audio_alert": "aubridge,alert",
            "module_path": str(module_dir),
            "ctrl_tcp_listen": f"{LOOPBACK}:{self.ctrl_port}",
            "snd_path": str(self.recording_dir),
        }
        settings.update(extra)
        lines = [f"{key}\t{value}" for key, value in settings.items()]
        modules = ["g711.so", *modules, "aubridge.so"] + (["sndfile.so"] if record else [])
        lines += [f"module\t{m}" for m in modules]
        lines += ["module_tmp\taccount.so", "module_app\tmenu.so", "module_app\tdebug_cmd.so"]
        lines.append("module_app\tctrl_tcp.so")
        return "\n".join(lines) + "\n"

    def _account(
        self,
        password: str | None,
        auth_user: str | None,
        regint: int,
        answermode: AnswerMode,
        outbound: str | None,
        transport: Literal["udp", "tcp"],
    ) -> str:
        host = self.domain or f"{LOOPBACK}:{self.sip_port}"
        uri_params = ";transport=tcp" if transport == "tcp" else ""
        params = [f"regint={int(regint)}", f"answermode={answermode}"]
        if password is not None:
            params.append(f"auth_pass={password}")
        if auth_user is not None:
            params.append(f"auth_user={auth_user}")
        if outbound is not None:
            params.append(f'outbound="{outbound}"')
        return f"<sip:{self.user}@{host}{uri_params}>;" + ";".join(params)

    def start(self, ready_timeout: float = 10.0) -> Self:
        """Write the config, start baresip, connect to its `ctrl_tcp` port and add the account.
        `with Baresip(...)` starts it too; a second call returns at once."""
        if self._proc is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.recording_dir.mkdir(exist_ok=True)
        (self.workdir / "config").write_text(self.config_text)
        # The account is added over ctrl_tcp once connected (`uanew`), so that no event of its first
        # registration is sent before anyone listens.
        (self.workdir / "accounts").write_text("")
        (self.workdir / "contacts").write_text("")
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                [self.program, "-f", str(self.workdir)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            if self._proc.poll() is not None:
                raise BaresipError(f"baresip exited {self._proc.returncode} at start:\n{self.log_tail()}")
            try:
                self._sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BaresipError(
                        f"baresip ctrl_tcp not listening on {self.ctrl_port} after {ready_timeout} s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"baresip-{self.user}", daemon=True)
        self._reader.start()
        self._checked("uanew", self.account_line)
        return self

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buffer = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                frames, buffer = split_netstrings(buffer + chunk)
                for frame in frames:
                    self._dispatch(json.loads(frame.decode("utf-8", "replace")))
        except (OSError, ValueError) as exc:
            if not self._closed:
                log.warning("baresip %s: ctrl_tcp reader stopped: %s", self.user, exc)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._cond:
            if message.get("event"):
                message["received_at"] = time.monotonic()
                self._events.append(message)
            elif message.get("response"):
                self._responses[str(message.get("token", ""))] = message
            self._cond.notify_all()

    def command(self, name: str, params: str = "", timeout: float = 5.0) -> BaresipResponse:
        """Send one command (as `ctrl_tcp` names them: `dial`, `accept`, `hangup`, `listcalls`, `callstat`,
        `reginfo`, `apistate`, `uastat`, `quit`, ...) and wait for its response."""
        sock = self._sock
        if sock is None:
            raise BaresipError("baresip is not started")
        token = f"t{next(self._tokens)}"
        payload = json.dumps({"command": name, "params": params, "token": token}).encode()
        with self._send_lock:
            try:
                sock.sendall(netstring(payload))
            except OSError as exc:
                raise BaresipError(f"baresip {self.user}: cannot send {name!r}: {exc}") from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    why = "connection closed" if self._closed else f"no response in {timeout} s"
                    raise BaresipError(f"baresip {self.user}: command {name!r}: {why}\n{self.log_tail()}")
                self._cond.wait(remaining)
            response = self._responses.pop(token)
        return BaresipResponse(ok=bool(response.get("ok")), data=str(response.get("data", "")))

    def _checked(self, name: str, params: str = "") -> BaresipResponse:
        response = self.command(name, params)
        if not response.ok:
            raise BaresipError(f"baresip {self.user}: {name} {params!r} failed: {response.data.strip()}")
        return response

    def dial(self, uri: str) -> None:
        """Call `uri` (a full SIP URI, or a user part completed with the account's domain)."""
        self._checked("dial", uri)

    def answer(self) -> None:
        """Answer the ringing incoming call (`accept`; with `answermode=manual`)."""
        self._checked("accept")

    def hangup(self) -> None:
        """Hang up the current call."""
        self._checked("hangup")

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, oldest first (each has `type`, and `received_at` added here)."""
        with self._cond:
            return list(self._events)

    def mark(self) -> int:
        """The number of events so far: pass it as `since` to wait only for later events."""
        with self._cond:
            return len(self._events)

    def wait_event(
        self,
        types: str | Sequence[str],
        timeout: float = 10.0,
        *,
        since: int = 0,
        call_id: str | None = None,
    ) -> dict[str, Any]:
        """The first event at index >= `since` whose type is `types` (or one of them) and, when
        `call_id` is given, whose `id` is that call's; waits up to `timeout` seconds."""
        wanted = {types} if isinstance(types, str) else set(types)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events[since:]:
                    if event.get("type") in wanted and (call_id is None or event.get("id") == call_id):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    seen = [e.get("type") for e in self._events[since:]]
                    why = "ctrl_tcp closed" if self._closed else f"not within {timeout} s"
                    raise TimeoutError(
                        f"baresip {self.user}: no {sorted(wanted)} event ({why}); events since {since}: "
                        f"{seen}\n{self.log_tail()}"
                    )
                self._cond.wait(remaining)

    def registered(self, timeout: float = 10.0, *, since: int = 0) -> bool:
        """True once REGISTER_OK arrives; False if REGISTER_FAIL comes first or nothing within `timeout`."""
        try:
            event = self.wait_event(("REGISTER_OK", "REGISTER_FAIL"), timeout, since=since)
        except TimeoutError:
            return False
        return event.get("type") == "REGISTER_OK"

    def recordings(self, kind: RecordingKind = "dec") -> list[Path]:
        """The WAVs `sndfile` wrote, oldest first: `dec` is what this agent heard, `enc` what it sent.

        One pair per call, named by the second the call's audio started; a file is complete once the
        call is closed.
        """
        return sorted(self.recording_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    def last_recording(self, kind: RecordingKind = "dec", within: float = 5.0) -> Path:
        """The newest WAV of `kind`, waiting up to `within` seconds for `sndfile` to write it: CALL_CLOSED can come
        before the file, by more when the machine is busy."""
        deadline = time.monotonic() + within
        while not (found := self.recordings(kind)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not found:
            raise AssertionError(f"{self.user}: no {kind} recording in {self.recording_dir} after {within} s")
        return found[-1]

    def log_tail(self, limit: int = 3000) -> str:
        """The end of baresip's own output, without its per-frame status lines."""
        return _tail(self.log_path, limit)

    def stop(self, grace: float = 1.5) -> int | None:
        """Send `quit`; after `grace` seconds SIGTERM twice, then SIGKILL. Returns the exit code (None if
        never started).

        On `quit` and on the first SIGTERM baresip un-registers and waits for its SIP transactions
        (up to 32 s if the registrar is gone); a second SIGTERM makes it exit at once.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None and self._sock is not None and not self._closed:
            with contextlib.suppress(BaresipError):
                self.command("quit", timeout=grace)
        if proc is not None and _wait(proc, grace) is None:
            proc.terminate()
            if _wait(proc, 0.3) is None:
                proc.terminate()
                _end_process(proc, 2.0)
        with self._cond:
            self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._reader is not None:
            self._reader.join(2.0)
        return None if proc is None else proc.returncode

    def close(self) -> None:
        """Stop baresip, give back its ports, and remove the work folder if this object made it."""
        self.stop()
        for port, span in self._leases:
            release_port(port, span)
        self._leases.clear()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "DEBIAN_PACKAGES",
    "LOOPBACK",
    "SIPP_EXIT_CODES",
    "AnswerMode",
    "Baresip",
    "BaresipError",
    "BaresipResponse",
    "Sipp",
    "SippMessageStat",
    "SippResult",
    "free_port",
    "free_ports",
    "free_tcp_port",
    "free_udp_port",
    "netstring",
    "parse_error_log",
    "parse_screen",
    "parse_stat_csv",
    "register_scenario",
    "release_port",
    "require",
    "split_netstrings",
    "uac_auth_scenario",
    "which",
]
