"""The SIP torture messages of RFC 4475 and RFC 5118, through the parser and through a running Hatif.

The messages are the files of `tests/sip/torture/` (see its README). Two levels:

- the parser alone: a valid message parses to the fields the RFC describes; an invalid one raises a
  `ParseError` whose reason names the header or field at fault;
- a real Hatif on loopback: each message is sent over UDP, and the answer is what the RFC says. An
  otherwise valid INVITE or REGISTER from a user Hatif does not know is challenged (407/401): that is
  the answer RFC 3261 §22 gives to it, so it counts as "answered as the RFC says". A message that is
  a response, or whose Via cannot be read, has no one to answer: it is dropped without a response.

Each message comes from its own source address (127.x.y.z; Linux routes all of 127/8 to loopback), so
the flood limit (16 requests in 2 s from one address) never triggers, and from the port its top Via
names, because RFC 3261 §18.2.2 sends a UDP response to the source address at the Via's port (5060 by
default) unless the Via has `rport` (RFC 3581).
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from peers import free_port

from hatif.sip import URI, ParseError, Request, Response, parse_message
from hatif.sip.server import via_to_answer
from hatif_server import RunningHatif

TORTURE = Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def request(name: str) -> Request:
    m = parse_message(load(name))
    assert isinstance(m, Request), name
    return m


# -- (a) the parser alone ------------------------------------------------------------------------------

def check_wsinv(m: Request) -> None:
    # RFC 4475 §3.1.1.1: folding everywhere, LWS around ':' ';' '=' and around the Via's '/'.
    assert m.method == "INVITE" and m.uri == URI("sip", "chair-dnrc.example.com", "vivekg",
                                                  params=(("unknownparam", None),))
    assert m.to.uri == URI("sip", "chair-dnrc.example.com", "vivekg") and m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"' and m.from_.tag == "98asjd8"
    assert m.header_int("Max-Forwards") == 68 and (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"), ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    [contact] = m.contacts
    assert contact.display == 'Quoted string ""' and contact.param("newparam") == "newvalue"
    assert contact.param("secondparam") == "" and contact.param("q") == "0.33"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def check_intmeth(m: Request) -> None:
    # §3.1.1.2: every token character in the method, branch, tag; quoted-pairs of control characters.
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq.method == method
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)" and m.uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-" and m.from_.tag == "_token~1'+`*%!-."
    assert m.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def check_esc01(m: Request) -> None:
    # §3.1.1.3: % HEX HEX where "escaped" is allowed; kept as sent (comparison unescapes, not the parser).
    assert m.uri.user == "sips%3Auser%40example.com" and m.uri.host == "example.net"
    assert m.to.uri is not None and m.to.uri.user == "%75se%72"
    assert m.from_.uri is not None and m.from_.uri.user == "I%20have%20spaces"
    contact = m.contacts[0].uri
    assert contact is not None and contact.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert m.content_type == "application/sdp" and len(m.body) == 150


def check_escnull(m: Request) -> None:
    # §3.1.1.4: escaped NULs in user parts; two distinct contacts.
    assert m.to.uri is not None and m.to.uri.user == "null-%00-null"
    assert [c.uri.user for c in m.contacts if c.uri] == ["%00", "%00%00"]


def check_esc02(m: Request) -> None:
    # §3.1.1.5: % is no escape in a method, a display name, a header name; two Contacts, not three.
    assert m.method == "RE%47IST%45R" and m.to.display == "%Z%45"
    assert [c.uri.user for c in m.contacts if c.uri] == ["alias1", "alias3"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"


def check_lwsdisp(m: Request) -> None:
    # §3.1.1.6: no LWS between a token display name and '<' (accepted, as the RFC asks).
    assert m.from_.display == "caller" and m.from_.tag == "323"


def check_longreq(m: Request) -> None:
    # §3.1.1.7: long values, 34 Vias in every spelling of the name.
    assert len(m.vias) == 34 and [v.host for v in m.vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert m.vias[33].param("received") == "192.0.2.5"
    assert m.to.uri is not None and m.to.uri.port == 6000 and len(m.to.uri.params) == 3
    assert m.from_.tag is not None and len(m.from_.tag) == 155
    assert m.call_id.startswith("longreq.one") and len(m.body) == 150


def check_dblreq(m: Request) -> None:
    # §3.1.1.8: the bytes after Content-Length: 0 are noise (RFC 3261 §18.3), not a second request.
    assert m.method == "REGISTER" and m.body == b"" and m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def check_semiuri(m: Request) -> None:
    # §3.1.1.9: the user part is "user;par=u%40example.net"; six folded Accept values.
    assert m.uri.user == "user;par=u%40example.net" and m.uri.host == "example.com" and m.uri.params == ()
    assert len(m.headers.get_all("Accept")) == 6


def check_transports(m: Request) -> None:
    # §3.1.1.10: every transport, an unknown one included.
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01(m: Request) -> None:
    # §3.1.1.11: a binary body part with NULs, framed by Content-Length alone.
    assert m.method == "MESSAGE" and len(m.body) == 553 and b"\x00" in m.body
    assert m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.top_via.port == 5070 and m.top_via.param("rport") == ""


def check_unreason(m: Response) -> None:
    # §3.1.1.12: a reason phrase in UTF-8.
    assert m.status == 200 and m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def check_noreason(m: Response) -> None:
    # §3.1.1.13: an empty reason phrase after the required SP.
    assert m.status == 100 and m.reason == ""


def check_badbranch(m: Request) -> None:
    # §3.2.1: syntactically valid; the server refuses it (below).
    assert m.top_via.branch == "z9hG4bK"


def check_inv2543(m: Request) -> None:
    # §3.4.1: RFC 2543 syntax: no branch, no From tag, no Content-Length (the body is the datagram's rest).
    assert m.top_via.branch is None and m.from_.tag is None and m.header_int("Max-Forwards") is None
    assert m.body.startswith(b"v=0") and len(m.body) == 105


def check_unkscm(m: Request) -> None:
    # §3.3.2 and §3.3.3: an unknown or unusual scheme is a valid absoluteURI; refusing it is the server's.
    assert m.uri.scheme == "nobodyknowsthisscheme" and m.uri.opaque == "totallyopaquecontent"


def check_novelsc(m: Request) -> None:
    assert m.uri.scheme == "soap.beep" and str(m.uri) == "soap.beep://192.0.2.103:3002"


def check_unksm2(m: Request) -> None:
    # §3.3.4: unknown schemes in To, From and Contact parse.
    assert str(m.to.uri) == "isbn:2983792873" and str(m.from_.uri) == "http://www.example.com"
    assert [str(c.uri) for c in m.contacts] == ["name:John_Smith"]


def check_bext01(m: Request) -> None:
    assert m.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]


def check_cparam01(m: Request) -> None:
    # §3.3.12: unbracketed, so `unknownparam` is a contact parameter, not a URI parameter.
    [c] = m.contacts
    assert c.uri is not None and c.uri.params == () and c.params == (("unknownparam", None),)


def check_cparam02(m: Request) -> None:
    # §3.3.13: in <>, it is a URI parameter.
    [c] = m.contacts
    assert c.uri is not None and c.uri.params == (("unknownparam", None),) and c.params == ()


def check_regescrt(m: Request) -> None:
    # §3.3.14: an escaped header in a bracketed Contact URI is kept.
    [c] = m.contacts
    assert c.uri is not None and c.uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


def check_ipv6_good(m: Request) -> None:
    # RFC 5118 §4.1.
    assert m.uri.host == "[2001:db8::10]" and m.top_via.host == "[2001:db8::9:1]"
    assert m.contacts[0].uri is not None and m.contacts[0].uri.host == "[2001:db8::1]"


def check_port_ambiguous(m: Request) -> None:
    # RFC 5118 §4.3: well formed, and the 5070 is part of the address, not a port.
    assert m.uri.host == "[2001:db8::10:5070]" and m.uri.port is None


def check_port_unambiguous(m: Request) -> None:
    assert m.uri.host == "[2001:db8::10]" and m.uri.port == 5070


def check_via1(m: Request) -> None:
    # RFC 5118 §4.5: a bracketed received= is read anyway.
    assert m.top_via.host == "[2001:db8::9:1]" and m.top_via.param("received") == "[2001:db8::9:255]"


def check_via2(m: Request) -> None:
    assert m.top_via.param("received") == "2001:db8::9:255"


def check_mult_ip_in_header(m: Request) -> None:
    # RFC 5118 §4.7.
    assert [(v.transport, v.host, v.port) for v in m.vias] == [
        ("UDP", "[2001:db8::9:1]", 6050), ("UDP", "192.0.2.1", None), ("TCP", "[2001:db8::9:255]", None)]
    assert m.vias[2].param("received") == "192.0.2.200"


def check_ipv4_mapped(m: Request) -> None:
    # RFC 5118 §4.9.
    assert m.top_via.host == "[::ffff:192.0.2.10]" and m.top_via.port == 19823
    assert b"c=IN IP6 ::ffff:192.0.2.2" in m.body


def check_sdp_v6(m: Request) -> None:
    # RFC 5118 §4.6, §4.8: IPv6 in the SDP body; the Request-URI an IPv6 reference.
    assert m.uri.host == "[2001:db8::10]" and b"IN IP6 2001:db8::" in m.body


def check_ipv6_two_colons(m: Request) -> None:
    # RFC 5118 §4.10, the correct form.
    assert m.uri.host == "[2001:db8::192.0.2.1]"


def check_plain(m: Request | Response) -> None:
    assert m.headers.get("Call-ID")


VALID: dict[str, Callable[..., None]] = {
    "wsinv": check_wsinv, "intmeth": check_intmeth, "esc01": check_esc01, "escnull": check_escnull,
    "esc02": check_esc02, "lwsdisp": check_lwsdisp, "longreq": check_longreq, "dblreq": check_dblreq,
    "semiuri": check_semiuri, "transports": check_transports, "mpart01": check_mpart01,
    "unreason": check_unreason, "noreason": check_noreason,
    "badbranch": check_badbranch,
    # RFC 4475 §3.3: valid syntax, faults that are the application's to answer.
    "unkscm": check_unkscm, "novelsc": check_novelsc, "unksm2": check_unksm2, "bext01": check_bext01,
    "invut": check_plain, "regaut01": check_plain, "bcast": check_plain, "zeromf": check_plain,
    "cparam01": check_cparam01, "cparam02": check_cparam02, "regescrt": check_regescrt, "sdp01": check_plain,
    "inv2543": check_inv2543,
    # RFC 5118 valid messages.
    "ipv6-good": check_ipv6_good, "port-ambiguous": check_port_ambiguous,
    "port-unambiguous": check_port_unambiguous, "via1-valid": check_via1, "via2-valid": check_via2,
    "ipv6-in-sdp": check_sdp_v6, "mult-ip-in-header": check_mult_ip_in_header,
    "mult-ip-in-sdp": check_sdp_v6, "ipv4-mapped-ipv6": check_ipv4_mapped,
    "ipv6-correct-abnf-2-colons": check_ipv6_two_colons,
}

# name -> what the ParseError's reason must name (the header or field at fault).
INVALID: dict[str, str] = {
    "badinv01": "Via",              # §3.1.2.1 empty Via parameters ;;,;,,
    "clerr": "Content-Length",      # §3.1.2.2 larger than the body
    "ncl": "Content-Length",        # §3.1.2.3 negative
    "scalar02": "CSeq",             # §3.1.2.4 CSeq number >= 2**31
    "scalarlg": "CSeq",             # §3.1.2.5 same, in a response
    "quotbal": "To",                # §3.1.2.6 unterminated quoted display name
    "ltgtruri": "Request-URI",      # §3.1.2.7 <> around the Request-URI
    "lwsruri": "Request-URI",       # §3.1.2.8 SP inside the Request-URI
    "lwsstart": "request line",     # §3.1.2.9 several SP between request-line elements
    "trws": "request line",         # §3.1.2.10 SP after the SIP-Version
    "escruri": "Request-URI",       # §3.1.2.11 headers in a Request-URI
    "baddate": "Date",              # §3.1.2.12 a time zone other than GMT
    "regbadct": "Contact",          # §3.1.2.13 URI with headers not in <>
    "badaspec": "To",               # §3.1.2.14 spaces inside <>
    "baddn": "From",                # §3.1.2.15 unquoted display name with a comma
    "badvers": "SIP version",       # §3.1.2.16 SIP/7.0 (status 505)
    "mismatch01": "CSeq",           # §3.1.2.17 CSeq method differs from the request's
    "mismatch02": "CSeq",           # §3.1.2.18 same with an unknown method
    "bigcode": "status code",       # §3.1.2.19 4294967301
    "insuf": "From",                # §3.3.1 no From, To, Call-ID: the first one missing is named
    "multi01": "CSeq",              # §3.3.8 two of each single header: the first repeated is named
    "mcl01": "Content-Length",      # §3.3.9 two Content-Lengths
    "ipv6-bad": "Request-URI",      # RFC 5118 §4.2 IPv6 address without []
    "ipv6-bug-abnf-3-colons": "IPv6",  # RFC 5118 §4.10 one colon too many
}


def test_corpus_is_complete() -> None:
    assert {p.stem for p in TORTURE.glob("*.dat")} == set(VALID) | set(INVALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses(name: str) -> None:
    data = load(name)
    m = parse_message(data)
    VALID[name](m)
    # What Hatif writes back parses to the same message (with a Content-Length added where none was).
    again = parse_message(bytes(m))
    assert type(again) is type(m) and again.body == m.body
    assert [h for h in again.headers if h[0] != "Content-Length"] == [h for h in m.headers if h[0] != "Content-Length"]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_refused_naming_the_fault(name: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(load(name))
    assert INVALID[name] in info.value.reason, info.value.reason
    if not load(name).startswith(b"SIP/") and name != "bigcode":
        # A request's headers are kept, so that it can be answered with this reason.
        assert isinstance(info.value.partial, Request) and info.value.partial.headers.get("Via")
    assert info.value.status == (505 if name == "badvers" else 400)


# -- (b) through a running Hatif --------------------------------------------------------------------

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.05, t2: 0.4, t4: 0.5, d: 0.5}}
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    users:
      - {{username: "1001", password: "torture-secret-1"}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
"""

