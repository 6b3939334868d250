"""SIP transactions (RFC 3261 §17, RFC 6026): every timer of every machine, with a fake clock."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import pytest

from hatif.sip import Request, Response, make_response, parse_message
from hatif.sip.transaction import (
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    DeliverAck,
    DeliverResponse,
    SendMessage,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    TableFull,
    Terminated,
    TimedOut,
    Timers,
    Transaction,
    TransactionTable,
    TransportFailed,
    new_branch,
)


def request(method: str = "INVITE", branch: str = "z9hG4bKinv1", sent_by: str = "alice.example.com:5060",
            transport: str = "UDP", cseq: int = 1, call_id: str = "call-1@alice",
            extra: str = "") -> Request:
    text = (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        f"{extra}"
        "\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int, to_tag: str = "bobtag") -> Response:
    return make_response(req, status, to_tag=to_tag)


def drive(tx: Transaction, until: float) -> list[tuple[float, Action]]:
    """Fire the transaction's timers at their exact deadlines up to `until`, like a perfect event loop."""
    log: list[tuple[float, Action]] = []
    while (d := tx.next_deadline) is not None and d <= until:
        log.extend((d, a) for a in tx.fire(d))
    return log


def send_times(log: list[tuple[float, Action]]) -> list[float]:
    return [t for t, a in log if isinstance(a, SendMessage)]


def others(log: list[tuple[float, Action]]) -> list[tuple[float, str]]:
    return [(t, type(a).__name__) for t, a in log if not isinstance(a, SendMessage)]


# -- client INVITE ------------------------------------------------------------------------------------


def test_client_invite_timer_a_doubles_and_timer_b_times_out() -> None:
    invite = request()
    tx = ClientInviteTransaction(invite, reliable=False)
    assert tx.start(0.0) == [SendMessage(invite)]
    assert tx.state == "calling"
    log = drive(tx, 100.0)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(a == SendMessage(invite) for _, a in log if isinstance(a, SendMessage))
    assert others(log) == [(32.0, "TimedOut"), (32.0, "Terminated")]
    assert tx.state == "terminated"
    assert tx.next_deadline is None


def test_client_invite_reliable_sends_once_and_times_out_with_b() -> None:
    tx = ClientInviteTransaction(request(transport="TCP"), reliable=True)
    assert len(tx.start(10.0)) == 1
    assert tx.next_deadline == 42.0
    log = drive(tx, 100.0)
    assert log == [(42.0, TimedOut()), (42.0, Terminated())]


