"""A small order-status web service for the demo's self-service menu (FEATURES.md §2: self-service).

`GET /orders/{number}?lang=ar` answers `{"order": "1001", "status": "..."}` with the status in the asked
language (`en`, `ar` or `fa`; English when absent or unknown), or 404 `{"error": "no such order"}`. The
demo flow reads it with an `http` node, as a real center would read its shop's API.

`start_order_service(host, port)` runs it with uvicorn on the running event loop (port 0: any free port)
and returns an `OrderService` to `stop()`; uvicorn's signal handling is left out, so the service never
takes SIGINT or SIGTERM from the process that embeds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)

DEMO_ORDERS: Mapping[str, Mapping[str, str]] = {
    "1001": {"en": "shipped, and arrives tomorrow",
             "ar": "تم شحنه، ويصل غدًا",
             "fa": "ارسال شده و فردا می‌رسد"},
    "1002": {"en": "being prepared",
             "ar": "قيد التجهيز",
             "fa": "در حال آماده‌سازی است"},
    "1003": {"en": "delivered",
             "ar": "تم تسليمه",
             "fa": "تحویل داده شده"},
    "1004": {"en": "cancelled, and the payment was refunded",
             "ar": "أُلغي، وأُعيد المبلغ",
             "fa": "لغو شده و مبلغ بازگردانده شد"},
}
"""Demo orders: number -> status text per language."""


def order_app(orders: Mapping[str, Mapping[str, str]] = DEMO_ORDERS) -> Starlette:
    """The ASGI application answering `/orders/{number}` from `orders`."""

    async def order(request: Request) -> JSONResponse:
        number = request.path_params["number"]
        statuses = orders.get(number)
        if statuses is None:
            return JSONResponse({"error": "no such order", "order": number}, status_code=404)
        lang = request.query_params.get("lang", "en")
        status = statuses.get(lang) or statuses.get("en") or next(iter(statuses.values()))
        return JSONResponse({"order": number, "status": status})

    return Starlette(routes=[Route("/orders/{number}", order, methods=["GET"])])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the embedding process owns its signals


class OrderService:
    """A running order service; `port` is the one it listens on."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], host: str, port: int) -> None:
        self._server = server
        self._task = task
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening, finish open requests (at most 5 s), and wait for the server to end."""
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def start_order_service(host: str = "127.0.0.1", port: int = 0,
                              orders: Mapping[str, Mapping[str, str]] = DEMO_ORDERS) -> OrderService:
    """Start the order service on `host:port` (0: a free port); raises OSError if it cannot listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    actual = sock.getsockname()[1]
    config = uvicorn.Config(order_app(orders), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"order-service:{actual}")
    for _ in range(500):  # up to 5 s for uvicorn to start serving
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        sock.close()
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError, SystemExit):
            await task
        raise OSError(f"the order service did not start on {host}:{actual}")
    log.info("order service listening", extra={"fields": {"host": host, "port": actual}})
    return OrderService(server, task, host, actual)
