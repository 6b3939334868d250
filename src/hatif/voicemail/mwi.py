"""Message waiting indication (MWI): the body that tells a phone to light its voicemail lamp.

RFC 3842 defines the `message-summary` event package; its NOTIFY bodies are `application/simple-message-summary`
(§5): a status line, the account the counts belong to, and one line per message class::

    Messages-Waiting: yes
    Message-Account: sip:alice@example.com
    Voice-Message: 2/8

`message_summary` builds that body (sans-IO); the SIP side (subscriptions, NOTIFY) belongs to the lead's
`calls`/`sip` code, which receives the counts through the `Notifier` protocol the voicemail service calls after
every message stored, heard or deleted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from .model import Mailbox

EVENT: Final = "message-summary"
"""The Event header value of MWI subscriptions and notifications (RFC 3842 §3)."""
CONTENT_TYPE: Final = "application/simple-message-summary"
"""The Content-Type of their bodies (RFC 3842 §5)."""


def message_summary(new: int, old: int, account_uri: str | None) -> bytes:
    """An RFC 3842 §5.2 `simple-message-summary` body for `new` unheard and `old` heard voice messages.

    `Messages-Waiting` is `yes` exactly when there is a new message (§5.2: "yes" if the account has new
    messages); `Message-Account` is left out when `account_uri` is None (it is optional, §5.2). Each line ends
    in CRLF, as the grammar's `msg-status-line CRLF` requires.
    """
    if new < 0 or old < 0:
        raise ValueError(f"message counts cannot be negative (new={new}, old={old})")
    lines = [f"Messages-Waiting: {'yes' if new else 'no'}"]
    if account_uri is not None:
        if not account_uri or any(ord(c) <= 32 or ord(c) == 127 for c in account_uri):
            raise ValueError(f"{account_uri!r} is not a URI for Message-Account (empty, or spaces or line breaks)")
        lines.append(f"Message-Account: {account_uri}")
    lines.append(f"Voice-Message: {new}/{old}")
    return "".join(f"{line}\r\n" for line in lines).encode("ascii")


class Notifier(Protocol):
    """Told the counts of a mailbox after each change, to send MWI NOTIFYs to the phones of `mailbox.recipients`.

    Called on Hatif's event loop; it should not wait long (the voicemail service calls it between storing a
    message and thanking the caller), and its errors are logged, never shown to callers.
    """

    async def notify(self, tenant: str, mailbox: Mailbox, new: int, old: int) -> None: ...