def test_client_invite_timers_follow_the_given_t1() -> None:
    tx = ClientInviteTransaction(request(), reliable=False, timers=Timers(t1=0.1))
    tx.start(0.0)
    log = drive(tx, 100.0)
    assert send_times(log) == pytest.approx([0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert [t for t, _ in others(log)] == pytest.approx([6.4, 6.4])


def test_client_invite_provisional_stops_a_and_b() -> None:
    invite = request()
    tx = ClientInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    assert send_times(drive(tx, 1.0)) == [0.5]
    ringing = response(invite, 180)
    assert tx.receive(ringing, 1.0) == [DeliverResponse(ringing)]
    assert tx.state == "proceeding"
    assert tx.next_deadline is None  # §17.1.1.2: no retransmission, no Timer B in Proceeding
    progress = response(invite, 183)
    assert tx.receive(progress, 2.0) == [DeliverResponse(progress)]


@pytest.mark.parametrize("reliable", [False, True])
def test_client_invite_2xx_goes_to_accepted_until_timer_m(reliable: bool) -> None:
    invite = request()
    tx = ClientInviteTransaction(invite, reliable=reliable)
    tx.start(0.0)
    tx.receive(response(invite, 180), 0.2)
    ok = response(invite, 200)
    assert tx.receive(ok, 2.0) == [DeliverResponse(ok)]
    assert tx.state == "accepted"
    assert tx.next_deadline == 34.0  # Timer M = 64*T1
    # RFC 6026 §7.2: every 2xx retransmission reaches the TU so that it ACKs it again.
    assert tx.receive(ok, 3.0) == [DeliverResponse(ok)]
    fork = response(invite, 200, to_tag="othertag")
    assert tx.receive(fork, 4.0) == [DeliverResponse(fork)]
    assert tx.receive(response(invite, 180), 5.0) == []
    assert tx.receive(response(invite, 486), 5.0) == []
    assert drive(tx, 100.0) == [(34.0, Terminated())]
    assert tx.receive(ok, 40.0) == []


def test_client_invite_non_2xx_is_acked_and_timer_d_absorbs_retransmissions() -> None:
    invite = request()
    tx = ClientInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    busy = response(invite, 486)
    out = tx.receive(busy, 1.0)
    assert len(out) == 2 and isinstance(out[0], SendMessage) and out[1] == DeliverResponse(busy)
    ack = out[0].msg
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert tx.state == "completed"
    assert tx.next_deadline == 33.0  # Timer D: 32 s over UDP
    # A retransmitted final response: the ACK again, nothing for the TU.
    assert tx.receive(busy, 2.0) == [SendMessage(ack)]
    assert tx.receive(response(invite, 200), 3.0) == []
    assert drive(tx, 100.0) == [(33.0, Terminated())]


def test_client_invite_non_2xx_over_reliable_transport_terminates_at_once() -> None:
    invite = request(transport="TCP")
    tx = ClientInviteTransaction(invite, reliable=True)
    tx.start(0.0)
    busy = response(invite, 603)
    out = tx.receive(busy, 1.0)
    assert [type(a) for a in out] == [SendMessage, DeliverResponse, Terminated]
    assert tx.state == "terminated" and tx.next_deadline is None


def test_client_invite_timer_d_is_at_least_32_seconds_and_64_t1_when_longer() -> None:
    for t1, d in ((0.5, 32.0), (0.1, 32.0), (1.0, 64.0)):
        invite = request()
        tx = ClientInviteTransaction(invite, reliable=False, timers=Timers(t1=t1))
        tx.start(0.0)
        tx.receive(response(invite, 404), 0.0)
        assert tx.next_deadline == d


def test_client_invite_ack_for_non_2xx_follows_17_1_1_3() -> None:
    invite = request(extra=(
        "Route: <sip:p1.example.com;lr>\r\n"
        "Route: <sip:p2.example.com;lr>\r\n"
        "Via: SIP/2.0/UDP upstream.example.com;branch=z9hG4bKup\r\n"
        "Content-Type: application/sdp\r\n"
    ))
    invite.body = b"v=0\r\n"
    tx = ClientInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    out = tx.receive(response(invite, 486, to_tag="t486"), 0.3)
    ack = out[0].msg  # type: ignore[union-attr]
    assert isinstance(ack, Request)
    ack = parse_message(bytes(ack))  # the wire form is a valid request
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.call_id == invite.call_id
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.to.tag == "t486"
    assert str(ack.cseq) == "1 ACK"
    assert ack.headers.get_all("Via") == [invite.headers.get("Via")]
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.headers.get("Max-Forwards") == "70"
    assert ack.body == b"" and "Content-Type" not in ack.headers


# -- client non-INVITE --------------------------------------------------------------------------------


def test_client_non_invite_timer_e_is_capped_at_t2_and_f_times_out() -> None:
    options = request("OPTIONS")
    tx = ClientNonInviteTransaction(options, reliable=False)
    assert tx.start(0.0) == [SendMessage(options)]
    assert tx.state == "trying"
    log = drive(tx, 100.0)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert others(log) == [(32.0, "TimedOut"), (32.0, "Terminated")]


def test_client_non_invite_timer_e_is_t2_in_proceeding() -> None:
    bye = request("BYE")
    tx = ClientNonInviteTransaction(bye, reliable=False)
    tx.start(0.0)
    trying = response(bye, 100)
    assert tx.receive(trying, 0.2) == [DeliverResponse(trying)]
    assert tx.state == "proceeding"
    log = drive(tx, 100.0)
    # The E armed in Trying fires at 0.5, then every T2 (§17.1.2.2); Timer F still runs.
    assert send_times(log) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert others(log) == [(32.0, "TimedOut"), (32.0, "Terminated")]


def test_client_non_invite_reliable_has_no_timer_e() -> None:
    tx = ClientNonInviteTransaction(request("REGISTER", transport="TCP"), reliable=True)
    tx.start(0.0)
    assert drive(tx, 100.0) == [(32.0, TimedOut()), (32.0, Terminated())]


def test_client_non_invite_final_then_timer_k_absorbs_retransmissions() -> None:
    bye = request("BYE")
    tx = ClientNonInviteTransaction(bye, reliable=False)
    tx.start(0.0)
    drive(tx, 0.5)
    ok = response(bye, 200)
    assert tx.receive(ok, 1.0) == [DeliverResponse(ok)]
    assert tx.state == "completed"
    assert tx.next_deadline == 6.0  # Timer K = T4
    assert tx.receive(ok, 2.0) == []
    assert tx.receive(response(bye, 100), 2.0) == []
    assert drive(tx, 100.0) == [(6.0, Terminated())]


def test_client_non_invite_final_over_reliable_transport_terminates_at_once() -> None:
    bye = request("BYE", transport="TCP")
    tx = ClientNonInviteTransaction(bye, reliable=True)
    tx.start(0.0)
    ok = response(bye, 481)
    assert tx.receive(ok, 1.0) == [DeliverResponse(ok), Terminated()]


def test_client_non_invite_refuses_invite_and_ack() -> None:
    with pytest.raises(ValueError, match="INVITE"):
        ClientNonInviteTransaction(request("INVITE"), reliable=False)
    with pytest.raises(ValueError, match="ACK"):
        ClientNonInviteTransaction(request("ACK"), reliable=False)


def test_client_transaction_needs_a_branch() -> None:
    with pytest.raises(ValueError, match="branch"):
        ClientInviteTransaction(request(branch=""), reliable=False)


# -- server INVITE ------------------------------------------------------------------------------------


def test_server_invite_absorbs_retransmissions_and_repeats_the_last_provisional() -> None:
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=False)
    assert tx.start(0.0) == []
    assert tx.state == "proceeding"
    assert tx.receive(invite, 0.1) == []  # nothing sent yet: nothing to repeat, nothing for the TU
    trying = response(invite, 100, to_tag="")
    assert tx.respond(trying, 0.2) == [SendMessage(trying)]
    assert tx.receive(invite, 0.5) == [SendMessage(trying)]
    ringing = response(invite, 180)
    assert tx.respond(ringing, 0.6) == [SendMessage(ringing)]
    assert tx.receive(invite, 1.5) == [SendMessage(ringing)]
    assert tx.next_deadline is None


def test_server_invite_timer_g_retransmits_non_2xx_and_timer_h_gives_up() -> None:
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    busy = response(invite, 486)
    assert tx.respond(busy, 1.0) == [SendMessage(busy)]
    assert tx.state == "completed"
    log = drive(tx, 100.0)
    # G: T1, doubling, capped at T2; H = 64*T1 after the response.
    assert send_times(log) == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert all(a == SendMessage(busy) for _, a in log if isinstance(a, SendMessage))
    assert others(log) == [(33.0, "TimedOut"), (33.0, "Terminated")]


def test_server_invite_reliable_has_no_timer_g() -> None:
    invite = request(transport="TCP")
    tx = ServerInviteTransaction(invite, reliable=True)
    tx.start(0.0)
    tx.respond(response(invite, 500), 0.0)
    assert drive(tx, 100.0) == [(32.0, TimedOut()), (32.0, Terminated())]


def test_server_invite_resends_final_to_a_retransmitted_invite() -> None:
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    busy = response(invite, 486)
    tx.respond(busy, 0.0)
    assert tx.receive(invite, 0.2) == [SendMessage(busy)]
    assert tx.respond(response(invite, 180), 0.3) == []  # §17.2.1: nothing more from the TU once final
    assert tx.respond(response(invite, 200), 0.3) == []


def test_server_invite_ack_confirms_and_timer_i_absorbs_acks() -> None:
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=False)
    tx.start(0.0)
    tx.respond(response(invite, 486), 0.0)
    ack = request("ACK")
    assert tx.receive(ack, 1.0) == []  # the ACK of a non-2xx stays in the transaction
    assert tx.state == "confirmed"
    assert tx.next_deadline == 6.0  # Timer I = T4; G and H are gone
    assert tx.receive(ack, 2.0) == []
    assert tx.receive(invite, 2.0) == []
    assert drive(tx, 100.0) == [(6.0, Terminated())]


