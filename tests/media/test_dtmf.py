"""DTMF: RFC 4733 telephone-events (payload, sender, receiver) and in-band Goertzel detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatif.media.dtmf import (
    DIGITS,
    HIGH_GROUP,
    LOW_GROUP,
    DtmfDigit,
    DtmfError,
    DtmfReceiver,
    DtmfSender,
    GoertzelDetector,
    ScheduledPacket,
    TelephoneEvent,
    dtmf_tone,
)
from hatif.media.rtp import RtpPacket


def test_payload_bytes() -> None:
    ev = TelephoneEvent(event=11, end=True, volume=10, duration=1600)
    assert ev.serialize() == bytes.fromhex("0b 8a 0640")
    assert TelephoneEvent.parse(bytes.fromhex("0b ca 0640")) == ev  # the reserved bit is ignored
    assert ev.digit == "#" and TelephoneEvent(16).digit is None
    with pytest.raises(DtmfError, match="3 octets"):
        TelephoneEvent.parse(b"\x01\x02\x03")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(ev.serialize()) == ev


# -- sender -------------------------------------------------------------------------------------------------


def test_sender_follows_rfc4733_2_5() -> None:
    out = DtmfSender(ssrc=42, payload_type=101).packets("5", 200, timestamp=8000, sequence=65533)
    events = [TelephoneEvent.parse(s.packet.payload) for s in out]
    assert [s.packet.marker for s in out] == [True] + [False] * (len(out) - 1)
    assert {s.packet.timestamp for s in out} == {8000} and {s.packet.ssrc for s in out} == {42}
    assert [s.packet.sequence for s in out] == [(65533 + i) & 0xFFFF for i in range(len(out))]
    assert {e.event for e in events} == {5} and {s.packet.payload_type for s in out} == {101}
    updates = [s for s, e in zip(out, events, strict=True) if not e.end]
    assert [s.at for s in updates] == pytest.approx([0.0, 0.05, 0.10, 0.15])  # every 50 ms
    assert [e.duration for e in events if not e.end] == [160, 400, 800, 1200]
    ends = [(s.at, e.duration) for s, e in zip(out, events, strict=True) if e.end]
    assert [at for at, _ in ends] == pytest.approx([0.2, 0.22, 0.24])
    assert [duration for _, duration in ends] == [1600, 1600, 1600]


def test_sender_rejects_bad_input() -> None:
    sender = DtmfSender(ssrc=1)
    with pytest.raises(DtmfError, match="'E' is not a DTMF digit"):
        sender.packets("E", 100, 0, 0)
    with pytest.raises(DtmfError, match="10000 ms"):
        sender.packets("1", 10_000, 0, 0)
    assert TelephoneEvent.parse(sender.packets("d", 40, 0, 0)[0].packet.payload).event == 15


# -- receiver ---------------------------------------------------------------------------------------------


def press(digits: str, ms: int = 120) -> list[list[ScheduledPacket]]:
    """The packets of each digit, one second apart on the stream."""
    sender = DtmfSender(ssrc=7)
    out: list[list[ScheduledPacket]] = []
    sequence = 1000
    for i, digit in enumerate(digits):
        packets = sender.packets(digit, ms, timestamp=(4_294_960_000 + i * 8000) & 0xFFFFFFFF, sequence=sequence)
        sequence += len(packets)
        out.append([ScheduledPacket(i + s.at, s.packet) for s in packets])
    return out


def deliver(receiver: DtmfReceiver, packets: list[ScheduledPacket]) -> list[str]:
    got: list[str] = []
    for s in packets:
        got += [d.digit for d in receiver.poll(s.at)]
        p = s.packet
        got += [d.digit for d in receiver.receive(p.sequence, p.timestamp, p.marker, p.payload, s.at)]
    return got


def test_each_digit_reported_once_at_its_end() -> None:
    receiver = DtmfReceiver()
    groups = press("19#")
    reports = []
    for group in groups:
        for s in group:
            p = s.packet
            reports.append(receiver.receive(p.sequence, p.timestamp, p.marker, p.payload, s.at))
        assert receiver.poll(group[-1].at + 10) == ()
    flat = [d for r in reports for d in r]
    assert [d.digit for d in flat] == ["1", "9", "#"]
    assert all(d.ended and d.duration == 960 for d in flat)
    # Reported on the first end packet, not before and not again on the two copies.
    first_group = [len(r) for r in reports[: len(groups[0])]]
    assert first_group == [0, 0, 0, 1, 0, 0]


def test_lost_end_packets_reported_when_next_event_starts() -> None:
    receiver = DtmfReceiver()
    first, second = press("42")
    kept = [s for s in first if not TelephoneEvent.parse(s.packet.payload).end] + second
    got: list[DtmfDigit] = []
    for s in kept:
        p = s.packet
        got += receiver.receive(p.sequence, p.timestamp, p.marker, p.payload, s.at)
    assert [(d.digit, d.ended) for d in got] == [("4", False), ("2", True)]
    assert got[0].duration == 800  # the longest duration seen


def test_lost_end_packets_reported_after_timeout() -> None:
    receiver = DtmfReceiver(timeout=0.3)
    (group,) = press("7")
    updates = [s for s in group if not TelephoneEvent.parse(s.packet.payload).end]
    for s in updates:
        p = s.packet
        assert receiver.receive(p.sequence, p.timestamp, p.marker, p.payload, s.at) == ()
    last = updates[-1].at
    assert receiver.next_deadline() == pytest.approx(last + 0.3)
    assert receiver.poll(last + 0.29) == ()
    (digit,) = receiver.poll(last + 0.3)
    assert (digit.digit, digit.ended) == ("7", False)
    assert receiver.poll(last + 5) == () and receiver.next_deadline() is None
    # The end packets arriving after all are absorbed.
    assert deliver(receiver, [s for s in group if TelephoneEvent.parse(s.packet.payload).end]) == []


def test_duplicates_malformed_and_other_events() -> None:
    receiver = DtmfReceiver()
    (group,) = press("3")
    doubled = [s for s in group for _ in range(2)]
    assert deliver(receiver, doubled) == ["3"]
    assert receiver.duplicates == len(group)
    assert receiver.receive(1, 2, True, b"\x01", 9.0) == () and receiver.malformed == 1
    flash = TelephoneEvent(16, True, 10, 800).serialize()
    assert receiver.receive(5000, 123456, True, flash, 9.0) == ()


def test_late_packets_of_an_older_event() -> None:
    receiver = DtmfReceiver()
    first, second = press("68")
    got = deliver(receiver, second[:2])
    got += deliver(receiver, first)  # all of "6" arrives after "8" began
    got += deliver(receiver, second[2:])
    assert got == ["6", "8"]


def test_end_packets_only() -> None:
    receiver = DtmfReceiver()
    (group,) = press("0")
    got = deliver(receiver, [s for s in group if TelephoneEvent.parse(s.packet.payload).end])
    assert got == ["0"]


def test_long_event_in_segments_counts_once() -> None:
    receiver = DtmfReceiver()
    full = TelephoneEvent(1, False, 10, 0xFFFF).serialize()
    assert receiver.receive(1, 1000, True, TelephoneEvent(1, False, 10, 160).serialize(), 0.0) == ()
    assert receiver.receive(2, 1000, False, full, 8.0) == ()
    nxt = 1000 + 0xFFFF
    assert receiver.receive(3, nxt, False, TelephoneEvent(1, False, 10, 400).serialize(), 8.1) == ()
    (digit,) = receiver.receive(4, nxt, False, TelephoneEvent(1, True, 10, 800).serialize(), 8.2)
    assert (digit.digit, digit.timestamp, digit.duration) == ("1", 1000, 0xFFFF + 800)


@settings(max_examples=60, deadline=None)
@given(
    digits=st.text(DIGITS, min_size=1, max_size=6),
    data=st.data(),
)
def test_loss_reordering_and_duplicates_report_each_digit_once(digits: str, data: st.DataObject) -> None:
    groups = press(digits)
    stream: list[ScheduledPacket] = []
    for group in groups:
        kept = [s for s in group if data.draw(st.booleans())] or [group[0]]  # at least one packet survives
        stream += [s for s in kept for _ in range(data.draw(st.integers(1, 2)))]
    for _ in range(data.draw(st.integers(0, 5))):  # swap neighbours
        i = data.draw(st.integers(0, len(stream) - 1))
        j = min(i + 1, len(stream) - 1)
        stream[i], stream[j] = stream[j], stream[i]
    receiver = DtmfReceiver()
    got: list[DtmfDigit] = []
    for k, s in enumerate(stream):
        p = s.packet
        got += receiver.receive(p.sequence, p.timestamp, p.marker, p.payload, k * 0.01)
    got += receiver.poll(len(stream) * 0.01 + 1.0)
    assert sorted((d.timestamp, d.digit) for d in got) == sorted(
        (g[0].packet.timestamp, digit) for g, digit in zip(groups, digits, strict=True)
    )


# -- in-band detection ---------------------------------------------------------------------------------------


def noisy(signal: np.ndarray, rms: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(signal + rng.normal(0, rms, signal.size), -32768, 32767).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 8, dtype=np.int16)


def keyed(digits: str, on_ms: int = 80, off_ms: int = 60) -> np.ndarray:
    return np.concatenate([np.concatenate((dtmf_tone(d, on_ms), silence(off_ms))) for d in digits])


def test_all_sixteen_digits_with_noise() -> None:
    audio = noisy(keyed(DIGITS), rms=400)
    assert "".join(GoertzelDetector().feed(audio)) == DIGITS


def test_chunking_does_not_matter() -> None:
    audio = noisy(keyed("159#"), rms=200, seed=2)
    detector = GoertzelDetector()
    got = []
    for start in range(0, audio.size, 37):
        got += detector.feed(audio[start : start + 37])
    assert got == ["1", "5", "9", "#"]


def test_press_reported_once_and_needs_40_ms() -> None:
    detector = GoertzelDetector()
    assert detector.feed(np.concatenate((silence(100), dtmf_tone("8", 1000), silence(100)))) == ["8"]
    assert detector.feed(np.concatenate((dtmf_tone("8", 20), silence(100)))) == []
    # A 20 ms dropout inside a press is not a new press; a 60 ms pause is.
    assert detector.feed(np.concatenate((dtmf_tone("2", 100), silence(20), dtmf_tone("2", 100), silence(100)))) == ["2"]
    assert detector.feed(np.concatenate((dtmf_tone("2", 100), silence(60), dtmf_tone("2", 100), silence(100)))) == [
        "2", "2"]


def test_rejects_silence_noise_single_tones_and_speechlike_sound() -> None:
    t = np.arange(8000) / 8000
    candidates = {
        "silence": silence(1000),
        "noise": noisy(silence(1000), rms=3000),
        "697 Hz": (8000 * np.sin(2 * np.pi * 697 * t)).astype(np.int16),
        "1000 Hz": (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16),
        "1336 Hz": (8000 * np.sin(2 * np.pi * 1336 * t)).astype(np.int16),
        "vowel": np.sum([(6000 / k) * np.sin(2 * np.pi * 140 * k * t) for k in range(1, 20)], axis=0).astype(np.int16),
        "quiet digit": dtmf_tone("5", 1000, amplitude=40),
    }
    for name, audio in candidates.items():
        assert GoertzelDetector().feed(noisy(audio, 20)) == [], name


@pytest.mark.parametrize(("high_db", "found"), [(0, True), (-6, True), (-10, False), (3, True), (6, False)])
def test_twist_limits(high_db: float, found: bool) -> None:
    t = np.arange(800) / 8000
    tone = 8000 * np.sin(2 * np.pi * LOW_GROUP[1] * t) + 8000 * 10 ** (high_db / 20) * np.sin(
        2 * np.pi * HIGH_GROUP[2] * t)
    got = GoertzelDetector().feed(np.concatenate((tone.astype(np.int16), silence(100))))
    assert got == (["6"] if found else [])


def test_tone_generator() -> None:
    tone = dtmf_tone("1", 50)
    assert tone.dtype == np.int16 and tone.size == 400 and np.abs(tone).max() <= 16000
    with pytest.raises(DtmfError):
        dtmf_tone("x", 50)


def test_sender_payloads_parse_as_rtp() -> None:
    for s in DtmfSender(ssrc=9).packets("*", 100, 0, 0):
        assert RtpPacket.parse(s.packet.serialize()) == s.packet
