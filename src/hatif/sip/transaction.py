"""SIP transactions, sans-IO (RFC 3261 §17, with the INVITE corrections of RFC 6026).

Four state machines, one per kind of transaction, each written as transition tables that can be held
against the RFC's figures: `(state, event) -> (next state, action)`. An event is a message (a response
class such as `"1xx"`, or a request method) or a timer name (`"A"` ... `"M"`). A pair that is not in a
table is absorbed: nothing happens and nothing reaches the TU, which is how retransmissions and late
messages die.

Nothing here owns a socket or reads a clock. Every method takes `now` (seconds, any monotonic origin)
and returns a list of actions for the shell: messages to send, responses or ACKs for the TU, a timeout,
and `Terminated` when the transaction is over. Timers are deadlines kept by the transaction; the shell
asks `next_deadline` and calls `fire(now)` when it is reached, or lets a `TransactionTable` do that for
tens of thousands of transactions with one heap.

A timer of zero seconds (D, I, J and K over reliable transports) runs at once, inside the call that
armed it: `receive`/`respond` then return `Terminated` directly.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar, cast

from ..errors import SipError
from .headers import Headers
from .message import Request, Response

log = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7

# State names as in the RFC figures (RFC 3261 Figures 5-8, RFC 6026 Figures 5 and 7).
CALLING = "calling"
TRYING = "trying"
PROCEEDING = "proceeding"
ACCEPTED = "accepted"
COMPLETED = "completed"
CONFIRMED = "confirmed"
TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class Timers:
    """The base timer values of RFC 3261 §17.1.1.1 and Table 4, in seconds."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # longest time a message stays in the network
    d: float = 32.0  # Timer D's floor over unreliable transports; tests shorten it with T1

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H and J (unreliable), and L and M of RFC 6026."""
        return 64 * self.t1

    @property
    def timer_d(self) -> float:
        """Timer D over an unreliable transport: "at least 32 seconds" (RFC 3261 §17.1.1.2)."""
        return max(self.d, 64 * self.t1)


# -- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Transmit `msg` to the transaction's peer."""

    msg: Request | Response


@dataclass(frozen=True, slots=True)
class DeliverResponse:
    """A client transaction passes a response up to its TU."""

    response: Response


@dataclass(frozen=True, slots=True)
class DeliverAck:
    """A server INVITE transaction in Accepted got an ACK for its 2xx (RFC 6026 §7.1): for the TU."""

    request: Request


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F (client) or H (server, no ACK) fired: the TU decides what follows (RFC 3261 §17)."""


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The shell could not send a message of this transaction (RFC 3261 §17.1.4, §17.2.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; a table drops it."""


Action = SendMessage | DeliverResponse | DeliverAck | TimedOut | TransportFailed | Terminated

_TIMED_OUT = TimedOut()
_TERMINATED = Terminated()


