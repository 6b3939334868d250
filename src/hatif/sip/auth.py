"""HTTP Digest authentication for SIP, server and client (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

The server challenges with SHA-256 first and MD5 second (RFC 8760 §2.4: a client takes the first it
supports). Nonces are stateless: a timestamp and random bytes signed with an HMAC of the server's secret,
so an unknown user is challenged exactly like a known one (SECURITY.md "No enumeration"), and an expired
nonce with a good signature is answered `stale=true` (RFC 7616 §3.3). A (nonce, nonce-count) pair is
accepted once, and the count must grow: a replayed request is refused. The memory of used nonces is
bounded. For an unknown user the same hashes are computed against a dummy password and compared in
constant time, so neither the answer nor its timing tells users apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_DUMMY_PASSWORD = secrets.token_hex(16)


class AuthError(ValueError):
    """A malformed Digest header value; the text says what is wrong."""


def _hash(algorithm: str, text: str) -> str:
    base = algorithm.removesuffix("-sess").upper()
    fn = ALGORITHMS.get(base)
    if fn is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    return fn(text.encode()).hexdigest()


def parse_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest a=b, c="d"` into the scheme and its parameters (names lower-cased)."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not scheme:
        raise AuthError("empty authentication header")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise AuthError(f"parameter without a value: {rest[i:i + 30]!r}")
        name = rest[i:eq].strip().lower()
        if not name or any(c in name for c in ' \t,"'):
            raise AuthError(f"bad parameter name {name!r}")
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            out = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(rest[i])
                i += 1
            if i >= n:
                raise AuthError(f"unterminated quoted value for {name!r}")
            i += 1
            params[name] = "".join(out)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
        if name in params and i < n and rest[i] not in " \t,":
            raise AuthError(f"unexpected text after {name!r}")
    return scheme, params


def parse_credentials(value: str) -> dict[str, str]:
    """The parameters of an Authorization/Proxy-Authorization value (Digest only)."""
    scheme, params = parse_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme!r}")
    return params


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    username: str | None = None
    stale: bool = False
    reason: str | None = None


def response_digest(algorithm: str, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
                    nc: str | None, cnonce: str | None, qop: str | None) -> str:
    """The `response` value of RFC 7616 §3.4.1 (and RFC 2069 when no qop)."""
    ha1 = _hash(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop:
        return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")


class DigestServer:
    """Challenges and verifies one realm's Digest credentials."""

    def __init__(self, realm: str, secret: bytes, nonce_lifetime: float = 300.0, max_nonces: int = 100_000) -> None:
        self.realm = realm
        self.secret = secret
        self.nonce_lifetime = nonce_lifetime
        self.max_nonces = max_nonces
        self.opaque = hmac.new(secret, b"opaque:" + realm.encode(), hashlib.sha256).hexdigest()[:32]
        self._used: OrderedDict[str, int] = OrderedDict()

    def _nonce(self, now: float) -> str:
        body = struct.pack("!d", now) + secrets.token_bytes(8)
        mac = hmac.new(self.secret, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def _nonce_time(self, nonce: str) -> float | None:
        """The nonce's timestamp when its signature is ours, else None."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32:
            return None
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(self.secret, body, hashlib.sha256).digest()[:16]):
            return None
        return float(struct.unpack("!d", body[:8])[0])

    def challenge(self, now: float, stale: bool = False,
                  algorithms: tuple[str, ...] = ("SHA-256", "MD5")) -> list[str]:
        """WWW-/Proxy-Authenticate values, one per algorithm: SHA-256 first, then MD5 (RFC 8760 §2.4)."""
        nonce = self._nonce(now)
        tail = ", stale=true" if stale else ""
        return [f'Digest realm={_quote(self.realm)}, nonce="{nonce}", opaque="{self.opaque}", '
                f'algorithm={alg}, qop="auth"{tail}' for alg in algorithms]

    def verify(self, credentials: str, method: str, now: float,
               lookup: Callable[[str], str | None]) -> AuthResult:
        """Check an Authorization value; `lookup(username)` gives the password or None."""
        p = parse_credentials(credentials)
        for name in ("username", "realm", "nonce", "uri", "response"):
            if name not in p:
                raise AuthError(f"credentials without {name}")
        username = p["username"]
        algorithm = p.get("algorithm", "MD5")
        if algorithm.removesuffix("-sess").upper() not in ALGORITHMS:
            return AuthResult(False, reason=f"unsupported algorithm {algorithm}")
        if p["realm"] != self.realm:
            return AuthResult(False, reason=f"wrong realm {p['realm']!r}")
        issued = self._nonce_time(p["nonce"])
        if issued is None:
            return AuthResult(False, reason="nonce not issued by us")
        qop = p.get("qop")
        if qop is not None and qop.lower() != "auth":
            return AuthResult(False, reason=f"unsupported qop {qop!r}")
        nc_text = p.get("nc")
        if qop and (nc_text is None or "cnonce" not in p):
            return AuthResult(False, reason="qop=auth without nc or cnonce")
        password = lookup(username)
        expected = response_digest(algorithm, username, self.realm,
                                   password if password is not None else _DUMMY_PASSWORD,
                                   method, p["uri"], p["nonce"], nc_text, p.get("cnonce"), qop)
        good = hmac.compare_digest(expected.encode(), p["response"].lower().encode())
        if not good or password is None:
            return AuthResult(False, reason="wrong credentials")
        if now - issued > self.nonce_lifetime:
            return AuthResult(False, username=username, stale=True, reason="nonce expired")
        try:
            nc = int(nc_text, 16) if nc_text is not None else 0
        except ValueError:
            return AuthResult(False, reason=f"bad nc {nc_text!r}")
        last = self._used.get(p["nonce"])
        if last is not None and nc <= last:
            return AuthResult(False, reason="replayed nonce count")
        self._used[p["nonce"]] = nc
        self._used.move_to_end(p["nonce"])
        while len(self._used) > self.max_nonces:
            self._used.popitem(last=False)
        return AuthResult(True, username=username)


def digest_response(challenge: str, method: str, uri: str, username: str, password: str, cnonce: str,
                    nc: int) -> str:
    """The Authorization value answering a challenge (for Hatif as a client, and tests)."""
    scheme, p = parse_params(challenge)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme!r}")
    if "realm" not in p or "nonce" not in p:
        raise AuthError("challenge without realm or nonce")
    algorithm = p.get("algorithm", "MD5")
    qops = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        raise AuthError(f"no supported qop in {p['qop']!r}")
    nc_text = f"{nc:08x}"
    resp = response_digest(algorithm, username, p["realm"], password, method, uri, p["nonce"],
                           nc_text if qop else None, cnonce if qop else None, qop)
    parts = [f"username={_quote(username)}", f"realm={_quote(p['realm'])}", f"nonce={_quote(p['nonce'])}",
             f"uri={_quote(uri)}", f"response={_quote(resp)}", f"algorithm={algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "opaque" in p:
        parts.append(f"opaque={_quote(p['opaque'])}")
    return "Digest " + ", ".join(parts)
