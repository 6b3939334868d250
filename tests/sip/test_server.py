"""The SIP server over real UDP on 127.0.0.1: challenges, no user enumeration, identity, bans, 400s."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from peers import free_port

from hatif.sip import Response, parse_message
from hatif.sip.auth import digest_response
from hatif_server import RunningHatif

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  timers: {{t1: 0.05, t2: 0.4, t4: 0.5, d: 0.5}}
security:
  digest_algorithms: [SHA-256, MD5]  # opted in: these tests check both
  auth_failure_limit: 10
  flood_limit: 100
  ban_time: 300
logging:
  level: warning
tenants:
  - name: default
    domains: [hatif.local]
    users:
      - {{username: "1001", password: "amira-secret-1"}}
      - {{username: "1002", password: "reza-secret-22"}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
"""


class Phone:
    """A bare UDP socket speaking SIP by hand, for what softphones would hide."""

    def __init__(self, server: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.server = server
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(3)
        self.port = self.sock.getsockname()[1]
        self.n = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, user: str = "1001", target: str = "1001", extra: str = "",
                from_user: str | None = None, body: str = "") -> str:
        self.n += 1
        host, port = self.server
        ruri = f"sip:{host}:{port}" if method == "REGISTER" else f"sip:{target}@{host}:{port}"
        to = f"<sip:{user}@{host}>" if method == "REGISTER" else f"<sip:{target}@{host}>"
        return (f"{method} {ruri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{self.n}x{time.monotonic_ns()};rport\r\n"
                f"From: <sip:{from_user or user}@{host}>;tag=t{self.n}\r\nTo: {to}\r\n"
                f"Call-ID: c{self.n}-{self.port}\r\nCSeq: {self.n} {method}\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:{user}@{self.host}:{self.port}>\r\n{extra}"
                f"Content-Length: {len(body.encode())}\r\n\r\n{body}")

    def send(self, text: str | bytes) -> Response:
        self.sock.sendto(text.encode() if isinstance(text, str) else text, self.server)
        while True:
            msg = parse_message(self.sock.recv(65535))
            if isinstance(msg, Response) and msg.status >= 200:
                return msg

    def drain(self) -> int:
        """Throw away what is queued on the socket; returns how many datagrams."""
        self.sock.setblocking(False)
        n = 0
        try:
            while True:
                self.sock.recv(65535)
                n += 1
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(3)
        return n

    def silent(self, text: str, wait: float = 0.5) -> bool:
        """True when the server sends nothing back."""
        self.drain()
        self.sock.sendto(text.encode(), self.server)
        self.sock.settimeout(wait)
        try:
            self.sock.recv(65535)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(3)
        return False


@pytest.fixture
def hatif() -> Iterator[RunningHatif]:
    with RunningHatif(CONFIG.format(port=free_port(tcp=False))) as h:
        yield h


@pytest.fixture
def phone(hatif: RunningHatif) -> Iterator[Phone]:
    p = Phone(hatif.address("udp"))
    yield p
    p.close()


def authorized(phone: Phone, method: str, user: str, password: str, **kw: str) -> Response:
    extra = kw.pop("extra", "")
    first = phone.send(phone.request(method, user, extra=extra, **kw))
    assert first.status in (401, 407)
    header = "WWW-Authenticate" if first.status == 401 else "Proxy-Authenticate"
    challenge = first.headers.get_all(header)[0]
    assert "SHA-256" in challenge  # RFC 8760: SHA-256 offered first
    uri = f"sip:{phone.server[0]}:{phone.server[1]}" if method == "REGISTER" else \
        f"sip:{kw.get('target', user)}@{phone.server[0]}:{phone.server[1]}"
    creds = digest_response(challenge, method, uri, user, password, cnonce="abcdef", nc=1)
    name = "Authorization" if first.status == 401 else "Proxy-Authorization"
    return phone.send(phone.request(method, user, extra=f"{extra}{name}: {creds}\r\n", **kw))


def test_register_challenged_then_accepted(phone: Phone, hatif: RunningHatif) -> None:
    ok = authorized(phone, "REGISTER", "1001", "amira-secret-1")
    assert ok.status == 200
    assert ok.contacts and ok.contacts[0].param("expires") is not None
    assert hatif.call(lambda: hatif.h.sip.registry.count()) == 1


