"""The demo's order-status service, over real HTTP on 127.0.0.1, and a flow looking an order up in it."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import yaml
from ivr_fakes import FakeChannel, FakeRouter

from hatif.ivr.model import Flow
from hatif.ivr.orders import DEMO_ORDERS, start_order_service
from hatif.ivr.runner import run_flow


def test_orders_in_each_language_and_404() -> None:
    async def go() -> list[tuple[int, object]]:
        service = await start_order_service("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
                out = []
                for path in ("/orders/1001", "/orders/1001?lang=ar", "/orders/1002?lang=fa", "/orders/1003?lang=xx",
                             "/orders/9999", "/nothing"):
                    r = await client.get(path)
                    out.append((r.status_code, r.json() if r.headers["content-type"] == "application/json" else None))
                return out
        finally:
            await service.stop()
    assert asyncio.run(asyncio.wait_for(go(), timeout=20)) == [
        (200, {"order": "1001", "status": DEMO_ORDERS["1001"]["en"]}),
        (200, {"order": "1001", "status": "تم شحنه، ويصل غدًا"}),
        (200, {"order": "1002", "status": "در حال آماده‌سازی است"}),
        (200, {"order": "1003", "status": "delivered"}),
        (404, {"error": "no such order", "order": "9999"}),
        (404, None),
    ]


def test_stop_frees_the_port_and_a_busy_port_is_an_error() -> None:
    async def go() -> None:
        service = await start_order_service("127.0.0.1", 0)
        port = service.port
        with pytest.raises(OSError):
            await start_order_service("127.0.0.1", port)
        await service.stop()
        with socket.create_server(("127.0.0.1", port)):  # the port is free again
            pass
        async with httpx.AsyncClient(timeout=2) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/orders/1001")
    asyncio.run(asyncio.wait_for(go(), timeout=20))


FLOW = """
start: ask
nodes:
  ask: {type: collect, prompt: {en: "Order number?", ar: "رقم الطلب؟"}, variable: order, max_digits: 6, next: lookup}
  lookup:
    type: http
    url: "URL/orders/{order}?lang={language}"
    extract: {status: status}
    say: {en: "Order {order} is {status}.", ar: "الطلب {order} {status}."}
    next: bye
    on_error: unknown
  unknown: {type: say, text: {en: "We could not find that order.", ar: "لم نجد هذا الطلب."}, next: bye}
  bye: {type: route, to: hangup}
"""


@pytest.mark.parametrize(("typed", "language", "heard"), [
    ("1001#", "ar", "الطلب 1001 تم شحنه، ويصل غدًا."),
    ("1003#", "en", "Order 1003 is delivered."),
    ("5555#", "en", "We could not find that order."),
])
def test_a_flow_looks_orders_up(typed: str, language: str, heard: str) -> None:
    async def go() -> FakeChannel:
        service = await start_order_service("127.0.0.1", 0)
        try:
            flow = Flow.model_validate(yaml.safe_load(FLOW.replace("URL", service.url)))
            ch = FakeChannel([typed], language=language)
            await run_flow(ch, {"main": flow}, "main", router=FakeRouter())
            return ch
        finally:
            await service.stop()
    ch = asyncio.run(asyncio.wait_for(go(), timeout=20))
    assert ch.said[-1] == (heard, language)
