"""SIP dialogs (RFC 3261 §12), ACK for 2xx (§13.2.2.4) and CANCEL (§9.1)."""

from __future__ import annotations

import pytest

from hatif.sip import URI, NameAddr, ParseError, Request, Response, Via, make_response, parse_message, parse_uri
from hatif.sip.dialog import Dialog, DialogTable, DialogTableFull, make_cancel, new_tag
from hatif.sip.transaction import ServerInviteTransaction, TransactionTable

CALL_ID = "3848276298220188511@atlanta.example.com"
ALICE_TAG = "9fxced76sl"
BOB_TAG = "8321234356"

# The request path is alice -> p1 -> p2 -> bob: p2's Record-Route is on top when the INVITE reaches Bob.
RECORD_ROUTES = "Record-Route: <sip:p2.biloxi.example.com;lr>\r\nRecord-Route: <sip:p1.atlanta.example.com;lr>\r\n"


def parse_request(text: str) -> Request:
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def invite(extra: str = "", uri: str = "sip:bob@biloxi.example.com", cseq: int = 1) -> Request:
    return parse_request(
        f"INVITE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8;rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} INVITE\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        f"{extra}"
        "\r\n"
    )


def answer(req: Request, status: int, contact: str | None = "<sip:bob@192.0.2.4>",
           record_routes: str = RECORD_ROUTES, to_tag: str = BOB_TAG) -> Response:
    extra = [("Contact", contact)] if contact else []
    resp = make_response(req, status, to_tag=to_tag, extra=extra)
    resp.headers.remove("Record-Route")
    for line in record_routes.strip().splitlines():
        name, _, value = line.partition(":")
        resp.headers.add(name, value.strip())
    return resp


def from_bob(method: str, cseq: int, extra: str = "") -> Request:
    """A request Bob sends inside the dialog, as Alice receives it."""
    return parse_request(
        f"{method} sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKbob" + str(cseq) + "\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}\r\n"
        f"To: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        "\r\n"
    )


def uac_dialog() -> tuple[Dialog, Request]:
    inv = invite()
    return Dialog.uac(inv, answer(inv, 200)), inv


def uris(values: list[NameAddr]) -> list[str]:
    return [str(v.uri) for v in values]


def on_the_wire(req: Request) -> Request:
    """Give a request without a Via one (as the shell does) and parse its wire form back."""
    if req.headers.get("Via") is None:
        req.headers.add("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKshell", first=True)
    return parse_request(bytes(req).decode())


# -- creation -----------------------------------------------------------------------------------------


def test_uac_dialog_from_2xx_takes_the_record_route_reversed() -> None:
    d, _ = uac_dialog()
    assert d.key == (CALL_ID, ALICE_TAG, BOB_TAG)
    assert d.state == "confirmed"
    assert uris(d.route_set) == ["sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr"]
    assert d.remote_target == parse_uri("sip:bob@192.0.2.4")
    assert d.local_seq == 1 and d.remote_seq is None
    assert str(d.local_uri) == "Alice <sip:alice@atlanta.example.com>"
    assert str(d.remote_uri) == "Bob <sip:bob@biloxi.example.com>"
    assert d.secure is False
    assert d.local_contact is None and d.user_data is None


def test_uas_dialog_takes_the_record_route_in_order() -> None:
    inv = invite(RECORD_ROUTES)
    d = Dialog.uas(inv, "uastag")
    assert d.key == (CALL_ID, "uastag", ALICE_TAG)
    assert d.state == "early"
    assert uris(d.route_set) == ["sip:p2.biloxi.example.com;lr", "sip:p1.atlanta.example.com;lr"]
    assert d.remote_target == parse_uri("sip:alice@pc33.atlanta.example.com")
    assert d.remote_seq == 1 and d.local_seq == 0
    assert str(d.local_uri) == "Bob <sip:bob@biloxi.example.com>"
    assert str(d.remote_uri) == "Alice <sip:alice@atlanta.example.com>"
    d.response_sent(make_response(inv, 180, to_tag="uastag"))
    assert d.state == "early"
    d.response_sent(make_response(inv, 200, to_tag="uastag"))
    assert d.state == "confirmed"
    early = Dialog.uas(inv, "other")
    early.response_sent(make_response(inv, 486, to_tag="other"))
    assert early.state == "terminated"


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    inv = invite(uri="sips:bob@biloxi.example.com")
    assert Dialog.uac(inv, answer(inv, 200)).secure is True
    assert Dialog.uas(inv, "t").secure is True


