"""G.711 µ-law and A-law (ITU-T G.711 Tables 1a and 2a), against a scalar reference written from the tables."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hatif.media.g711 import alaw_decode, alaw_encode, alaw_to_ulaw, ulaw_decode, ulaw_encode, ulaw_to_alaw

# G.711 Table 2a (µ-law), 14-bit magnitude: per segment, the first decision value and the step size.
# Segment 1's first interval is a single value (0); written as a step of 2 starting at -1.
ULAW_SEGMENTS = [(-1, 2), (31, 4), (95, 8), (223, 16), (479, 32), (991, 64), (2015, 128), (4063, 256)]
ULAW_TOP = 8158  # last decision value; larger magnitudes clip to the last level
# G.711 Table 1a (A-law), 12-bit magnitude: the first two segments share the smallest step.
ALAW_SEGMENTS = [(0, 2), (32, 2), (64, 4), (128, 8), (256, 16), (512, 32), (1024, 64), (2048, 128)]
ALAW_TOP = 4095


def _magnitude(x: int, shift: int) -> tuple[bool, int]:
    """Sign and magnitude in G.711's uniform code: a negative sample's magnitude is its ones' complement."""
    return (True, (~x) >> shift) if x < 0 else (False, x >> shift)


def _quantize(magnitude: int, segments: list[tuple[int, int]], top: int) -> tuple[int, int]:
    magnitude = min(magnitude, top)
    for segment in range(len(segments) - 1, -1, -1):
        first, step = segments[segment]
        if magnitude >= max(first, 0):
            return segment, min((magnitude - first) // step, 15)
    raise AssertionError("unreachable: segment 0 starts at 0")


def ref_ulaw_encode(x: int) -> int:
    negative, magnitude = _magnitude(x, 2)
    segment, step = _quantize(magnitude, ULAW_SEGMENTS, ULAW_TOP)
    return ~((negative << 7) | (segment << 4) | step) & 0xFF  # every bit inverted on the line (§2)


def ref_ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    first, step = ULAW_SEGMENTS[(code >> 4) & 7]
    level = first + (code & 15) * step + step // 2  # the middle of the interval, Table 2a column 7
    return (-level if code & 0x80 else level) * 4


def ref_alaw_encode(x: int) -> int:
    negative, magnitude = _magnitude(x, 3)
    segment, step = _quantize(magnitude, ALAW_SEGMENTS, ALAW_TOP)
    return (((not negative) << 7) | (segment << 4) | step) ^ 0x55  # even bits inverted on the line (§3)


def ref_alaw_decode(code: int) -> int:
    code ^= 0x55
    first, step = ALAW_SEGMENTS[(code >> 4) & 7]
    level = first + (code & 15) * step + step // 2
    return (level if code & 0x80 else -level) * 8


ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_well_known_values() -> None:
    assert ulaw_decode(b"\xff\x00\x7f\x80").tolist() == [0, -32124, 0, 32124]
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == b"\xd5\x55\xaa\x2a"


def test_decode_tables_match_reference() -> None:
    assert ulaw_decode(ALL_CODES).tolist() == [ref_ulaw_decode(c) for c in range(256)]
    assert alaw_decode(ALL_CODES).tolist() == [ref_alaw_decode(c) for c in range(256)]


def test_encode_tables_match_reference_for_every_sample() -> None:
    values = ALL_SAMPLES.tolist()
    assert list(ulaw_encode(ALL_SAMPLES)) == [ref_ulaw_encode(x) for x in values]
    assert list(alaw_encode(ALL_SAMPLES)) == [ref_alaw_encode(x) for x in values]


def test_decode_dtype_and_shape() -> None:
    out = ulaw_decode(memoryview(b"\x01\x02\x03"))
    assert out.dtype == np.int16 and out.shape == (3,)
    assert alaw_decode(bytearray(160)).shape == (160,)
    assert ulaw_encode(np.zeros((2, 160), dtype=np.int16)) == b"\xff" * 320


def test_every_code_round_trips() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES
    ulaw = ulaw_encode(ulaw_decode(ALL_CODES))
    # µ-law has two codes for zero; the negative one (0x7F) comes back as the positive one.
    assert ulaw == ALL_CODES[:0x7F] + b"\xff" + ALL_CODES[0x80:]


def test_encoding_is_monotonic_and_symmetric() -> None:
    levels_u = ulaw_decode(ulaw_encode(ALL_SAMPLES)).astype(np.int32)
    levels_a = alaw_decode(alaw_encode(ALL_SAMPLES)).astype(np.int32)
    assert (np.diff(levels_u) >= 0).all() and (np.diff(levels_a) >= 0).all()
    # Symmetric about -1/2: x and -x-1 land on mirror levels.
    x = ALL_SAMPLES.astype(np.int32)
    mirror = (-x - 1).astype(np.int16)
    assert (ulaw_decode(ulaw_encode(mirror)).astype(np.int32) == -levels_u).all()
    assert (alaw_decode(alaw_encode(mirror)).astype(np.int32) == -levels_a).all()


def test_quantization_error_bounded_by_half_step() -> None:
    x = ALL_SAMPLES.astype(np.int32)
    inside = np.abs(x) < 32000
    err_u = np.abs(ulaw_decode(ulaw_encode(ALL_SAMPLES)).astype(np.int32) - x)[inside]
    err_a = np.abs(alaw_decode(alaw_encode(ALL_SAMPLES)).astype(np.int32) - x)[inside]
    assert err_u.max() <= 512 and err_a.max() <= 512  # half the largest step (1024 in 16-bit units)
    small = np.abs(x) < 64
    assert np.abs(ulaw_decode(ulaw_encode(ALL_SAMPLES)).astype(np.int32) - x)[small].max() <= 4


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.int16, st.integers(0, 400)))
def test_encode_decode_is_idempotent(samples: np.ndarray) -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        codes = encode(samples)
        assert len(codes) == samples.size
        assert encode(decode(codes)) == encode(decode(encode(decode(codes))))
        assert (decode(encode(decode(codes))) == decode(codes)).all()


def test_transcoding_goes_through_the_uniform_domain() -> None:
    assert ulaw_to_alaw(ALL_CODES) == alaw_encode(ulaw_decode(ALL_CODES))
    assert alaw_to_ulaw(ALL_CODES) == ulaw_encode(alaw_decode(ALL_CODES))
    assert ulaw_to_alaw(b"\xff\x7f") == b"\xd5\xd5"  # both µ-law zeros are the uniform 0: A-law's +8
    assert alaw_to_ulaw(b"\xaa\x2a") == b"\x80\x00"  # A-law's extremes clip to µ-law's
    assert ulaw_to_alaw(memoryview(b"\x80")) == b"\xaa"


def test_transcoding_loses_at_most_one_step() -> None:
    for there, back, decode in ((alaw_to_ulaw, ulaw_to_alaw, alaw_decode), (ulaw_to_alaw, alaw_to_ulaw, ulaw_decode)):
        original = decode(ALL_CODES).astype(np.int32)
        twice = decode(back(there(ALL_CODES))).astype(np.int32)
        step = np.maximum(np.abs(original) // 16, 16)  # one step is at most 1/16 of the level, 16 at the bottom
        assert (np.abs(twice - original) <= step).all()
