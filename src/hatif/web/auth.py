"""API tokens: `Authorization: Bearer <token>` -> the tenant the token belongs to.

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, against every configured token without
stopping at the first match, so neither the time taken nor the answer tells a caller how close a guess came or
whether a token exists. A missing header, a malformed one and a wrong token all get the same 401.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

_SCHEME = "bearer"


class TokenAuth:
    """The API tokens of an installation, each mapped to one tenant."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._keys: list[tuple[bytes, str]] = []
        for i, (token, tenant) in enumerate(tokens.items()):
            if not token or token != token.strip() or any(c.isspace() for c in token):
                raise ValueError(f"API token #{i + 1} (tenant {tenant!r}) is empty or contains white space")
            if not tenant:
                raise ValueError(f"API token #{i + 1} has an empty tenant")
            self._keys.append((_digest(token), tenant))

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant of the bearer token in an `Authorization` header value, or None."""
        token = _bearer(authorization)
        presented = _digest(token if token is not None else "")
        tenant: str | None = None
        for key, owner in self._keys:
            if hmac.compare_digest(key, presented) and token is not None:
                tenant = owner
        return tenant


def _bearer(authorization: str | None) -> str | None:
    """RFC 6750 §2.1: `Bearer` (any case), one space or more, the token."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token:
        return None
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