NO_ANSWER = None
# name -> (status, what the reason phrase must contain, or None), with the RFC's words for the choice.
SERVER: dict[str, tuple[int | None, str | None]] = {
    # §3.1.1: valid. INVITE/REGISTER from an unknown user: the digest challenge (RFC 3261 §22).
    "wsinv": (481, None),       # its To has a tag: a request inside a dialog Hatif does not have (§12.2.2)
    "esc01": (407, None), "longreq": (407, None), "escnull": (401, None),
    "intmeth": (501, None),     # "Endpoints will generate a 501 listing the methods they understand"
    "esc02": (501, None),       # "An endpoint would reject this message with a 501"
    "lwsdisp": (200, None), "semiuri": (200, None), "transports": (200, None),
    "dblreq": (401, None),      # the REGISTER; the INVITE-looking octets after it are ignored
    "mpart01": (405, None),     # well formed; Hatif does not take MESSAGE (RFC 3261 §8.2.1)
    "unreason": (NO_ANSWER, None), "noreason": (NO_ANSWER, None),  # responses to nothing: dropped
    # §3.1.2: invalid, 400 naming the fault.
    "badinv01": (400, "Via"), "clerr": (400, "Content-Length"), "ncl": (400, "Content-Length"),
    "scalar02": (400, "CSeq"), "quotbal": (400, "To"), "ltgtruri": (400, "Request-URI"),
    "lwsruri": (400, "Request-URI"), "lwsstart": (400, "request line"), "trws": (400, "request line"),
    "escruri": (400, "Request-URI"), "baddate": (400, "Date"), "regbadct": (400, "Contact"),
    "badaspec": (400, "To"), "baddn": (400, "From"), "mismatch01": (400, "CSeq"),
    "badvers": (505, "SIP/7.0"),   # "The element should respond to the request with a 505"
    "mismatch02": (400, "CSeq"),   # "501 ... A 400 Bad Request is also acceptable": the CSeq fault is named
    "scalarlg": (NO_ANSWER, None), "bigcode": (NO_ANSWER, None),  # bad responses: "simply discard it"
    # §3.2.1: "could reject the request with a 400 Response (preferably statelessly)".
    "badbranch": (400, "branch"),
    # §3.3: application layer.
    "insuf": (400, "From"),        # "Ideally, it will respond with a 400 Bad Request error"
    "unkscm": (416, "Request-URI"), "novelsc": (416, "Request-URI"),  # "reject it with a 416"
    "unksm2": (416, "To"),         # a REGISTER for a non-SIP AOR: Hatif can bind no such address
    "bext01": (420, None),         # "respond with a 420 Bad Extension ... Unsupported header field"
    "invut": (415, None),          # "An endpoint ... would reject it with a 415 Unsupported Media Type"
    "regaut01": (401, None),       # "will reject this request with a 401, issuing a new challenge"
    "multi01": (400, "CSeq"),      # "would respond with a 400 Bad Request error"
    "mcl01": (400, "Content-Length"),  # "should respond with an error"
    "bcast": (NO_ANSWER, None),    # a 200 for no transaction of Hatif's: dropped
    "zeromf": (200, None),         # "An endpoint should process the request as if ... still positive"
    "cparam01": (401, None), "cparam02": (401, None), "regescrt": (401, None),  # valid REGISTERs
    "sdp01": (406, None),          # "could respond with a 406 Not Acceptable"
    "inv2543": (407, None),        # §3.4.1: RFC 2543 syntax is accepted, then challenged
    # RFC 5118.
    "ipv6-good": (401, None), "port-ambiguous": (401, None), "port-unambiguous": (401, None),
    "ipv6-bad": (400, "Request-URI"),  # "should respond with a 400 Bad Request error"
    "via1-valid": (481, None), "mult-ip-in-header": (481, None),  # BYEs for no dialog of Hatif's
    "via2-valid": (200, None), "ipv6-correct-abnf-2-colons": (200, None),
    "ipv6-in-sdp": (407, None), "mult-ip-in-sdp": (407, None), "ipv4-mapped-ipv6": (407, None),
    "ipv6-bug-abnf-3-colons": (400, "IPv6"),  # RFC 5954 fixed the grammar: the extra colon is invalid
}


