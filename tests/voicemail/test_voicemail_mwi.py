"""RFC 3842 message-summary bodies, byte for byte."""

from __future__ import annotations

import re

import pytest

from hatif.voicemail import CONTENT_TYPE, EVENT, message_summary

# RFC 3842 §5.2 ABNF, as regexes named after its rules (HCOLON = *WSP ":" SWS; we emit ": ").
MSG_STATUS_LINE = r"Messages-Waiting: (?:yes|no)\r\n"
MSG_ACCOUNT = r"Message-Account: [^\s]+\r\n"
MSG_SUMMARY_LINE = r"Voice-Message: [0-9]+/[0-9]+(?: \([0-9]+/[0-9]+\))?\r\n"
MESSAGE_SUMMARY = re.compile(f"{MSG_STATUS_LINE}(?:{MSG_ACCOUNT})?(?:{MSG_SUMMARY_LINE})*")


def test_rfc_3842_example_counts() -> None:
    body = message_summary(2, 8, "sip:alice@vmail.example.com")
    assert body == (b"Messages-Waiting: yes\r\n"
                    b"Message-Account: sip:alice@vmail.example.com\r\n"
                    b"Voice-Message: 2/8\r\n")


def test_no_new_messages_means_no_waiting() -> None:
    assert message_summary(0, 3, "sip:bob@example.com") == (b"Messages-Waiting: no\r\n"
                                                             b"Message-Account: sip:bob@example.com\r\n"
                                                             b"Voice-Message: 0/3\r\n")
    assert message_summary(0, 0, None) == b"Messages-Waiting: no\r\nVoice-Message: 0/0\r\n"
    assert message_summary(1, 0, None) == b"Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n"


@pytest.mark.parametrize(("new", "old"), [(0, 0), (1, 0), (0, 1), (12, 345), (10**6, 0)])
def test_bodies_follow_the_grammar(new: int, old: int) -> None:
    body = message_summary(new, old, "sip:1001@pbx.example.com").decode("ascii")
    assert MESSAGE_SUMMARY.fullmatch(body)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        message_summary(-1, 0, None)
    for uri in ("", "sip:a@b\r\nVoice-Message: 9/9", "sip:a b@c"):
        with pytest.raises(ValueError, match="Message-Account"):
            message_summary(1, 0, uri)


def test_event_package_names() -> None:
    assert (EVENT, CONTENT_TYPE) == ("message-summary", "application/simple-message-summary")
