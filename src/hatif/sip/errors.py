"""Errors of the SIP core."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SipError

if TYPE_CHECKING:
    from .message import Message


class ParseError(SipError, ValueError):
    """A SIP message, header or URI that does not follow RFC 3261.

    The text names what is wrong, and is fit for the reason phrase of a `400` (RFC 3261 §21.4.1).
    `partial` holds what could be parsed of the message (its start line and headers), so that the
    transport can still answer a request it could not accept. `status` is the answer such a request
    gets: 400, or 505 for a SIP-Version other than 2.0 (RFC 3261 §21.5.6, RFC 4475 §3.1.2.16).
    """

    def __init__(self, reason: str, partial: Message | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.status = status
