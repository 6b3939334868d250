"""Digest authentication (RFC 7616, RFC 8760) with a fake clock."""

from __future__ import annotations

import pytest

from hatif.sip.auth import AuthError, DigestServer, digest_response, parse_credentials, response_digest

NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
PASSWORDS = {"1001": "amira-secret-1"}


def test_rfc7616_example_vectors() -> None:
    """RFC 7616 §3.9.1: Mufasa / Circle of Life, MD5 and SHA-256."""
    args = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html", NONCE, "00000001",
            CNONCE, "auth")
    assert response_digest("MD5", *args) == "8ca523f5e9506fed4657c9700eebdbec"
    assert response_digest("SHA-256", *args) == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def server() -> DigestServer:
    return DigestServer("hatif.local", b"k" * 32, nonce_lifetime=300)


@pytest.mark.parametrize("which", [0, 1])
def test_round_trip_both_algorithms(which: int) -> None:
    d = server()
    challenges = d.challenge(now=100.0)
    assert "SHA-256" in challenges[0] and "MD5" in challenges[1]
    creds = digest_response(challenges[which], "REGISTER", "sip:hatif.local", "1001", "amira-secret-1", "cn", 1)
    result = d.verify(creds, "REGISTER", 101.0, PASSWORDS.get)
    assert result.ok and result.username == "1001"


def test_wrong_password_unknown_user_and_method() -> None:
    d = server()
    ch = d.challenge(0.0)[0]
    bad = digest_response(ch, "REGISTER", "sip:h", "1001", "wrong-pass", "cn", 1)
    assert not d.verify(bad, "REGISTER", 1.0, PASSWORDS.get).ok
    ghost = digest_response(ch, "REGISTER", "sip:h", "9999", "whatever", "cn", 1)
    res = d.verify(ghost, "REGISTER", 1.0, PASSWORDS.get)
    assert not res.ok and res.reason == "wrong credentials"  # same reason as a wrong password
    good = digest_response(ch, "REGISTER", "sip:h", "1001", "amira-secret-1", "cn", 1)
    assert not d.verify(good, "INVITE", 1.0, PASSWORDS.get).ok  # signed for another method


def test_unknown_and_known_users_get_the_same_challenge_shape() -> None:
    d = server()
    a, b = d.challenge(5.0), d.challenge(5.0)
    assert [x.split("nonce=")[0] for x in a] == [x.split("nonce=")[0] for x in b]
    assert a[0] != b[0]  # but never the same nonce


def test_stale_nonce_and_replay() -> None:
    d = server()
    ch = d.challenge(0.0)[0]
    creds = digest_response(ch, "REGISTER", "sip:h", "1001", "amira-secret-1", "cn", 1)
    assert d.verify(creds, "REGISTER", 10.0, PASSWORDS.get).ok
    replay = d.verify(creds, "REGISTER", 11.0, PASSWORDS.get)
    assert not replay.ok and replay.reason == "replayed nonce count"
    nc2 = digest_response(ch, "REGISTER", "sip:h", "1001", "amira-secret-1", "cn", 2)
    assert d.verify(nc2, "REGISTER", 12.0, PASSWORDS.get).ok
    late = digest_response(ch, "REGISTER", "sip:h", "1001", "amira-secret-1", "cn", 3)
    res = d.verify(late, "REGISTER", 400.0, PASSWORDS.get)
    assert not res.ok and res.stale
    assert "stale=true" in d.challenge(400.0, stale=True)[0]


def test_forged_nonce_and_foreign_realm() -> None:
    d, other = server(), DigestServer("hatif.local", b"x" * 32)
    forged = digest_response(other.challenge(0.0)[0], "REGISTER", "sip:h", "1001", "amira-secret-1", "c", 1)
    assert d.verify(forged, "REGISTER", 1.0, PASSWORDS.get).reason == "nonce not issued by us"
    realm = digest_response(DigestServer("evil", b"k" * 32).challenge(0.0)[0], "REGISTER", "sip:h", "1001",
                            "amira-secret-1", "c", 1)
    assert not d.verify(realm, "REGISTER", 1.0, PASSWORDS.get).ok


def test_replay_memory_is_bounded() -> None:
    d = DigestServer("r", b"k" * 32, max_nonces=10)
    for i in range(50):
        ch = d.challenge(float(i))[0]
        assert d.verify(digest_response(ch, "REGISTER", "sip:h", "1001", "amira-secret-1", "c", 1), "REGISTER",
                        float(i), PASSWORDS.get).ok
    assert len(d._used) == 10


@pytest.mark.parametrize("value", ["", "Basic abc", 'Digest username="unterminated', "Digest novalue",
                                   'Digest username="a", realm="r"'])
def test_malformed_credentials(value: str) -> None:
    with pytest.raises(AuthError):
        server().verify(value, "REGISTER", 0.0, PASSWORDS.get)


def test_parse_escapes() -> None:
    p = parse_credentials(r'Digest username="a\"b", realm="x,y", nc=00000001')
    assert p == {"username": 'a"b', "realm": "x,y", "nc": "00000001"}
