"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), and any other absoluteURI kept opaque.

A `URI` is immutable and compares by value; `str(uri)` gives back the wire form. Parameters keep their
order so that a URI passed through Hatif is written out as it came in.

A URI of another scheme (`isbn:...`, `http://...`, `soap.beep://...`) is valid wherever RFC 3261 allows an
absoluteURI (§25.1: Request-URI, name-addr, addr-spec), so it parses: its text after the colon is kept in
`opaque`. Whether Hatif can use it is the server's question (416 Unsupported URI Scheme, RFC 3261
§8.2.2.1), not the parser's (RFC 4475 §3.3.2 to §3.3.4).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from . import abnf
from .errors import ParseError

Params = tuple[tuple[str, str | None], ...]


def format_params(params: Params) -> str:
    """`;name=value;flag` as in RFC 3261 §19.1.1 uri-parameters and §20 generic-param."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def parse_params(text: str, what: str) -> Params:
    """Split `;a=b;c` (the leading ';' already removed) into ordered pairs; quoted values kept whole."""
    if not text:
        return ()
    out: list[tuple[str, str | None]] = []
    for part in split_quoted(text, ";"):
        part = part.strip()
        if not part:
            raise ParseError(f"empty parameter in {what}")
        name, eq, value = part.partition("=")
        name = name.strip()
        if not abnf.TOKEN.fullmatch(name):
            raise ParseError(f"bad parameter name {name!r} in {what}")
        out.append((name, value.strip() if eq else None))
    return tuple(out)


def split_quoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quoted strings and angle brackets (RFC 3261 §7.3.1 comma lists)."""
    if sep not in text:
        return [text]
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            depth = max(0, depth - 1)
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ParseError(f"unterminated quoted string in {text[:60]!r}")
    parts.append(text[start:])
    return parts


@dataclass(frozen=True, slots=True)
class URI:
    """A `sip:`, `sips:` or `tel:` URI. For `tel:` the number is in `user` and `host` is empty."""

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = field(default=())
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> URI:
        """Parse a URI; raises `ParseError` naming the part that is wrong."""
        return parse_uri(text)

    def param(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return v if v is not None else ""
        return default

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(k.lower() == lname for k, _ in self.params)

    def with_params(self, **updates: str | None) -> URI:
        """A copy with parameters set (added at the end if new)."""
        params = list(self.params)
        for name, value in updates.items():
            for i, (k, _) in enumerate(params):
                if k.lower() == name.lower():
                    params[i] = (k, value)
                    break
            else:
                params.append((name, value))
        return replace(self, params=tuple(params))

    def without_params(self, *names: str) -> URI:
        drop = {n.lower() for n in names}
        return replace(self, params=tuple(p for p in self.params if p[0].lower() not in drop))

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def transport(self) -> str:
        """The transport this URI asks for (RFC 3261 §19.1.1), `udp` when unspecified."""
        t = self.param("transport")
        if t:
            return t.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def aor(self) -> str:
        """The address of record `scheme:user@host` (no port, no parameters), lower-cased host."""
        if self.scheme == "tel":
            return f"tel:{self.user}"
        if self.opaque is not None:
            return str(self)
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        s = [self.scheme, ":"]
        if self.user is not None:
            s.append(self.user)
            if self.password is not None:
                s.append(":" + self.password)
            s.append("@")
        s.append(self.hostport)
        s.append(format_params(self.params))
        if self.headers:
            s.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(s)


_cache: dict[str, URI] = {}


def parse_uri(text: str) -> URI:
    """Parse `sip:user:pass@host:port;params?headers`, `sips:...` or `tel:number;params`.

    Results are cached (URIs are immutable and a busy server sees the same few hundred often).
    """
    cached = _cache.get(text)
    if cached is not None:
        return cached
    uri = _parse_uri(text)
    if len(_cache) >= 4096:
        _cache.clear()
    _cache[text] = uri
    return uri


def check_host(host: str, what: str) -> None:
    """An IPv6reference must hold a valid IPv6address (RFC 5118 §4.10: `[2001:db8:::192.0.2.1]` has one
    colon too many; the loose character class of `abnf.IPv6reference` lets it through)."""
    if host[:1] == "[":
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError(f"bad IPv6 reference {host!r} in {what}") from None


def _parse_uri(text: str) -> URI:
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not rest:
        raise ParseError(f"bad URI {text[:60]!r}: no scheme")
    if scheme not in ("sip", "sips", "tel"):
        # absoluteURI = scheme ":" ( hier-part / opaque-part ): no LWS, no brackets, no quotes.
        if not abnf.scheme.fullmatch(scheme):
            raise ParseError(f"bad URI scheme {scheme[:20]!r}")
        if any(c in rest for c in ' \t\r\n<>"'):
            raise ParseError(f"bad {scheme} URI {text[:60]!r}")
        return URI(scheme, opaque=rest)
    if scheme == "tel":
        number, _, ptext = rest.partition(";")
        if not abnf.TEL_NUMBER.fullmatch(number):
            raise ParseError(f"bad tel URI number {number!r}")
        return URI("tel", "", number, None, None, parse_params(ptext, "tel URI"))
    user: str | None = None
    password: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pc, pw = userinfo.partition(":")
        if pc:
            password = pw
        if not user or not abnf.USER_CHARS.fullmatch(user):
            raise ParseError(f"bad user part {userinfo!r} in URI")
    headers: tuple[tuple[str, str], ...] = ()
    q = rest.find("?")
    if q >= 0:
        htext, rest = rest[q + 1 :], rest[:q]
        hs = []
        for h in htext.split("&"):
            k, eq, v = h.partition("=")
            if not eq or not k:
                raise ParseError(f"bad URI header {h!r}")
            hs.append((k, v))
        headers = tuple(hs)
    hp, _, ptext = rest.partition(";")
    m = abnf.hostport.fullmatch(hp)
    if not m:
        raise ParseError(f"bad host {hp!r} in URI")
    host = m.group("host")
    if host[0] == "[":
        check_host(host, "URI")
    port_s = m.group("port")
    port = int(port_s) if port_s else None
    if port is not None and not 0 < port < 65536:
        raise ParseError(f"port {port} out of range in URI")
    return URI(scheme, host, user, password, port, parse_params(ptext, "URI"), headers)
