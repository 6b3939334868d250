"""RFC 4028 session timers: how long a dialog lives without a refresh, and who refreshes it.

A session whose parties vanished (a phone lost power, a NAT forgot the binding, a caller's process died
after its ACK) would otherwise live forever: nothing in SIP says a dialog has to end. With a session timer
one side (the refresher) sends a re-INVITE or UPDATE every half interval (§10); when the interval passes
without one, either side ends the session with a BYE (§10: no later than the interval minus the smaller of
32 s and a third of it).

Sans-IO: headers in, a `SessionTimer` (or the `422` to answer) out; the caller owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .message import Request, Response

Refresher = Literal["uac", "uas"]


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """The negotiated session interval (seconds) and who refreshes (RFC 4028 §4)."""

    interval: int
    refresher: Refresher

    def header(self) -> str:
        return f"{self.interval};refresher={self.refresher}"

    def expiry_margin(self) -> float:
        """How long before the interval's end the side that does not refresh sends its BYE (§10)."""
        return float(min(32, self.interval / 3))


@dataclass(frozen=True, slots=True)
class TooSmall:
    """The request's Session-Expires is below our Min-SE: answer 422 with this Min-SE (§6, §9)."""

    min_se: int


def parse_session_expires(value: str | None) -> tuple[int, Refresher | None] | None:
    """`Session-Expires: 1800;refresher=uac` -> (1800, "uac"); None if absent
    or unreadable (a value we cannot read is treated as no timer, never as an error)."""
    if not value:
        return None
    delta, *params = (part.strip() for part in value.split(";"))
    if not delta.isdigit():
        return None
    refresher: Refresher | None = None
    for param in params:
        name, _, v = param.partition("=")
        if name.strip().lower() == "refresher" and v.strip().lower() in ("uac", "uas"):
            refresher = "uac" if v.strip().lower() == "uac" else "uas"
    return int(delta), refresher


def _supports_timer(message: Request | Response) -> bool:
    values = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(token.strip().lower() == "timer" for v in values for token in v.split(","))


def session_expires_of(message: Request | Response) -> tuple[int, Refresher | None] | None:
    return parse_session_expires(message.headers.get("Session-Expires"))


def uas_timer(invite: Request, min_se: int, default: int) -> SessionTimer | TooSmall:
    """What Hatif, answering `invite`, puts in its 2xx (RFC 4028 §9).

    A requested interval below `min_se` is refused (422). A requested interval is kept, with the requested
    refresher, or the caller when it supports timers, or Hatif. Without a request Hatif still uses a timer
    (`default` seconds): the caller refreshes when it said `Supported: timer`, otherwise Hatif does, so
    even a caller that knows nothing of session timers cannot leave a dialog behind."""
    requested = session_expires_of(invite)
    supports = _supports_timer(invite)
    if requested is None:
        return SessionTimer(max(default, min_se), "uac" if supports else "uas")
    interval, refresher = requested
    if interval < min_se:
        return TooSmall(min_se)
    if refresher is None:
        refresher = "uac" if supports else "uas"
    return SessionTimer(interval, refresher)


def uac_timer(response: Response) -> SessionTimer | None:
    """The timer a 2xx to Hatif's INVITE set (RFC 4028 §7.2): none when the 2xx has no Session-Expires;
    the refresher is Hatif (the UAC) when the 2xx names none."""
    found = session_expires_of(response)
    if found is None:
        return None
    interval, refresher = found
    return SessionTimer(interval, refresher or "uac")


def refreshed(request: Request, current: SessionTimer, min_se: int) -> SessionTimer | TooSmall:
    """A refresh (re-INVITE or UPDATE) from the party: its Session-Expires may change the interval and the
    refresher; without one the current timer goes on (RFC 4028 §9, applied to a session refresh)."""
    found = session_expires_of(request)
    if found is None:
        return current
    interval, refresher = found
    if interval < min_se:
        return TooSmall(min_se)
    return SessionTimer(interval, refresher or current.refresher)
