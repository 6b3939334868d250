"""Run a real Hatif server inside the test process, on its own event loop in a thread.

Outside programs (SIPp, baresip) talk to it over loopback while the test looks inside it (transaction,
dialog and call counts) through `call()`, which runs a function on the server's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from hatif.app import Hatif, settle_heap, start
from hatif.config import Config, parse_config

T = TypeVar("T")


class RunningHatif:
    """`with RunningHatif(yaml_text) as h:` starts Hatif on 127.0.0.1 and stops it on exit."""

    _running = 0  # servers of this process between __enter__ and __exit__
    _thresholds: tuple[int, int, int] = gc.get_threshold()  # the collector's, before the first settled the heap

    def __init__(self, config_text: str) -> None:
        config = parse_config(config_text, "<test>")
        # The store and voicemail files go to a folder of this server's own unless the test names them.
        self.workdir = Path(tempfile.mkdtemp(prefix="hatif-test-"))
        if config.store.url is None and config.store.path == Path("var/hatif.db"):
            config = config.model_copy(update={"store": config.store.model_copy(
                update={"path": self.workdir / "hatif.db"})})
        if config.voicemail.folder == Path("var/voicemail"):
            config = config.model_copy(update={"voicemail": config.voicemail.model_copy(
                update={"folder": self.workdir / "voicemail"})})
        self.config: Config = config
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hatif", daemon=True)
        self.hatif: Hatif | None = None

    def __enter__(self) -> RunningHatif:
        self.thread.start()
        self.hatif = self._submit(start(self.config))
        # As `hatif serve` does: with the test process's heap in the collector's generations, a full
        # collection stalls the server's loop long enough for admission control to shed calls. Servers run
        # side by side in one test: the first settles the heap, the last puts the collector back.
        if not RunningHatif._running:
            RunningHatif._thresholds = settle_heap()
        RunningHatif._running += 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hatif is not None:
            self._submit(self.hatif.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        if self.hatif is not None:
            RunningHatif._running -= 1
            if not RunningHatif._running:
                gc.unfreeze()
                gc.set_threshold(*RunningHatif._thresholds)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the server's loop and return its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(10)

    @property
    def h(self) -> Hatif:
        assert self.hatif is not None
        return self.hatif

    def address(self, transport: str = "udp") -> tuple[str, int]:
        for t, host, port in self.h.addresses:
            if t == transport:
                return host, port
        raise LookupError(f"no {transport} listener")

    def counts(self) -> dict[str, int]:
        """Transactions, calls and dialogs held right now."""
        def read() -> dict[str, int]:
            h = self.h
            return {"transactions": len(h.sip.transactions), "calls": len(h.control.calls),
                    "dialogs": h.control.dialog_count()}
        return self.call(read)

    def wait_idle(self, timeout: float = 10.0) -> dict[str, int]:
        """Wait (bounded) until no transaction, call or dialog is left; returns the last counts."""
        deadline = time.monotonic() + timeout
        counts = self.counts()
        while any(counts.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
            counts = self.counts()
        return counts
