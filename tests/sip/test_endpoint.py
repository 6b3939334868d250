"""The SIP endpoint shell (`hatif.sip.endpoint`): two endpoints on loopback, tiny timers, bounded waits."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from hatif.sip import Request, Response, make_response, parse_message
from hatif.sip.endpoint import ServerTx, SipEndpoint
from hatif.sip.headers import Headers
from hatif.sip.transaction import Action, DeliverResponse, TimedOut, Timers
from hatif.sip.transport import Peer
from hatif.sip.uri import URI

FAST = Timers(t1=0.01, t2=0.04, t4=0.05, d=0.1)


class Recorder(SipEndpoint):
    """An endpoint that answers every request 200 (or with `status`) and notes what reached its TU."""

    def __init__(self, loop: asyncio.AbstractEventLoop, status: int | None = 200, max_transactions: int = 100) -> None:
        super().__init__(loop, timers=FAST, max_transactions=max_transactions, signature=("User-Agent", "test"))
        self.status = status
        self.requests: list[Request] = []
        self.acks: list[Request] = []
        self.strays: list[Response] = []

    def on_request(self, request: Request, tx: ServerTx, peer: Peer) -> None:
        self.requests.append(request)
        if self.status is not None:
            self.respond(tx, make_response(request, self.status, to_tag="t1"))

    def on_ack(self, request: Request, peer: Peer) -> None:
        self.acks.append(request)

    def on_stray(self, response: Response) -> None:
        self.strays.append(response)


def options(call_id: str = "c1@test", method: str = "OPTIONS") -> Request:
    headers = Headers([("From", "<sip:a@127.0.0.1>;tag=f1"), ("To", "<sip:b@127.0.0.1>"), ("Call-ID", call_id),
                       ("CSeq", f"1 {method}"), ("Content-Length", "0")])
    return Request(headers, b"", method, URI("sip", "127.0.0.1", "b"))


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)


def run(body: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(asyncio.get_running_loop())
    asyncio.run(asyncio.wait_for(main(), 10.0))


async def pair(loop: asyncio.AbstractEventLoop, status: int | None = 200) -> tuple[Recorder, Recorder, Peer]:
    a, b = Recorder(loop), Recorder(loop, status)
    await a.listen("udp", "127.0.0.1", 0)
    host, port = await b.listen("udp", "127.0.0.1", 0)
    return a, b, Peer("udp", host, port)


def test_a_request_and_its_response_go_through_both_transaction_tables() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        a, b, to_b = await pair(loop)
        got: list[Action] = []
        a.send_request(options(), to_b, got.append)
        await until(lambda: any(isinstance(x, DeliverResponse) for x in got))
        response = next(x.response for x in got if isinstance(x, DeliverResponse))
        assert response.status == 200 and response.headers.get("User-Agent") == "test"
        assert [r.method for r in b.requests] == ["OPTIONS"]
        via = b.requests[0].top_via
        assert via.branch.startswith("z9hG4bK") and via.param("rport") is not None
        assert b.requests[0].headers.get("Max-Forwards") == "70"
        await until(lambda: len(a.transactions) == 0 and len(b.transactions) == 0)  # Timers K and J, tiny
        a.close()
        b.close()
    run(body)


def test_a_retransmission_is_absorbed_and_answered_again() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        _, b, to_b = await pair(loop)
        request = options()
        request.headers.add("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKretx;rport", first=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            for _ in range(2):
                await loop.sock_sendto(s, bytes(request), to_b.addr)
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 65535), 2.0)
                reply = parse_message(data)
                assert isinstance(reply, Response) and reply.status == 200
        assert len(b.requests) == 1  # the TU saw it once
        b.close()
    run(body)


def test_no_answer_times_out_and_the_timer_empties_the_table() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        a, _, to_b = await pair(loop, status=None)  # b never answers
        got: list[Action] = []
        a.send_request(options(), to_b, got.append)
        assert a.timer.armed_at is not None
        await until(lambda: any(isinstance(x, TimedOut) for x in got))  # Timer F, 64*T1
        assert len(a.transactions) == 0 and a.timer.armed_at is None
        a.close()
    run(body)


def test_acks_strays_and_the_default_tu() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        a, b, to_b = await pair(loop)
        ack = options("c2@test", "ACK")
        ack.headers.add("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKack;rport", first=True)
        a.send_stateless(ack, to_b)
        stray = make_response(options("c3@test"), 200, to_tag="x")
        stray.headers.add("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnone", first=True)
        a.send_stateless(stray, to_b)
        await until(lambda: bool(b.acks) and bool(b.strays))
        assert b.requests == []

        plain = SipEndpoint(loop, timers=FAST, max_transactions=10, signature=("Server", "plain"))
        host, port = await plain.listen("udp", "127.0.0.1", 0)
        got: list[Action] = []
        a.send_request(options("c4@test", "MESSAGE"), Peer("udp", host, port), got.append)
        await until(lambda: any(isinstance(x, DeliverResponse) for x in got))
        response = next(x.response for x in got if isinstance(x, DeliverResponse))
        assert response.status == 501 and response.headers.get("Server") == "plain"
        for endpoint in (a, b, plain):
            endpoint.close()
    run(body)


def test_a_full_table_answers_503_statelessly() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        a = Recorder(loop)
        b = Recorder(loop, status=None, max_transactions=1)
        await a.listen("udp", "127.0.0.1", 0)
        host, port = await b.listen("udp", "127.0.0.1", 0)
        first: list[Action] = []
        second: list[Action] = []
        a.send_request(options("c5@test"), Peer("udp", host, port), first.append)
        await until(lambda: len(b.requests) == 1)
        a.send_request(options("c6@test"), Peer("udp", host, port), second.append)
        await until(lambda: any(isinstance(x, DeliverResponse) for x in second))
        response = next(x.response for x in second if isinstance(x, DeliverResponse))
        assert response.status == 503 and len(b.requests) == 1
        a.close()
        b.close()
    run(body)
