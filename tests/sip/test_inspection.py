"""Request inspection before authentication (RFC 3261 §8.2.1 to §8.2.3), sans-IO."""

from __future__ import annotations

import pytest

from hatif.sip import Request, parse_message
from hatif.sip.inspection import inspect_request
from hatif.sip.server import ALLOW, OUT_OF_DIALOG


def invite(extra: str = "", method: str = "INVITE", ruri: str = "sip:1002@hatif.local",
           contact: str = "<sip:1001@10.0.0.1>", body: str = "") -> Request:
    m = parse_message((
        f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:1001@hatif.local>;tag=a\r\nTo: <sip:1002@hatif.local>\r\nCall-ID: c1\r\n"
        f"CSeq: 1 {method}\r\nContact: {contact}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}").encode())
    assert isinstance(m, Request)
    return m


@pytest.mark.parametrize("request_, status", [
    (invite(), None),
    (invite("Content-Type: application/sdp\r\nAccept: application/sdp, text/plain\r\n", body="v=0\r\n"), None),
    (invite("Accept: */*\r\n"), None),
    (invite("Require: timer\r\n"), None),
    (invite(method="NEWMETHOD"), 501),
    (invite(method="SUBSCRIBE"), 405),
    (invite(ruri="mailto:someone@example.com"), 416),
    (invite(contact="<name:John_Smith>"), 416),
    (invite("Require: 100rel\r\n"), 420),
    (invite("Content-Type: text/html\r\n", body="<p>"), 415),
    (invite("Accept: text/html\r\n"), 406),
])
def test_inspection(request_: Request, status: int | None) -> None:
    refusal = inspect_request(request_, OUT_OF_DIALOG, ALLOW)
    assert (refusal.status if refusal else None) == status
    if status == 420:
        assert refusal is not None and refusal.extra == (("Unsupported", "100rel"),)
