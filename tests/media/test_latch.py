"""The latching rules (`hatif.media.latch`) with a fake clock: who may become a leg's source, and when."""

from __future__ import annotations

from hatif.media.latch import ACCEPTED, DROPPED, LATCHED, MOVED, Addr, Latch

SDP: Addr = ("192.0.2.10", 4000)
NAT: Addr = ("198.51.100.7", 31000)
STRANGER: Addr = ("127.0.0.2", 4000)


class Feed:
    """Packets into a latch the way the engine does: the current source is accepted without asking."""

    def __init__(self, latch: Latch) -> None:
        self.latch = latch
        self.now = 100.0

    def packet(self, addr: Addr, seq: int) -> int:
        latch = self.latch
        if addr == latch.source:
            latch.seen = self.now
            return ACCEPTED
        return latch.packet(addr, seq, self.now)

    def talk(self, party: Addr, party_seq: int, stranger: Addr, count: int) -> list[int]:
        """The party and a stranger each send `count` packets, interleaved; the stranger's verdicts."""
        out = []
        for i in range(count):
            assert self.packet(party, (party_seq + i) & 0xFFFF) in (ACCEPTED, LATCHED)
            out.append(self.packet(stranger, (party_seq + i + 1) & 0xFFFF))
            self.now += 0.02
        return out

    def stream(self, addr: Addr, first_seq: int, count: int, step: float = 0.02) -> list[int]:
        out = []
        for i in range(count):
            out.append(self.packet(addr, (first_seq + i) & 0xFFFF))
            self.now += step
        return out


def armed(**kwargs: object) -> Feed:
    latch = Latch(**kwargs)  # type: ignore[arg-type]
    feed = Feed(latch)
    latch.arm(SDP, feed.now)
    return feed


def test_the_sdp_address_is_taken_at_once_and_a_stranger_never_while_it_talks() -> None:
    f = armed()
    assert f.packet(SDP, 10) == LATCHED and f.latch.source == SDP and f.latch.moves == 0
    for i in range(200):  # the stranger in sequence, interleaved with the party: never in
        assert f.packet(STRANGER, 5000 + i) == DROPPED
        assert f.packet(SDP, 11 + i) == ACCEPTED
        f.now += 0.02
    assert f.latch.source == SDP


def test_a_stranger_with_guessed_sequence_numbers_gains_nothing_while_the_source_talks() -> None:
    f = armed()
    f.stream(SDP, 10, 5)
    assert f.stream(STRANGER, 15, 50, step=0.001) == [DROPPED] * 50
    assert f.latch.source == SDP


def test_nat_rebinding_moves_after_silence_and_in_sequence_packets_within_a_second() -> None:
    f = armed()
    f.stream(SDP, 10, 50)
    rebound = ("192.0.2.10", 4096)
    t0 = f.now
    verdicts = f.stream(rebound, 60, 40)
    moved_at = verdicts.index(MOVED)
    assert set(verdicts[:moved_at]) == {DROPPED}
    assert all(v == ACCEPTED for v in verdicts[moved_at + 1:])
    assert moved_at * 0.02 < 1.0 and f.latch.source == rebound and f.latch.previous == SDP
    assert f.latch.moves == 1 and f.now - t0 < 1.0


def test_out_of_sequence_packets_start_the_count_again() -> None:
    f = armed(packets=4)
    f.stream(SDP, 10, 5)
    f.now += 1.0  # the source fell silent
    for seq in (100, 101, 102, 200, 201, 202):
        assert f.packet(STRANGER, seq) == DROPPED
    assert f.packet(STRANGER, 203) == MOVED


def test_a_stranger_racing_the_first_packet_loses_to_the_party() -> None:
    f = armed()
    assert f.stream(STRANGER, 1, 10) == [DROPPED] * 10  # 0.2 s ahead of the party: not enough
    assert f.talk(SDP, 7, STRANGER, 100) == [DROPPED] * 100
    assert f.latch.source == SDP


def test_a_party_behind_nat_is_learned_within_the_window_only() -> None:
    f = armed(silence=0.5, window=5.0)
    verdicts = f.stream(NAT, 1, 40)
    assert LATCHED in verdicts and verdicts.index(LATCHED) * 0.02 >= 0.5
    assert f.latch.source == NAT and f.latch.moves == 1
    late = armed(window=2.0)
    late.now += 3.0
    assert late.stream(NAT, 1, 100) == [DROPPED] * 100
    late.latch.open_window(late.now)  # the answer: the window starts there
    assert LATCHED in late.stream(NAT, 101, 40)


def test_the_sdp_address_takes_its_stream_back_from_a_learned_source() -> None:
    f = armed()
    f.stream(NAT, 1, 40)
    assert f.latch.source == NAT
    assert f.stream(SDP, 500, 4, step=0.001) == [DROPPED, DROPPED, DROPPED, MOVED]


def test_without_symmetric_rtp_only_the_sdp_address_is_accepted() -> None:
    f = armed(symmetric=False)
    assert f.stream(NAT, 1, 100) == [DROPPED] * 100
    assert f.packet(SDP, 1) == LATCHED
    f.now += 5.0
    assert f.stream(NAT, 200, 100) == [DROPPED] * 100


def test_a_new_description_rearms_and_a_stranger_racing_it_stays_out() -> None:
    f = armed()
    f.stream(SDP, 10, 10)
    moved_to = ("192.0.2.20", 5000)
    f.latch.arm(moved_to, f.now)
    assert f.latch.source is None
    assert f.stream(STRANGER, 1, 5, step=0.005) == [DROPPED] * 5
    assert f.stream(SDP, 20, 3) == [DROPPED] * 3  # the old address is a stranger now
    assert f.packet(moved_to, 1) == LATCHED and f.latch.previous == SDP
    assert f.talk(moved_to, 2, STRANGER, 100) == [DROPPED] * 100


def test_the_same_description_again_keeps_the_latch() -> None:
    f = armed()
    f.stream(NAT, 1, 40)
    f.latch.arm(SDP, f.now)  # a re-INVITE for hold names the same (private) address
    assert f.latch.source == NAT