def new_branch() -> str:
    """A branch parameter unique in space and time, with the RFC 3261 magic cookie (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_urlsafe(12)


def response_event(status: int) -> str:
    """The event name of a response in the transition tables: "1xx", "2xx" or "300-699"."""
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "300-699"


# -- the machinery the four machines share ------------------------------------------------------------


class _Transaction(ABC):
    """Timers as named deadlines, state changes, and the link to the table that holds the transaction."""

    __slots__ = ("_deadlines", "_heap_at", "_heap_seq", "_interval", "_table", "_zero", "reliable", "request",
                 "state", "timers", "user_data")

    # The timers each state keeps: entering a state cancels every other one (read off the RFC figures).
    STATE_TIMERS: ClassVar[Mapping[str, frozenset[str]]]

    def __init__(self, request: Request, reliable: bool, timers: Timers, state: str) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = state
        self.user_data: object = None
        self._deadlines: dict[str, float] = {}
        self._interval = timers.t1  # the current retransmission interval of A, E or G
        self._zero: str | None = None  # a timer armed with zero seconds, to run right after this transition
        self._table: TransactionTable | None = None
        self._heap_seq = -1  # the table's heap entry that stands for this transaction
        self._heap_at: float | None = None

    @property
    def next_deadline(self) -> float | None:
        """The earliest armed timer, None when no timer is armed."""
        d = self._deadlines
        if not d:
            return None
        return min(d.values())

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def fire(self, now: float) -> list[Action]:
        """Run every timer due at `now`, earliest first."""
        due = sorted((at, name) for name, at in self._deadlines.items() if at <= now)
        out: list[Action] = []
        for at, name in due:
            if self._deadlines.get(name) != at:
                continue  # cancelled by the transition of an earlier timer
            del self._deadlines[name]
            out += self._on_timer(name, now)
            if self.state == TERMINATED:
                break
        return out

    def transport_failed(self, now: float) -> list[Action]:
        """The shell could not send this transaction's message: it ends, and the TU is told.

        RFC 3261 §17.1.4 and §17.2.4: in every state but Terminated, a transport error terminates the
        transaction and is reported to the TU (as a 503 would be for a client, §8.1.3.1).
        """
        if self.state == TERMINATED:
            return []
        self._enter(TERMINATED)
        return self._settle([TransportFailed()], now)

    @abstractmethod
    def _on_timer(self, name: str, now: float) -> list[Action]:
        """Run the transition this machine's timer table gives for timer `name` in the current state."""

    def _arm(self, name: str, delay: float, now: float) -> None:
        if delay <= 0:
            self._zero = name
            return
        at = now + delay
        self._deadlines[name] = at
        table = self._table
        if table is not None:
            table._schedule(self, at)

    def _enter(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._deadlines:
            keep = self.STATE_TIMERS.get(state, frozenset())
            for name in [n for n in self._deadlines if n not in keep]:
                del self._deadlines[name]

    def _settle(self, out: list[Action], now: float) -> list[Action]:
        """After a transition: run a zero-second timer it armed, or finish the transaction."""
        if self.state != TERMINATED and self._zero is not None:
            name, self._zero = self._zero, None
            out += self._on_timer(name, now)
        elif self.state == TERMINATED:
            self._deadlines.clear()
            self._zero = None
            out.append(_TERMINATED)
            table = self._table
            if table is not None:
                table._forget(self)
        return out


_Tx = TypeVar("_Tx", bound=_Transaction)
_Msg = TypeVar("_Msg", Request, Response)

# (state, event) -> (next state, action)
MessageTable = Mapping[tuple[str, str], tuple[str, Callable[[_Tx, _Msg, float], list[Action]]]]
TimerTable = Mapping[tuple[str, str], tuple[str, Callable[[_Tx, float], list[Action]]]]


def _run_message(tx: _Tx, table: MessageTable[_Tx, _Msg], event: str, msg: _Msg, now: float) -> list[Action]:
    entry = table.get((tx.state, event))
    if entry is None:
        return []
    next_state, action = entry
    tx._enter(next_state)
    return tx._settle(action(tx, msg, now), now)


def _run_timer(tx: _Tx, table: TimerTable[_Tx], name: str, now: float) -> list[Action]:
    entry = table.get((tx.state, name))
    if entry is None:
        return []
    next_state, action = entry
    tx._enter(next_state)
    return tx._settle(action(tx, now), now)


def _nothing(tx: _Transaction, now: float) -> list[Action]:
    return []


def _time_out(tx: _Transaction, now: float) -> list[Action]:
    return [_TIMED_OUT]


def client_key(msg: Request | Response) -> tuple[str, str]:
    """(branch of the top Via, CSeq method): how a response finds its client transaction (§17.1.3)."""
    branch = msg.top_via.branch
    if not branch:
        raise ValueError("top Via has no branch parameter (RFC 3261 §8.1.1.7)")
    return branch, msg.cseq.method


def server_key(request: Request) -> tuple[str, str, str]:
    """(branch, sent-by, method) of RFC 3261 §17.2.3, an ACK keyed as the INVITE it acknowledges.

    Only RFC 3261 branches are matched as such. A request whose branch lacks the magic cookie (an RFC
    2543 peer) gets a branch made of its own branch, Call-ID, From tag and CSeq number, so that two such
    requests never share a transaction while their retransmissions (and the ACK of a non-2xx) still do.
    """
    via = request.top_via
    branch = via.branch or ""
    if not branch.startswith(MAGIC_COOKIE):
        branch = f"{branch}|{request.call_id}|{request.from_.tag or ''}|{request.cseq.seq}"
    port = via.port or (5061 if via.transport in ("TLS", "WSS") else 5060)
    method = "INVITE" if request.method == "ACK" else request.method
    return branch, f"{via.host.lower()}:{port}", method


# -- client INVITE, RFC 3261 §17.1.1 and RFC 6026 §7.2 -------------------------------------------------


class ClientInviteTransaction(_Transaction):
    """Sends an INVITE and follows it to a final response (RFC 3261 Figure 5, RFC 6026 Figure 5).

    A 2xx moves to Accepted, where further 2xx (retransmissions, or forks) still reach the TU, which ACKs
    them itself (§13.2.2.4); Timer M ends it. A 300-699 is ACKed here (§17.1.1.3).
    """

    __slots__ = ("ack", "key", "last_response")

    STATE_TIMERS: ClassVar[Mapping[str, frozenset[str]]] = {
        CALLING: frozenset({"A", "B"}),
        ACCEPTED: frozenset({"M"}),
        COMPLETED: frozenset({"D"}),
    }

    def __init__(self, request: Request, reliable: bool, timers: Timers = Timers()) -> None:
        super().__init__(request, reliable, timers, CALLING)
        self.key: tuple[str, str] = client_key(request)
        self.ack: Request | None = None
        self.last_response: Response | None = None

    def start(self, now: float) -> list[Action]:
        """Send the INVITE; arm Timer A (unreliable transports) and Timer B (§17.1.1.2)."""
        if not self.reliable:
            self._arm("A", self.timers.t1, now)
        self._arm("B", self.timers.timeout, now)
        return [SendMessage(self.request)]

    def receive(self, response: Response, now: float) -> list[Action]:
        return _run_message(self, CLIENT_INVITE_ON_RESPONSE, response_event(response.status), response, now)

    def _on_timer(self, name: str, now: float) -> list[Action]:
        return _run_timer(self, CLIENT_INVITE_ON_TIMER, name, now)

    def make_ack(self, response: Response) -> Request:
        """The ACK for a 300-699 response (RFC 3261 §17.1.1.3)."""
        req = self.request
        h = req.headers
        items: list[tuple[str, str]] = []
        via = h.get("Via")
        if via is not None:
            items.append(("Via", via))
        items.append(("Max-Forwards", "70"))
        items.extend(("Route", r) for r in h.get_all("Route"))
        for name in ("From", "To", "Call-ID"):
            value = response.headers.get(name) if name == "To" else h.get(name)
            if value is not None:
                items.append((name, value))
        items.append(("CSeq", f"{req.cseq.seq} ACK"))
        return Request(Headers._trusted(items), b"", "ACK", req.uri)

    # actions
    def _deliver(self, response: Response, now: float) -> list[Action]:
        self.last_response = response
        return [DeliverResponse(response)]

    def _accept(self, response: Response, now: float) -> list[Action]:
        self._arm("M", self.timers.timeout, now)
        return self._deliver(response, now)

    def _reject(self, response: Response, now: float) -> list[Action]:
        self.ack = self.make_ack(response)
        self._arm("D", 0.0 if self.reliable else self.timers.timer_d, now)
        self.last_response = response
        return [SendMessage(self.ack), DeliverResponse(response)]

    def _resend_ack(self, response: Response, now: float) -> list[Action]:
        return [SendMessage(self.ack)] if self.ack is not None else []

    def _retransmit(self, now: float) -> list[Action]:
        self._interval *= 2
        self._arm("A", self._interval, now)
        return [SendMessage(self.request)]


_CI = ClientInviteTransaction
CLIENT_INVITE_ON_RESPONSE: MessageTable[ClientInviteTransaction, Response] = {
    (CALLING, "1xx"): (PROCEEDING, _CI._deliver),
    (CALLING, "2xx"): (ACCEPTED, _CI._accept),
    (CALLING, "300-699"): (COMPLETED, _CI._reject),
    (PROCEEDING, "1xx"): (PROCEEDING, _CI._deliver),
    (PROCEEDING, "2xx"): (ACCEPTED, _CI._accept),
    (PROCEEDING, "300-699"): (COMPLETED, _CI._reject),
    (ACCEPTED, "2xx"): (ACCEPTED, _CI._deliver),
    (COMPLETED, "300-699"): (COMPLETED, _CI._resend_ack),
}
CLIENT_INVITE_ON_TIMER: TimerTable[ClientInviteTransaction] = {
    (CALLING, "A"): (CALLING, _CI._retransmit),
    (CALLING, "B"): (TERMINATED, _time_out),
    (ACCEPTED, "M"): (TERMINATED, _nothing),
    (COMPLETED, "D"): (TERMINATED, _nothing),
}


# -- client non-INVITE, RFC 3261 §17.1.2 --------------------------------------------------------------


class ClientNonInviteTransaction(_Transaction):
    """Sends any request but INVITE and ACK and waits for its final response (RFC 3261 Figure 6)."""

    __slots__ = ("key", "last_response")

    STATE_TIMERS: ClassVar[Mapping[str, frozenset[str]]] = {
        TRYING: frozenset({"E", "F"}),
        PROCEEDING: frozenset({"E", "F"}),
        COMPLETED: frozenset({"K"}),
    }

    def __init__(self, request: Request, reliable: bool, timers: Timers = Timers()) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"a non-INVITE client transaction cannot send {request.method}")
        super().__init__(request, reliable, timers, TRYING)
        self.key: tuple[str, str] = client_key(request)
        self.last_response: Response | None = None

    def start(self, now: float) -> list[Action]:
        """Send the request; arm Timer E (unreliable transports) and Timer F (§17.1.2.2)."""
        if not self.reliable:
            self._arm("E", self.timers.t1, now)
        self._arm("F", self.timers.timeout, now)
        return [SendMessage(self.request)]

    def receive(self, response: Response, now: float) -> list[Action]:
        return _run_message(self, CLIENT_NON_INVITE_ON_RESPONSE, response_event(response.status), response, now)

    def _on_timer(self, name: str, now: float) -> list[Action]:
        return _run_timer(self, CLIENT_NON_INVITE_ON_TIMER, name, now)

    # actions
    def _deliver(self, response: Response, now: float) -> list[Action]:
        self.last_response = response
        return [DeliverResponse(response)]

    def _complete(self, response: Response, now: float) -> list[Action]:
        self._arm("K", 0.0 if self.reliable else self.timers.t4, now)
        return self._deliver(response, now)

    def _retransmit_trying(self, now: float) -> list[Action]:
        self._interval = min(2 * self._interval, self.timers.t2)
        self._arm("E", self._interval, now)
        return [SendMessage(self.request)]

    def _retransmit_proceeding(self, now: float) -> list[Action]:
        self._arm("E", self.timers.t2, now)
        return [SendMessage(self.request)]


