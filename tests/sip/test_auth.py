"""Digest authentication (RFC 7616, RFC 8760, RFC 3261 §22) with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.sip import auth
from hatif.sip.auth import (
    AuthError,
    AuthResult,
    Challenge,
    Credentials,
    DigestServer,
    digest_response,
    parse_credentials,
    response_digest,
    select_challenge,
)

# RFC 7616 §3.9.1
RFC_REALM = "http-auth@example.org"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_RESPONSES = {"SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
                 "MD5": "8ca523f5e9506fed4657c9700eebdbec"}
PASSWORDS = {"1001": "amira-secret-1", "1002": "omar-secret-2"}
REALM = "hatif.local"


def secrets_of(user: str, algorithm: str) -> str | None:
    """What the server looks up: the user's HA1 for the algorithm (it never sees a password)."""
    password = PASSWORDS.get(user)
    return auth.ha1(algorithm, user, REALM, password) if password is not None else None


def rfc_challenge(algorithm: str) -> str:
    return (f'Digest realm="{RFC_REALM}", qop="auth, auth-int", algorithm={algorithm}, nonce="{RFC_NONCE}", '
            f'opaque="{RFC_OPAQUE}"')


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc_7616_example(algorithm: str) -> None:
    """RFC 7616 §3.9.1: Mufasa / Circle of Life, the RFC's challenge and Authorization header."""
    assert response_digest(algorithm, "Mufasa", RFC_REALM, "Circle of Life", "GET", "/dir/index.html", RFC_NONCE,
                           "00000001", RFC_CNONCE, "auth") == RFC_RESPONSES[algorithm]
    ch = Challenge.parse(rfc_challenge(algorithm))
    assert (ch.realm, ch.nonce, ch.algorithm, ch.qop, ch.opaque, ch.stale) == (
        RFC_REALM, RFC_NONCE, algorithm, ("auth", "auth-int"), RFC_OPAQUE, False)
    value = digest_response(rfc_challenge(algorithm), "GET", "/dir/index.html", "Mufasa", "Circle of Life",
                            RFC_CNONCE, 1)
    assert Credentials.parse(value) == Credentials("Mufasa", RFC_REALM, RFC_NONCE, "/dir/index.html",
                                                   RFC_RESPONSES[algorithm], algorithm, "auth", "00000001",
                                                   RFC_CNONCE, RFC_OPAQUE)
    rfc_authorization = (f'Digest username="Mufasa", realm="{RFC_REALM}", uri="/dir/index.html", '
                         f'algorithm={algorithm}, nonce="{RFC_NONCE}", nc=00000001, cnonce="{RFC_CNONCE}", '
                         f'qop=auth, response="{RFC_RESPONSES[algorithm]}", opaque="{RFC_OPAQUE}"')
    assert Credentials.parse(rfc_authorization) == Credentials.parse(value)


def test_rfc_2617_example_and_rfc_2069_form() -> None:
    """RFC 2617 §3.5 (MD5, qop=auth), and the same without qop as RFC 2069 computes it."""
    args = ("Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093")
    assert response_digest("MD5", *args, "00000001", "0a4f113b", "auth") == "6629fae49393a05397450978507c4ef1"
    # RFC 2069: H(H(A1):nonce:H(A2)), written out by hand here.
    import hashlib

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    expected = md5(f"{md5('Mufasa:testrealm@host.com:Circle Of Life')}:dcd98b7102dd2f0e8b11d0f600bfb0c093:"
                   f"{md5('GET:/dir/index.html')}")
    assert response_digest("MD5", *args, None, None, None) == expected


# -- header values --------------------------------------------------------------------------------------


def test_parsing_is_case_insensitive_and_handles_escapes() -> None:
    p = parse_credentials(r'digest USERNAME="a\"b\\c", Realm="x,y=z" ,,  nc=00000001,QOP=auth')
    assert p == {"username": 'a"b\\c', "realm": "x,y=z", "nc": "00000001", "qop": "auth"}
    ch = Challenge.parse('DIGEST REALM="r", NONCE="n", STALE=TRUE, ALGORITHM=sha-256, QOP="auth,auth-int"')
    assert ch == Challenge("r", "n", "sha-256", ("auth", "auth-int"), None, True)
    assert Challenge.parse('Digest realm="r", nonce="n"').algorithm == "MD5"  # RFC 7616 §3.3 default


