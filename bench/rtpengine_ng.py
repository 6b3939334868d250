"""A tiny client of rtpengine's "ng" control protocol, and a way to run Debian's `rtpengine` in userspace.

rtpengine (Sipwise's media relay, Debian package `rtpengine-daemon`) is the real engine Hatif swaps in at
scale (ARCHITECTURE.md, principle 3) and the yardstick of `bench/rtp_relay.py`. Its ng protocol is one
UDP datagram per request and per reply: a cookie, one space, and a bencoded dictionary
(`<cookie> d7:command4:pinge`, answered `<cookie> d6:result4:ponge`). The reply repeats the cookie, and
rtpengine answers a repeated cookie from its cache, so a lost datagram is simply sent again.

Bencode (the BitTorrent encoding, BEP 3 "bencoding"): integers `i42e`, byte strings `4:spam`, lists
`l...e`, dictionaries `d...e` with byte-string keys in sorted order. `encode` accepts `str` (as UTF-8),
tuples and any key order; `decode` gives `bytes` for strings and checks the grammar strictly.

`Rtpengine` runs the daemon in the foreground, userspace only (`--table=-1`: no kernel forwarding), on
127.0.0.1, with its own port range and optionally pinned to one CPU, and always stops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self, TypeAlias

Value: TypeAlias = int | bytes | str | Sequence["Value"] | Mapping[str, "Value"] | Mapping[bytes, "Value"]
"""What `encode` accepts (sequences as lists or tuples)."""

Decoded: TypeAlias = int | bytes | list["Decoded"] | dict[bytes, "Decoded"]
"""What `decode` returns."""

OFFER_FLAGS: Mapping[str, Value] = {
    "replace": ["origin", "session-connection"],
    "ICE": "remove",
}
"""Flags for a plain RTP/AVP relay between two ordinary SIP endpoints (no ICE, no SRTP)."""


class BencodeError(ValueError):
    """Bytes that are not one well-formed bencoded value, or a value bencode cannot carry."""


class NgError(RuntimeError):
    """rtpengine answered a command with `result: error`, or did not answer at all."""


# -- bencode -----------------------------------------------------------------------------------------


def encode(value: Value) -> bytes:
    """Bencode `value` (BEP 3): dictionary keys sorted as raw byte strings."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _encode(value: Value, out: bytearray) -> None:
    if isinstance(value, bool):
        raise BencodeError("bencode has no booleans: send 'yes'/'no' or 1/0")
    if isinstance(value, int):
        out += b"i%de" % value
    elif isinstance(value, bytes | str):
        data = value.encode() if isinstance(value, str) else value
        out += b"%d:" % len(data)
        out += data
    elif isinstance(value, list | tuple):
        out += b"l"
        for item in value:
            _encode(item, out)
        out += b"e"
    elif isinstance(value, Mapping):
        items: dict[bytes, Value] = {}
        for key, item in value.items():
            if not isinstance(key, bytes | str):
                raise BencodeError(f"bencode dictionary keys are strings, got {type(key).__name__} {key!r}")
            raw = key.encode() if isinstance(key, str) else key
            if raw in items:
                raise BencodeError(f"bencode dictionary key {raw!r} given twice")
            items[raw] = item
        out += b"d"
        for raw in sorted(items):
            out += b"%d:" % len(raw)
            out += raw
            _encode(items[raw], out)
        out += b"e"
    else:
        raise BencodeError(f"bencode cannot carry {type(value).__name__} {value!r}")