def test_server_invite_ack_over_reliable_transport_terminates_at_once() -> None:
    invite = request(transport="TCP")
    tx = ServerInviteTransaction(invite, reliable=True)
    tx.start(0.0)
    tx.respond(response(invite, 486), 0.0)
    assert tx.receive(request("ACK", transport="TCP"), 0.1) == [Terminated()]


@pytest.mark.parametrize("reliable", [False, True])
def test_server_invite_2xx_goes_to_accepted_until_timer_l(reliable: bool) -> None:
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=reliable)
    tx.start(0.0)
    ok = response(invite, 200)
    assert tx.respond(ok, 1.0) == [SendMessage(ok)]
    assert tx.state == "accepted"
    assert tx.next_deadline == 33.0  # Timer L = 64*T1, whatever the transport
    assert tx.receive(invite, 1.5) == []  # RFC 6026 §7.1: retransmitted INVITEs are absorbed
    assert tx.respond(ok, 1.5) == [SendMessage(ok)]  # the TU's 2xx retransmission goes out
    assert tx.respond(response(invite, 486), 1.6) == []
    ack = request("ACK")
    assert tx.receive(ack, 2.0) == [DeliverAck(ack)]
    assert drive(tx, 100.0) == [(33.0, Terminated())]
    assert tx.respond(ok, 40.0) == []


