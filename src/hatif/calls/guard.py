"""No call lives forever: the checks that end a call whose party is gone, or that ran too long.

Three independent reasons, each ending the call with a BYE, a leg cause in the CDR and a `leg.timeout` event:

- `rtp_timeout`: no RTP packet accepted on an answered leg for `rtp_timeout` seconds (Asterisk's
  `rtptimeout`, FreeSWITCH's `media_timeout`). Not while the leg is on hold either way (a held party
  may rightly send nothing), and not for a leg that expects no RTP (no remote address or port 0).
- `session_expired`: the RFC 4028 session interval passed without a refresh (or Hatif's own refresh
  was answered 408/481: the dialog is gone on the other side).
- `max_duration`: the call is older than its tenant's `max_call_seconds`.

One sweep every `sweep` seconds for all calls, as the media clock is one timer for all media: no timer per
call. `check_leg` is a plain function of a leg's state and the time, so it is tested without a network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .leg import SipLeg

Verdict = Literal["refresh", "rtp_timeout", "session_expired", "max_duration"]


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How long a call may go without media, without a session refresh, or at all."""

    rtp_timeout: float = 30.0
    """Seconds without an RTP packet on an answered leg (not held) before the call ends; 0 turns it off."""
    session_expires: int = 1800
    """The session interval Hatif asks for (RFC 4028 §4; its recommended 30 minutes)."""
    min_se: int = 90
    """The smallest interval Hatif accepts (RFC 4028 §5: 90 s); a smaller request is answered 422."""
    max_call_seconds: Mapping[str, float] = field(default_factory=dict)
    """Per tenant: the longest a call may last; a tenant not named has no limit."""
    sweep: float = 0.5
    """Seconds between two checks of all calls."""


def check_leg(leg: SipLeg, now: float, limits: CallLimits) -> Verdict | None:
    """What is due for one answered leg now: a session refresh to send, a reason to end it, or nothing."""
    if limits.rtp_timeout > 0 and _rtp_expected(leg):
        received = leg.media.received
        if received != leg.rtp_seen:
            leg.rtp_seen = received
            leg.rtp_since = now
        elif now - leg.rtp_since >= limits.rtp_timeout:
            return "rtp_timeout"
    else:
        leg.rtp_since = now  # held or no media: the silence starts counting when it ends
    deadline = leg.session_deadline()
    if deadline is not None and now >= deadline:
        return "session_expired"
    if leg.refresh_due(now):
        return "refresh"
    return None


def call_too_long(started: float, now: float, tenant: str, limits: CallLimits) -> bool:
    limit = limits.max_call_seconds.get(tenant)
    return limit is not None and limit > 0 and now - started >= limit


def _rtp_expected(leg: SipLeg) -> bool:
    if leg.held or leg.remote_held or leg.media.closed:
        return False
    remote = leg.media.remote
    return remote is not None and remote[1] != 0 and remote[0] not in ("0.0.0.0", "::")
