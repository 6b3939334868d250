"""Bans per source address (SECURITY.md "Bans"), with a fake clock."""

from __future__ import annotations

import logging

import pytest

from hatif.sip.security import BanList


def test_ten_failures_in_a_minute_ban(caplog: pytest.LogCaptureFixture) -> None:
    bans = BanList()
    with caplog.at_level(logging.WARNING, logger="hatif.sip.security"):
        results = [bans.record_failure("10.0.0.1", i * 6.5) for i in range(10)]  # the 10th at 58.5 s
    assert results == [False] * 9 + [True]
    assert [r.fields["source"] for r in caplog.records] == ["10.0.0.1"]  # type: ignore[attr-defined]
    assert bans.is_banned("10.0.0.1", 60.0)
    assert not bans.is_banned("10.0.0.2", 60.0)  # another address is unaffected
    assert not bans.record_failure("10.0.0.2", 60.0)
    assert bans.banned(60.0) == [("10.0.0.1", 58.5 + 300.0)]


def test_failures_spread_over_more_than_a_minute_do_not_ban() -> None:
    bans = BanList()
    assert not any(bans.record_failure("10.0.0.1", i * (60.0 / 9)) for i in range(10))  # first and 10th 60 s apart
    assert not any(bans.record_failure("10.0.0.1", 60.0 + i * 7.0) for i in range(1, 30))
    assert not bans.is_banned("10.0.0.1", 300.0) and bans.banned(300.0) == []


def test_ban_expires_after_ban_time_and_counting_starts_afresh() -> None:
    bans = BanList(ban_time=300.0)
    for i in range(10):
        bans.record_failure("a", float(i))
    assert bans.is_banned("a", 9.0 + 299.9)
    assert not bans.is_banned("a", 9.0 + 300.0)
    assert bans.banned(309.0) == []
    assert not any(bans.record_failure("a", 310.0 + i) for i in range(9))  # old failures do not count
    assert bans.record_failure("a", 320.0)


def test_counting_while_banned_does_not_extend_the_ban() -> None:
    bans = BanList(flood_limit=16, flood_window=2.0, ban_time=10.0)
    assert [bans.record_request("a", i * 0.01) for i in range(17)][-1]
    assert not any(bans.record_request("a", 1.0 + i * 0.01) for i in range(100))
    assert not any(bans.record_failure("a", 1.0 + i) for i in range(9))
    assert bans.banned(5.0) == [("a", 0.16 + 10.0)]


def test_flood() -> None:
    bans = BanList(flood_limit=16, flood_window=2.0)
    assert not any(bans.record_request("a", i * 0.1) for i in range(16))
    assert bans.record_request("a", 1.6)  # the 17th within 2 s
    slow = BanList(flood_limit=16, flood_window=2.0)
    assert not any(slow.record_request("b", i * 0.125) for i in range(200))  # exactly 16 per 2 s: allowed
    assert not slow.is_banned("b", 25.0)


def test_unban() -> None:
    bans = BanList()
    for i in range(10):
        bans.record_failure("x", float(i))
    bans.unban("x")
    assert not bans.is_banned("x", 10.0) and bans.banned(10.0) == []
    assert not bans.record_failure("x", 11.0)  # its count was forgotten with the ban


def test_memory_is_bounded_under_many_addresses() -> None:
    bans = BanList(max_tracked=1000)
    for i in range(10):
        bans.record_failure("attacker", float(i))
    for i in range(100_500):
        bans.record_request(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 10.0)
    assert len(bans) == 1000
    assert bans.is_banned("attacker", 11.0)  # fresh addresses do not push a live ban out
    for i in range(1500):
        for _ in range(17):
            bans.record_request(f"192.0.{i >> 8}.{i & 255}", 20.0 + i * 0.001)
    banned = bans.banned(30.0)
    assert len(banned) == 1000  # a table full of live bans drops the ones ending soonest
    assert banned[-1] == ("192.0.5.219", 20.0 + 1499 * 0.001 + 300.0)
    assert not bans.is_banned("attacker", 30.0)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        BanList(max_tracked=0)
