"""Admission control and RFC 4028 negotiation as plain functions (no network)."""

from __future__ import annotations

from hatif.sip.admission import Admission, AdmissionSettings, Shedder, is_shed_ack, read_new_invite
from hatif.sip.message import Request, parse_message
from hatif.sip.session_timer import SessionTimer, TooSmall, uas_timer

INVITE = (b"INVITE sip:600@127.0.0.1:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2\r\n"
          b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345\r\n"
          b"To: 600 <sip:600@127.0.0.1:5060>\r\n"
          b"Call-ID: 1-12345@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:sipp@127.0.0.1:5061>\r\n"
          b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def test_late_invites_busy_setups_and_draining_are_refused() -> None:
    a = Admission(AdmissionSettings(max_queue_delay=0.2, late_for=0.1, max_setups=2))
    assert not a.observe(0.1, 0.0) and a.invite(0.1, 0.0) is None
    assert not a.observe(0.3, 1.0)  # a stall's burst: not yet behind
    assert a.observe(0.3, 1.05) is False and a.observe(0.3, 1.1) is True
    late = a.invite(0.3, 1.1)
    assert late is not None and late.status == 503 and late.cause == "late"
    assert not a.observe(0.0, 1.2) and a.behind  # a short dip under the bound: still behind
    assert a.observe(0.3, 1.25)
    a.observe(0.0, 1.3)
    a.observe(0.0, 1.45)
    assert not a.behind  # under the bound for late_for: no longer
    a.setup_started()
    a.setup_started()
    busy = a.invite(0.0, 0.0)
    assert busy is not None and busy.cause == "busy"
    a.setup_finished()
    assert a.invite(0.0, 0.0) is None
    assert a.other("OPTIONS", 0.0) is None
    a.draining = True
    assert a.invite(0.0, 0.0) is not None
    refusal = a.other("OPTIONS", 0.0)
    assert refusal is not None and refusal.retry_after == 30
    assert a.stats == {"admitted": 2, "refused_late": 1, "refused_busy": 1, "refused_draining": 2}


def test_a_late_invite_is_refused_from_its_bytes_and_remembered() -> None:
    shedder = Shedder(retry_after=5)
    verdict = shedder.shed(INVITE, 1.0, lambda key: False)
    assert isinstance(verdict, tuple)
    response, invite = verdict
    assert invite.key == ("z9hG4bK-1-2", "127.0.0.1:5061", "INVITE") and invite.port == 5061
    parsed = parse_message(response)
    assert not isinstance(parsed, Request)
    assert parsed.status == 503 and parsed.headers.get("Retry-After") == "5"
    assert parsed.call_id == "1-12345@127.0.0.1" and parsed.to.tag and parsed.from_.tag == "12345"
    assert shedder.refused_before("z9hG4bK-1-2")
    tag = (parsed.to.tag or "").encode()
    ack = b"ACK sip:600@127.0.0.1 SIP/2.0\r\nTo: 600 <sip:600@127.0.0.1:5060>;tag=" + tag + b"\r\n\r\n"
    assert is_shed_ack(ack) and shedder.drop_ack(ack)


def test_refused_branches_are_forgotten_after_two_windows_without_a_new_refusal() -> None:
    shedder = Shedder(window=32.0)
    assert isinstance(shedder.shed(INVITE, 100.0, lambda key: False), tuple)
    shedder.expire(120.0)
    assert shedder.refused_before("z9hG4bK-1-2") and shedder.remembered == 1  # within the window
    shedder.expire(133.0)
    assert shedder.refused_before("z9hG4bK-1-2")  # one window on: still the previous generation
    shedder.expire(166.0)
    assert not shedder.refused_before("z9hG4bK-1-2") and shedder.remembered == 0


def test_retransmissions_in_dialog_requests_and_others_are_never_shed() -> None:
    shedder = Shedder()
    assert shedder.shed(INVITE, 1.0, lambda key: True) is False  # its transaction exists
    in_dialog = INVITE.replace(b"To: 600 <sip:600@127.0.0.1:5060>", b"To: 600 <sip:600@127.0.0.1:5060>;tag=ab")
    assert read_new_invite(in_dialog) is None
    assert shedder.shed(INVITE.replace(b"INVITE sip", b"OPTIONS sip", 1), 1.0, lambda key: False) is False
    assert read_new_invite(INVITE.replace(b"z9hG4bK-1-2", b"old-2543-branch")) is None


def _invite(*headers: str) -> Request:
    extra = "".join(h + "\r\n" for h in headers)
    text = INVITE.decode().replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n" + extra)
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_session_timer_negotiation_as_uas() -> None:
    assert uas_timer(_invite(), 90, 1800) == SessionTimer(1800, "uas")  # the caller knows no timers
    assert uas_timer(_invite("Supported: timer"), 90, 1800) == SessionTimer(1800, "uac")
    assert uas_timer(_invite("Supported: timer", "Session-Expires: 120;refresher=uas"), 90, 1800) == \
        SessionTimer(120, "uas")
    assert uas_timer(_invite("Session-Expires: 60"), 90, 1800) == TooSmall(90)
    assert SessionTimer(90, "uac").expiry_margin() == 30