SAFE = st.text(st.characters(min_codepoint=32, exclude_categories=("Cs",), exclude_characters="\x7f"), max_size=20)


@settings(max_examples=100, deadline=None)
@given(SAFE, SAFE, SAFE, SAFE, st.none() | SAFE, st.booleans())
def test_values_round_trip(username: str, realm: str, nonce: str, uri: str, opaque: str | None, stale: bool) -> None:
    creds = Credentials(username, realm, nonce, uri, "0" * 32, "SHA-256", "auth", "0000000a", "c,n\"", opaque)
    assert Credentials.parse(creds.serialize()) == creds
    ch = Challenge(realm, nonce, "MD5", ("auth",), opaque, stale)
    assert Challenge.parse(ch.serialize()) == ch


@pytest.mark.parametrize("value,needle", [
    ("", "no authentication scheme"),
    ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "unsupported scheme 'Basic'"),
    ('Digest username="unterminated', "unterminated quoted value for 'username'"),
    ("Digest novalue", "not name=value"),
    ("Digest username=", "'username' without a value"),
    ('Digest username="a"b, realm="r"', "comma after parameter 'username'"),
    ('Digest username="a", USERNAME="b"', "'username' given twice"),
    ('Digest username="a", realm="r"', "credentials without nonce"),
    ('Digest username="a", realm="r", nonce="n", response="x"', "credentials without uri"),
    ('Digest username="a", realm="r", nonce="n", uri="sip:h", response="x", qop=auth', "without nc"),
    ('Digest username="a", realm="r", nonce="n", uri="sip:h", response="x", qop=auth, nc=1, cnonce="c"',
     "nonce-count '1'"),
])
def test_malformed_credentials_raise_auth_error(value: str, needle: str) -> None:
    with pytest.raises(AuthError, match=needle):
        server().verify(value, "REGISTER", 0.0, secrets_of)


def test_client_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(AuthError, match="unsupported algorithm 'SHA-512-256'"):
        digest_response('Digest realm="r", nonce="n", algorithm=SHA-512-256', "INVITE", "sip:x", "u", "p", "c", 1)
    with pytest.raises(AuthError, match="no supported qop"):
        digest_response('Digest realm="r", nonce="n", qop="auth-int"', "INVITE", "sip:x", "u", "p", "c", 1)
    with pytest.raises(AuthError, match="challenge without nonce"):
        digest_response('Digest realm="r"', "INVITE", "sip:x", "u", "p", "c", 1)
    with pytest.raises(AuthError, match="need nc and cnonce"):
        Credentials("u", "r", "n", "sip:x", "0" * 32, qop="auth").serialize()
    with pytest.raises(AuthError, match="control character in username"):
        digest_response('Digest realm="r", nonce="n"', "INVITE", "sip:x", "u\r\nX-Evil: 1", "p", "c", 1)


def test_select_challenge_takes_the_topmost_supported() -> None:
    sha512 = 'Digest realm="r", nonce="n", algorithm=SHA-512-256'
    sha256 = 'Digest realm="r", nonce="n", algorithm=SHA-256'
    md5 = 'Digest realm="r", nonce="n", algorithm=MD5'
    assert select_challenge([sha512, sha256, md5]) == sha256
    assert select_challenge(["Basic realm=x", md5]) == md5
    with pytest.raises(AuthError, match="offered SHA-512-256"):
        select_challenge([sha512])


# -- server ---------------------------------------------------------------------------------------------


def server(nonce_lifetime: float = 300.0, max_nonces: int = 100_000) -> DigestServer:
    return DigestServer(REALM, b"k" * 32, nonce_lifetime, max_nonces)