_CN = ClientNonInviteTransaction
CLIENT_NON_INVITE_ON_RESPONSE: MessageTable[ClientNonInviteTransaction, Response] = {
    (TRYING, "1xx"): (PROCEEDING, _CN._deliver),
    (TRYING, "2xx"): (COMPLETED, _CN._complete),
    (TRYING, "300-699"): (COMPLETED, _CN._complete),
    (PROCEEDING, "1xx"): (PROCEEDING, _CN._deliver),
    (PROCEEDING, "2xx"): (COMPLETED, _CN._complete),
    (PROCEEDING, "300-699"): (COMPLETED, _CN._complete),
}
CLIENT_NON_INVITE_ON_TIMER: TimerTable[ClientNonInviteTransaction] = {
    (TRYING, "E"): (TRYING, _CN._retransmit_trying),
    (TRYING, "F"): (TERMINATED, _time_out),
    (PROCEEDING, "E"): (PROCEEDING, _CN._retransmit_proceeding),
    (PROCEEDING, "F"): (TERMINATED, _time_out),
    (COMPLETED, "K"): (TERMINATED, _nothing),
}


# -- server INVITE, RFC 3261 §17.2.1 and RFC 6026 §7.1 -------------------------------------------------


class _ServerTransaction(_Transaction):
    """What both server transactions share: the key, the last response sent, and sending it."""

    __slots__ = ("key", "last_response")

    def __init__(self, request: Request, reliable: bool, timers: Timers, state: str) -> None:
        super().__init__(request, reliable, timers, state)
        self.key: tuple[str, str, str] = server_key(request)
        self.last_response: Response | None = None

    def start(self, now: float) -> list[Action]:
        """Nothing to send: the TU answers (and sends 100 Trying for an INVITE itself)."""
        return []

    def _send(self, response: Response, now: float) -> list[Action]:
        self.last_response = response
        return [SendMessage(response)]

    def _resend_last(self, request: Request, now: float) -> list[Action]:
        return [SendMessage(self.last_response)] if self.last_response is not None else []

    def _check_respond(self, response: Response) -> None:
        if response.status < 100 or response.status > 699:
            raise ValueError(f"status {response.status} is not a SIP response code")