def test_dialog_needs_a_from_tag_and_tolerates_a_missing_contact() -> None:
    inv = invite()
    inv.headers.set("From", "Alice <sip:alice@atlanta.example.com>")
    with pytest.raises(ParseError, match="From tag"):
        Dialog.uac(inv, answer(inv, 200))
    inv = invite()
    d = Dialog.uac(inv, answer(inv, 200, contact=None))
    assert d.remote_target == inv.uri


def test_early_dialog_is_confirmed_by_2xx_with_its_route_set_recomputed() -> None:
    inv = invite()
    d = Dialog.uac(inv, answer(inv, 180, contact="<sip:bob@192.0.2.9>", record_routes=""))
    assert d.state == "early" and d.route_set == [] and d.remote_target == parse_uri("sip:bob@192.0.2.9")
    d.receive_response(answer(inv, 183))
    assert d.state == "early"
    d.receive_response(answer(inv, 200))
    assert d.state == "confirmed"
    assert uris(d.route_set) == ["sip:p1.atlanta.example.com;lr", "sip:p2.biloxi.example.com;lr"]
    assert d.remote_target == parse_uri("sip:bob@192.0.2.4")


def test_early_dialog_ends_on_a_failure_and_ignores_other_forks() -> None:
    inv = invite()
    d = Dialog.uac(inv, answer(inv, 180))
    d.receive_response(answer(inv, 200, to_tag="anotherfork"))
    assert d.state == "early"
    d.receive_response(answer(inv, 486))
    assert d.state == "terminated"


# -- sending ------------------------------------------------------------------------------------------


