"""Header names and the structured header values of RFC 3261 §20.

`Headers` keeps the header fields of a message in order. Known names are stored in their canonical
spelling, compact forms (§7.3.3) are expanded, and the comma-separated list headers (§7.3.1) are held
one value per entry so that `Via`, `Route` and `Contact` can be pushed, popped and counted. Values stay
text until asked for: parsing a `Via` or a `From` costs only when someone needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from . import abnf
from .errors import ParseError
from .uri import URI, Params, check_host, format_params, parse_params, parse_uri, split_quoted

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
}

_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
    "Event", "Expires", "From", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE",
    "Organization", "P-Asserted-Identity", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require",
    "Retry-After", "Route", "RSeq", "RAck", "Server", "Session-Expires", "Subject", "Subscription-State",
    "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]
CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN}
CANONICAL.update({k: v for k, v in COMPACT.items()})

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1); each element is kept apart.
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info", "In-Reply-To",
        "Proxy-Require", "Record-Route", "Require", "Route", "Supported", "Unsupported", "Via", "Warning",
        "P-Asserted-Identity",
    )
)


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name, compact forms expanded; unknown names kept as given."""
    return CANONICAL.get(name.lower(), name)


class Headers:
    """Ordered header fields; names compared case-insensitively."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = items
        return h

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header."""
        for n, v in self._items:
            if n == name:
                return v
        name = canonical_name(name)
        lname = name.lower()
        for n, v in self._items:
            if n.lower() == lname:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        lname = canonical_name(name).lower()
        return [v for n, v in self._items if n.lower() == lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Append a value (or put it before all others of that name when `first`)."""
        name = canonical_name(name)
        if not first:
            self._items.append((name, value))
            return
        lname = name.lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == lname:
                self._items.insert(i, (name, value))
                return
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace all values of a header by one, keeping the position of the first."""
        name = canonical_name(name)
        lname = name.lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == lname:
                self._items[i] = (name, value)
                self._items[i + 1 :] = [it for it in self._items[i + 1 :] if it[0].lower() != lname]
                return
        self._items.append((name, value))

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of a header (e.g. the top Via), keeping the others."""
        name = canonical_name(name)
        lname = name.lower()
        for i, (n, _) in enumerate(self._items):
            if n.lower() == lname:
                self._items[i] = (name, value)
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        lname = canonical_name(name).lower()
        self._items = [it for it in self._items if it[0].lower() != lname]

    def pop_first(self, name: str) -> str | None:
        lname = canonical_name(name).lower()
        for i, (n, v) in enumerate(self._items):
            if n.lower() == lname:
                del self._items[i]
                return v
        return None


def unquote(text: str) -> str:
    """The content of a quoted-string with its quoted-pairs resolved (RFC 3261 §25.1)."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        if "\\" not in body:
            return body
        out = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return text


def quote(text: str) -> str:
    """A quoted-string holding `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return v if v is not None else ""
    return None


def _set_param(params: Params, name: str, value: str | None) -> Params:
    out = list(params)
    for i, (k, _) in enumerate(out):
        if k.lower() == name.lower():
            out[i] = (k, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec with header parameters (RFC 3261 §20.10, §20.20).

    `display` is the unquoted display name (None when absent). For a Contact of `*`, `uri` is None.
    """

    uri: URI | None
    display: str | None = None
    params: Params = ()
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        return parse_name_addr(text)

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return replace(self, params=_set_param(self.params, name, value))

    def without_params(self) -> NameAddr:
        return replace(self, params=())

    def __str__(self) -> str:
        if self.uri is None:
            return "*" + format_params(self.params)
        if not self.bracketed and self.display is None:
            return f"{self.uri}{format_params(self.params)}"
        disp = ""
        if self.display is not None:
            disp = (self.display if _DISPLAY_TOKENS.fullmatch(self.display) else quote(self.display)) + " "
        return f"{disp}<{self.uri}>{format_params(self.params)}"


_DISPLAY_TOKENS = re.compile(rf"{abnf.token}(?:[ \t]+{abnf.token})*")


def _closing_quote(text: str) -> int:
    """Index of the quote closing the quoted-string that starts `text`."""
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    raise ParseError(f"unterminated quoted string in {text[:80]!r}")


_name_addr_cache: dict[str, NameAddr] = {}


def parse_name_addr(text: str) -> NameAddr:
    """Parse a From, To, Contact, Route or Record-Route value (cached: one call repeats them often)."""
    na = _name_addr_cache.get(text)
    if na is None:
        na = _parse_name_addr(text.strip())
        if len(_name_addr_cache) >= 8192:
            _name_addr_cache.clear()
        _name_addr_cache[text] = na
    return na


def _parse_name_addr(text: str) -> NameAddr:
    if text.startswith("*") and "<" not in text:
        rest = text[1:].strip()
        return NameAddr(None, None, parse_params(rest[1:], "Contact") if rest.startswith(";") else ())
    display: str | None = None
    search_from = 0
    if text.startswith('"'):
        close = _closing_quote(text)
        display = unquote(text[: close + 1])
        search_from = close + 1
    lt = text.find("<", search_from)
    if lt < 0:
        if display is not None:
            raise ParseError(f"display name without <uri> in {text[:80]!r}")
        # addr-spec without brackets: parameters after the URI belong to the header, and a URI with a
        # comma, question mark or semicolon must be in <> (RFC 3261 §20.10).
        uri_text, _, ptext = text.partition(";")
        uri_text = uri_text.rstrip()
        if " " in uri_text or "\t" in uri_text or "," in uri_text:
            raise ParseError(f"bad address {text[:80]!r}")
        if "?" in uri_text:
            raise ParseError(f"URI with headers not in <...>: {uri_text[:60]!r} (RFC 3261 §20.10)")
        return NameAddr(parse_uri(uri_text), None, parse_params(ptext, "address"), False)
    between = text[search_from:lt].strip()
    if display is None and between:
        if not _DISPLAY_TOKENS.fullmatch(between):
            raise ParseError(f"bad display name {between[:40]!r}")
        display = between
    elif display is not None and between:
        raise ParseError(f"text between display name and <uri>: {between[:40]!r}")
    gt = text.find(">", lt)
    if gt < 0:
        raise ParseError(f"unterminated <...> in address {text[:80]!r}")
    uri_text = text[lt + 1 : gt]
    if " " in uri_text or "\t" in uri_text or "\n" in uri_text:
        # LAQUOT and RAQUOT allow LWS outside the brackets only (RFC 4475 §3.1.2.14).
        raise ParseError(f"whitespace inside <{uri_text[:60]}>")
    uri = parse_uri(uri_text)
    rest = text[gt + 1 :].strip()
    params: Params = ()
    if rest:
        if not rest.startswith(";"):
            raise ParseError(f"unexpected text after address: {rest[:40]!r}")
        params = parse_params(rest[1:], "address")
    return NameAddr(uri, display, params, True)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry: `SIP/2.0/UDP host:port;branch=...;received=...;rport` (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        return parse_via(text)

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return _param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=_set_param(self.params, name, value))

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {hp}{format_params(self.params)}"


_via_cache: dict[str, Via] = {}
_SENT_PROTOCOL = re.compile(rf"{abnf.token}{abnf.SWS}/{abnf.SWS}{abnf.token}{abnf.SWS}/{abnf.SWS}{abnf.token}")


def parse_via(text: str) -> Via:
    """One via-parm (RFC 3261 §20.42). Values are cached: a dialog's requests repeat their Vias."""
    v = _via_cache.get(text)
    if v is not None:
        return v
    v = _parse_via_plain(text) or _parse_via_lws(text)
    if len(_via_cache) > 4096:
        _via_cache.clear()
    _via_cache[text] = v
    return v


def _parse_via_plain(text: str) -> Via | None:
    """The fast path for what user agents send: `SIP/2.0/UDP host[:port][;params]`, single SPs. None for
    anything else (LWS around `/` or `:`, tabs), which the full rule reads."""
    if "\t" in text:
        return None
    proto, _, rest = text.strip().partition(" ")
    parts = proto.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
        return None
    hp, _, ptext = rest.strip().partition(";")
    m = abnf.hostport.fullmatch(hp.rstrip())
    if not m:
        return None
    host = m.group("host")
    if host[0] == "[":
        check_host(host, "Via")
    port = int(m.group("port")) if m.group("port") else None
    return Via(parts[2].upper(), host, port, parse_params(ptext, "Via"))


def _parse_via_lws(text: str) -> Via:
    """via-parm with LWS wherever the grammar allows it (SLASH, COLON and SEMI are SWS-wrapped, §25.1)."""
    text = text.strip()
    m = abnf.via_parm.fullmatch(text)
    if m is None:
        if not _SENT_PROTOCOL.match(text):
            raise ParseError(f"bad Via sent-protocol in {text[:60]!r}")
        raise ParseError(f"bad Via sent-by in {text[:60]!r}")
    if m.group("protocol_name").upper() != "SIP":
        raise ParseError(f"bad Via protocol-name {m.group('protocol_name')[:20]!r}")
    check_host(m.group("host"), "Via")
    port = int(m.group("port")) if m.group("port") else None
    ptext = m.group("params") or ""
    return Via(m.group("transport").upper(), m.group("host"), port, parse_params(ptext[1:], "Via"))


@dataclass(frozen=True, slots=True)
class CSeq:
    """`CSeq: 4711 INVITE` (RFC 3261 §20.16)."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """CSeq = 1*DIGIT LWS Method; the number is below 2**31 (RFC 3261 §8.1.1.5)."""
        num, _, method = text.strip().partition(" ")
        if "\t" in num:
            num, _, method = text.strip().partition("\t")
        method = method.strip()
        if not num.isdigit() or not abnf.Method.fullmatch(method):
            raise ParseError(f"bad CSeq {text[:60]!r}")
        if len(num) > 10 or int(num) >= 2**31:
            raise ParseError(f"CSeq number {num[:30]} too large (RFC 3261 §8.1.1.5: below 2**31)")
        return cls(int(num), method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def split_list(value: str) -> list[str]:
    """The elements of a comma-separated header value, trimmed; commas in quotes or <> kept."""
    if "," not in value:
        return [value]
    return [p.strip() for p in split_quoted(value, ",") if p.strip()]
