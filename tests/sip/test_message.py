"""SIP message parsing and serialization (RFC 3261 §7, §20, §25), including RFC 4475 torture cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.sip import (
    URI,
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
    parse_uri,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 5\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def test_parse_request_fields() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == URI("sip", "biloxi.example.com", "bob")
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.cseq.seq == 314159 and m.cseq.method == "INVITE"
    assert m.from_.tag == "1928301774"
    assert m.from_.display == "Alice"
    assert m.to.display == "Bob" and m.to.tag is None
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.top_via.transport == "UDP"
    assert m.body == b"v=0\r\n"
    # Content-Length cuts a datagram's extra bytes (RFC 3261 §18.3).
    assert parse_message(INVITE + b"junk").body == b"v=0\r\n"
    assert m.content_type == "application/sdp"


def test_compact_forms_folding_and_lists() -> None:
    data = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK2\r\n"
        b"f: <sip:1001@example.com>;tag=a\r\n"
        b"t: <sip:1001@example.com>\r\n"
        b"i: reg-1\r\n"
        b"CSeq: 1 REGISTER\r\n"
        b"m: <sip:1001@10.0.0.1:5060>;expires=60, \"A, B\" <sip:x@10.0.0.2>;q=0.5\r\n"
        b"Subject: a long\r\n"
        b"  folded\r\n"
        b"\tsubject\r\n"
        b"l: 0\r\n\r\n"
    )
    m = parse_message(data)
    assert [v.host for v in m.vias] == ["10.0.0.1", "[2001:db8::1]"]
    assert m.vias[1].port == 5070 and m.vias[1].transport == "TCP"
    contacts = m.contacts
    assert len(contacts) == 2
    assert contacts[0].param("expires") == "60"
    assert contacts[1].display == "A, B" and contacts[1].param("q") == "0.5"
    assert m.headers.get("subject") == "a long folded subject"
    assert m.call_id == "reg-1"
    # Written back with canonical long names, one list element per line.
    out = bytes(m)
    assert b"Call-ID: reg-1\r\n" in out and out.count(b"\r\nVia: ") == 2


def test_response_and_make_response() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="xyz")
    assert resp.status == 180 and resp.reason == "Ringing"
    assert resp.to.tag == "xyz"
    back = parse_message(bytes(resp))
    assert isinstance(back, Response)
    assert bytes(back) == bytes(resp)
    assert back.headers.get("Call-ID") == req.call_id
    assert "Contact" not in back.headers


def test_quoted_strings_and_escapes() -> None:
    na = NameAddr.parse(r'"The \"Boss\" \\ here" <sip:boss@example.com;transport=tcp>;tag=9')
    assert na.display == 'The "Boss" \\ here'
    assert na.uri is not None and na.uri.transport == "tcp"
    assert NameAddr.parse(str(na)) == na


def test_addr_spec_params_belong_to_header() -> None:
    na = NameAddr.parse("sip:alice@example.com;tag=88")
    assert na.tag == "88"
    assert na.uri == URI("sip", "example.com", "alice")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("sip:alice:secret@example.com:5070;transport=tcp?subject=hi",
         URI("sip", "example.com", "alice", "secret", 5070, (("transport", "tcp"),), (("subject", "hi"),))),
        ("sips:[2001:db8::10]:5061", URI("sips", "[2001:db8::10]", None, None, 5061)),
        ("tel:+1-201-555-0123;phone-context=example.com",
         URI("tel", "", "+1-201-555-0123", params=(("phone-context", "example.com"),))),
        ("SIP:1001;ext=1@10.0.0.1;lr", URI("sip", "10.0.0.1", "1001;ext=1", params=(("lr", None),))),
    ],
)
def test_uris(text: str, expected: URI) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "data,needle",
    [
        (b"", "empty"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", "missing From"),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), "does not match"),
        (INVITE.replace(b"CSeq: 314159", b"CSeq: abc"), "bad CSeq"),
        (INVITE.replace(b"Content-Length: 5", b"Content-Length: 400"), "shorter than Content-Length"),
        (INVITE.replace(b"Content-Length: 5", b"Content-Length: -1"), "bad Content-Length"),
        (INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), "unsupported SIP version"),
        (INVITE.replace(b"sip:bob@biloxi.example.com SIP", b"sip:bob@ SIP", 1), "Request-URI"),
        # An unknown scheme is a valid absoluteURI (RFC 4475 §3.3.2); a scheme that is no scheme is not.
        (INVITE.replace(b"sip:bob@biloxi.example.com SIP", b"h%tp:// SIP", 1), "Request-URI"),
        (INVITE.replace(b"Max-Forwards: 70", b"Max Forwards: 70"), "bad header name"),
        (INVITE.replace(b"<sip:alice@atlanta.example.com>", b"<sip:alice@atlanta.example.com"), "unterminated"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "bad status code"),
        (b"\xff\xfe INVITE", "UTF-8"),
    ],
)
def test_parse_errors_name_the_problem(data: bytes, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_partial_message_kept_for_400() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"))
    partial = info.value.partial
    assert isinstance(partial, Request)
    assert partial.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.example.com"


def test_too_many_headers() -> None:
    data = INVITE.replace(b"\r\n\r\n", b"\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n")
    with pytest.raises(ParseError, match="more than"):
        parse_message(data)


def test_stream_framer_content_length() -> None:
    framer = StreamFramer(max_size=4096)
    two = b"\r\n" + INVITE + INVITE
    framer.feed(two[:50])
    assert framer.next_message() is None
    framer.feed(two[50:])
    first = framer.next_message()
    second = framer.next_message()
    assert first == INVITE and second == INVITE
    assert framer.next_message() is None
    big = StreamFramer(max_size=100)
    big.feed(INVITE)
    with pytest.raises(ParseError):
        big.next_message()


# -- Property: parse(serialize(m)) == m over generated messages -----------------------------------

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1,
                 max_size=12)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
_param_value = st.one_of(st.none(), _token)
_params = st.lists(st.tuples(_token, _param_value), max_size=3).map(tuple)
_uri = st.builds(
    URI,
    scheme=st.sampled_from(["sip", "sips"]),
    host=_host,
    user=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9+\-_.]{1,12}", fullmatch=True)),
    password=st.none(),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    params=_params,
)
_display = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
                                         max_size=20))
_name_addr = st.builds(NameAddr, uri=_uri, display=_display,
                       params=st.lists(st.tuples(_token, _token), max_size=2).map(tuple))
_header_value = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]),
                        max_size=40).map(str.strip)


@st.composite
def _messages(draw: st.DrawFn) -> Request | Response:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "X-CUSTOM"]))
    items = [
        ("Via", f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP']))} {draw(_host)};branch=z9hG4bK{draw(_token)}"),
        ("From", str(draw(_name_addr))),
        ("To", str(draw(_name_addr))),
        ("Call-ID", draw(_token)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    for _ in range(draw(st.integers(0, 4))):
        items.append((f"X-{draw(_token)}", draw(_header_value)))
    body = draw(st.binary(max_size=200))
    items.append(("Content-Length", str(len(body))))
    if draw(st.booleans()):
        return Request(Headers(items), body, method, draw(_uri))
    status = draw(st.integers(100, 699))
    return Response(Headers(items), body, status, draw(st.from_regex(r"[A-Za-z ]{0,20}", fullmatch=True)))


@settings(max_examples=300, deadline=None)
@given(_messages())
def test_roundtrip(m: Request | Response) -> None:
    assert parse_message(bytes(m)) == m


@settings(max_examples=300, deadline=None)
@given(_uri)
def test_uri_roundtrip(uri: URI) -> None:
    assert parse_uri(str(uri)) == uri


@settings(max_examples=200, deadline=None)
@given(_name_addr)
def test_name_addr_roundtrip(na: NameAddr) -> None:
    assert NameAddr.parse(str(na)) == na


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_only_raises_parse_error(data: bytes) -> None:
    try:
        parse_message(data)
    except ParseError:
        pass
