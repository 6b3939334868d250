"""Running the HTTP API inside Hatif's own asyncio loop, beside the SIP server and the media engine.

uvicorn is made to run its own loop (`uvicorn.run`, `Server.run`) and to own the process's signals. Neither
suits Hatif: the loop is already running, and SIGTERM belongs to `hatif.app`, which drains calls. So
`ApiServer` drives `uvicorn.Server.serve()` as a task of the running loop, never calls `Config.setup_event_loop`,
turns uvicorn's signal capture off, and is stopped by `stop()`. It binds its socket itself, so a port in use
is an `OSError` here (not uvicorn's `sys.exit`), and port 0 picks a free port, read back from `port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0  # seconds for uvicorn to start listening
_POLL = 0.01


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its signal handlers: the application owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """An ASGI application served over HTTP by uvicorn on the running loop. `await start()`, then `await stop()`
    (or `async with`)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self.shutdown_timeout = shutdown_timeout
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the system when 0 was asked)."""
        if self._sock is None:
            raise RuntimeError("ApiServer not started")
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen and serve; returns once uvicorn accepts connections. OSError if the address cannot be bound."""
        if self.task is not None:
            raise RuntimeError("ApiServer already started")
        self._sock = await _bind(self.host, self._requested_port)
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, server_header=False, lifespan="auto",
            timeout_graceful_shutdown=max(1, round(self.shutdown_timeout)),
        )
        self.server = _EmbeddedServer(config)
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self._sock]), name="hatif-api")
        for _ in range(int(_START_TIMEOUT / _POLL)):
            if self.server.started or self.task.done():
                break
            await asyncio.sleep(_POLL)
        if not self.server.started:
            await self.stop()
            raise RuntimeError(f"the HTTP API did not start on {self.host}:{self._requested_port}")
        log.info("api listening", extra={"fields": {"host": self.host, "port": self.port}})

    async def stop(self) -> None:
        """Stop accepting, let requests in progress finish (up to `shutdown_timeout`), then close."""
        server, task = self.server, self.task
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.shutdown_timeout + 2.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            if self._sock is not None:
                self._sock.close()
            self.task = None
            self.server = None
        log.info("api stopped", extra={"fields": {"host": self.host}})

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_api(app: Any, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """Start serving `app` on `host:port` within the running loop; the returned `ApiServer` has the uvicorn
    `server`, its `task`, the bound `port`, and `stop()`."""
    api = ApiServer(app, host, port)
    await api.start()
    return api


async def _bind(host: str, port: int) -> socket.socket:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
