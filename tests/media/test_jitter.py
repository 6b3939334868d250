"""The jitter buffer: reordering, late and duplicate packets, sequence wrap, SSRC change, under- and overflow."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.media.jitter import JitterBuffer


def payload(seq: int) -> bytes:
    return seq.to_bytes(2, "big")


def push(buf: JitterBuffer, seq: int, ssrc: int = 1) -> bool:
    return buf.push(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, payload(seq & 0xFFFF), ssrc)


def drain(buf: JitterBuffer, ticks: int) -> list[int | None]:
    out: list[int | None] = []
    for _ in range(ticks):
        p = buf.pop()
        out.append(None if p is None else int.from_bytes(p, "big"))
    return out


def test_waits_for_depth_then_plays_in_order() -> None:
    buf = JitterBuffer(depth_packets=3)
    push(buf, 10)
    assert buf.pop() is None
    push(buf, 11)
    assert buf.pop() is None
    push(buf, 12)
    assert drain(buf, 3) == [10, 11, 12]
    assert buf.last_timestamp == 12 * 160


def test_reorders_within_depth() -> None:
    buf = JitterBuffer(depth_packets=3)
    for seq in (2, 1, 3):
        push(buf, seq)
    out = drain(buf, 1)
    for seq in (5, 4, 6):  # arrive as each tick passes
        push(buf, seq)
        out += drain(buf, 1)
    assert out == [1, 2, 3, 4]
    assert drain(buf, 2) == [5, 6]


def test_gap_returns_none_and_late_packet_is_dropped() -> None:
    buf = JitterBuffer(depth_packets=2)
    for seq in (1, 3, 4):
        push(buf, seq)
    assert drain(buf, 2) == [1, None]
    assert buf.gaps == 1
    assert push(buf, 2) is False and buf.late == 1  # its turn has passed
    assert drain(buf, 2) == [3, 4]


def test_duplicates_are_dropped_and_counted() -> None:
    buf = JitterBuffer(depth_packets=2)
    assert push(buf, 1) and push(buf, 2)
    assert push(buf, 2) is False
    assert drain(buf, 1) == [1]
    assert push(buf, 1) is False  # played already: late, not duplicate
    assert (buf.duplicates, buf.late) == (1, 1)
    assert drain(buf, 2) == [2, None]


def test_sequence_wrap() -> None:
    buf = JitterBuffer(depth_packets=3)
    for seq in (65534, 65535, 0, 1, 2):
        push(buf, seq)
    assert drain(buf, 5) == [65534, 65535, 0, 1, 2]
    # Reordered across the wrap.
    buf = JitterBuffer(depth_packets=3)
    for seq in (0, 65535, 65534):
        push(buf, seq)
    assert drain(buf, 3) == [65534, 65535, 0]


def test_ssrc_change_resets() -> None:
    buf = JitterBuffer(depth_packets=2)
    push(buf, 100)
    push(buf, 101)
    assert drain(buf, 1) == [100]
    push(buf, 5, ssrc=2)  # a new source: what was held is gone, and 5 is not "late"
    assert buf.resets == 1 and len(buf) == 1
    assert buf.pop() is None  # refilling to depth for the new source
    push(buf, 6, ssrc=2)
    assert drain(buf, 2) == [5, 6]


def test_underrun_refills_without_skipping() -> None:
    buf = JitterBuffer(depth_packets=2)
    push(buf, 1)
    push(buf, 2)
    assert drain(buf, 4) == [1, 2, None, None]
    assert buf.underruns == 1
    push(buf, 3)  # the sender paused; it resumes where it left off
    assert buf.pop() is None
    push(buf, 4)
    assert drain(buf, 2) == [3, 4]


def test_overflow_drops_oldest() -> None:
    buf = JitterBuffer(depth_packets=2, max_packets=5)
    for seq in range(10):
        push(buf, seq)
    assert len(buf) == 5 and buf.overflow == 5
    assert drain(buf, 5) == [5, 6, 7, 8, 9]
    # While playing, overflow moves the playout point past what was dropped.
    for seq in range(10, 20):
        push(buf, seq)
    assert drain(buf, 5) == [15, 16, 17, 18, 19]


def test_sender_restart_needs_two_packets() -> None:
    buf = JitterBuffer(depth_packets=2)
    for seq in (1, 2, 3):
        push(buf, seq)
    assert drain(buf, 1) == [1]
    assert push(buf, 40000) is False and buf.strays == 1  # one far-off packet is not trusted
    assert push(buf, 40001) is True and buf.resets == 1  # the next in sequence confirms a restart
    push(buf, 40002)
    assert drain(buf, 2) == [40001, 40002]


def test_depth_validation() -> None:
    with pytest.raises(ValueError, match="depth_packets=0"):
        JitterBuffer(depth_packets=0)
    with pytest.raises(ValueError, match="max_packets=2"):
        JitterBuffer(depth_packets=3, max_packets=2)


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, 0xFFFF),
    count=st.integers(5, 120),
    data=st.data(),
)
def test_any_displacement_within_depth_plays_everything_in_order(start: int, count: int, data: st.DataObject) -> None:
    """Packets that arrive at most `depth - 1` ticks late of their slot all play, in order, across wraps."""
    depth = 4
    delays = data.draw(st.lists(st.integers(0, depth - 1), min_size=count, max_size=count))
    arrivals = sorted(range(count), key=lambda i: (i + delays[i], i))
    buf = JitterBuffer(depth_packets=depth)
    out: list[int | None] = []
    arrived = 0
    for tick in range(count + 3 * depth):
        while arrived < count and arrivals[arrived] + delays[arrivals[arrived]] <= tick:
            i = arrivals[arrived]
            push(buf, start + i)
            if data.draw(st.booleans()):
                push(buf, start + i)  # duplicated in the network
            arrived += 1
        out += drain(buf, 1)
    assert [p for p in out if p is not None] == [(start + i) & 0xFFFF for i in range(count)]
    assert buf.late == 0 and buf.gaps == 0