class ServerInviteTransaction(_ServerTransaction):
    """Answers an INVITE (RFC 3261 Figure 7, RFC 6026 Figure 7).

    A 300-699 is retransmitted here (Timer G) until its ACK comes (Confirmed, Timer I) or Timer H gives
    up. A 2xx moves to Accepted: the TU retransmits it (through `respond`), retransmitted INVITEs are
    absorbed, and an ACK that matches this transaction is passed up as `DeliverAck`; Timer L ends it.
    """

    __slots__ = ()

    STATE_TIMERS: ClassVar[Mapping[str, frozenset[str]]] = {
        COMPLETED: frozenset({"G", "H"}),
        CONFIRMED: frozenset({"I"}),
        ACCEPTED: frozenset({"L"}),
    }

    def __init__(self, request: Request, reliable: bool, timers: Timers = Timers()) -> None:
        if request.method != "INVITE":
            raise ValueError(f"a server INVITE transaction cannot be created by {request.method}")
        super().__init__(request, reliable, timers, PROCEEDING)

    def respond(self, response: Response, now: float) -> list[Action]:
        """The TU sends a response; one the state does not allow is discarded (§17.2.1)."""
        self._check_respond(response)
        out = _run_message(self, SERVER_INVITE_ON_RESPOND, response_event(response.status), response, now)
        if not out:
            log.debug("response %d discarded by INVITE transaction in %s", response.status, self.state)
        return out

    def receive(self, request: Request, now: float) -> list[Action]:
        """A retransmitted INVITE, or an ACK, matched to this transaction by the table."""
        return _run_message(self, SERVER_INVITE_ON_REQUEST, request.method, request, now)

    def _on_timer(self, name: str, now: float) -> list[Action]:
        return _run_timer(self, SERVER_INVITE_ON_TIMER, name, now)

    # actions
    def _send_2xx(self, response: Response, now: float) -> list[Action]:
        self._arm("L", self.timers.timeout, now)
        return self._send(response, now)

    def _send_final(self, response: Response, now: float) -> list[Action]:
        if not self.reliable:
            self._arm("G", self.timers.t1, now)
        self._arm("H", self.timers.timeout, now)
        return self._send(response, now)

    def _confirm(self, request: Request, now: float) -> list[Action]:
        self._arm("I", 0.0 if self.reliable else self.timers.t4, now)
        return []

    def _deliver_ack(self, request: Request, now: float) -> list[Action]:
        return [DeliverAck(request)]

    def _retransmit(self, now: float) -> list[Action]:
        self._interval = min(2 * self._interval, self.timers.t2)
        self._arm("G", self._interval, now)
        return [SendMessage(self.last_response)] if self.last_response is not None else []


