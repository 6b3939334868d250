"""The dial plan: which user, endpoint or application a dialled number reaches. Pure, no I/O.

Call routing is call control's decision, not SIP's or configuration's: configuration validates the rules
and hands over a frozen `DialPlan` (`hatif.config.Tenant.dial_plan`); call control asks it for a `Route`.
Rules are tried in order; the first whose regex matches (`re.search`) and whose target exists wins, with
the dialled number first rewritten from the match when the rule has a template (`re.Match.expand`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ..sip.transport import Peer

__all__ = ["DialPlan", "Route", "RoutingRule", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a dialed number goes in a tenant, resolved for call control (a user, an endpoint with its address,
    an application)."""

    kind: Literal["user", "endpoint", "app"]
    tenant: str
    name: str
    number: str
    peer: Peer | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """The dial plan's answer for a number: a user (by username), an endpoint or an application."""

    kind: Literal["user", "endpoint", "app"]
    target: str
    number: str


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One rule: `kind` `extension` means the user whose extension is the (rewritten) number; `name` unused."""

    match: re.Pattern[str]
    kind: Literal["user", "extension", "endpoint", "app"]
    name: str = ""
    rewrite: str | None = None


@dataclass(frozen=True, slots=True)
class DialPlan:
    """A tenant's rules, in order, and its users by extension (extension -> username)."""

    rules: tuple[RoutingRule, ...] = ()
    extensions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def route(self, number: str) -> Route | None:
        """Where `number` goes, or None when no rule's target exists for it."""
        for rule in self.rules:
            m = rule.match.search(number)
            if m is None:
                continue
            dialed = m.expand(rule.rewrite) if rule.rewrite is not None else number
            if rule.kind == "extension":
                username = self.extensions.get(dialed)
                if username is not None:
                    return Route("user", username, dialed)
            else:
                return Route(rule.kind, rule.name, dialed)
        return None
