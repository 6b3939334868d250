"""Fakes for the call shells' unit tests: a SIP port that keeps what was sent, a media leg that keeps what it
was asked, a call that keeps what its legs reported, and a host for `Call`. No socket, and a loop that is
never run unless a test runs it (timers are read off the leg, futures checked by hand)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatif.calls.call import Call, Conference
from hatif.calls.leg import LegContext, SipLeg
from hatif.sip.message import Request, Response, make_response, parse_message
from hatif.sip.transaction import (
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    DeliverResponse,
    ServerInviteTransaction,
    Timers,
)
from hatif.sip.transport import Peer
from hatif.sip.uri import URI

PEER = Peer("127.0.0.1", 5070, "udp")

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=%s\r\n")


def sdp(direction: str = "sendrecv") -> bytes:
    return SDP % direction.encode()


def invite(body: bytes = b"", call_id: str = "c1@test", method: str = "INVITE", cseq: int = 1,
           to_tag: str | None = None) -> Request:
    to = "<sip:1002@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (f"{method} sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}{cseq}\r\n"
            f"From: <sip:1001@127.0.0.1>;tag=a1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:1001@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n")
    if body:
        head += "Content-Type: application/sdp\r\n"
    message = parse_message(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert isinstance(message, Request)
    return message


class FakeTable:
    def __init__(self) -> None:
        self.removed: list[object] = []

    def remove(self, tx: object) -> None:
        self.removed.append(tx)


@dataclass
class Sent:
    request: Request
    on_event: Any


class FakeSip:
    """A `SipPort` that keeps every response, request, ACK and stateless send."""

    def __init__(self) -> None:
        self.transactions = FakeTable()
        self.responses: list[Response] = []
        self.requests: list[Sent] = []
        self.acks: list[Request] = []
        self.stateless: list[bytes] = []

    def respond(self, tx: object, response: Response) -> None:
        self.responses.append(response)

    def send_request(self, request: Request, peer: Peer, on_event: Any = None) -> object:
        if request.headers.get("Via") is None:
            request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{len(self.requests)}x",
                                first=True)
        self.requests.append(Sent(request, on_event))
        if request.method == "INVITE":
            return ClientInviteTransaction(request, False, Timers())
        return ClientNonInviteTransaction(request, False, Timers())

    def send_ack(self, ack: Request, peer: Peer) -> None:
        self.acks.append(ack)

    def send_stateless(self, message: object, peer: Peer) -> None:
        self.stateless.append(message if isinstance(message, bytes) else bytes(message))  # type: ignore[arg-type]

    def contact_uri(self, transport: str, user: str | None = None) -> URI:
        return URI("sip", "127.0.0.1", user, None, 5060)

    # -- what a test reads and feeds -------------------------------------------------------------------

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    @property
    def methods(self) -> list[str]:
        return [s.request.method for s in self.requests]

    def index_of(self, leg: SipLeg) -> int:
        """Which of the requests sent is `leg`'s INVITE."""
        return next(i for i, sent in enumerate(self.requests) if sent.request is leg.invite)

    def answer(self, index: int, status: int, body: bytes = b"", reason: str | None = None) -> None:
        """Feed the response `status` to request `index` (a 2xx carries a Contact and the callee's tag)."""
        sent = self.requests[index]
        extra = [("Contact", "<sip:callee@127.0.0.1:5070>")]
        if body:
            extra.append(("Content-Type", "application/sdp"))
        to_tag = sent.request.to.tag or ("callee" if status > 100 else None)
        response = make_response(sent.request, status, reason, to_tag, body, extra)
        action: Action = DeliverResponse(response)
        sent.on_event(action)


class FakeLatch:
    symmetric = True
    expected: tuple[str, int] | None = None


class FakeMedia:
    """What a leg asks of its media leg, kept."""

    def __init__(self) -> None:
        self.latch = FakeLatch()
        self.on_latch: Any = None
        self.local_port = 30000
        self.remote: tuple[str, int] | None = None
        self.payload_type = 0
        self.dtmf_pt: int | None = 101
        self.srtp: Any = None
        self.closed = False
        self.was_answered = False
        self.playing: str | None = None
        self.dropped_source = 0
        self.received = 0

    def set_remote(self, host: str, port: int, payload_type: int = 0, dtmf_pt: int | None = None) -> None:
        self.remote = (host, port)
        self.payload_type, self.dtmf_pt = payload_type, dtmf_pt

    def answered(self) -> None:
        self.was_answered = True

    def close(self) -> None:
        self.closed = True

    def stats(self) -> dict[str, int]:
        return {"received": 0, "relayed": 0, "sent": 0, "dropped_source": 0, "dropped_invalid": 0,
                "dropped_auth": 0}

    def play(self, samples: object, loop: bool = False, on_done: object = None) -> None:
        self.playing = f"{len(samples)}{'-loop' if loop else ''}"  # type: ignore[arg-type]

    def stop_playing(self) -> None:
        self.playing = None

    def listen_dtmf(self, on_digit: object) -> None:
        pass


