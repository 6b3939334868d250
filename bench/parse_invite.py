"""Parse rate of a typical INVITE (with SDP), in messages per second on one core.

    .venv/bin/python bench/parse_invite.py

Prints one line: `parse_invite: N messages/s` (best of five runs of 20,000 parses), then the same for
serialization, which the B2BUA does as often.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from hatif.sip import parse_message

INVITE = (
    b"INVITE sip:2000@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4185-1-0;rport\r\n"
    b"From: \"Amira Haddad\" <sip:1001@127.0.0.1:5061>;tag=4185SIPpTag001\r\n"
    b"To: <sip:2000@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-4185@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:1001@127.0.0.1:5061>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"User-Agent: SIPp\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 129\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def distinct_invites(n: int, round_no: int) -> list[bytes]:
    """n INVITEs that differ in Call-ID, tag and branch, as n calls would (so no cache helps)."""
    return [INVITE.replace(b"4185", b"%d-%06d" % (round_no, i)) for i in range(n)]


def best_rate(make: Callable[[int], list[Any]], fn: Callable[[Any], object], rounds: int = 5) -> float:
    best = 0.0
    for r in range(rounds):
        items = make(r)
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = max(best, len(items) / (time.perf_counter() - t0))
    return best


def main() -> None:
    n = 20_000
    assert parse_message(INVITE).body.endswith(b"PCMU/8000\r\n")
    parse_rate = best_rate(lambda r: distinct_invites(n, r), parse_message)
    ser_rate = best_rate(lambda r: [parse_message(d) for d in distinct_invites(n, 100 + r)], bytes)
    out = sys.stdout
    out.write(f"parse_invite: {parse_rate:,.0f} messages/s\n")
    out.write(f"serialize_invite: {ser_rate:,.0f} messages/s\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
