"""Secrets: argon2id password hashes (RFC 9106), random session and token secrets kept as SHA-256, and the
CSRF token of a session.

A session's CSRF token is an HMAC of its secret, so the server keeps nothing more and only the holder of the
cookie (which scripts cannot read: HttpOnly) and the page it signed in from know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TOKEN_PREFIX = "hatif_"
_CSRF_CONTEXT = b"hatif csrf v1"


def new_secret() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    """An API token: recognizable by its prefix (secret scanners), 256 random bits."""
    return TOKEN_PREFIX + new_secret()


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_of(session_secret: str) -> str:
    return hmac.new(session_secret.encode("utf-8", "surrogateescape"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


class Passwords:
    """argon2id through argon2-cffi's `PasswordHasher` (its defaults are RFC 9106's second recommendation).

    `verify_dummy` spends the same work on a name that does not exist, so a sign-in's time does not tell known
    names from unknown ones (SECURITY.md: no enumeration)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash(new_secret())

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