def test_create_request_with_loose_routing() -> None:
    d, _ = uac_dialog()
    d.local_contact = NameAddr(parse_uri("sip:alice@pc33.atlanta.example.com"))
    bye = on_the_wire(d.create_request("BYE"))
    assert bye.method == "BYE"
    assert bye.uri == d.remote_target
    assert bye.headers.get_all("Route") == ["<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert str(bye.cseq) == "2 BYE" and d.local_seq == 2
    assert bye.from_.tag == ALICE_TAG and bye.to.tag == BOB_TAG
    assert bye.call_id == CALL_ID
    assert bye.headers.get("Max-Forwards") == "70"
    assert "Contact" not in bye.headers  # not applicable in BYE (RFC 3261 Table 3)
    info = on_the_wire(d.create_request("INFO", b"Signal=5\r\n", [("Content-Type", "application/dtmf-relay")]))
    assert str(info.cseq) == "3 INFO"
    assert info.body == b"Signal=5\r\n" and info.content_type == "application/dtmf-relay"
    assert info.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"


def test_create_request_fills_via_from_a_template_with_a_new_branch() -> None:
    d, _ = uac_dialog()
    template = Via("TCP", "pc33.atlanta.example.com", 5070, (("branch", "z9hG4bKold"), ("rport", None)))
    first = d.create_request("OPTIONS", via=template)
    second = d.create_request("OPTIONS", via=template)
    via1, via2 = first.top_via, second.top_via
    assert (via1.transport, via1.host, via1.port) == ("TCP", "pc33.atlanta.example.com", 5070)
    assert via1.param("rport") == ""
    assert via1.branch and via2.branch and via1.branch != via2.branch != "z9hG4bKold"
    assert via1.branch.startswith("z9hG4bK")
    assert "Via" not in d.create_request("OPTIONS").headers  # no template: the shell adds it


def test_create_request_with_a_strict_router_first() -> None:
    d, _ = uac_dialog()
    d.route_set = [NameAddr.parse("<sip:strict.example.com;transport=tcp;method=INVITE?x=y>"),
                   NameAddr.parse("<sip:p2.biloxi.example.com;lr>")]
    req = on_the_wire(d.create_request("BYE"))
    # RFC 3261 §12.2.1.1: the strict router's URI becomes the Request-URI, the remote target goes last.
    assert str(req.uri) == "sip:strict.example.com;transport=tcp"
    assert req.headers.get_all("Route") == ["<sip:p2.biloxi.example.com;lr>", "<sip:bob@192.0.2.4>"]


def test_create_request_without_route_set_goes_to_the_remote_target() -> None:
    inv = invite()
    d = Dialog.uac(inv, answer(inv, 200, record_routes=""))
    req = d.create_request("BYE")
    assert req.uri == parse_uri("sip:bob@192.0.2.4")
    assert "Route" not in req.headers


def test_create_ack_for_2xx() -> None:
    inv = invite('Proxy-Authorization: Digest username="alice", realm="atlanta.example.com"\r\n')
    d = Dialog.uac(inv, answer(inv, 200))
    ack = on_the_wire(d.create_ack(inv))
    assert ack.method == "ACK"
    assert str(ack.cseq) == "1 ACK"
    assert d.local_seq == 1  # an ACK takes no CSeq number of its own
    assert ack.uri == d.remote_target
    assert ack.headers.get_all("Route") == ["<sip:p1.atlanta.example.com;lr>", "<sip:p2.biloxi.example.com;lr>"]
    assert ack.to.tag == BOB_TAG and ack.from_.tag == ALICE_TAG
    via = ack.top_via
    assert via.branch and via.branch.startswith("z9hG4bK") and via.branch != inv.top_via.branch
    assert via.host == "pc33.atlanta.example.com" and via.port == 5060
    assert len(ack.headers.get_all("Via")) == 1
    assert ack.headers.get("Proxy-Authorization") == inv.headers.get("Proxy-Authorization")
    assert ack.body == b""
    reinvite = d.create_request("INVITE", b"v=0\r\n", [("Content-Type", "application/sdp")])
    assert str(reinvite.cseq) == "2 INVITE"
    late = d.create_ack(reinvite, b"v=0\r\n")
    assert str(late.cseq) == "2 ACK" and late.body == b"v=0\r\n" and late.content_type == "application/sdp"
    assert "Via" not in late.headers  # the re-INVITE had no Via yet: the shell puts one on


def test_make_cancel_follows_9_1() -> None:
    inv = invite(
        "Route: <sip:p1.atlanta.example.com;lr>\r\n"
        'Proxy-Authorization: Digest username="alice"\r\n'
        "Content-Type: application/sdp\r\n"
    )
    inv.headers.add("Via", "SIP/2.0/UDP lower.example.com;branch=z9hG4bKlower")
    inv.body = b"v=0\r\n"
    cancel = on_the_wire(make_cancel(inv))
    assert cancel.method == "CANCEL"
    assert cancel.uri == inv.uri
    assert cancel.call_id == inv.call_id
    assert cancel.headers.get("From") == inv.headers.get("From")
    assert cancel.headers.get("To") == inv.headers.get("To")
    assert str(cancel.cseq) == "1 CANCEL"
    assert cancel.headers.get_all("Via") == [inv.headers.get("Via")]
    assert cancel.headers.get_all("Route") == ["<sip:p1.atlanta.example.com;lr>"]
    assert cancel.headers.get("Max-Forwards") == "70"
    assert cancel.body == b""
    for absent in ("Contact", "Proxy-Authorization", "Content-Type"):
        assert absent not in cancel.headers
    # It reaches the INVITE's server transaction on the other side (RFC 3261 §9.2).
    table = TransactionTable()
    stx = ServerInviteTransaction(inv, reliable=False)
    table.add_server(stx, 0.0)
    assert table.match_cancel(cancel) is stx
    unsent = invite()
    unsent.headers.remove("Via")
    with pytest.raises(ValueError, match="Via"):
        make_cancel(unsent)


# -- receiving ----------------------------------------------------------------------------------------


def test_requests_out_of_cseq_order_get_a_500() -> None:
    d, _ = uac_dialog()
    assert d.receive_request(from_bob("INFO", 100)) is None  # an empty remote sequence takes any number
    assert d.remote_seq == 100
    late = from_bob("INFO", 99)
    reply = d.receive_request(late)
    assert reply is not None and reply.status == 500
    assert reply.cseq == late.cseq and reply.to.tag == ALICE_TAG
    assert d.remote_seq == 100
    assert d.receive_request(from_bob("INFO", 100)) is None
    assert d.receive_request(from_bob("INFO", 101)) is None
    assert d.remote_seq == 101
    assert d.receive_request(from_bob("ACK", 1)) is None  # an ACK is never answered
    assert d.remote_seq == 101


def test_target_refresh_and_bye() -> None:
    d, _ = uac_dialog()
    d.receive_request(from_bob("INFO", 2, "Contact: <sip:bob@198.51.100.1>\r\n"))
    assert d.remote_target == parse_uri("sip:bob@192.0.2.4")  # INFO is no target refresh
    d.receive_request(from_bob("INVITE", 3, "Contact: <sip:bob@198.51.100.2>\r\n"))
    assert d.remote_target == parse_uri("sip:bob@198.51.100.2")
    d.receive_request(from_bob("UPDATE", 4, "Contact: <sip:bob@198.51.100.3:5080>\r\n"))
    assert d.remote_target == parse_uri("sip:bob@198.51.100.3:5080")
    d.receive_request(from_bob("UPDATE", 5))
    assert d.remote_target == parse_uri("sip:bob@198.51.100.3:5080")
    assert d.state == "confirmed"
    d.receive_request(from_bob("BYE", 6))
    assert d.state == "terminated"


def test_responses_to_requests_inside_the_dialog() -> None:
    d, _ = uac_dialog()
    reinvite = on_the_wire(d.create_request("INVITE"))
    d.receive_response(answer(reinvite, 200, contact="<sip:bob@203.0.113.7>", record_routes=""))
    assert d.remote_target == parse_uri("sip:bob@203.0.113.7")
    assert len(d.route_set) == 2  # the route set is fixed once the dialog is confirmed
    info = on_the_wire(d.create_request("INFO"))
    d.receive_response(answer(info, 500, contact=None))
    assert d.state == "confirmed"
    d.receive_response(answer(info, 481, contact=None))
    assert d.state == "terminated"
    d2, _ = uac_dialog()
    d2.receive_response(answer(on_the_wire(d2.create_request("OPTIONS")), 408, contact=None))
    assert d2.state == "terminated"


# -- the table ----------------------------------------------------------------------------------------


def test_dialog_table_finds_dialogs_by_request_and_response() -> None:
    table = DialogTable(max_dialogs=2)
    d, inv = uac_dialog()
    table.add(d)
    assert d in table and len(table) == 1 and list(table) == [d]
    assert table.match_response(answer(inv, 200)) is d
    assert table.match_response(answer(inv, 200, to_tag="fork")) is None
    assert table.match_request(from_bob("BYE", 2)) is d
    assert table.match_request(invite()) is None  # no To tag: not inside a dialog
    assert table.get(d.key) is d
    with pytest.raises(ValueError, match="exists"):
        table.add(Dialog.uac(inv, answer(inv, 200)))
    table.add(Dialog.uas(inv, "b"))
    with pytest.raises(DialogTableFull, match="2 dialogs"):
        table.add(Dialog.uas(inv, "c"))
    table.remove(d)
    table.remove(d)
    assert len(table) == 1 and table.match_request(from_bob("BYE", 3)) is None


def test_dialog_table_finds_uas_dialogs() -> None:
    table = DialogTable()
    inv = invite()
    d = Dialog.uas(inv, "bobside")
    table.add(d)
    bye = invite()
    bye.headers.set("To", "Bob <sip:bob@biloxi.example.com>;tag=bobside")
    assert table.match_request(bye) is d


def test_new_tag_is_random() -> None:
    tags = {new_tag() for _ in range(1000)}
    assert len(tags) == 1000
    assert all(len(t) == 16 for t in tags)


def test_dialog_key_without_remote_tag() -> None:
    d = Dialog(CALL_ID, "l", None, 1, None, NameAddr(URI("sip", "a")), NameAddr(URI("sip", "b")), URI("sip", "b"))
    assert d.key == (CALL_ID, "l", "")
    req = d.create_request("BYE")
    assert req.to.tag is None
