"""SIP messages: parsing and serialization (RFC 3261 §7, §18.3, §20, §25).

`parse_message(data)` takes one datagram (or one framed message off a stream) and returns a `Request` or
a `Response`; `bytes(msg)` writes it back. Header values stay strings until a typed accessor is used.

Messages are mutable on purpose: a B2BUA or a proxy builds the next message by copying one and changing
a few headers, and copying a list of pairs is cheaper than rebuilding frozen objects. Nothing in the
core keeps a message it was given and changes it later; `copy()` is the way to derive one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import abnf
from .errors import ParseError
from .headers import (
    CANONICAL,
    LIST_HEADERS,
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_name_addr,
    parse_via,
    split_list,
)
from .uri import URI, parse_uri

MAX_HEADERS = 128

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


@dataclass(eq=True, slots=True)
class Message:
    """What requests and responses share: headers and a body."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # Typed accessors. Each parses the header value on demand and raises ParseError when it is bad.
    @property
    def call_id(self) -> str:
        v = self.headers.get("Call-ID")
        if v is None:
            raise ParseError("missing Call-ID header")
        return v

    @property
    def cseq(self) -> CSeq:
        v = self.headers.get("CSeq")
        if v is None:
            raise ParseError("missing CSeq header")
        return CSeq.parse(v)

    @property
    def from_(self) -> NameAddr:
        v = self.headers.get("From")
        if v is None:
            raise ParseError("missing From header")
        return parse_name_addr(v)

    @property
    def to(self) -> NameAddr:
        v = self.headers.get("To")
        if v is None:
            raise ParseError("missing To header")
        return parse_name_addr(v)

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        v = self.headers.get("Via")
        if v is None:
            raise ParseError("missing Via header")
        return parse_via(v)

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Contact")]

    @property
    def content_type(self) -> str | None:
        v = self.headers.get("Content-Type")
        return v.split(";", 1)[0].strip().lower() if v else None

    def header_int(self, name: str) -> int | None:
        """An integer header (Expires, Max-Forwards, Min-Expires); ParseError when not a number."""
        v = self.headers.get(name)
        if v is None:
            return None
        v = v.strip()
        if not v.isdigit() or len(v) > 10:
            raise ParseError(f"bad {canonical_name(name)} value {v!r}")
        return int(v)

    def start_line(self) -> str:
        """The request or status line; each subclass writes its own."""
        return ""

    def __bytes__(self) -> bytes:
        """The wire form with a correct Content-Length (RFC 3261 §20.14)."""
        lines = [self.start_line()]
        has_length = False
        body_len = len(self.body)
        for name, value in self.headers:
            if name == "Content-Length":
                has_length = True
                lines.append(f"Content-Length: {body_len}")
            else:
                lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {body_len}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode() + self.body


@dataclass(eq=True, slots=True)
class Request(Message):
    """A SIP request; `uri` is the Request-URI."""

    method: str = "OPTIONS"
    uri: URI = field(default_factory=lambda: URI("sip", "invalid"))
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def copy(self) -> Request:
        return Request(self.headers.copy(), self.body, self.method, self.uri, self.version)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


@dataclass(eq=True, slots=True)
class Response(Message):
    """A SIP response."""

    status: int = 200
    reason: str = "OK"
    version: str = "SIP/2.0"

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def copy(self) -> Response:
        return Response(self.headers.copy(), self.body, self.status, self.reason, self.version)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], data[end + 2 :]
    # A message with headers only and no blank line is accepted on datagrams (RFC 3261 §18.3 leniency
    # seen in the wild); Content-Length framing below then finds no body.
    return data.rstrip(b"\r\n"), b""


# Header fields that are not comma lists may appear once (RFC 3261 §7.3.1); a second To, From, Call-ID,
# CSeq, Max-Forwards or Content-Length leaves the message ambiguous (RFC 4475 §3.3.8, §3.3.9).
_SINGLE = ("To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")  # RFC 3261 §8.1.1, in the order they are reported
# Headers looked at while the lines are read, each with a bit of an int mask (no set or dict is built per
# message): the single ones, and Via for the mandatory check; 0 for Contact and Date, which are validated
# with the mandatory headers.
_BIT = {name: 1 << i for i, name in enumerate((*_SINGLE, "Via"))}
_SINGLE_MASK = sum(_BIT[n] for n in _SINGLE)
_MANDATORY_MASK = sum(_BIT[n] for n in _MANDATORY)
_WATCHED: dict[str, int] = {**_BIT, "Contact": 0, "Date": 0}
# Headers whose values are validated at parse (the first Via, To, From, CSeq; every Contact and Date).
_VALIDATED = frozenset(("Via", "To", "From", "CSeq", "Contact", "Date"))
# Header names as most user agents write them -> (canonical name, watch bit or None, validated), without a
# regex check.
_KNOWN_SPELLINGS: dict[str, tuple[str, int | None, bool]] = {}
for _c in CANONICAL.values():
    _KNOWN_SPELLINGS[_c] = _KNOWN_SPELLINGS[_c.lower()] = (_c, _WATCHED.get(_c), _c in _VALIDATED)