def test_server_invite_refuses_non_invite_and_bad_status() -> None:
    with pytest.raises(ValueError, match="BYE"):
        ServerInviteTransaction(request("BYE"), reliable=False)
    invite = request()
    tx = ServerInviteTransaction(invite, reliable=False)
    bad = response(invite, 200)
    bad.status = 700
    with pytest.raises(ValueError, match="700"):
        tx.respond(bad, 0.0)


# -- server non-INVITE --------------------------------------------------------------------------------


def test_server_non_invite_states_and_timer_j() -> None:
    bye = request("BYE")
    tx = ServerNonInviteTransaction(bye, reliable=False)
    assert tx.start(0.0) == []
    assert tx.state == "trying"
    assert tx.receive(bye, 0.1) == []  # Trying: retransmissions are absorbed
    trying = response(bye, 100, to_tag="")
    assert tx.respond(trying, 0.2) == [SendMessage(trying)]
    assert tx.state == "proceeding"
    assert tx.receive(bye, 0.3) == [SendMessage(trying)]
    ok = response(bye, 200)
    assert tx.respond(ok, 2.0) == [SendMessage(ok)]
    assert tx.state == "completed"
    assert tx.next_deadline == 34.0  # Timer J = 64*T1
    assert tx.receive(bye, 5.0) == [SendMessage(ok)]
    assert tx.respond(response(bye, 500), 5.0) == []  # §17.2.2: other finals are discarded
    assert drive(tx, 100.0) == [(34.0, Terminated())]
    assert tx.receive(bye, 40.0) == []


def test_server_non_invite_final_over_reliable_transport_terminates_at_once() -> None:
    bye = request("BYE", transport="TCP")
    tx = ServerNonInviteTransaction(bye, reliable=True)
    tx.start(0.0)
    ok = response(bye, 200)
    assert tx.respond(ok, 0.0) == [SendMessage(ok), Terminated()]


def test_server_non_invite_refuses_invite() -> None:
    with pytest.raises(ValueError, match="INVITE"):
        ServerNonInviteTransaction(request("INVITE"), reliable=False)


@pytest.mark.parametrize("make", [
    lambda: ClientInviteTransaction(request(), reliable=False),
    lambda: ClientNonInviteTransaction(request("BYE"), reliable=False),
    lambda: ServerInviteTransaction(request(), reliable=False),
    lambda: ServerNonInviteTransaction(request("BYE"), reliable=False),
])
def test_transport_failure_ends_every_kind_of_transaction(make: Callable[[], Transaction]) -> None:
    table = TransactionTable()
    tx = make()
    if isinstance(tx, ClientInviteTransaction | ClientNonInviteTransaction):
        table.add_client(tx, 0.0)
    else:
        table.add_server(tx, 0.0)
        tx.respond(response(tx.request, 500), 0.0)
    assert tx.next_deadline is not None
    assert tx.transport_failed(0.1) == [TransportFailed(), Terminated()]
    assert tx.state == "terminated" and tx.next_deadline is None
    assert len(table) == 0 and table.next_deadline() is None
    assert tx.transport_failed(0.2) == []


# -- the table ----------------------------------------------------------------------------------------


def test_new_branch_has_the_magic_cookie_and_is_unique() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith("z9hG4bK") and len(b) > 16 for b in branches)


