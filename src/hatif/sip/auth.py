"""HTTP Digest authentication for SIP, server and client (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

It works on header values (`WWW-Authenticate`, `Authorization` and their proxy twins) as strings.

The server challenges with the algorithms it is given, in order, all with the same nonce (RFC 8760 §2.4: a
client takes the topmost it supports). Hatif's default is MD5 alone, since SIPp, SIP.js, JsSIP and svcrack
answer only MD5 and read only the first challenge; SHA-256 is turned on per tenant or user. The server never
sees a password: it checks responses against HA1 values (RFC 7616 §3.4.2: `H(username:realm:password)`), one
per algorithm, which is what Hatif stores. Nonces are stateless: a timestamp and random bytes signed with an
HMAC of the server's secret and realm, so an unknown user is challenged exactly like a known one
(SECURITY.md "No enumeration"), and an expired nonce with a good signature is answered `stale=true`
(RFC 7616 §3.3). A nonce-count must grow for each nonce: a replayed request is refused. The memory of used
nonces is bounded; a fresh nonce older than one already forgotten is re-challenged as stale, so forgetting
never lets a replay through. For an unknown user the same hashes are computed against a dummy HA1 and
compared in constant time, so neither the answer nor its timing tells users apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import SipError

ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256"}
"""RFC 7616 §3.3 / RFC 8760 §2.2: the hashlib name behind each `algorithm` (each with a `-sess` variant)."""
_DUMMY_SECRET = secrets.token_hex(32)
# RFC 3261 §25.1 token, and one auth-param: name = token / quoted-string (RFC 7235 §2.1).
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~#$&^|]+"
_SCHEME = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+(.*))?", re.S)
_NAME = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_BARE = re.compile(r'[^ \t,"]+')
_ESCAPE = re.compile(r"\\(.)", re.S)
_NC = re.compile(r"[0-9a-fA-F]{8}")


class AuthError(SipError, ValueError):
    """A malformed or unusable Digest header value; the text says what is wrong."""


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a=b, c="d"` into the scheme and its parameters: names lower-cased, quotes and
    backslash escapes removed (RFC 3261 §25.1 quoted-string, RFC 7235 §2.1 auth-param lists)."""
    head = _SCHEME.fullmatch(value.strip())
    if head is None:
        raise AuthError(f"no authentication scheme in {value[:40]!r}")
    rest = head.group(2) or ""
    params: dict[str, str] = {}
    pos = 0
    while True:
        while pos < len(rest) and rest[pos] in " \t,":
            pos += 1
        if pos == len(rest):
            return head.group(1), params
        m = _NAME.match(rest, pos)
        if m is None:
            raise AuthError(f"parameter is not name=value: {rest[pos:pos + 40]!r}")
        name, pos = m.group(1).lower(), m.end()
        if name in params:
            raise AuthError(f"parameter {name!r} given twice")
        quoted, bare = _QUOTED.match(rest, pos), _BARE.match(rest, pos)
        if quoted is not None:
            params[name], pos = _ESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
        elif bare is not None:
            params[name], pos = bare.group(0), bare.end()
        elif rest.startswith('"', pos):
            raise AuthError(f"unterminated quoted value for {name!r}")
        else:
            raise AuthError(f"parameter {name!r} without a value")
        while pos < len(rest) and rest[pos] in " \t":
            pos += 1
        if pos < len(rest) and rest[pos] != ",":
            raise AuthError(f"expected a comma after parameter {name!r}")


def _digest_params(value: str) -> dict[str, str]:
    scheme, params = parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme!r} (only Digest)")
    return params


def parse_credentials(value: str) -> dict[str, str]:
    """The raw parameters of an Authorization value, for logging who claimed to be whom."""
    return _digest_params(value)