def answer(challenge: str, user: str = "1001", password: str = "amira-secret-1", nc: int = 1,
           method: str = "REGISTER") -> str:
    return digest_response(challenge, method, "sip:hatif.local", user, password, "cnonce-1", nc)


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    first, second = server().challenge(now=100.0)
    a, b = Challenge.parse(first), Challenge.parse(second)
    assert (a.algorithm, b.algorithm) == ("SHA-256", "MD5")
    assert a.realm == b.realm == REALM and a.nonce == b.nonce and a.qop == b.qop == ("auth",)
    assert a.opaque is not None and a.opaque == b.opaque and not a.stale
    assert all(Challenge.parse(v).stale for v in server().challenge(100.0, stale=True))
    assert [Challenge.parse(v).algorithm for v in server().challenge(1.0, algorithms=("MD5",))] == ["MD5"]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"])
def test_round_trip_for_each_algorithm(algorithm: str) -> None:
    d = server()
    challenge = d.challenge(now=100.0)[0].replace("algorithm=SHA-256", f"algorithm={algorithm}")
    result = d.verify(answer(challenge), "REGISTER", 101.0, secrets_of)
    assert result == AuthResult(True, "1001")


def test_rfc_2069_client_without_qop() -> None:
    d = server()
    no_qop = d.challenge(0.0)[1].replace(', qop="auth"', "")
    creds = answer(no_qop)
    assert "qop" not in parse_credentials(creds) and "nc" not in parse_credentials(creds)
    assert d.verify(creds, "REGISTER", 1.0, secrets_of).ok
    again = d.verify(creds, "REGISTER", 2.0, secrets_of)  # a nonce without a count serves once
    assert not again.ok and again.stale and again.reason == "nonce already used (no qop)"


def test_wrong_password_method_uri_and_algorithm() -> None:
    d = server()
    ch = d.challenge(0.0)[0]
    assert d.verify(answer(ch, password="wrong"), "REGISTER", 1.0, secrets_of) == AuthResult(
        False, reason="wrong credentials")
    assert d.verify(answer(ch, nc=2), "INVITE", 1.0, secrets_of).reason == "wrong credentials"  # signed for REGISTER
    tampered = answer(ch, nc=3).replace('uri="sip:hatif.local"', 'uri="sip:other"')
    assert d.verify(tampered, "REGISTER", 1.0, secrets_of).reason == "wrong credentials"
    sha512 = answer(ch, nc=4).replace("algorithm=SHA-256", "algorithm=SHA-512")
    assert d.verify(sha512, "REGISTER", 1.0, secrets_of).reason == "unsupported algorithm 'SHA-512'"
    auth_int = answer(ch, nc=5).replace("qop=auth", "qop=auth-int")
    assert d.verify(auth_int, "REGISTER", 1.0, secrets_of).reason == "unsupported qop 'auth-int'"
    assert d.verify(answer(ch, nc=6), "REGISTER", 1.0, secrets_of).ok  # the good one still passes


def test_unknown_user_is_indistinguishable(monkeypatch: pytest.MonkeyPatch) -> None:
    d = server()
    known, unknown = d.challenge(5.0), d.challenge(5.0)
    assert [v.replace(Challenge.parse(v).nonce, "N") for v in known] == \
           [v.replace(Challenge.parse(v).nonce, "N") for v in unknown]
    assert known[0] != unknown[0]  # but never the same nonce
    wrong_password, no_such_user = answer(known[0], "1001", "guess"), answer(unknown[0], "9999", "guess")
    expired = answer(d.challenge(0.0)[0], "9999", "guess")
    hashed: list[int] = []
    real = auth.response_from_ha1

    def counting(*args: str | None) -> str:
        hashed.append(len(str(args[1])))  # the length of the HA1 hashed with: a real one or the dummy
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(auth, "response_from_ha1", counting)
    looked_up: list[str] = []

    def lookup(user: str, algorithm: str) -> str | None:
        looked_up.append(user)
        return secrets_of(user, algorithm)

    wrong = d.verify(wrong_password, "REGISTER", 6.0, lookup)
    ghost = d.verify(no_such_user, "REGISTER", 6.0, lookup)
    assert wrong == ghost == AuthResult(False, reason="wrong credentials")
    assert looked_up == ["1001", "9999"] and hashed == [64, 64]  # the same hashing work for both
    # An unknown user never learns "stale" either: that needs a good password.
    assert d.verify(expired, "REGISTER", 1000.0, lookup) == ghost