def test_every_message_has_a_server_outcome() -> None:
    assert set(SERVER) == {p.stem for p in TORTURE.glob("*.dat")}


class ErrorCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def hatif() -> Iterator[RunningHatif]:
    catcher = ErrorCatcher()
    logging.getLogger().addHandler(catcher)
    try:
        with RunningHatif(CONFIG.format(port=free_port(tcp=False))) as h:
            h.errors = catcher.records  # type: ignore[attr-defined]
            yield h
    finally:
        logging.getLogger().removeHandler(catcher)


_NET = random.randrange(2, 250)  # a /16 of 127/8 of this run's own: no clash with a test running beside it
_next_host = iter(f"127.{_NET}.{i // 250}.{i % 250 + 2}" for i in range(10_000))


def answer_port(data: bytes) -> int:
    """The port RFC 3261 §18.2.2 sends the answer to: the top Via's, 5060 by default; 0 (any) with rport,
    which answers to the source port, or when no answer can come."""
    msg: Request | Response | None
    try:
        msg = parse_message(data)
    except ParseError as e:
        msg = e.partial
    via = via_to_answer(msg) if isinstance(msg, Request) else None
    if via is None or via.param("rport") is not None:
        return 0
    return via.port or 5060


def exchange(server: tuple[str, int], data: bytes, port: int, wait: float) -> list[bytes]:
    """Send `data` from a fresh loopback address; the datagrams that come back until a final response
    (or for `wait` seconds when none comes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A program bound to 0.0.0.0:5060 (a SIPp beside this test) does not stop a bind to this address:
    # the more specific socket gets the datagrams sent to it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind((next(_next_host), port))
        except OSError as e:
            pytest.skip(f"cannot bind loopback port {port} that the Via names: {e}")
        sock.sendto(data, server)
        got: list[bytes] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                got.append(sock.recv(65535))
            except TimeoutError:
                break
            if int(got[-1].split(b" ", 2)[1]) >= 200:
                # Anything else would come right behind it (dblreq's INVITE, were it read).
                sock.settimeout(0.3)
                try:
                    got.append(sock.recv(65535))
                except TimeoutError:
                    pass
                break
        return got
    finally:
        sock.close()


def status_line(datagram: bytes) -> tuple[int, str]:
    """Status and reason, read from the bytes: a 400 copies the request's broken headers, so the whole
    answer need not parse."""
    line = datagram.split(b"\r\n", 1)[0].decode()
    version, status, reason = line.split(" ", 2)
    assert version == "SIP/2.0"
    return int(status), reason


@pytest.mark.parametrize("name", sorted(SERVER))
def test_server_answers_as_the_rfc_says(hatif: RunningHatif, name: str) -> None:
    data = load(name)
    expected, needle = SERVER[name]
    try:
        earlier = parse_message(data)
    except ParseError:
        earlier = None
    if isinstance(earlier, Request):
        # Several messages share a branch and sent-by (cparam01/cparam02, the RFC 5118 REGISTERs): to
        # Hatif that is the same transaction (RFC 3261 §17.2.3), so wait until the earlier one is over.
        deadline = time.monotonic() + 10
        while hatif.call(hatif.h.sip.transactions.match_request, earlier) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    got = exchange(hatif.address("udp"), data, answer_port(data), 2.0 if expected else 0.6)
    # One final answer; the INVITE transaction retransmits it until an ACK (RFC 3261 §17.2.1), hence set().
    finals = list({status_line(d) for d in got if int(d.split(b" ", 2)[1]) >= 200})
    if expected is NO_ANSWER:
        assert got == [], f"{name}: no response was possible, got {got[:1]!r}"
        return
    assert len(finals) == 1, f"{name}: {got!r}"
    status, reason = finals[0]
    assert status == expected, f"{name}: {status} {reason}"
    if needle is not None:
        assert needle in reason, f"{name}: reason {reason!r} does not name {needle!r}"
    answer = next(d for d in got if int(d.split(b" ", 2)[1]) >= 200)
    if name == "bext01":
        assert b"\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n" in answer
    if name == "invut":
        assert b"\r\nAccept: application/sdp\r\n" in answer
    if name in ("intmeth", "esc02", "mpart01"):
        assert b"\r\nAllow: INVITE," in answer


def test_server_survives_the_corpus(hatif: RunningHatif) -> None:
    """Runs after the corpus (file order): the listener still answers OPTIONS and nothing logged an error."""
    options = (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKalive;rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: alive-after-torture\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    got = exchange(hatif.address("udp"), options.format(port=5060).encode(), 0, 2.0)
    assert got and status_line(got[-1])[0] == 200
    assert hatif.h.sip.stats["received"] >= len(SERVER)
    assert hatif.errors == [], [r.getMessage() for r in hatif.errors]  # type: ignore[attr-defined]