for _spelling, _c in (("Call-Id", "Call-ID"), ("Cseq", "CSeq"), ("Www-Authenticate", "WWW-Authenticate")):
    _KNOWN_SPELLINGS[_spelling] = (_c, _WATCHED.get(_c), _c in _VALIDATED)


def parse_message(data: bytes, max_headers: int = MAX_HEADERS) -> Request | Response:
    """Parse one SIP message. Raises `ParseError` naming the problem (a `ValueError`).

    A request whose start line is wrong still has its headers read before the error is raised, so that
    the error's `partial` can be answered (RFC 4475 §3.1.2.7 to §3.1.2.11, §3.1.2.16).
    """
    # RFC 3261 §7.5: leading CRLFs before the start line are ignored (they are keep-alives).
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("empty message")
    head_b, body = _split_head(data)
    try:
        head = head_b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"message head is not UTF-8 (byte {e.start})") from None
    lines = head.split("\n")
    start = lines[0].rstrip("\r")
    msg, fault = _parse_start_line(start)
    # A fault found from here on is raised once all headers are read (the first fault wins), so that the
    # request can still be answered with it.
    items: list[tuple[str, str]] = []
    seen = 0
    checked: list[int] = []  # where the headers validated below are in items
    length_at = -1  # where Content-Length is
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            # Header folding, RFC 3261 §7.3.1: a continuation line joins the previous value.
            if not items:
                fault = fault or ParseError("continuation line before the first header")
                continue
            more = line.strip()
            if more:
                n, v = items[-1]
                items[-1] = (n, f"{v} {more}" if v else more)
            continue
        colon = line.find(":")
        if colon <= 0:
            fault = fault or ParseError(f"header line without a name: {line[:40]!r}")
            continue
        name = line[:colon].rstrip()
        known = _KNOWN_SPELLINGS.get(name)
        if known is None:
            if not abnf.header_name.fullmatch(name):
                fault = fault or ParseError(f"bad header name {name[:40]!r}")
                continue
            canon = canonical_name(name)
            bit = _WATCHED.get(canon)
            validated = canon in _VALIDATED
        else:
            canon, bit, validated = known
        if bit is not None:
            if validated and not seen & bit:
                checked.append(len(items))  # Contact and Date (bit 0) each time, the others once
            if seen & bit & _SINGLE_MASK:
                fault = fault or ParseError(f"more than one {canon} header")
            elif canon == "Content-Length":
                length_at = len(items)
            seen |= bit
        items.append((canon, line[colon + 1 :].strip()))
        if len(items) > max_headers:
            msg.headers = Headers._trusted(items)
            raise ParseError(f"more than {max_headers} headers", msg)
    # (values complete now that folded lines are joined)
    watched = [items[i] for i in checked] if checked else []
    length_text = items[length_at][1] if length_at >= 0 else None
    # Comma lists (§7.3.1) become one entry per element.
    if any("," in v and n.lower() in LIST_HEADERS for n, v in items):
        expanded: list[tuple[str, str]] = []
        for n, v in items:
            if "," in v and n.lower() in LIST_HEADERS:
                expanded.extend((n, e) for e in split_list(v))
            else:
                expanded.append((n, v))
        items = expanded
    msg.headers = Headers._trusted(items)
    if fault is not None:
        raise ParseError(fault.reason, msg, fault.status)
    if length_text is not None:
        if not length_text.isdigit() or len(length_text) > 9:
            raise ParseError(f"bad Content-Length {length_text[:20]!r}", msg)
        declared = int(length_text)
        if declared > len(body):
            raise ParseError(f"body shorter than Content-Length ({len(body)} < {declared})", msg)
        body = body[:declared]
    msg.body = body
    if seen & _MANDATORY_MASK != _MANDATORY_MASK:
        missing = next(n for n in _MANDATORY if not seen & _BIT[n])
        raise ParseError(f"missing {missing} header", msg)
    _check_mandatory(msg, watched)
    return msg