def test_stale_after_lifetime() -> None:
    d = server(nonce_lifetime=300.0)
    ch = d.challenge(0.0)[0]
    assert d.verify(answer(ch, nc=1), "REGISTER", 299.0, secrets_of).ok
    late = d.verify(answer(ch, nc=2), "REGISTER", 301.0, secrets_of)
    assert late == AuthResult(False, "1001", stale=True, reason="nonce expired")
    wrong_and_late = d.verify(answer(ch, password="bad", nc=3), "REGISTER", 301.0, secrets_of)
    assert not wrong_and_late.stale and wrong_and_late.reason == "wrong credentials"
    fresh = d.challenge(301.0, stale=True)[0]
    assert d.verify(answer(fresh), "REGISTER", 302.0, secrets_of).ok


def test_replay_is_refused_and_counts_must_grow() -> None:
    d = server()
    ch = d.challenge(0.0)[0]
    first = answer(ch, nc=1)
    assert d.verify(first, "REGISTER", 10.0, secrets_of).ok
    assert d.verify(first, "REGISTER", 11.0, secrets_of) == AuthResult(False, reason="replayed nonce count")
    assert d.verify(answer(ch, nc=5), "REGISTER", 12.0, secrets_of).ok
    assert d.verify(answer(ch, nc=4), "REGISTER", 13.0, secrets_of).reason == "replayed nonce count"
    assert d.verify(answer(ch, nc=6), "REGISTER", 14.0, secrets_of).ok
    other_user = answer(ch, "1002", "omar-secret-2", nc=7)
    assert d.verify(other_user, "REGISTER", 15.0, secrets_of) == AuthResult(True, "1002")


def test_forged_nonce_opaque_and_other_realms() -> None:
    d = server()
    opaque = Challenge.parse(d.challenge(0.0)[0]).opaque
    stranger = DigestServer(REALM, b"x" * 32).challenge(0.0)[0]
    assert d.verify(answer(stranger), "REGISTER", 1.0, secrets_of).reason == "opaque not ours"
    forged = Challenge(REALM, Challenge.parse(stranger).nonce, "SHA-256", ("auth",), opaque).serialize()
    assert d.verify(answer(forged), "REGISTER", 1.0, secrets_of).reason == "nonce not issued by us"
    garbage = Challenge(REALM, "not-base64!", "SHA-256", ("auth",)).serialize()
    assert d.verify(answer(garbage), "REGISTER", 1.0, secrets_of).reason == "nonce not issued by us"
    # Another tenant of the same server (same secret, another realm): its nonces are not ours.
    tenant_b = DigestServer("b.example", b"k" * 32)
    assert d.verify(answer(tenant_b.challenge(0.0)[0]), "REGISTER", 1.0, secrets_of).reason == \
           "wrong realm 'b.example'"
    b_nonce = Challenge(REALM, Challenge.parse(tenant_b.challenge(0.0)[0]).nonce, "MD5", ("auth",)).serialize()
    assert d.verify(answer(b_nonce), "REGISTER", 1.0, secrets_of).reason == "nonce not issued by us"


def test_replay_memory_is_bounded_and_forgetting_lets_no_replay_through() -> None:
    d = server(max_nonces=10)
    accepted = []
    for i in range(50):
        creds = answer(d.challenge(float(i))[0])
        assert d.verify(creds, "REGISTER", float(i), secrets_of).ok
        accepted.append(creds)
    assert len(d) == 10
    replayed = d.verify(accepted[0], "REGISTER", 60.0, secrets_of)  # its nonce was forgotten, still fresh
    assert not replayed.ok and replayed.stale and replayed.reason == "nonce forgotten"
    assert d.verify(accepted[-1], "REGISTER", 60.0, secrets_of).reason == "replayed nonce count"
    assert d.verify(answer(d.challenge(61.0)[0]), "REGISTER", 61.0, secrets_of).ok
