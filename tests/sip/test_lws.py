"""Property tests: LWS wherever RFC 3261's grammar allows it changes no value, and what Hatif writes back
parses to the same message.

RFC 3261 §25.1: LWS = [*WSP CRLF] 1*WSP (so a folded line, CRLF SP or CRLF HTAB, is LWS) and
SWS = [LWS]. The places tried here are the grammar's: HCOLON (`*( SP / HTAB ) ":" SWS`), SLASH in the
Via sent-protocol, the LWS between sent-protocol and sent-by, COLON in sent-by, SEMI and EQUAL around
parameters, COMMA between list elements, LAQUOT/RAQUOT around a name-addr's <uri>, the LWS between a
display name and <, and between the CSeq number and method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.sip import Request, Response, parse_message

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1,
                 max_size=10)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[2001:db8::1]", "[::ffff:192.0.2.10]", "[2001:db8::9:255]"]),
)
_port = st.one_of(st.none(), st.integers(1, 65535))
_params = st.lists(st.tuples(_token, st.one_of(st.none(), _token)), max_size=3)
_user = st.from_regex(r"[A-Za-z0-9+\-_.]{1,10}", fullmatch=True)
_display = st.one_of(
    st.none(),
    st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True).map(lambda s: ("token", s)),
    st.from_regex(r"[A-Za-z0-9 ,.]{0,12}", fullmatch=True).map(lambda s: ("quoted", s)),
)

# SWS may be nothing; LWS is at least one SP/HTAB, maybe after a line fold; before HCOLON's colon only
# SP and HTAB are allowed.
_LWS = st.sampled_from([" ", "\t", "  ", " \t ", "\r\n ", "\r\n\t", " \r\n  ", "\t\r\n\t"])
_SWS = st.one_of(st.just(""), _LWS)
_BEFORE_COLON = st.sampled_from(["", " ", "\t", " \t"])


@dataclass(frozen=True)
class ViaParts:
    transport: str
    host: str
    port: int | None
    params: list[tuple[str, str | None]]


@dataclass(frozen=True)
class AddrParts:
    display: tuple[str, str] | None
    user: str
    host: str
    port: int | None
    uri_params: list[tuple[str, str | None]]
    params: list[tuple[str, str | None]]


@dataclass(frozen=True)
class MessageParts:
    method: str
    request_uri: str
    vias: list[ViaParts]
    from_: AddrParts
    to: AddrParts
    contacts: list[AddrParts]
    call_id: str
    cseq: int
    max_forwards: int
    body: bytes


_via = st.builds(ViaParts, st.sampled_from(["UDP", "TCP", "TLS", "SCTP"]), _host, _port,
                 _params.map(lambda ps: [("branch", "z9hG4bK" + "x" * len(ps)), *ps]))
_addr = st.builds(AddrParts, _display, _user, _host, _port, _params, _params)


@st.composite
def _message_parts(draw: st.DrawFn) -> MessageParts:
    method = draw(st.sampled_from(["INVITE", "OPTIONS", "REGISTER", "BYE", "X-NEW"]))
    body = draw(st.binary(max_size=60))
    return MessageParts(
        method, f"sip:{draw(_user)}@{draw(_host)}", draw(st.lists(_via, min_size=1, max_size=3)), draw(_addr),
        draw(_addr), draw(st.lists(_addr, max_size=3)), draw(_token), draw(st.integers(0, 2**31 - 1)),
        draw(st.integers(0, 255)), body)


Space = Callable[[str], str]  # "sws", "lws" or "hcolon" -> the whitespace to put there


def render(p: MessageParts, ws: Space) -> bytes:
    def params(ps: list[tuple[str, str | None]]) -> str:
        return "".join(f"{ws('sws')};{ws('sws')}{k}" + ("" if v is None else f"{ws('sws')}={ws('sws')}{v}")
                       for k, v in ps)

    def via(v: ViaParts) -> str:
        sent_by = v.host + ("" if v.port is None else f"{ws('sws')}:{ws('sws')}{v.port}")
        return (f"SIP{ws('sws')}/{ws('sws')}2.0{ws('sws')}/{ws('sws')}{v.transport}{ws('lws')}{sent_by}"
                + params(v.params))

    def addr(a: AddrParts) -> str:
        # URI parameters are inside <> where the URI grammar has no LWS.
        uri = f"sip:{a.user}@{a.host}" + ("" if a.port is None else f":{a.port}") + "".join(
            f";{k}" if v is None else f";{k}={v}" for k, v in a.uri_params)
        if a.display is None:
            head = ""
        elif a.display[0] == "token":
            head = f"{a.display[1]}{ws('lws')}"
        else:
            head = f'"{a.display[1]}"{ws("sws")}'
        return f"{head}<{uri}>{ws('sws')}" + params(a.params)

    def header(name: str, value: str) -> str:
        return f"{name}{ws('hcolon')}:{ws('sws')}{value}\r\n"

    comma = f"{ws('sws')},{ws('sws')}"
    lines = [f"{p.method} {p.request_uri} SIP/2.0\r\n",
             header("Via", comma.join(via(v) for v in p.vias)),
             header("From", addr(p.from_)), header("To", addr(p.to)),
             header("Call-ID", p.call_id), header("CSeq", f"{p.cseq}{ws('lws')}{p.method}"),
             header("Max-Forwards", str(p.max_forwards))]
    if p.contacts:
        lines.append(header("Contact", comma.join(addr(c) for c in p.contacts)))
    lines.append(header("Content-Length", str(len(p.body))))
    return "".join(lines).encode() + b"\r\n" + p.body


def clean(kind: str) -> str:
    return " " if kind == "lws" else ""


def semantic(m: Request | Response) -> tuple[object, ...]:
    """What a message means, as Hatif reads it: start line, every structured header's value, body."""
    start = (m.method, m.uri) if isinstance(m, Request) else (m.status, m.reason)
    return (start, [(v.transport, v.host, v.port, v.params) for v in m.vias], m.from_, m.to, m.call_id,
            (m.cseq.seq, m.cseq.method), m.header_int("Max-Forwards"), m.contacts, m.body)


@settings(max_examples=150, deadline=None)
@given(_message_parts(), st.data())
def test_lws_where_the_grammar_allows_changes_nothing(parts: MessageParts, data: st.DataObject) -> None:
    def noisy(kind: str) -> str:
        strategy = {"sws": _SWS, "lws": _LWS, "hcolon": _BEFORE_COLON}[kind]
        return data.draw(strategy, label=kind)

    plain = parse_message(render(parts, clean))
    spaced_bytes = render(parts, noisy)
    spaced = parse_message(spaced_bytes)
    assert semantic(spaced) == semantic(plain), spaced_bytes


@settings(max_examples=150, deadline=None)
@given(_message_parts(), st.data())
def test_what_hatif_writes_back_parses_to_the_same_message(parts: MessageParts, data: st.DataObject) -> None:
    def noisy(kind: str) -> str:
        strategy = {"sws": _SWS, "lws": _LWS, "hcolon": _BEFORE_COLON}[kind]
        return data.draw(strategy, label=kind)

    m = parse_message(render(parts, noisy))
    again = parse_message(bytes(m))
    assert semantic(again) == semantic(m)
    assert list(again.headers) == list(m.headers)