def test_table_matches_responses_by_branch_and_cseq_method() -> None:
    table = TransactionTable()
    invite = request()
    itx = ClientInviteTransaction(invite, reliable=False)
    assert table.add_client(itx, 0.0) == [SendMessage(invite)]
    cancel = request("CANCEL")  # same branch as the INVITE (RFC 3261 §9.1)
    ctx = ClientNonInviteTransaction(cancel, reliable=False)
    table.add_client(ctx, 0.1)
    assert table.match_response(response(invite, 180)) is itx
    assert table.match_response(response(cancel, 200)) is ctx
    assert table.match_response(response(request(branch="z9hG4bKother"), 180)) is None
    assert len(table) == 2
    assert table.counts() == {"ClientInviteTransaction": 1, "ClientNonInviteTransaction": 1}
    with pytest.raises(ValueError, match="exists"):
        table.add_client(ClientInviteTransaction(request(), reliable=False), 0.2)


def test_table_matches_retransmissions_and_non_2xx_acks() -> None:
    table = TransactionTable()
    invite = request()
    stx = ServerInviteTransaction(invite, reliable=False)
    assert table.add_server(stx, 0.0) == []
    assert table.match_request(request()) is stx
    assert table.match_request(request("ACK")) is stx  # the ACK of a non-2xx: same branch, keyed as INVITE
    assert table.match_request(request("ACK", branch="z9hG4bKnewack")) is None  # the ACK of a 2xx
    assert table.match_request(request(sent_by="mallory.example.com:5060")) is None  # §17.2.3 sent-by
    assert table.match_request(request(branch="z9hG4bKinv2")) is None
    assert table.match_request(request("BYE")) is None
    bye = request("BYE", branch="z9hG4bKbye")
    btx = ServerNonInviteTransaction(bye, reliable=False)
    table.add_server(btx, 0.0)
    assert table.match_request(request("BYE", branch="z9hG4bKbye")) is btx
    assert table.match_request(request("ACK", branch="z9hG4bKbye")) is None
    with pytest.raises(ValueError, match="exists"):
        table.add_server(ServerInviteTransaction(request(), reliable=False), 0.0)


def test_table_sent_by_default_port_matches_explicit_5060() -> None:
    table = TransactionTable()
    stx = ServerInviteTransaction(request(sent_by="alice.example.com"), reliable=False)
    table.add_server(stx, 0.0)
    assert table.match_request(request(sent_by="ALICE.example.com:5060")) is stx


def test_table_keeps_pre_3261_branches_apart() -> None:
    table = TransactionTable()
    a = ServerNonInviteTransaction(request("OPTIONS", branch="1", call_id="a"), reliable=False)
    table.add_server(a, 0.0)
    b = ServerNonInviteTransaction(request("OPTIONS", branch="1", call_id="b"), reliable=False)
    table.add_server(b, 0.0)
    assert table.match_request(request("OPTIONS", branch="1", call_id="b")) is b
    assert len(table) == 2


def test_table_matches_cancel_to_its_invite() -> None:
    table = TransactionTable()
    stx = ServerInviteTransaction(request(), reliable=False)
    table.add_server(stx, 0.0)
    cancel = request("CANCEL")
    assert table.match_request(cancel) is None  # a CANCEL is a transaction of its own
    assert table.match_cancel(cancel) is stx
    assert table.match_cancel(request("CANCEL", branch="z9hG4bKelse")) is None
    assert table.match_cancel(request("CANCEL", sent_by="other.example.com:5060")) is None


def test_table_ack_reusing_the_invite_branch_in_accepted_is_delivered() -> None:
    table = TransactionTable()
    invite = request()
    stx = ServerInviteTransaction(invite, reliable=False)
    table.add_server(stx, 0.0)
    stx.respond(response(invite, 200), 0.1)
    ack = request("ACK")
    tx = table.match_request(ack)
    assert tx is stx
    assert tx.receive(ack, 0.2) == [DeliverAck(ack)]


def test_table_drops_a_transaction_that_ends_outside_fire_due() -> None:
    table = TransactionTable()
    bye = request("BYE", transport="TCP")
    tx = ClientNonInviteTransaction(bye, reliable=True)
    table.add_client(tx, 0.0)
    assert table.next_deadline() == 32.0
    assert tx.receive(response(bye, 200), 0.1)[-1] == Terminated()
    assert len(table) == 0
    assert table.next_deadline() is None
    assert table.fire_due(100.0) == []


