"""G.711 µ-law and A-law companding, vectorized over numpy arrays (ITU-T G.711 (11/88) §2, §3, §4).

Everything runs through lookup tables built once at import from the G.711 segment laws:

* decoding: a 256-entry table per law, code → int16 sample;
* encoding: a 65536-entry table per law, indexed by the int16 sample's bit pattern seen as uint16;
* transcoding: a 256-byte table per direction, for `bytes.translate` (a few hundred ns per frame).

Scale. G.711 works on 14-bit (µ-law, G.711 Table 2a) and 13-bit (A-law, Table 1a) uniform PCM. A
16-bit sample is brought to that range by an arithmetic right shift, and a negative sample's magnitude
is taken as its ones' complement (``~x``), so that the quantizer is symmetric about -½ as in the ITU's
own reference code (ITU-T G.191, module g711). Decoded values are the G.711 reconstruction values
scaled back to 16 bits: µ-law spans ±32124 with 0 as a level, A-law ±32256 with ±8 closest to zero.

Bit order on the wire (§2 and §3 of the Recommendation): µ-law codes are transmitted with every bit
inverted; A-law codes with the even bits inverted (XOR 0x55). In both, the top bit is the sign, the
next three the segment (exponent) and the low four the step within the segment (mantissa).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

Samples = npt.NDArray[np.int16]

_ULAW_BIAS = 33  # G.711 Table 2a: µ-law segment ends are powers of two once 33 is added (14-bit scale)
_ULAW_BIASED_MAX = 0x1FFF  # largest biased 14-bit magnitude: inputs past 8158 clip to the last level
_ALAW_XOR = 0x55  # even-bit inversion of A-law (G.711 §3.2)


def _ulaw_decode_table() -> Samples:
    codes = (~np.arange(256, dtype=np.int32)) & 0xFF  # undo the transmitted inversion
    sign = codes >> 7
    exponent = (codes >> 4) & 0x7
    mantissa = codes & 0xF
    magnitude14 = (((mantissa << 1) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign == 1, -magnitude14 * 4, magnitude14 * 4).astype(np.int16)


def _alaw_decode_table() -> Samples:
    codes = np.arange(256, dtype=np.int32) ^ _ALAW_XOR
    positive = codes >> 7
    exponent = (codes >> 4) & 0x7
    mantissa = codes & 0xF
    # Segment 0 and 1 share the smallest step (2 in the 12-bit magnitude); each later one doubles it.
    step_shift = np.maximum(exponent, 1)
    base = np.where(exponent == 0, 0, 16 << exponent)  # first magnitude of the segment
    magnitude12 = base + (mantissa << step_shift) + (1 << (step_shift - 1))  # middle of the step
    table: Samples = np.where(positive == 1, magnitude12 * 8, -magnitude12 * 8).astype(np.int16)
    return table


def _all_samples() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Every int16 value, ordered by its uint16 bit pattern, widened; and which of them are negative."""
    x = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    negative = x < 0
    return np.where(negative, ~x, x), negative


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    magnitude16, negative = _all_samples()
    biased = np.minimum((magnitude16 >> 2) + _ULAW_BIAS, _ULAW_BIASED_MAX)  # in [33, 8191]
    # The segment is where the biased magnitude's leading one sits: bit 5 → segment 0 ... bit 12 → 7.
    exponent = np.searchsorted(np.array([64, 128, 256, 512, 1024, 2048, 4096]), biased, side="right")
    mantissa = (biased >> (exponent + 1)) & 0xF
    code = (negative.astype(np.int32) << 7) | (exponent << 4) | mantissa
    table: npt.NDArray[np.uint8] = ((~code) & 0xFF).astype(np.uint8)
    return table


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    magnitude16, negative = _all_samples()
    magnitude12 = magnitude16 >> 3  # in [0, 4095]
    exponent = np.searchsorted(np.array([32, 64, 128, 256, 512, 1024, 2048]), magnitude12, side="right")
    mantissa = (magnitude12 >> np.maximum(exponent, 1)) & 0xF
    code = ((~negative).astype(np.int32) << 7) | (exponent << 4) | mantissa
    return (code ^ _ALAW_XOR).astype(np.uint8)


_ULAW_DECODE = _ulaw_decode_table()
_ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _transcode_table(decode: Samples, encode: npt.NDArray[np.uint8]) -> bytes:
    """Code → code through the uniform domain: the other law's code whose decision interval holds this
    code's reconstruction value.

    G.711 §4 gives hand-drawn conversion tables (Tables 3 and 4) meant for tandem transparency; they
    differ from this rule for a few codes next to segment edges, by one quantization step at most.
    """
    return encode[decode.view(np.uint16)].tobytes()


_ULAW_TO_ALAW = _transcode_table(_ULAW_DECODE, _ALAW_ENCODE)
_ALAW_TO_ULAW = _transcode_table(_ALAW_DECODE, _ULAW_ENCODE)


def _codes(data: bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def _pattern(samples: Samples) -> npt.NDArray[np.uint16]:
    """The samples' bit patterns as uint16 indices, without a copy when they already are int16."""
    return np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)


def ulaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """µ-law codes → int16 samples (a new array, one sample per byte)."""
    return _ULAW_DECODE[_codes(data)]


def alaw_decode(data: bytes | bytearray | memoryview) -> Samples:
    """A-law codes → int16 samples (a new array, one sample per byte)."""
    return _ALAW_DECODE[_codes(data)]


def ulaw_encode(samples: Samples) -> bytes:
    """int16 samples (any shape; mixers clip to int16 first) → µ-law codes, one byte per sample."""
    return _ULAW_ENCODE[_pattern(samples)].tobytes()


def alaw_encode(samples: Samples) -> bytes:
    """int16 samples (any shape; mixers clip to int16 first) → A-law codes, one byte per sample."""
    return _ALAW_ENCODE[_pattern(samples)].tobytes()


def ulaw_to_alaw(data: bytes | bytearray | memoryview) -> bytes:
    """Transcode µ-law codes to A-law codes byte by byte (G.711 §4), without going through numpy."""
    return bytes(data).translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes | bytearray | memoryview) -> bytes:
    """Transcode A-law codes to µ-law codes byte by byte (G.711 §4), without going through numpy."""
    return bytes(data).translate(_ALAW_TO_ULAW)
