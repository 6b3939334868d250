"""Run `hatif serve` as a real process (what production runs), for overload and shutdown tests and bench/.

Unlike `hatif_server.RunningHatif` (a server on a thread of the test process), the process here has its own
interpreter and memory, so its RSS can be read (`/proc/PID/status`), it can be sent SIGTERM, and it can
crash without taking the test with it. Its call detail records are read from its SQLite store afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import _port_bound, _tail

SRC = Path(__file__).resolve().parents[2] / "src"


class HatifProcess:
    """`with HatifProcess(yaml_text, sip_port) as p:` starts `hatif serve` and stops it on exit.

    `yaml_text` may use `{workdir}` for the server's own folder (store, recordings, prompt cache)."""

    def __init__(self, config_text: str, sip_port: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="hatif-proc-"))
        self.sip_port = sip_port
        self.config_path = self.workdir / "hatif.yaml"
        self.config_path.write_text(config_text.replace("{workdir}", str(self.workdir)))
        self.log_path = self.workdir / "hatif.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def store_path(self) -> Path:
        return self.workdir / "hatif.db"

    def start(self, ready_timeout: float = 30.0) -> HatifProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from hatif.cli import main; sys.exit(main())",
                 "serve", "--config", str(self.config_path)],
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while not _port_bound(self.sip_port, "udp"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hatif did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        while "hatif started" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hatif did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        """The process's resident set size (VmRSS, KiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGINT (stop now), then SIGKILL after `grace` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            if self.wait(grace) is None:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, limit: int = 3000) -> str:
        return _tail(self.log_path, limit)

    def leg_causes(self) -> dict[str, int]:
        """How many legs in the stored CDRs ended with each cause (read once the process has stopped)."""
        with sqlite3.connect(self.store_path) as db:
            return dict(db.execute("SELECT cause, count(*) FROM call_legs GROUP BY cause").fetchall())

    def call_count(self) -> int:
        with sqlite3.connect(self.store_path) as db:
            return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])

    def __enter__(self) -> HatifProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
