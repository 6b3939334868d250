"""SIP dialogs, sans-IO (RFC 3261 §12), and the CANCEL that goes with an INVITE (§9.1).

A `Dialog` is the state two user agents share after an INVITE is answered (or provisionally answered
with a tag): the identifiers, both sequence numbers, the remote target and the route set. It builds the
requests sent inside it (§12.2.1.1) and checks the ones received (§12.2.2). Its lifecycle is a small
table: early -> confirmed on a 2xx, and to terminated on BYE, on a failure of the INVITE that created
an early dialog, or on 481/408 to a request inside it.

It neither sends nor times anything: the transaction layer and the shell do.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..errors import SipError
from .errors import ParseError
from .headers import Headers, NameAddr, Via
from .message import Request, Response, make_response
from .transaction import new_branch
from .uri import URI

log = logging.getLogger(__name__)

EARLY = "early"
CONFIRMED = "confirmed"
TERMINATED = "terminated"

# Requests that may change the remote target (RFC 3261 §12.2, RFC 3311 for UPDATE).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})
# Requests that take no new CSeq number of their own (§12.2.1.1, §9.1, §13.2.2.4).
NO_NEW_CSEQ = frozenset({"ACK", "CANCEL"})
# Requests in which Contact is "not applicable" (RFC 3261 §20, Table 3).
NO_CONTACT = frozenset({"BYE", "CANCEL"})

# How a response to a request inside a dialog moves the dialog: (state, what) -> next state.
# `what` is "2xx-invite" (a 2xx to an INVITE), "fail-invite" (300-699 to an INVITE), or "481/408".
RESPONSE_TRANSITIONS: dict[tuple[str, str], str] = {
    (EARLY, "2xx-invite"): CONFIRMED,  # §13.2.2.4
    (EARLY, "fail-invite"): TERMINATED,  # §12.3: a non-2xx final ends the early dialog
    (EARLY, "481/408"): TERMINATED,  # §12.2.1.2
    (CONFIRMED, "2xx-invite"): CONFIRMED,  # a re-INVITE's 2xx: target refresh only
    (CONFIRMED, "481/408"): TERMINATED,  # §12.2.1.2
}


def new_tag() -> str:
    """A From or To tag: 64 random bits (RFC 3261 §19.3 asks for at least 32)."""
    return secrets.token_hex(8)


def _without_tag(addr: NameAddr) -> NameAddr:
    return replace(addr, params=tuple(p for p in addr.params if p[0].lower() != "tag"), bracketed=True)


def _route_set(values: list[str], name: str) -> list[NameAddr]:
    out = []
    for value in values:
        addr = NameAddr.parse(value)
        if addr.uri is None:
            raise ParseError(f"bad {name} value {value[:60]!r}")
        out.append(addr)
    return out


def _contact_uri(msg: Request | Response, fallback: URI) -> URI:
    """The URI of the first Contact, or `fallback` for a peer that sent none (RFC 3261 §12.1 asks for one)."""
    value = msg.headers.get("Contact")
    if value is None:
        return fallback
    uri = NameAddr.parse(value).uri
    return uri if uri is not None else fallback


@dataclass(slots=True, eq=False)
class Dialog:
    """One dialog, as one of its two user agents sees it (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_seq: int
    remote_seq: int | None
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: URI
    route_set: list[NameAddr] = field(default_factory=list)
    secure: bool = False
    state: str = EARLY
    local_contact: NameAddr | None = None
    user_data: object = None

    @classmethod
    def uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog a 101-299 response with a To tag creates at the UAC (RFC 3261 §12.1.2).

        The route set is the response's Record-Route in reverse order; the remote target its Contact.
        `ParseError` when the request or the response lacks what a dialog needs.
        """
        local_tag = request.from_.tag
        if not local_tag:
            raise ParseError("request creating a dialog has no From tag")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=response.to.tag,
            local_seq=request.cseq.seq,
            remote_seq=None,
            local_uri=_without_tag(request.from_),
            remote_uri=_without_tag(request.to),
            remote_target=_contact_uri(response, request.uri),
            route_set=_route_set(response.headers.get_all("Record-Route"), "Record-Route")[::-1],
            secure=request.uri.scheme == "sips",
            state=CONFIRMED if 200 <= response.status < 300 else EARLY,
        )

    @classmethod
    def uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog a UAS creates when it answers `request` with To tag `local_tag` (RFC 3261 §12.1.1).

        The route set is the request's Record-Route in order; the remote target its Contact. The dialog
        starts early: `response_sent` confirms it with the 2xx.
        """
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_seq=0,
            remote_seq=request.cseq.seq,
            local_uri=_without_tag(request.to),
            remote_uri=_without_tag(request.from_),
            remote_target=_contact_uri(request, request.uri),
            route_set=_route_set(request.headers.get_all("Record-Route"), "Record-Route"),
            secure=request.uri.scheme == "sips",
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """The dialog ID (RFC 3261 §12): Call-ID, local tag, remote tag ("" when the peer gave none)."""
        return self.call_id, self.local_tag, self.remote_tag or ""

    # -- sending (RFC 3261 §12.2.1.1) ------------------------------------------------------------------

    def request_uri_and_routes(self) -> tuple[URI, list[NameAddr]]:
        """Where a request inside the dialog goes: its Request-URI and Route headers (§12.2.1.1).

        A loose router first in the route set (`;lr`) leaves the remote target in the Request-URI. A
        strict router gets its URI there instead, and the remote target goes last in the Route set.
        """
        routes = self.route_set
        if not routes:
            return self.remote_target, []
        first = routes[0].uri
        assert first is not None  # _route_set refuses entries without a URI
        if first.has_param("lr"):
            return self.remote_target, list(routes)
        # Parameters not allowed in a Request-URI (§19.1.1 Table 1): method, and any URI headers.
        strict_uri = replace(first.without_params("method"), headers=())
        return strict_uri, [*routes[1:], NameAddr(self.remote_target)]

    def create_request(self, method: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                       via: Via | None = None) -> Request:
        """A request inside this dialog (RFC 3261 §12.2.1.1).

        The local CSeq goes up by one (not for ACK or CANCEL). `via`, when given, is a template: its
        transport, host, port and parameters are used with a new branch. Without it the shell puts the
        Via on. `headers` are added after the dialog's own.
        """
        if method not in NO_NEW_CSEQ:
            self.local_seq += 1
        return self._build(method, self.local_seq, body, headers, via)

    def create_ack(self, invite: Request, body: bytes = b"") -> Request:
        """The ACK for a 2xx to `invite` (RFC 3261 §13.2.2.4): a new transaction, new branch.

        The CSeq number is the INVITE's; the credentials of the INVITE are carried over. When the INVITE
        has a Via, the ACK gets the same one with a new branch.
        """
        extra = [(n, v) for n, v in invite.headers if n in ("Authorization", "Proxy-Authorization")]
        if body:
            ctype = invite.headers.get("Content-Type") or "application/sdp"
            extra.append(("Content-Type", ctype))
        via_value = invite.headers.get("Via")
        template = Via.parse(via_value) if via_value is not None else None
        return self._build("ACK", invite.cseq.seq, body, extra, template)

    def _build(self, method: str, seq: int, body: bytes, headers: list[tuple[str, str]] | None,
               via: Via | None) -> Request:
        uri, routes = self.request_uri_and_routes()
        items: list[tuple[str, str]] = []
        if via is not None:
            params = (("branch", new_branch()), *(p for p in via.params if p[0].lower() != "branch"))
            items.append(("Via", str(Via(via.transport, via.host, via.port, params))))
        items.append(("Max-Forwards", "70"))
        items.extend(("Route", str(r)) for r in routes)
        items.append(("From", str(self.local_uri.with_param("tag", self.local_tag))))
        to = self.remote_uri if self.remote_tag is None else self.remote_uri.with_param("tag", self.remote_tag)
        items.append(("To", str(to)))
        items.append(("Call-ID", self.call_id))
        items.append(("CSeq", f"{seq} {method}"))
        if self.local_contact is not None and method not in NO_CONTACT:
            items.append(("Contact", str(self.local_contact)))
        request = Request(Headers._trusted(items), body, method, uri)
        for name, value in headers or ():
            request.headers.add(name, value)
        return request

    # -- receiving ------------------------------------------------------------------------------------

    def receive_request(self, request: Request) -> Response | None:
        """Check a request received inside the dialog (RFC 3261 §12.2.2).

        Returns a 500 to send when its CSeq is lower than the remote sequence number (out of order), else
        None after updating the dialog: the remote sequence number, the remote target for a target
        refresh with a Contact, and the state for a BYE. An ACK is never refused.
        """
        if request.method == "ACK":
            return None
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return make_response(request, 500, f"Server Internal Error: CSeq {seq} lower than {self.remote_seq}")
        if request.method != "CANCEL":
            self.remote_seq = seq
        if request.method in TARGET_REFRESH:
            self.remote_target = _contact_uri(request, self.remote_target)
        elif request.method == "BYE":
            self.state = TERMINATED
        return None

    def receive_response(self, response: Response) -> None:
        """Update the dialog from a response to a request sent in it, or to the INVITE that made it.

        A 2xx to an INVITE confirms an early dialog and recomputes its route set (§13.2.2.4), and
        refreshes the remote target (§12.2.1.2); a 481 or 408 ends the dialog (§12.2.1.2), and a failure
        of the INVITE ends an early one (§12.3). A response from another fork (another To tag) is ignored.
        """
        tag = response.to.tag
        if self.remote_tag is not None and tag is not None and tag != self.remote_tag:
            return
        status = response.status
        method = response.cseq.method
        if status in (481, 408) and method != "CANCEL":
            what = "481/408"
        elif method == "INVITE" and 200 <= status < 300:
            what = "2xx-invite"
        elif method == "INVITE" and status >= 300:
            what = "fail-invite"
        else:
            if method == "UPDATE" and 200 <= status < 300:
                self.remote_target = _contact_uri(response, self.remote_target)
            return
        next_state = RESPONSE_TRANSITIONS.get((self.state, what))
        if next_state is None:
            return
        if what == "2xx-invite":
            if self.state == EARLY:
                rr = response.headers.get_all("Record-Route")
                self.route_set = _route_set(rr, "Record-Route")[::-1]
            self.remote_target = _contact_uri(response, self.remote_target)
        self.state = next_state

    def response_sent(self, response: Response) -> None:
        """The UAS answered the INVITE that created this dialog: a 2xx confirms it, a failure ends it."""
        if self.state != EARLY or response.cseq.method != "INVITE" or response.status < 200:
            return
        self.state = CONFIRMED if response.status < 300 else TERMINATED


def make_cancel(invite: Request) -> Request:
    """The CANCEL of a pending INVITE (RFC 3261 §9.1).

    Same Request-URI, Call-ID, From, To and CSeq number (method CANCEL), only the INVITE's top Via (so
    it reaches the same server transaction), the INVITE's Route headers, Max-Forwards 70, no body.
    """
    h = invite.headers
    items: list[tuple[str, str]] = []
    via = h.get("Via")
    if via is None:
        raise ValueError("cannot CANCEL an INVITE that was not sent: it has no Via")
    items.append(("Via", via))
    items.append(("Max-Forwards", "70"))
    items.extend(("Route", r) for r in h.get_all("Route"))
    for name in ("From", "To", "Call-ID"):
        value = h.get(name)
        if value is not None:
            items.append((name, value))
    items.append(("CSeq", f"{invite.cseq.seq} CANCEL"))
    return Request(Headers._trusted(items), b"", "CANCEL", invite.uri)


class DialogTableFull(SipError):
    """The dialog table holds `max_dialogs` already."""


class DialogTable:
    """Dialogs by ID, bounded; found from a request or a response in O(1)."""

    def __init__(self, max_dialogs: int = 50_000) -> None:
        self.max_dialogs = max_dialogs
        self._dialogs: dict[tuple[str, str, str], Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Hold a dialog; `DialogTableFull` past `max_dialogs`, ValueError when its ID is taken."""
        if dialog.key in self._dialogs:
            raise ValueError(f"a dialog with ID {dialog.key} exists")
        if len(self._dialogs) >= self.max_dialogs:
            raise DialogTableFull(f"dialog table full ({self.max_dialogs} dialogs)")
        self._dialogs[dialog.key] = dialog

    def get(self, key: tuple[str, str, str]) -> Dialog | None:
        return self._dialogs.get(key)

    def match_request(self, request: Request) -> Dialog | None:
        """The dialog of a received request: our tag is its To tag, the peer's its From tag (§12.2.2)."""
        to_tag = request.to.tag
        if not to_tag:
            return None
        return self._dialogs.get((request.call_id, to_tag, request.from_.tag or ""))

    def match_response(self, response: Response) -> Dialog | None:
        """The dialog of a received response: our tag is its From tag, the peer's its To tag."""
        from_tag = response.from_.tag
        if not from_tag:
            return None
        return self._dialogs.get((response.call_id, from_tag, response.to.tag or ""))

    def remove(self, dialog: Dialog) -> None:
        """Drop a dialog (nothing when it is not held)."""
        if self._dialogs.get(dialog.key) is dialog:
            del self._dialogs[dialog.key]

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def __contains__(self, dialog: object) -> bool:
        return isinstance(dialog, Dialog) and self._dialogs.get(dialog.key) is dialog