def _parse_start_line(start: str) -> tuple[Request | Response, ParseError | None]:
    """The start line (RFC 3261 §7.1, §7.2). A response's fault is raised at once (nobody answers a
    response); a request's is returned with the request so far, for the caller to raise with headers."""
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not abnf.SIP_Version.fullmatch(parts[0]):
            raise ParseError(f"bad status line {start[:60]!r}")
        if parts[0] != "SIP/2.0":
            raise ParseError(f"unsupported SIP version {parts[0]!r}")
        if not abnf.Status_Code.fullmatch(parts[1]) or parts[1][0] == "0":
            raise ParseError(f"bad status code {parts[1][:10]!r}")
        return Response(status=int(parts[1]), reason=parts[2] if len(parts) > 2 else ""), None
    parts = start.split(" ")
    method = parts[0]
    if not abnf.Method.fullmatch(method):
        raise ParseError(f"bad method {method[:20]!r}")
    req = Request(method=method)
    if len(parts) != 3:
        return req, ParseError(_request_line_fault(start, parts))
    uri_text, version = parts[1], parts[2]
    if not abnf.SIP_Version.fullmatch(version):
        return req, ParseError(f"bad SIP-Version {version[:20]!r} in request line")
    if version != "SIP/2.0":
        return req, ParseError(f"unsupported SIP version {version!r}", status=505)
    if uri_text.startswith("<"):
        return req, ParseError("bad Request-URI: enclosed in <> (RFC 3261 §25.1 Request-URI)")
    try:
        req.uri = parse_uri(uri_text)
    except ParseError as e:
        return req, ParseError(f"bad Request-URI: {e.reason}")
    if req.uri.headers:
        return req, ParseError("bad Request-URI: it has URI headers (RFC 3261 §19.1.1: not in a Request-URI)")
    return req, None


def _request_line_fault(start: str, parts: list[str]) -> str:
    """Why a request line is not `Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1: single SPs)."""
    if "" in parts[1:]:
        if start.endswith(" "):
            return "bad request line: SP after the SIP-Version"
        return "bad request line: more than one SP between its elements"
    if len(parts) > 3:
        return "bad Request-URI: it contains SP"
    return f"bad request line {start[:60]!r}"


def _naming(name: str, reason: str) -> str:
    return reason if name in reason else f"bad {name}: {reason}"


def _check_mandatory(msg: Request | Response, checked: list[tuple[str, str]]) -> None:
    """RFC 3261 §8.1.1: the top Via, To, From and CSeq (there, as the caller checked, with Call-ID;
    Max-Forwards defaults to 70) readable; Contact and Date readable when present. `checked` holds their
    values in message order, the first fault is reported, naming its header."""
    method = ""
    name = ""
    try:
        for name, v in checked:
            if name == "Via":
                parse_via(split_list(v)[0] if "," in v else v)
            elif name == "CSeq":
                method = CSeq.parse(v).method
            elif name == "Contact" and "," in v:
                for element in split_list(v):
                    parse_name_addr(element)
            elif name == "Date":
                if not abnf.rfc1123_date.fullmatch(v):
                    raise ParseError(f"bad Date {v[:40]!r} (RFC 3261 §20.17: rfc1123-date in GMT)")
            else:  # To, From, a Contact
                parse_name_addr(v)
    except ParseError as e:
        raise ParseError(_naming(name, e.reason), msg) from None
    if isinstance(msg, Request) and method != msg.method:
        raise ParseError(f"CSeq method {method} does not match {msg.method}", msg)


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages by Content-Length (RFC 3261 §18.3).

    Feed bytes with `feed()`; `next_message()` returns the next complete message's bytes or None.
    Messages larger than `max_size` raise ParseError: the transport closes such a connection.
    """

    def __init__(self, max_size: int = 65535) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | None:
        buf = self._buf
        # Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped.
        i = 0
        while i < len(buf) and buf[i] in (13, 10):
            i += 1
        if i:
            del buf[:i]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_size:
                raise ParseError("message head larger than the limit")
            return None
        head = bytes(buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname in (b"content-length", b"l"):
                v = value.strip()
                if not v.isdigit() or len(v) > 9:
                    raise ParseError(f"bad Content-Length {v[:12]!r}")
                length = int(v)
                break
        total = end + 4 + length
        if total > self.max_size:
            raise ParseError("message larger than the limit")
        if len(buf) < total:
            return None
        out = bytes(buf[:total])
        del buf[:total]
        return out


def make_response(
    request: Request, status: int, reason: str | None = None, to_tag: str | None = None,
    body: bytes = b"", extra: list[tuple[str, str]] | None = None,
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6: Via, From, To, Call-ID and CSeq copied.

    A To tag is added when given and the request's To has none.
    """
    items: list[tuple[str, str]] = []
    for n, v in request.headers:
        if n in ("Via", "From", "Call-ID", "CSeq") or (n == "Record-Route" and 100 < status < 300):
            items.append((n, v))
        elif n == "To":
            if to_tag is not None and ";tag=" not in v.replace(" ", "").lower():
                v = f"{v};tag={to_tag}"
            items.append((n, v))
    if extra:
        items.extend((canonical_name(n), v) for n, v in extra)
    return Response(Headers._trusted(items), body, status, reason or REASONS.get(status, "Unknown"))