def test_unknown_user_gets_the_same_challenge(phone: Phone) -> None:
    known = phone.send(phone.request("REGISTER", "1001"))
    unknown = phone.send(phone.request("REGISTER", "9999"))
    assert known.status == unknown.status == 401
    shape = [h.split("nonce=")[0] for h in known.headers.get_all("WWW-Authenticate")]
    assert shape == [h.split("nonce=")[0] for h in unknown.headers.get_all("WWW-Authenticate")]
    assert len(known.headers.get_all("WWW-Authenticate")) == 2
    # An unknown user with credentials fails like a wrong password does.
    assert authorized(phone, "REGISTER", "9999", "whatever-pass").status == 401


def test_invite_needs_authentication_and_own_identity(phone: Phone) -> None:
    first = phone.send(phone.request("INVITE", "1001", target="1002"))
    assert first.status == 407
    # Authenticated as 1001 but claiming to be 1002 in From: refused.
    spoof = authorized(phone, "INVITE", "1001", "amira-secret-1", target="1002", from_user="1002")
    assert spoof.status == 403
    # Authenticated and honest, but 1002 is not registered: 480.
    assert authorized(phone, "INVITE", "1001", "amira-secret-1", target="1002").status == 480


def test_options_answered_without_auth(phone: Phone) -> None:
    resp = phone.send(phone.request("OPTIONS"))
    assert resp.status == 200 and "INVITE" in (resp.headers.get("Allow") or "")


def test_bad_request_answered_with_reason(phone: Phone) -> None:
    bad = phone.request("OPTIONS").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
    phone.sock.sendto(bad.encode(), phone.server)
    status_line = phone.sock.recv(65535).split(b"\r\n", 1)[0]
    # The answer copies the broken CSeq back, so it is read as bytes, not parsed.
    assert status_line.startswith(b"SIP/2.0 400 ") and b"CSeq" in status_line, status_line
    # Garbage without the headers needed to answer is dropped.
    assert phone.silent("\x00\x01 not sip at all")


def test_ten_failures_ban_the_address_but_not_others(hatif: RunningHatif, phone: Phone) -> None:
    for _ in range(10):
        first = phone.send(phone.request("REGISTER", "1001"))
        creds = digest_response(first.headers.get_all("WWW-Authenticate")[0], "REGISTER",
                                f"sip:{phone.server[0]}:{phone.server[1]}", "1001", "wrong-password", "c", 1)
        req = phone.request("REGISTER", "1001", extra=f"Authorization: {creds}\r\n")
        if not phone.silent(req, 0.5):
            continue
        break
    assert hatif.call(lambda: hatif.h.sip.stats["auth_failures"]) == 10
    # Banned: even a harmless OPTIONS gets nothing.
    assert phone.silent(phone.request("OPTIONS"))
    # Another address (127.0.0.2, still loopback) using the same account is still served.
    other = Phone(phone.server, "127.0.0.2")
    try:
        assert authorized(other, "REGISTER", "1001", "amira-secret-1").status == 200
    finally:
        other.close()


def test_request_flood_silences_the_source(hatif: RunningHatif, phone: Phone) -> None:
    for _ in range(150):  # more than flood_limit (100 here) within flood_window (2 s)
        phone.sock.sendto(phone.request("OPTIONS").encode(), phone.server)
    time.sleep(0.3)
    answered = phone.drain()
    assert answered <= 101  # answers stop once the flood limit is passed
    assert phone.silent(phone.request("OPTIONS"))
    assert hatif.call(lambda: hatif.h.sip.stats["dropped_banned"]) > 0


def test_unusable_sdp_is_refused_488(phone: Phone, hatif: RunningHatif) -> None:
    callee = Phone(phone.server, "127.0.0.3")
    try:
        assert authorized(callee, "REGISTER", "1002", "reza-secret-22").status == 200
        bad_sdp = "Content-Type: application/sdp\r\n"
        resp = authorized(phone, "INVITE", "1001", "amira-secret-1", target="1002", extra=bad_sdp,
                          body="v=0\r\nthis is not SDP\r\n")
        assert resp.status == 488 and "SDP" in resp.reason
        assert hatif.counts()["calls"] == 0
    finally:
        callee.close()