def decode(data: bytes) -> Decoded:
    """The one bencoded value in `data` (trailing bytes are an error)."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} trailing byte(s) after the bencoded value at offset {end}")
    return value


_MAX_DEPTH = 64


def _decode(data: bytes, pos: int, depth: int) -> tuple[Decoded, int]:
    if depth > _MAX_DEPTH:
        raise BencodeError(f"bencode nested deeper than {_MAX_DEPTH} at offset {pos}")
    if pos >= len(data):
        raise BencodeError(f"bencode ends early: a value expected at offset {pos}")
    lead = data[pos]
    if lead == ord("i"):
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError(f"bencode integer at offset {pos} has no closing 'e'")
        digits = data[pos + 1 : end]
        body = digits[1:] if digits[:1] == b"-" else digits
        if not body.isdigit() or (body[:1] == b"0" and (len(body) > 1 or digits[:1] == b"-")):
            raise BencodeError(f"bencode integer at offset {pos} is malformed: {digits!r}")
        return int(digits), end + 1
    if lead == ord("l"):
        items: list[Decoded] = []
        pos += 1
        while pos < len(data) and data[pos] != ord("e"):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if pos >= len(data):
            raise BencodeError("bencode list has no closing 'e'")
        return items, pos + 1
    if lead == ord("d"):
        table: dict[bytes, Decoded] = {}
        pos += 1
        while pos < len(data) and data[pos] != ord("e"):
            if not chr(data[pos]).isdigit():
                raise BencodeError(f"bencode dictionary key at offset {pos} is not a byte string")
            key, pos = _string(data, pos)
            if key in table:
                raise BencodeError(f"bencode dictionary key {key!r} repeated at offset {pos}")
            table[key], pos = _decode(data, pos, depth + 1)
        if pos >= len(data):
            raise BencodeError("bencode dictionary has no closing 'e'")
        return table, pos + 1
    if ord("0") <= lead <= ord("9"):
        return _string(data, pos)
    raise BencodeError(f"bencode value at offset {pos} starts with {bytes([lead])!r}, not i, l, d or a digit")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    colon = data.find(b":", pos)
    if colon < 0:
        raise BencodeError(f"bencode string at offset {pos} has no ':' after its length")
    length = data[pos:colon]
    if not length.isdigit() or (length[:1] == b"0" and len(length) > 1):
        raise BencodeError(f"bencode string length at offset {pos} is malformed: {length!r}")
    end = colon + 1 + int(length)
    if end > len(data):
        left = len(data) - colon - 1
        raise BencodeError(f"bencode string at offset {pos} claims {int(length)} bytes, only {left} left")
    return data[colon + 1 : end], end


# -- SDP for a plain G.711 audio stream ----------------------------------------------------------------


def sdp_audio(host: str, port: int, session: int = 1, payload_type: int = 0) -> str:
    """A minimal SDP (RFC 4566 §5) offering one PCMU (0) or PCMA (8) RTP/AVP stream at host:port."""
    name = "PCMA" if payload_type == 8 else "PCMU"
    return (f"v=0\r\no=- {session} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {name}/8000\r\na=sendrecv\r\n")


def sdp_media_address(sdp: str) -> tuple[str, int]:
    """The connection address (c=, RFC 4566 §5.7) and port of the first m=audio line (§5.14)."""
    host: str | None = None
    for line in sdp.splitlines():
        if line.startswith("c=IN IP4 ") or line.startswith("c=IN IP6 "):
            host = host or line.split()[2]
        elif line.startswith("m=audio "):
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise ValueError(f"SDP m=audio line has no port: {line!r}")
            if host is None:
                raise ValueError("SDP has no c= line before its m=audio line")
            return host, int(parts[1])
    raise ValueError("SDP has no m=audio line")


# -- the ng client ---------------------------------------------------------------------------------------


class NgClient:
    """Commands to one rtpengine over UDP; each request is retried with its cookie until answered."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, attempts: int = 3) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.attempts = attempts
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("::1" if ":" in host else "127.0.0.1", 0))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def request(self, command: str, params: Mapping[str, Value] | None = None) -> dict[bytes, Decoded]:
        """Send `command` with `params`; returns the reply dictionary, or raises NgError for `result: error`."""
        cookie = secrets.token_hex(8).encode()
        message: dict[str, Value] = {"command": command, **(params or {})}
        datagram = cookie + b" " + encode(message)
        for _ in range(self.attempts):
            self._sock.sendto(datagram, self.address)
            deadline = time.monotonic() + self.timeout
            while (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                try:
                    data, _ = self._sock.recvfrom(65536)
                except TimeoutError:
                    break
                head, _, body = data.partition(b" ")
                if head != cookie:
                    continue  # a late answer to an earlier, retried request
                reply = decode(body)
                if not isinstance(reply, dict):
                    raise NgError(f"rtpengine answered {command!r} with a {type(reply).__name__}, not a dictionary")
                result = reply.get(b"result")
                if result == b"error":
                    reason = reply.get(b"error-reason", b"no reason given")
                    raise NgError(f"rtpengine {command!r} failed: {_text(reason)}")
                return reply
        raise NgError(f"rtpengine at {self.address[0]}:{self.address[1]} did not answer {command!r} "
                      f"({self.attempts} tries, {self.timeout}s each)")

    def ping(self) -> None:
        reply = self.request("ping")
        if reply.get(b"result") != b"pong":
            raise NgError(f"rtpengine answered ping with {reply!r}")

    def offer(self, call_id: str, from_tag: str, sdp: str, flags: Mapping[str, Value] = OFFER_FLAGS) -> str:
        """The SDP to forward to the callee: rtpengine's address for the callee's media."""
        reply = self.request("offer", {"call-id": call_id, "from-tag": from_tag, "sdp": sdp, **flags})
        return _sdp(reply, "offer")

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str,
               flags: Mapping[str, Value] = OFFER_FLAGS) -> str:
        """The SDP to forward to the caller: rtpengine's address for the caller's media."""
        reply = self.request("answer", {"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "sdp": sdp,
                                        **flags})
        return _sdp(reply, "answer")

    def delete(self, call_id: str, from_tag: str | None = None) -> dict[bytes, Decoded]:
        """End the call; the reply carries rtpengine's per-stream packet counters."""
        params: dict[str, Value] = {"call-id": call_id}
        if from_tag is not None:
            params["from-tag"] = from_tag
        return self.request("delete", params)