def test_table_next_deadline_follows_cancelled_and_new_timers() -> None:
    table = TransactionTable()
    invite = request()
    tx = ClientInviteTransaction(invite, reliable=False)
    table.add_client(tx, 0.0)
    assert table.next_deadline() == 0.5
    tx.receive(response(invite, 180), 0.1)
    assert table.next_deadline() is None  # A and B are cancelled in Proceeding
    tx.receive(response(invite, 200), 1.0)
    assert table.next_deadline() == 33.0  # Timer M
    assert table.fire_due(32.9) == []
    assert table.fire_due(33.0) == [(tx, [Terminated()])]
    assert len(table) == 0


def test_table_remove_silences_a_transaction() -> None:
    table = TransactionTable()
    tx = ClientInviteTransaction(request(), reliable=False)
    table.add_client(tx, 0.0)
    table.remove(tx)
    table.remove(tx)
    assert len(table) == 0
    assert table.fire_due(100.0) == []
    assert table.next_deadline() is None


def test_table_full_refuses_server_transactions_only() -> None:
    table = TransactionTable(max_transactions=2)
    first = request("OPTIONS", branch="z9hG4bK1", transport="TCP")
    tx1 = ServerNonInviteTransaction(first, reliable=True)
    table.add_server(tx1, 0.0)
    table.add_server(ServerNonInviteTransaction(request("OPTIONS", branch="z9hG4bK2"), reliable=False), 0.0)
    with pytest.raises(TableFull, match="2 transactions"):
        table.add_server(ServerNonInviteTransaction(request("OPTIONS", branch="z9hG4bK3"), reliable=False), 0.0)
    table.add_client(ClientNonInviteTransaction(request("BYE", branch="z9hG4bKc"), reliable=False), 0.0)
    assert len(table) == 3
    # Reliable: Timer J is zero, the transaction ends and leaves the table, which makes room.
    assert tx1.respond(response(first, 200), 0.1)[-1] == Terminated()
    assert len(table) == 2
    with pytest.raises(TableFull):
        table.add_server(ServerNonInviteTransaction(request("OPTIONS", branch="z9hG4bK4"), reliable=False), 0.0)
    table.remove(table.match_response(response(request("BYE", branch="z9hG4bKc"), 200)))  # type: ignore[arg-type]
    table.add_server(ServerNonInviteTransaction(request("OPTIONS", branch="z9hG4bK4"), reliable=False), 0.0)
    assert len(table) == 2


def test_table_fires_in_deadline_order() -> None:
    table = TransactionTable()
    rng = random.Random(7)
    finals = [i * 0.25 for i in range(200)]
    rng.shuffle(finals)
    by_deadline: dict[float, Transaction] = {}
    for i, at in enumerate(finals):
        req = request("OPTIONS", branch=f"z9hG4bKo{i}")
        tx = ServerNonInviteTransaction(req, reliable=False)
        table.add_server(tx, 0.0)
        tx.respond(response(req, 200), at)
        by_deadline[at + 32.0] = tx
    assert table.next_deadline() == 32.0
    fired = table.fire_due(1000.0)
    assert [tx for tx, _ in fired] == [by_deadline[d] for d in sorted(by_deadline)]
    assert all(actions == [Terminated()] for _, actions in fired)
    assert len(table) == 0 and table.counts() == {}


def test_table_runs_thousands_of_transactions_at_their_exact_instants() -> None:
    """A fake event loop that sleeps until `next_deadline()` and calls `fire_due`."""
    table = TransactionTable()
    starts: dict[int, float] = {}
    kinds: dict[int, str] = {}
    for i in range(1500):
        start = i * 0.004
        tx: Transaction
        if i % 2:
            tx = ClientInviteTransaction(request(branch=f"z9hG4bKi{i}"), reliable=False)
        else:
            tx = ClientNonInviteTransaction(request("OPTIONS", branch=f"z9hG4bKo{i}"), reliable=False)
        table.add_client(tx, start)
        starts[id(tx)] = start
        kinds[id(tx)] = tx.request.method
    assert table.counts() == {"ClientInviteTransaction": 750, "ClientNonInviteTransaction": 750}
    seen: dict[int, list[tuple[float, str]]] = {}
    now = 0.0
    while (deadline := table.next_deadline()) is not None:
        assert deadline >= now
        now = deadline
        for tx, actions in table.fire_due(now):
            seen.setdefault(id(tx), []).extend((now, type(a).__name__) for a in actions)
    assert len(table) == 0
    invite_offsets = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    options_offsets = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert len(seen) == 1500
    for key, events in seen.items():
        start = starts[key]
        sends = [t - start for t, name in events if name == "SendMessage"]
        expected = invite_offsets if kinds[key] == "INVITE" else options_offsets
        assert sends == pytest.approx(expected)
        assert [name for _, name in events[-2:]] == ["TimedOut", "Terminated"]
        assert events[-1][0] - start == pytest.approx(32.0)