_SI = ServerInviteTransaction
SERVER_INVITE_ON_REQUEST: MessageTable[ServerInviteTransaction, Request] = {
    (PROCEEDING, "INVITE"): (PROCEEDING, _SI._resend_last),
    (COMPLETED, "INVITE"): (COMPLETED, _SI._resend_last),
    (COMPLETED, "ACK"): (CONFIRMED, _SI._confirm),
    (ACCEPTED, "ACK"): (ACCEPTED, _SI._deliver_ack),
}
SERVER_INVITE_ON_RESPOND: MessageTable[ServerInviteTransaction, Response] = {
    (PROCEEDING, "1xx"): (PROCEEDING, _SI._send),
    (PROCEEDING, "2xx"): (ACCEPTED, _SI._send_2xx),
    (PROCEEDING, "300-699"): (COMPLETED, _SI._send_final),
    (ACCEPTED, "2xx"): (ACCEPTED, _SI._send),
}
SERVER_INVITE_ON_TIMER: TimerTable[ServerInviteTransaction] = {
    (COMPLETED, "G"): (COMPLETED, _SI._retransmit),
    (COMPLETED, "H"): (TERMINATED, _time_out),
    (CONFIRMED, "I"): (TERMINATED, _nothing),
    (ACCEPTED, "L"): (TERMINATED, _nothing),
}


