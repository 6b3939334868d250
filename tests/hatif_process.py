"""A real `hatif serve` process, for tests that must kill it, signal it or restart it.

`RunningHatif` keeps the server in the test's process; a crash test needs a process of its own, started as a
user starts it (`python -m hatif serve --config FILE`), that the test can SIGKILL and start again on the same
store and journal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class HatifProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> HatifProcess:
        """Start the server and return once it logged that it started (bounded)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hatif", "serve", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.config.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hatif exited with {self.proc.returncode}:\n{self.tail()}")
            if b"hatif started" in self.log.read_bytes()[offset:]:
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"hatif did not start in {timeout} s:\n{self.tail()}")

    def tail(self, limit: int = 4000) -> str:
        return self.log.read_bytes()[-limit:].decode("utf-8", "replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Send `sig` and, for SIGKILL, wait for the process to be gone; returns its exit status."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            return proc.wait(10)
        return None

    def wait(self, timeout: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s: whatever the test did, no process is left behind."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            if self.wait(10) is None:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> HatifProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
