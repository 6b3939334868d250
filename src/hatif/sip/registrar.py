"""The registrar's location service (RFC 3261 §10.3), sans-IO.

`Registry.register()` applies one authenticated REGISTER to the bindings of an address of record and
returns the status to answer with and the bindings to list in it. Time is passed in; `expire(now)` drops
bindings whose time is up. Each binding remembers the address the REGISTER really came from, so that
requests reach a phone behind NAT at the address it sends from (as Kamailio's nathelper does), not at
the private address written in its Contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .headers import NameAddr
from .message import Request
from .uri import URI


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact of an address of record."""

    contact: NameAddr
    expires_at: float
    call_id: str
    cseq: int
    source: tuple[str, str, int]  # transport, host, port the REGISTER came from
    q: float = 1.0
    registered_at: float = 0.0

    @property
    def uri(self) -> URI:
        assert self.contact.uri is not None
        return self.contact.uri

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """What to answer: status, reason, the current bindings, and a Min-Expires for 423."""

    status: int
    reason: str
    bindings: tuple[Binding, ...] = ()
    min_expires: int | None = None
    changed: bool = False


@dataclass(slots=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    max_contacts: int = 5
    max_aors: int = 100_000


@dataclass(slots=True)
class Registry:
    """Bindings per address of record, keyed by (tenant, username)."""

    policy: RegistrarPolicy = field(default_factory=RegistrarPolicy)
    _bindings: dict[tuple[str, str], list[Binding]] = field(default_factory=dict)

    def register(self, key: tuple[str, str], request: Request, source: tuple[str, str, int],
                 now: float) -> RegisterResult:
        """Apply a REGISTER per RFC 3261 §10.3 steps 6 to 8."""
        self._expire_key(key, now)
        current = list(self._bindings.get(key, []))
        header_expires = request.header_int("Expires")
        contacts = request.contacts
        call_id = request.call_id
        cseq = request.cseq.seq
        if any(c.uri is None for c in contacts):
            # "*" is allowed only alone and with Expires: 0 (§10.3 step 6).
            if len(contacts) != 1 or header_expires != 0:
                return RegisterResult(400, "Wildcard Contact needs Expires 0 and no other contact")
            for b in current:
                if b.call_id == call_id and cseq <= b.cseq:
                    return RegisterResult(500, "Out of order REGISTER", tuple(current))
            self._bindings.pop(key, None)
            return RegisterResult(200, "OK", (), changed=bool(current))
        changed = False
        for c in contacts:
            assert c.uri is not None
            expires = header_expires if header_expires is not None else self.policy.default_expires
            ce = c.param("expires")
            if ce is not None:
                if not ce.isdigit():
                    return RegisterResult(400, f"Bad expires parameter {ce!r}")
                expires = int(ce)
            if 0 < expires < self.policy.min_expires:
                return RegisterResult(423, "Interval Too Brief", min_expires=self.policy.min_expires)
            expires = min(expires, self.policy.max_expires)
            q = 1.0
            qs = c.param("q")
            if qs:
                try:
                    q = float(qs)
                except ValueError:
                    return RegisterResult(400, f"Bad q parameter {qs!r}")
            same = [b for b in current if _same_contact(b.uri, c.uri)]
            for b in same:
                if b.call_id == call_id and cseq <= b.cseq:
                    return RegisterResult(500, "Out of order REGISTER", tuple(current))
            current = [b for b in current if not _same_contact(b.uri, c.uri)]
            if same:
                changed = True
            if expires > 0:
                current.append(Binding(c.without_params(), now + expires, call_id, cseq, source, q,
                                       same[0].registered_at if same else now))
                changed = changed or not same
        if len(current) > self.policy.max_contacts:
            current.sort(key=lambda b: b.registered_at)
            current = current[-self.policy.max_contacts :]
        if current:
            if key not in self._bindings and len(self._bindings) >= self.policy.max_aors:
                return RegisterResult(503, "Registrar full")
            self._bindings[key] = current
        else:
            self._bindings.pop(key, None)
        return RegisterResult(200, "OK", tuple(current), changed=changed)

    def lookup(self, key: tuple[str, str], now: float) -> list[Binding]:
        """Live bindings of an address of record, best q first, newest first among equals."""
        self._expire_key(key, now)
        return sorted(self._bindings.get(key, []), key=lambda b: (-b.q, -b.registered_at))

    def expire(self, now: float) -> int:
        """Drop every binding whose time is up; returns how many went."""
        gone = 0
        for key in list(self._bindings):
            gone += self._expire_key(key, now)
        return gone

    def _expire_key(self, key: tuple[str, str], now: float) -> int:
        bindings = self._bindings.get(key)
        if not bindings:
            return 0
        live = [b for b in bindings if b.expires_at > now]
        if len(live) == len(bindings):
            return 0
        if live:
            self._bindings[key] = live
        else:
            del self._bindings[key]
        return len(bindings) - len(live)

    def count(self) -> int:
        return sum(len(v) for v in self._bindings.values())

    def keys(self) -> list[tuple[str, str]]:
        return list(self._bindings)


def _same_contact(a: URI, b: URI) -> bool:
    """Contact comparison by URI (RFC 3261 §10.3 step 7, §19.1.4 simplified to user, host, port)."""
    return (a.scheme, a.user, a.host.lower(), a.port) == (b.scheme, b.user, b.host.lower(), b.port)
