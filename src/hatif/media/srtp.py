"""SRTP for one leg (RFC 3711), keyed by SDES (RFC 4568 `a=crypto`), with libsrtp doing the crypto.

A leg that negotiated SRTP has two contexts: the party's key authenticates and decrypts what arrives
(`unprotect`: a tampered, forged or replayed packet fails and is dropped before anything reads it), ours
encrypts what Hatif sends (`protect`: our own frames, and packets relayed from a plain or another SRTP
leg, each under its own SSRC). RTCP is not sent (Hatif binds no RTCP port), so there is no SRTCP here.
The suites are AES_CM_128_HMAC_SHA1_80 and _32 (RFC 4568 §6.2), 30-octet master key and salt.
"""

from __future__ import annotations

import secrets

import pylibsrtp

from ..errors import MediaError

SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
"""RFC 4568 §6.2 suite name -> libsrtp profile, in our order of preference."""
KEY_LENGTH = 30  # 16-octet master key and 14-octet master salt (RFC 4568 §6.2.1)


class SrtpError(MediaError, ValueError):
    """A suite or key we cannot use; the text says which."""


def new_key() -> bytes:
    """A fresh master key and salt for our side of a session (never reused across descriptions)."""
    return secrets.token_bytes(KEY_LENGTH)


class Srtp:
    """The two SRTP contexts of one leg: `protect` with our key, `unprotect` with the party's."""

    __slots__ = ("_in", "_out", "suite")

    def __init__(self, suite: str, local_key: bytes, remote_key: bytes) -> None:
        profile = SUITES.get(suite)
        if profile is None:
            raise SrtpError(f"SRTP suite {suite!r} not supported (we take {', '.join(SUITES)})")
        if len(local_key) != KEY_LENGTH or len(remote_key) != KEY_LENGTH:
            raise SrtpError(f"an {suite} key and salt is {KEY_LENGTH} octets")
        self.suite = suite
        out = pylibsrtp.Policy(key=local_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        out.allow_repeat_tx = True  # a relayed duplicate is sent again, not refused
        self._out = pylibsrtp.Session(out)
        self._in = pylibsrtp.Session(pylibsrtp.Policy(key=remote_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                                      srtp_profile=profile))

    def protect(self, packet: bytes) -> bytes | None:
        """The SRTP packet for a plain RTP one, or None when libsrtp refuses it."""
        try:
            return self._out.protect(packet)
        except pylibsrtp.Error:
            return None

    def unprotect(self, packet: bytes) -> bytes | None:
        """The plain RTP of an authentic SRTP packet; None when it fails authentication or replay checks."""
        try:
            return self._in.unprotect(packet)
        except pylibsrtp.Error:
            return None