# -- server non-INVITE, RFC 3261 §17.2.2 --------------------------------------------------------------


class ServerNonInviteTransaction(_ServerTransaction):
    """Answers any request but INVITE and ACK (RFC 3261 Figure 8)."""

    __slots__ = ()

    STATE_TIMERS: ClassVar[Mapping[str, frozenset[str]]] = {COMPLETED: frozenset({"J"})}

    def __init__(self, request: Request, reliable: bool, timers: Timers = Timers()) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"a non-INVITE server transaction cannot be created by {request.method}")
        super().__init__(request, reliable, timers, TRYING)

    def respond(self, response: Response, now: float) -> list[Action]:
        """The TU sends a response; after the final one, others are discarded (§17.2.2)."""
        self._check_respond(response)
        out = _run_message(self, SERVER_NON_INVITE_ON_RESPOND, response_event(response.status), response, now)
        if not out:
            log.debug("response %d discarded by %s transaction in %s", response.status, self.request.method,
                      self.state)
        return out

    def receive(self, request: Request, now: float) -> list[Action]:
        """A retransmission of the request, matched to this transaction by the table."""
        return _run_message(self, SERVER_NON_INVITE_ON_REQUEST, "request", request, now)

    def _on_timer(self, name: str, now: float) -> list[Action]:
        return _run_timer(self, SERVER_NON_INVITE_ON_TIMER, name, now)

    def _send_final(self, response: Response, now: float) -> list[Action]:
        self._arm("J", 0.0 if self.reliable else self.timers.timeout, now)
        return self._send(response, now)


