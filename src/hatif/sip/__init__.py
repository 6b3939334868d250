"""Hatif's SIP stack: sans-IO messages, URIs, SDP, digest, transactions and dialogs, with asyncio shells.

The sans-IO modules (`message`, `headers`, `uri`, `sdp`, `auth`, `transaction`, `dialog`) never touch a
socket or a clock; `transport`, `registrar` and `b2bua` are the thin asyncio shells around them.
"""

from .errors import ParseError
from .headers import CSeq, Headers, NameAddr, Via
from .message import Request, Response, StreamFramer, make_response, parse_message
from .uri import URI, parse_uri

__all__ = [
    "URI",
    "CSeq",
    "Headers",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "StreamFramer",
    "Via",
    "make_response",
    "parse_message",
    "parse_uri",
]
