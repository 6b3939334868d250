"""Hatif's exceptions in one family tree: `HatifError` at the root, one base per area below it.

Every exception Hatif raises derives from one of these bases, so a caller can catch an area's faults
(`except SipError`) or everything of Hatif's (`except HatifError`) without naming each class; classes
that code catches as built-ins keep those bases too (`ParseError` is a `SipError` and a `ValueError`).
`tests/test_errors.py` proves that every exception class in `src/hatif` is in this tree.

This module is layer 0: it imports nothing of Hatif. The store's family base is `hatif.store.db.StoreError`
and the event model's is `hatif.events.EventError` (both derive from `HatifError`); they stay where their
owners defined them.
"""

from __future__ import annotations

__all__ = [
    "AcdError",
    "BusError",
    "CallError",
    "ConfigError",
    "HatifError",
    "IvrError",
    "MediaError",
    "SimError",
    "SipError",
    "WebError",
]


class HatifError(Exception):
    """The root of every exception Hatif defines."""


class SipError(HatifError):
    """SIP could not do what was asked: a message that does not parse, an SDP, digest, a full table."""


class MediaError(HatifError):
    """Media could not do what was asked: an RTP/RTCP/SRTP packet, DTMF, a prompt, the engine's ports."""


class CallError(HatifError):
    """Call control: a call ended while an application was working on it."""


class IvrError(HatifError):
    """An IVR flow is unusable."""


class AcdError(HatifError):
    """The ACD router was asked about an unknown queue, agent or call, or for an impossible transition."""


class ConfigError(HatifError, ValueError):
    """The configuration is unusable; `messages` holds every problem as `file:line: field: reason`."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class WebError(HatifError):
    """The HTTP API answers other than with success."""


class BusError(HatifError):
    """The event bus ended a subscription or no longer holds the history asked for; the broker is away."""


class PeopleError(HatifError):
    """Users, roles, sessions and tokens: a name taken, a rule of the people model broken."""


class SimError(HatifError):
    """The simulator, the demo's traffic or `hatif simulate` could not do what was asked."""
