"""Bans per source address, with a fake clock."""

from __future__ import annotations

from hatif.sip.security import BanList


def test_ten_failures_in_a_minute_ban() -> None:
    bans = BanList()
    results = [bans.record_failure("10.0.0.1", float(i)) for i in range(10)]
    assert results == [False] * 9 + [True]
    assert bans.is_banned("10.0.0.1", 11.0)
    assert not bans.is_banned("10.0.0.2", 11.0)  # another address is unaffected
    assert bans.is_banned("10.0.0.1", 9.0 + 299.0)
    assert not bans.is_banned("10.0.0.1", 9.0 + 300.5)  # the ban ends after ban_time


def test_failures_spread_over_more_than_a_minute_do_not_ban() -> None:
    bans = BanList()
    assert not any(bans.record_failure("10.0.0.1", i * 7.0) for i in range(20))  # 7 s apart: < 10 per 60 s
    assert not bans.is_banned("10.0.0.1", 200.0)


def test_flood() -> None:
    bans = BanList(flood_limit=16, flood_window=2.0)
    assert not any(bans.record_request("a", i * 0.1) for i in range(16))
    assert bans.record_request("a", 1.6)  # the 17th within 2 s
    slow = BanList(flood_limit=16, flood_window=2.0)
    assert not any(slow.record_request("b", i * 0.2) for i in range(100))  # 10 per 2 s: fine


def test_memory_is_bounded_and_unban() -> None:
    bans = BanList(max_tracked=1000)
    for i in range(100_500):
        bans.record_request(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 0.0)
    assert len(bans) == 1000
    for i in range(10):
        bans.record_failure("x", float(i))
    assert bans.banned(10.0)[0][0] == "x"
    bans.unban("x")
    assert not bans.is_banned("x", 10.0)