def test_table_stale_heap_entries_do_not_pile_up() -> None:
    table = TransactionTable()
    for i in range(5000):
        tx = ClientInviteTransaction(request(branch=f"z9hG4bKs{i}"), reliable=False)
        table.add_client(tx, 0.0)
        table.remove(tx)
    assert len(table) == 0
    assert len(table._heap) < 2100  # rebuilt once stale entries outnumber live ones


def test_table_factories_pick_the_machine_and_the_table_timers() -> None:
    table = TransactionTable(Timers(t1=0.25))
    ctx = table.client_for(request(), reliable=False)
    assert isinstance(ctx, ClientInviteTransaction) and ctx.timers.t1 == 0.25
    assert isinstance(table.client_for(request("BYE"), reliable=False), ClientNonInviteTransaction)
    assert isinstance(table.server_for(request(), reliable=False), ServerInviteTransaction)
    assert isinstance(table.server_for(request("INFO"), reliable=True), ServerNonInviteTransaction)


# -- both ends over a lossy network -------------------------------------------------------------------


def test_invite_rejected_over_a_lossy_network_completes_on_both_sides() -> None:
    """Client and server tables joined by a fake UDP network that loses the first INVITE, the first 486
    and the first ACK: retransmissions (A, G) repair each loss; the TU sees each thing once."""
    latency = 0.05
    client, server = TransactionTable(), TransactionTable()
    wire: list[tuple[float, int, str, bytes]] = []
    seq = 0
    lost: set[str] = set()
    delivered: list[tuple[float, int]] = []
    new_server_txs = 0
    unmatched_acks = 0

    def send(now: float, to: str, msg: Request | Response) -> None:
        nonlocal seq
        kind = msg.method if isinstance(msg, Request) else str(msg.status)
        if kind not in lost:
            lost.add(kind)
            return
        seq += 1
        heapq.heappush(wire, (now + latency, seq, to, bytes(msg)))

    def run(to: str, actions: list[Action], now: float) -> None:
        for a in actions:
            if isinstance(a, SendMessage):
                send(now, to, a.msg)
            elif isinstance(a, DeliverResponse):
                delivered.append((now, a.response.status))

    invite = request()
    run("server", client.add_client(ClientInviteTransaction(invite, reliable=False), 0.0), 0.0)
    now = 0.0
    while True:
        candidates = [d for d in (client.next_deadline(), server.next_deadline()) if d is not None]
        if wire:
            candidates.append(wire[0][0])
        if not candidates:
            break
        now = min(candidates)
        for _tx, actions in client.fire_due(now):
            run("server", actions, now)
        for _tx, actions in server.fire_due(now):
            run("client", actions, now)
        while wire and wire[0][0] <= now:
            _, _, to, data = heapq.heappop(wire)
            msg = parse_message(data)
            if to == "server":
                assert isinstance(msg, Request)
                stx = server.match_request(msg)
                if stx is not None:
                    run("client", stx.receive(msg, now), now)
                elif msg.method == "ACK":
                    unmatched_acks += 1
                else:
                    new_server_txs += 1
                    sitx = ServerInviteTransaction(msg, reliable=False)
                    server.add_server(sitx, now)
                    run("client", sitx.respond(response(msg, 486), now), now)
            else:
                assert isinstance(msg, Response)
                ctx = client.match_response(msg)
                assert ctx is not None
                run("server", ctx.receive(msg, now), now)
    assert new_server_txs == 1 and unmatched_acks == 0
    # INVITE lost at 0, resent at 0.5 (arrives 0.55); 486 lost; G resends at 1.05, arrives 1.10.
    assert [status for _, status in delivered] == [486]
    assert delivered[0][0] == pytest.approx(1.10)
    # Client: Timer D 32 s after 1.10. Server: ACK lost, next G at 2.05 brings the ACK at 2.15, I = 5 s.
    assert now == pytest.approx(33.10)
    assert len(client) == 0 and len(server) == 0