_SN = ServerNonInviteTransaction
SERVER_NON_INVITE_ON_REQUEST: MessageTable[ServerNonInviteTransaction, Request] = {
    (PROCEEDING, "request"): (PROCEEDING, _SN._resend_last),
    (COMPLETED, "request"): (COMPLETED, _SN._resend_last),
}
SERVER_NON_INVITE_ON_RESPOND: MessageTable[ServerNonInviteTransaction, Response] = {
    (TRYING, "1xx"): (PROCEEDING, _SN._send),
    (TRYING, "2xx"): (COMPLETED, _SN._send_final),
    (TRYING, "300-699"): (COMPLETED, _SN._send_final),
    (PROCEEDING, "1xx"): (PROCEEDING, _SN._send),
    (PROCEEDING, "2xx"): (COMPLETED, _SN._send_final),
    (PROCEEDING, "300-699"): (COMPLETED, _SN._send_final),
}
SERVER_NON_INVITE_ON_TIMER: TimerTable[ServerNonInviteTransaction] = {
    (COMPLETED, "J"): (TERMINATED, _nothing),
}

ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction
ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction
Transaction = ClientTransaction | ServerTransaction


# -- the table ----------------------------------------------------------------------------------------


class TableFull(SipError):
    """The transaction table holds `max_transactions` already: the shell answers 503 statelessly."""


