"""The registrar's location service (RFC 3261 §10.3) with a fake clock."""

from __future__ import annotations

from hatif.sip import URI, Headers, Request
from hatif.sip.registrar import RegistrarPolicy, Registry

SRC = ("udp", "127.0.0.1", 5062)
KEY = ("default", "1001")


def register(contacts: list[str], expires: int | None = None, call_id: str = "c1", cseq: int = 1) -> Request:
    items = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx"),
        ("From", "<sip:1001@hatif.local>;tag=a"),
        ("To", "<sip:1001@hatif.local>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} REGISTER"),
    ]
    items += [("Contact", c) for c in contacts]
    if expires is not None:
        items.append(("Expires", str(expires)))
    return Request(Headers(items), b"", "REGISTER", URI("sip", "hatif.local"))


def test_register_lookup_and_expiry() -> None:
    reg = Registry()
    r = reg.register(KEY, register(["<sip:1001@10.0.0.5:5062>"], 120), SRC, now=1000.0)
    assert r.status == 200 and len(r.bindings) == 1
    assert r.bindings[0].expires_in(1000.0) == 120
    assert reg.lookup(KEY, 1100.0)[0].source == SRC
    assert reg.lookup(KEY, 1120.0) == []
    assert reg.count() == 0


def test_several_contacts_and_unregister() -> None:
    reg = Registry()
    reg.register(KEY, register(["<sip:1001@10.0.0.5>;expires=300"], cseq=1), SRC, 0.0)
    reg.register(KEY, register(["<sip:1001@10.0.0.6>"], 300, call_id="c2"), SRC, 1.0)
    assert len(reg.lookup(KEY, 2.0)) == 2
    r = reg.register(KEY, register(["<sip:1001@10.0.0.5>;expires=0"], cseq=2), SRC, 3.0)
    assert r.status == 200 and [b.uri.host for b in r.bindings] == ["10.0.0.6"]
    r = reg.register(KEY, register(["*"], 0, call_id="c2", cseq=5), SRC, 4.0)
    assert r.status == 200 and r.bindings == ()
    assert reg.lookup(KEY, 5.0) == []


def test_interval_too_brief_and_cap() -> None:
    reg = Registry(RegistrarPolicy(min_expires=60, max_expires=600))
    r = reg.register(KEY, register(["<sip:1001@10.0.0.5>"], 30), SRC, 0.0)
    assert r.status == 423 and r.min_expires == 60
    r = reg.register(KEY, register(["<sip:1001@10.0.0.5>"], 99999), SRC, 0.0)
    assert r.bindings[0].expires_in(0.0) == 600


def test_out_of_order_and_wildcard_rules() -> None:
    reg = Registry()
    reg.register(KEY, register(["<sip:1001@10.0.0.5>"], 300, cseq=7), SRC, 0.0)
    assert reg.register(KEY, register(["<sip:1001@10.0.0.5>"], 300, cseq=7), SRC, 1.0).status == 500
    assert reg.register(KEY, register(["*"], 300, cseq=8), SRC, 1.0).status == 400


def test_contacts_per_user_bounded() -> None:
    reg = Registry(RegistrarPolicy(max_contacts=3))
    for i in range(10):
        reg.register(KEY, register([f"<sip:1001@10.0.0.{i}>"], 300, call_id=f"c{i}"), SRC, float(i))
    hosts = [b.uri.host for b in reg.lookup(KEY, 11.0)]
    assert sorted(hosts) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]