def _quote(name: str, value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise AuthError(f"control character in {name}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _required(params: dict[str, str], names: tuple[str, ...], what: str) -> None:
    for name in names:
        if name not in params:
            raise AuthError(f"{what} without {name}")


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge: a WWW-Authenticate or Proxy-Authenticate value (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        p = _digest_params(value)
        _required(p, ("realm", "nonce"), "challenge")
        qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
        return cls(p["realm"], p["nonce"], p.get("algorithm", "MD5"), qop, p.get("opaque"),
                   p.get("stale", "false").lower() == "true")

    def serialize(self) -> str:
        parts = [f"realm={_quote('realm', self.realm)}", f"nonce={_quote('nonce', self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote('opaque', self.opaque)}")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote('qop', ','.join(self.qop))}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials: an Authorization or Proxy-Authorization value (RFC 7616 §3.4, RFC 3261 §22.4).

    With `qop`, `nc` (8 hex digits) and `cnonce` are required; without it, this is RFC 2069 style."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        p = _digest_params(value)
        _required(p, ("username", "realm", "nonce", "uri", "response"), "credentials")
        if "qop" in p:
            _required(p, ("nc", "cnonce"), f"credentials with qop={p['qop']}")
        if "nc" in p and not _NC.fullmatch(p["nc"]):
            raise AuthError(f"nonce-count {p['nc']!r} is not 8 hex digits")
        return cls(p["username"], p["realm"], p["nonce"], p["uri"], p["response"], p.get("algorithm"),
                   p.get("qop"), p.get("nc"), p.get("cnonce"), p.get("opaque"))

    def serialize(self) -> str:
        parts = [f"{name}={_quote(name, value)}" for name, value in (
            ("username", self.username), ("realm", self.realm), ("nonce", self.nonce), ("uri", self.uri),
            ("response", self.response))]
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.qop is not None:
            if self.nc is None or self.cnonce is None:
                raise AuthError(f"credentials with qop={self.qop} need nc and cnonce")
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={_quote('cnonce', self.cnonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote('opaque', self.opaque)}")
        return "Digest " + ", ".join(parts)


def _hash_function(algorithm: str) -> str | None:
    return ALGORITHMS.get(algorithm.upper().removesuffix("-SESS"))


def base_algorithm(algorithm: str) -> str | None:
    """`MD5` or `SHA-256` for an algorithm we support (with or without `-sess`), else None."""
    base = algorithm.upper().removesuffix("-SESS")
    return base if base in ALGORITHMS else None


def _hasher(algorithm: str) -> Callable[[str], str]:
    hash_name = _hash_function(algorithm)
    if hash_name is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    return lambda text: hashlib.new(hash_name, text.encode("utf-8")).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username ":" realm ":" password) (RFC 7616 §3.4.2): the secret a server keeps instead of the
    password, one per hash algorithm (`MD5`, `SHA-256`)."""
    return _hasher(algorithm)(f"{username}:{realm}:{password}")


def response_from_ha1(algorithm: str, secret: str, method: str, uri: str, nonce: str, nc: str | None,
                      cnonce: str | None, qop: str | None) -> str:
    """The `response` value from a stored HA1: RFC 7616 §3.4.1 with qop, RFC 2069 without; `-sess` per
    RFC 7616 §3.4.2 (the session HA1 is derived from the stored one)."""
    h = _hasher(algorithm)
    if algorithm.upper().endswith("-SESS"):
        secret = h(f"{secret}:{nonce}:{cnonce or ''}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{secret}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}") if qop else h(f"{secret}:{nonce}:{ha2}")


def response_digest(algorithm: str, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    nc: str | None, cnonce: str | None, qop: str | None) -> str:
    """The `response` value a client computes from its password (RFC 7616 §3.4.1)."""
    return response_from_ha1(algorithm, ha1(algorithm, username, realm, password), method, uri, nonce, nc,
                             cnonce, qop)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of `DigestServer.verify`: ok (with the user), stale (re-challenge with stale=true and
    count no failure), or failed, with a reason for the log (never for the response)."""

    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str | None = None


def _failed(reason: str) -> AuthResult:
    return AuthResult(False, reason=reason)


class DigestServer:
    """Challenges and verifies the Digest credentials of one realm (RFC 3261 §22.4, RFC 7616 §3.3)."""

    def __init__(self, realm: str, secret: bytes, nonce_lifetime: float = 300.0, max_nonces: int = 100_000) -> None:
        self.realm = realm
        self.secret = secret
        self.nonce_lifetime = nonce_lifetime
        self.max_nonces = max_nonces
        self.opaque = hmac.new(secret, b"opaque:" + realm.encode(), hashlib.sha256).hexdigest()[:32]
        self._used: OrderedDict[str, tuple[float, int]] = OrderedDict()  # nonce -> (issued, last nonce-count)
        self._forgotten_up_to = -math.inf  # the latest issue time of a nonce dropped from `_used`

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self.secret, self.realm.encode() + b"\0" + body, hashlib.sha256).digest()[:16]

    def _nonce(self, now: float) -> str:
        body = struct.pack("!d", now) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(body + self._mac(body)).decode().rstrip("=")

    def _nonce_time(self, nonce: str) -> float | None:
        """The nonce's issue time when we signed it for this realm, else None."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._mac(raw[:16])):
            return None
        issued: float = struct.unpack("!d", raw[:8])[0]
        return issued

    def challenge(self, now: float, stale: bool = False,
                  algorithms: tuple[str, ...] = ("SHA-256", "MD5")) -> list[str]:
        """WWW-/Proxy-Authenticate values, one per algorithm in the order given (RFC 8760 §2.4), same nonce."""
        nonce = self._nonce(now)
        return [Challenge(self.realm, nonce, alg, ("auth",), self.opaque, stale).serialize() for alg in algorithms]

    def verify(self, credentials: str, method: str, now: float,
               lookup: Callable[[str, str], str | None]) -> AuthResult:
        """Check an Authorization value against `method`; `lookup(username, algorithm)` gives the user's HA1 for
        `MD5` or `SHA-256`, or None when there is no such user or that algorithm is not allowed for them.

        Raises AuthError when the value is malformed; otherwise the result says ok, stale or failed."""
        c = Credentials.parse(credentials)
        algorithm = c.algorithm or "MD5"
        base = base_algorithm(algorithm)
        if base is None:
            return _failed(f"unsupported algorithm {algorithm!r}")
        if c.realm != self.realm:
            return _failed(f"wrong realm {c.realm!r}")
        if c.opaque is not None and c.opaque != self.opaque:
            return _failed("opaque not ours")
        issued = self._nonce_time(c.nonce)
        if issued is None:
            return _failed("nonce not issued by us")
        if c.qop is not None and c.qop.lower() != "auth":
            return _failed(f"unsupported qop {c.qop!r}")
        if algorithm.upper().endswith("-SESS") and c.cnonce is None:
            return _failed(f"{algorithm} without cnonce")
        secret = lookup(c.username, base)
        expected = response_from_ha1(algorithm, secret if secret is not None else _DUMMY_SECRET, method, c.uri,
                                     c.nonce, c.nc, c.cnonce, c.qop)
        good = hmac.compare_digest(expected.encode(), c.response.lower().encode())
        if not good or secret is None:
            return _failed("wrong credentials")
        if abs(now - issued) > self.nonce_lifetime:
            return AuthResult(False, c.username, stale=True, reason="nonce expired")
        return self._count(c, issued)

    def _count(self, c: Credentials, issued: float) -> AuthResult:
        """Accept each (nonce, nonce-count) once, counts growing (RFC 7616 §3.4.3, §5.11)."""
        nc = int(c.nc, 16) if c.qop is not None and c.nc is not None else 0
        seen = self._used.get(c.nonce)
        if seen is None and issued <= self._forgotten_up_to:
            return AuthResult(False, c.username, stale=True, reason="nonce forgotten")
        if seen is not None and nc <= seen[1]:
            if c.qop is None:  # RFC 2069 has no count: a nonce serves once, then the client gets a fresh one
                return AuthResult(False, c.username, stale=True, reason="nonce already used (no qop)")
            return _failed("replayed nonce count")
        self._used[c.nonce] = (issued, nc)
        self._used.move_to_end(c.nonce)
        while len(self._used) > self.max_nonces:
            _, (dropped, _) = self._used.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, dropped)
        return AuthResult(True, c.username)

    def __len__(self) -> int:
        """How many nonces the replay memory holds."""
        return len(self._used)


def select_challenge(values: Iterable[str]) -> str:
    """The topmost challenge whose algorithm we support (RFC 8760 §2.4)."""
    seen: list[str] = []
    for value in values:
        try:
            algorithm = Challenge.parse(value).algorithm
        except AuthError:
            continue
        if _hash_function(algorithm) is not None:
            return value
        seen.append(algorithm)
    raise AuthError("no challenge with a supported algorithm" + (f" (offered {', '.join(seen)})" if seen else ""))


def digest_response(challenge: str, method: str, uri: str, username: str, password: str, cnonce: str,
                    nc: int) -> str:
    """The Authorization value answering `challenge` (Hatif registering to a trunk, and test UACs)."""
    ch = Challenge.parse(challenge)
    if _hash_function(ch.algorithm) is None:
        raise AuthError(f"unsupported algorithm {ch.algorithm!r}")
    qop = "auth" if "auth" in ch.qop else None
    if ch.qop and qop is None:
        raise AuthError(f"no supported qop in {','.join(ch.qop)!r} (only auth)")
    if qop is None and ch.algorithm.upper().endswith("-SESS"):
        raise AuthError(f"{ch.algorithm} needs qop (it uses a cnonce)")
    if not 0 < nc < 2**32:
        raise AuthError(f"nonce-count {nc} out of range")
    nc_text = f"{nc:08x}" if qop else None
    response = response_digest(ch.algorithm, username, ch.realm, password, method, uri, ch.nonce, nc_text,
                               cnonce if qop else None, qop)
    return Credentials(username, ch.realm, ch.nonce, uri, response, ch.algorithm, qop, nc_text,
                       cnonce if qop else None, ch.opaque).serialize()