class TransactionTable:
    """Every live transaction, matched in O(1) by key, and one heap of their deadlines.

    The heap holds at most one live entry per transaction (`_heap_seq`); entries left behind by
    cancelled timers or ended transactions are skipped when they surface, and the heap is rebuilt
    when they outnumber the live ones.

    An ACK for a 2xx carries a new branch (RFC 3261 §13.2.2.4), so it matches no transaction and goes
    to the TU (dialog layer). Only an ACK that reuses the INVITE's branch matches the INVITE server
    transaction; in Accepted that gives `DeliverAck` (RFC 6026 §7.1), so the TU gets it either way.

    `max_transactions` bounds what others can make us hold: `add_server` refuses past it. Client
    transactions are ours, bounded by the calls we place, and are always accepted.
    """

    def __init__(self, timers: Timers = Timers(), max_transactions: int = 100_000) -> None:
        self.timers = timers
        self.max_transactions = max_transactions
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, str, str], ServerTransaction] = {}
        self._heap: list[tuple[float, int, _Transaction]] = []
        self._seq = itertools.count()
        self._stale = 0

    def client_for(self, request: Request, reliable: bool) -> ClientTransaction:
        """A new client transaction of the right kind for `request`, with this table's timers."""
        if request.method == "INVITE":
            return ClientInviteTransaction(request, reliable, self.timers)
        return ClientNonInviteTransaction(request, reliable, self.timers)

    def server_for(self, request: Request, reliable: bool) -> ServerTransaction:
        """A new server transaction of the right kind for `request`, with this table's timers."""
        if request.method == "INVITE":
            return ServerInviteTransaction(request, reliable, self.timers)
        return ServerNonInviteTransaction(request, reliable, self.timers)

    def add_client(self, tx: ClientTransaction, now: float) -> list[Action]:
        """Register a client transaction and start it (its request goes out)."""
        if tx.key in self._clients:
            raise ValueError(f"a client transaction with branch {tx.key[0]} and method {tx.key[1]} exists")
        self._clients[tx.key] = tx
        tx._table = self
        return tx.start(now)

    def add_server(self, tx: ServerTransaction, now: float) -> list[Action]:
        """Register a server transaction; `TableFull` when `max_transactions` are held."""
        if len(self) >= self.max_transactions:
            raise TableFull(f"transaction table full ({self.max_transactions} transactions)")
        if tx.key in self._servers:
            raise ValueError(f"a server transaction with key {tx.key} exists")
        self._servers[tx.key] = tx
        tx._table = self
        return tx.start(now)

    def match_response(self, response: Response) -> ClientTransaction | None:
        """The client transaction a response belongs to (RFC 3261 §17.1.3)."""
        branch = response.top_via.branch
        if not branch:
            return None
        return self._clients.get((branch, response.cseq.method))

    def match_request(self, request: Request) -> ServerTransaction | None:
        """The server transaction of a retransmitted request, or of an ACK that shares the INVITE's branch.

        RFC 3261 §17.2.3; see the class docstring for the ACK of a 2xx.
        """
        tx = self._servers.get(server_key(request))
        if request.method == "ACK" and not isinstance(tx, ServerInviteTransaction):
            return None
        return tx

    def has_server(self, key: tuple[str, str, str]) -> bool:
        """Whether a server transaction with this (branch, sent-by, method) key is held (admission control
        asks before it refuses a request it read as raw bytes, so a retransmission is never refused)."""
        return key in self._servers

    def match_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """The INVITE server transaction a CANCEL targets: same branch and sent-by (RFC 3261 §9.2)."""
        branch, sent_by, _ = server_key(cancel)
        tx = self._servers.get((branch, sent_by, "INVITE"))
        return tx if isinstance(tx, ServerInviteTransaction) else None

    def remove(self, tx: Transaction) -> None:
        """Drop a transaction; its timers never fire again. Safe to call twice."""
        self._forget(tx)

    def _forget(self, tx: _Transaction) -> None:
        if tx._table is not self:
            return
        tx._table = None
        if tx._heap_seq >= 0:
            self._stale += 1
            tx._heap_seq = -1
            tx._heap_at = None
        if isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        elif isinstance(tx, _ServerTransaction) and self._servers.get(tx.key) is tx:
            del self._servers[tx.key]

    def _schedule(self, tx: _Transaction, at: float) -> None:
        """Called by a transaction that armed a timer at `at`: make sure the heap wakes it by then."""
        if tx._heap_at is not None and tx._heap_at <= at:
            return
        if tx._heap_seq >= 0:
            self._stale += 1
        seq = next(self._seq)
        tx._heap_seq = seq
        tx._heap_at = at
        heapq.heappush(self._heap, (at, seq, tx))
        if self._stale > 1024 and self._stale > len(self._heap) // 2:
            self._compact()

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2]._table is self and e[2]._heap_seq == e[1]]
        heapq.heapify(self._heap)
        self._stale = 0

    def fire_due(self, now: float) -> list[tuple[Transaction, list[Action]]]:
        """Run every timer due at `now`, transactions in deadline order; those that did something."""
        out: list[tuple[Transaction, list[Action]]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, tx = heapq.heappop(heap)
            if tx._table is not self or tx._heap_seq != seq:
                self._stale = max(0, self._stale - 1)
                continue
            tx._heap_seq = -1
            tx._heap_at = None
            actions = tx.fire(now)
            if tx._table is self:
                deadline = tx.next_deadline
                if deadline is not None:
                    self._schedule(tx, deadline)
            if actions:
                out.append((cast(Transaction, tx), actions))
            heap = self._heap  # a compaction may have replaced it
        return out

    def next_deadline(self) -> float | None:
        """The earliest deadline of any transaction, None when no timer is armed."""
        heap = self._heap
        while heap:
            at, seq, tx = heap[0]
            if tx._table is not self or tx._heap_seq != seq:
                heapq.heappop(heap)
                self._stale = max(0, self._stale - 1)
                continue
            deadline = tx.next_deadline
            if deadline is not None and deadline <= at:
                return at
            # The timer this entry was for was cancelled: move the entry to the real deadline, if any.
            heapq.heappop(heap)
            tx._heap_seq = -1
            tx._heap_at = None
            if deadline is not None:
                self._schedule(tx, deadline)
                heap = self._heap
        return None

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def counts(self) -> dict[str, int]:
        """Live transactions by class name, for tests and stats."""
        c: Counter[str] = Counter(type(tx).__name__ for tx in self._clients.values())
        c.update(type(tx).__name__ for tx in self._servers.values())
        return dict(c)
