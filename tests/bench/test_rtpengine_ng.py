"""bench/rtpengine_ng.py: the bencode codec (BEP 3), the SDP helpers, the ng client's retries and
errors against a fake server, and one live call through Debian's rtpengine (skipped only without it)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from rtpengine_ng import (
    OFFER_FLAGS,
    BencodeError,
    Decoded,
    NgClient,
    NgError,
    Rtpengine,
    decode,
    encode,
    sdp_audio,
    sdp_media_address,
)

# -- bencode -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), [
    (3, b"i3e"),
    (-3, b"i-3e"),
    (0, b"i0e"),
    (b"spam", b"4:spam"),
    ("", b"0:"),
    ("مرحبا", "10:مرحبا".encode()),
    (["spam", "eggs"], b"l4:spam4:eggse"),
    (("a", 1), b"l1:ai1ee"),
    ({"cow": "moo", "spam": "eggs"}, b"d3:cow3:moo4:spam4:eggse"),
    ({"spam": ["a", "b"]}, b"d4:spaml1:a1:bee"),
    ({}, b"de"),
])
def test_encode_bep3_examples(value: object, encoded: bytes) -> None:
    assert encode(value) == encoded  # type: ignore[arg-type]


def test_encode_sorts_keys_as_raw_bytes() -> None:
    assert encode({"from-tag": "x", "call-id": "c", "ICE": "remove", "sdp": "v"}) == (
        b"d3:ICE6:remove7:call-id1:c8:from-tag1:x3:sdp1:ve")


@pytest.mark.parametrize("value", [True, 1.5, None, {1: "x"}, {"a": 1, b"a": 2}])
def test_encode_rejects_what_bencode_cannot_carry(value: object) -> None:
    with pytest.raises(BencodeError):
        encode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "why"), [
    (b"", "ends early"),
    (b"i03e", "malformed"),
    (b"i-0e", "malformed"),
    (b"ie", "malformed"),
    (b"i12", "no closing"),
    (b"03:abc", "length"),
    (b"5:abc", "claims 5 bytes"),
    (b"4spam", "no ':'"),
    (b"l4:spam", "list has no closing"),
    (b"d3:cow3:moo", "dictionary has no closing"),
    (b"di1e3:mooe", "not a byte string"),
    (b"d1:ai1e1:ai2ee", "repeated"),
    (b"i1ei2e", "trailing"),
    (b"x", "starts with"),
    (b"l" * 100 + b"e" * 100, "nested deeper"),
])
def test_decode_rejects_malformed_input(data: bytes, why: str) -> None:
    with pytest.raises(BencodeError, match=why):
        decode(data)


def test_decode_accepts_unsorted_keys_as_sent() -> None:
    assert decode(b"d6:result2:ok3:sdp1:xe") == {b"result": b"ok", b"sdp": b"x"}
    assert decode(b"d3:sdp1:x6:result2:oke") == {b"result": b"ok", b"sdp": b"x"}


values: st.SearchStrategy[Decoded] = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.binary(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip(value: Decoded) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_decode_of_arbitrary_bytes_returns_or_raises_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert encode(value) == data or data[:1] == b"d"  # dictionaries may arrive unsorted


# -- SDP ---------------------------------------------------------------------------------------------------


def test_sdp_audio_round_trip() -> None:
    sdp = sdp_audio("127.0.0.1", 40000, session=7, payload_type=8)
    assert "m=audio 40000 RTP/AVP 8\r\n" in sdp and "a=rtpmap:8 PCMA/8000" in sdp and "o=- 7 1 IN IP4" in sdp
    assert sdp_media_address(sdp) == ("127.0.0.1", 40000)


@pytest.mark.parametrize(("sdp", "why"), [
    ("v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m=audio"),
    ("v=0\r\nm=audio 4000 RTP/AVP 0\r\n", "no c= line"),
    ("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "no port"),
])
def test_sdp_media_address_errors(sdp: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sdp_media_address(sdp)


# -- the client against a fake rtpengine ----------------------------------------------------------------


Answer = Callable[[bytes, dict[bytes, Decoded]], list[bytes]]
FakeNg = tuple[int, list[bytes], list[Answer]]


@pytest.fixture
def fake_ng() -> Iterator[FakeNg]:
    """A UDP server on 127.0.0.1; each request is answered by the next script entry (cookie, message) ->
    datagrams to send back. Yields (port, requests seen, script)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    seen: list[bytes] = []
    script: list[Answer] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65536)
            except TimeoutError:
                continue
            seen.append(data)
            cookie, _, body = data.partition(b" ")
            message = decode(body)
            assert isinstance(message, dict)
            for reply in script.pop(0)(cookie, message) if script else []:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], seen, script
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_client_retries_with_the_same_cookie_and_ignores_foreign_cookies(fake_ng: FakeNg) -> None:
    port, seen, script = fake_ng
    script.append(lambda cookie, message: [])  # the first try is "lost"
    script.append(lambda cookie, message: [b"other " + encode({"result": "pong"}),
                                           cookie + b" " + encode({"result": "pong"})])
    with NgClient("127.0.0.1", port, timeout=0.3, attempts=3) as ng:
        ng.ping()
    assert len(seen) == 2 and seen[0] == seen[1]
    assert decode(seen[0].partition(b" ")[2]) == {b"command": b"ping"}