class FakeListener:
    """A `LegListener` that keeps what its legs reported."""

    id = "call-1"

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.reports: list[str] = []
        self.refer_ok = True

    def emit(self, kind: str, leg: SipLeg | None = None, **data: object) -> None:
        self.events.append((kind, data))

    def on_leg_progress(self, leg: SipLeg) -> None:
        self.reports.append("progress")

    def on_leg_answered(self, leg: SipLeg) -> None:
        self.reports.append("answered")

    def on_leg_ended(self, leg: SipLeg) -> None:
        self.reports.append(f"ended:{leg.cause}")

    def on_remote_hold(self, leg: SipLeg, held: bool) -> None:
        self.reports.append(f"party_hold:{held}")

    def on_refer(self, leg: SipLeg, target: str) -> bool:
        self.reports.append(f"refer:{target}")
        return self.refer_ok

    def on_refresh_failed(self, leg: SipLeg, status: int) -> None:
        self.reports.append(f"refresh_failed:{status}")

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def context(sip: FakeSip, loop: asyncio.AbstractEventLoop) -> LegContext:
    return LegContext(sip, loop, "127.0.0.1", 1234, t1=0.5, t2=4.0)  # type: ignore[arg-type]


def inbound_leg(sip: FakeSip, loop: asyncio.AbstractEventLoop, call: Any, offer: bytes = b"") -> SipLeg:
    """The caller's leg, as call control makes it (its SDP answered when the INVITE had an offer)."""
    request = invite(offer or sdp())
    leg = SipLeg(context(sip, loop), call, "inbound", PEER, FakeMedia(), "1001", request, "hatif-tag")  # type: ignore[arg-type]
    leg.server_tx = ServerInviteTransaction(request, False, Timers())
    leg.answer_sdp(request.body)
    return leg


def outbound_leg(sip: FakeSip, loop: asyncio.AbstractEventLoop, call: Any, party: str = "2000",
                 call_id: str = "out1@hatif") -> SipLeg:
    """A leg Hatif places: an INVITE with our offer, sent."""
    request = invite(call_id=call_id)
    leg = SipLeg(context(sip, loop), call, "outbound", PEER, FakeMedia(), party, request, "a1")  # type: ignore[arg-type]
    request.body = leg.offer_sdp()
    return leg


@dataclass
class FakeEngine:
    bridges: list[tuple[object, object]] = field(default_factory=list)

    def bridge(self, a: object, b: object, path: Path | None = None) -> FakeBridge:
        self.bridges.append((a, b))
        return FakeBridge()


class FakeBridge:
    recorder = None
    closed = False

    def close(self) -> str | None:
        self.closed = True
        return None


class FakeHost:
    """A `CallHost`: places outbound legs through a `FakeSip`, keeps events, rooms and what ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sip: FakeSip) -> None:
        self.loop = loop
        self.sip = sip
        self.media = FakeEngine()
        self.prompts: Any = None
        self.record = False
        self.recordings = Path("/nonexistent")
        self.conferences: dict[tuple[str, str], Conference] = {}
        self.events: list[tuple[str, str | None, dict[str, object]]] = []
        self.detached: list[SipLeg] = []
        self.answered_callers: list[SipLeg] = []
        self.ended_calls: list[Call] = []
        self.refresh_failed: list[tuple[SipLeg, int]] = []
        self.placed = 0

    def emit(self, call: Call, kind: str, leg: SipLeg | None = None, **data: object) -> None:
        self.events.append((kind, leg.id if leg is not None else None, data))

    def dial(self, call: Call, target: str, *, timeout: float | None = None, caller_id: str | None = None,
             prefer: str | None = None) -> SipLeg | str:
        if target == "nobody":
            return "failed"
        self.placed += 1
        leg = outbound_leg(self.sip, self.loop, call, party=target, call_id=f"out{self.placed}@hatif")
        call.add_leg(leg)
        leg.send_invite(timeout or 30.0)
        return leg

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self.loop.create_task(coro)

    def conference(self, tenant: str, name: str) -> Conference:
        return self.conferences.setdefault((tenant, name), Conference(name, tenant))

    def remix(self, room: Conference) -> None:
        room.members = [leg for leg in room.members if not leg.ended]
        if not room.members:
            self.conferences.pop((room.tenant, room.name), None)

    def detach(self, leg: SipLeg) -> None:
        self.detached.append(leg)

    def caller_answered(self, leg: SipLeg) -> None:
        self.answered_callers.append(leg)

    def session_refresh_failed(self, leg: SipLeg, status: int) -> None:
        self.refresh_failed.append((leg, status))

    def call_ended(self, call: Call) -> None:
        self.ended_calls.append(call)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]