def _text(value: Decoded) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else repr(value)


def _sdp(reply: dict[bytes, Decoded], command: str) -> str:
    sdp = reply.get(b"sdp")
    if not isinstance(sdp, bytes):
        raise NgError(f"rtpengine's {command} reply has no SDP: {reply!r}")
    return sdp.decode()


# -- the daemon ------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if this process dies without stopping it (prctl(2), Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Rtpengine:
    """One `rtpengine` in the foreground, userspace only, on 127.0.0.1; a context manager that stops it."""

    def __init__(self, *, ng_port: int, port_min: int, port_max: int, cpu: int | None = None, threads: int = 1,
                 recording_dir: Path | None = None, binary: str = "rtpengine", log_level: int = 4) -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(f"{binary} not found: install Debian package rtpengine-daemon")
        self.ng_port = ng_port
        self.recording_dir = recording_dir
        self._workdir = tempfile.TemporaryDirectory(prefix="hatif-rtpengine-")
        self.log_path = Path(self._workdir.name) / "rtpengine.log"
        pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
        self.command = [
            *pin, path, "--config-file=none", "--foreground", "--log-stderr", f"--log-level={log_level}",
            "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}",
            f"--port-min={port_min}", f"--port-max={port_max}", f"--num-threads={threads}",
            "--media-num-threads=0", "--delete-delay=0", f"--pidfile={Path(self._workdir.name) / 'pid'}",
        ]
        if recording_dir is not None:
            self.command += [f"--recording-dir={recording_dir}", "--recording-method=pcap"]
        self.process: subprocess.Popen[bytes] | None = None
        self.client = NgClient("127.0.0.1", ng_port, timeout=0.5, attempts=4)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("rtpengine is not running")
        return self.process.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start the daemon and wait (bounded) until it answers ping."""
        if self.recording_dir is not None:
            self.recording_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rtpengine exited with {self.process.returncode}: {self.log_tail()}")
            try:
                self.client.ping()
                return
            except NgError:
                continue
        self.stop()
        raise RuntimeError(f"rtpengine did not answer ping within {timeout}s: {self.log_tail()}")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code (None if never started)."""
        proc, self.process = self.process, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(grace)
            code = proc.returncode
        return code

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.client.close()
            self._workdir.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