def test_client_sends_offer_fields_and_returns_the_sdp(fake_ng: FakeNg) -> None:
    port, seen, script = fake_ng
    script.append(lambda cookie, message: [cookie + b" " + encode({"result": "ok", "sdp": "v=0\r\n"})])
    with NgClient("127.0.0.1", port, timeout=1.0) as ng:
        assert ng.offer("call-1", "tag-a", "SDP") == "v=0\r\n"
    message = decode(seen[0].partition(b" ")[2])
    assert message == {b"command": b"offer", b"call-id": b"call-1", b"from-tag": b"tag-a", b"sdp": b"SDP",
                       b"replace": [b"origin", b"session-connection"], b"ICE": b"remove"}
    assert set(OFFER_FLAGS) == {"replace", "ICE"}


def test_client_raises_rtpengine_error_reason(fake_ng: FakeNg) -> None:
    port, _, script = fake_ng
    script.append(lambda cookie, message: [cookie + b" " + encode({"result": "error",
                                                                   "error-reason": "Unknown call-id"})])
    with NgClient("127.0.0.1", port, timeout=1.0) as ng, pytest.raises(NgError, match="Unknown call-id"):
        ng.delete("nope")


def test_client_gives_up_after_its_attempts(fake_ng: FakeNg) -> None:
    port, seen, _ = fake_ng
    with NgClient("127.0.0.1", port, timeout=0.1, attempts=2) as ng, pytest.raises(NgError, match="did not answer"):
        ng.ping()
    assert len(seen) == 2


# -- one live call through rtpengine -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("rtpengine") is None,
                    reason="rtpengine not installed (Debian package rtpengine-daemon)")
def test_live_call_relays_both_ways_and_records_a_pcap(free_port: Callable[..., int], tmp_path: Path) -> None:
    base = free_port(udp=True, tcp=False, span=20)
    recordings = tmp_path / "recordings"
    daemon = Rtpengine(ng_port=free_port(udp=True, tcp=False), port_min=base, port_max=base + 19,
                       recording_dir=recordings)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        daemon.start()
        pid = daemon.pid
        for sock in (caller, callee):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2.0)
        ng = daemon.client
        flags = {**OFFER_FLAGS, "record call": "yes"}
        offer = ng.offer("live-1", "a", sdp_audio("127.0.0.1", caller.getsockname()[1]), flags)
        answer = ng.answer("live-1", "a", "b", sdp_audio("127.0.0.1", callee.getsockname()[1]), flags)
        to_callee, to_caller = sdp_media_address(offer), sdp_media_address(answer)  # rtpengine's two sides
        assert to_callee[0] == to_caller[0] == "127.0.0.1"
        assert base <= to_callee[1] <= base + 19 and base <= to_caller[1] <= base + 19
        assert to_callee != to_caller
        for seq in range(5):
            for sender, receiver, target, ssrc in ((caller, callee, to_caller, 0x1111),
                                                   (callee, caller, to_callee, 0x2222)):
                packet = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([seq]) * 160
                sender.sendto(packet, target)
                data, source = receiver.recvfrom(2048)
                assert data == packet  # relayed untouched ...
                expected_source = to_callee if receiver is callee else to_caller
                assert source == expected_source  # ... out of the side facing the receiver (symmetric RTP)
        totals = ng.request("query", {"call-id": "live-1"})[b"totals"]
        assert isinstance(totals, dict) and totals[b"RTP"] == {b"packets": 10, b"bytes": 1720, b"errors": 0}
        ng.delete("live-1")
        with pytest.raises(NgError, match="Unknown call-id"):
            ng.request("query", {"call-id": "live-1"})
        pcaps = list((recordings / "pcaps").glob("*.pcap"))
        assert len(pcaps) == 1
        assert pcaps[0].stat().st_size == 24 + 10 * (16 + 20 + 8 + 172)  # pcap header; 10 raw IPv4/UDP packets
    finally:
        caller.close()
        callee.close()
        daemon.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped
