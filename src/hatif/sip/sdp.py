"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio: PCMU, PCMA and telephone-event.

`SessionDescription` holds the lines Hatif reads as typed values (`Origin`, `Connection`, `Timing`,
`Attribute`, `Media`) and every other line as text, in order, so a description passed on is written out as
it came in (lines in the order RFC 4566 §5 gives them) except for what Hatif changes on purpose: the
connection address and media port when it anchors media, and the origin's version (RFC 3264 §8).
Attribute values stay text; the typed views (`Media.rtpmap`, `ptime`, `direction`) read them on demand.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from ..errors import SipError

Line = tuple[str, str]
"""A line kept as text: its type letter and its value (`("b", "AS:80")`)."""

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
SUPPORTED = ("PCMU", "PCMA", "telephone-event")
SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
"""The SDES crypto suites Hatif takes and offers (RFC 4568 §6.2), in its order of preference."""
SRTP_KEY_LENGTH = 30  # master key (16) and salt (14) octets of both suites (RFC 4568 §6.2.1)
DTMF_EVENTS = "0-16"  # RFC 4733 §3.2: DTMF digits 0-9 * # A-D, and flash
_HOLD_ADDRESSES = ("0.0.0.0", "::")  # RFC 3264 §8.4: the RFC 2543 way of saying "send nothing to me"
_TRANSPORT_ATTRIBUTES = frozenset({"rtcp", "candidate", "remote-candidates", "end-of-candidates", "ice-ufrag",
                                   "ice-pwd", "ice-options", "ice-lite", "ice-mismatch"})
# RFC 4566 §5: where each line type sits in a session and in a media section; unknown types go before a=.
_SESSION_RANK = {"i": 3, "u": 4, "e": 5, "p": 6, "c": 7, "b": 8, "z": 10, "k": 11}
_MEDIA_RANK = {"i": 1, "c": 2, "b": 3, "k": 4}
_UNKNOWN_SESSION_RANK, _UNKNOWN_MEDIA_RANK = 12, 5


class SdpError(SipError, ValueError):
    """A description that does not follow RFC 4566, or an offer we cannot answer; the text says where."""


@dataclass(frozen=True, slots=True)
class RtpMap:
    """A payload type's encoding (RFC 4566 §6 `a=rtpmap`, RFC 3551 §6 for the static types)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def value(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"

    @classmethod
    def parse(cls, value: str) -> RtpMap | None:
        """`0 PCMU/8000` -> RtpMap; None when the value is not an rtpmap."""
        pt, _, encoding = value.partition(" ")
        parts = encoding.strip().split("/")
        if not pt.isdigit() or int(pt) > 127 or len(parts) not in (2, 3) or not parts[0]:
            return None
        if not all(p.isdigit() for p in parts[1:]):
            return None
        return cls(int(pt), parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None)


@dataclass(frozen=True, slots=True)
class Crypto:
    """`a=crypto:<tag> <crypto-suite> inline:<key||salt>[|lifetime][|MKI:length] [<session-params>]`
    (RFC 4568 §9.1, one inline key). `usable` says whether Hatif can take it: a suite it knows, a key of
    the suite's length, no MKI and no session parameters (which change the SRTP transform)."""

    tag: int
    suite: str
    key: bytes
    lifetime: str | None = None
    mki: str | None = None
    session_params: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return (self.suite in SRTP_SUITES and len(self.key) == SRTP_KEY_LENGTH and self.mki is None
                and not self.session_params)

    def value(self) -> str:
        inline = base64.b64encode(self.key).decode("ascii")
        for part in (self.lifetime, self.mki):
            if part is not None:
                inline += f"|{part}"
        return " ".join((str(self.tag), self.suite, f"inline:{inline}", *self.session_params))

    @classmethod
    def parse(cls, value: str) -> Crypto | None:
        """One `a=crypto` value; None when it is not one (it is then ignored, as RFC 4568 §7.1.2 says)."""
        parts = value.split()
        if len(parts) < 3 or not parts[0].isdigit() or len(parts[0]) > 9 or not parts[2].startswith("inline:"):
            return None
        key_text, *params = parts[2][len("inline:"):].split("|")
        if ";" in parts[2]:
            return None  # several keys in one line: not taken
        try:
            key = base64.b64decode(key_text, validate=True)
        except (binascii.Error, ValueError):
            return None
        lifetime = next((p for p in params if ":" not in p), None)
        mki = next((p for p in params if ":" in p), None)
        return cls(int(parts[0]), parts[1], key, lifetime, mki, tuple(parts[3:]))


STATIC = {pt: RtpMap(pt, name, rate, channels) for pt, name, rate, channels in (
    (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None), (5, "DVI4", 8000, None),
    (6, "DVI4", 16000, None), (7, "LPC", 8000, None), (8, "PCMA", 8000, None), (9, "G722", 8000, None),
    (10, "L16", 44100, 2), (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
    (15, "G728", 8000, None), (16, "DVI4", 11025, None), (17, "DVI4", 22050, None), (18, "G729", 8000, None))}
"""RFC 3551 §6 table 4: audio payload types that need no rtpmap."""
_OURS = {"PCMU": STATIC[0], "PCMA": STATIC[8], "TELEPHONE-EVENT": RtpMap(101, "telephone-event", 8000)}


@dataclass(frozen=True, slots=True)
class Origin:
    """`o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>` (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def value(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} {self.nettype} {self.addrtype} "
                f"{self.address}")


@dataclass(frozen=True, slots=True)
class Connection:
    """`c=<nettype> <addrtype> <connection-address>` (RFC 4566 §5.7); a multicast address keeps its /ttl."""

    nettype: str
    addrtype: str
    address: str

    @property
    def host(self) -> str:
        return self.address.split("/")[0]

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls("IN", "IP6" if ":" in address else "IP4", address)

    def value(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Timing:
    """`t=<start> <stop>` and the `r=` lines repeating it (RFC 4566 §5.9, §5.10); `0 0` is unbounded."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """`a=<name>` (a property, value None) or `a=<name>:<value>` (RFC 4566 §5.13)."""

    name: str
    value: str | None = None

    def text(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        return cls(name, value if colon else None)


def _values(attributes: tuple[Attribute, ...], name: str) -> list[str]:
    return [a.value or "" for a in attributes if a.name == name]


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    return next((a.name for a in attributes if a.value is None and a.name in DIRECTIONS), None)


@dataclass(frozen=True, slots=True)
class Media:
    """One media description: `m=<media> <port>[/<count>] <proto> <fmt> ...` and its lines (RFC 4566 §5.14)."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    lines: tuple[Line, ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first `a=name:value`, or None."""
        values = _values(self.attributes, name)
        return values[0] if values else None

    @property
    def rtpmap(self) -> dict[int, RtpMap]:
        """Payload type -> encoding for the listed formats, static types included (RFC 3551 §6)."""
        out = {pt: STATIC[pt] for pt in self.payload_types if pt in STATIC}
        for value in _values(self.attributes, "rtpmap"):
            m = RtpMap.parse(value)
            if m is not None:
                out[m.payload_type] = m
        return out

    def fmtp(self, payload_type: int) -> str | None:
        """The format parameters of a payload type (`a=fmtp:101 0-16` -> `0-16`)."""
        for value in _values(self.attributes, "fmtp"):
            pt, _, params = value.partition(" ")
            if pt == str(payload_type):
                return params
        return None

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        """The stream's `a=crypto` lines that parse (RFC 4568), in order of the offerer's preference."""
        return tuple(c for c in (Crypto.parse(v) for v in _values(self.attributes, "crypto")) if c is not None)

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(int(f) for f in self.formats if f.isdigit())

    @property
    def ptime(self) -> int | None:
        """`a=ptime` in milliseconds (RFC 4566 §6), None when absent or unreadable."""
        value = self.attribute("ptime")
        try:
            return round(float(value)) if value is not None else None
        except ValueError:
            return None

    @property
    def direction(self) -> str | None:
        return _direction(self.attributes)

    def media_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join((self.kind, port, self.proto, *self.formats))


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole description (RFC 4566 §5): typed session lines, other lines as text, and its media."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[Timing, ...] = (Timing(),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()
    lines: tuple[Line, ...] = ()
    version: int = 0

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return parse(data)

    def serialize(self) -> bytes:
        out = [f"v={self.version}", f"o={self.origin.value()}", f"s={self.session_name}"]
        extra = sorted(self.lines, key=lambda line: _SESSION_RANK.get(line[0], _UNKNOWN_SESSION_RANK))
        out += [f"{t}={v}" for t, v in extra if _SESSION_RANK.get(t, 99) < 7]
        if self.connection is not None:
            out.append(f"c={self.connection.value()}")
        out += [f"{t}={v}" for t, v in extra if _SESSION_RANK.get(t) in (7, 8)]
        for timing in self.timing:
            out.append(f"t={timing.start} {timing.stop}")
            out += [f"r={r}" for r in timing.repeats]
        out += [f"{t}={v}" for t, v in extra if _SESSION_RANK.get(t, _UNKNOWN_SESSION_RANK) > 8]
        out += [f"a={a.text()}" for a in self.attributes]
        for m in self.media:
            out.append(f"m={m.media_line()}")
            lines = sorted(m.lines, key=lambda line: _MEDIA_RANK.get(line[0], _UNKNOWN_MEDIA_RANK))
            out += [f"{t}={v}" for t, v in lines if _MEDIA_RANK.get(t, 99) < 2]
            if m.connection is not None:
                out.append(f"c={m.connection.value()}")
            out += [f"{t}={v}" for t, v in lines if _MEDIA_RANK.get(t, _UNKNOWN_MEDIA_RANK) >= 2]
            out += [f"a={a.text()}" for a in m.attributes]
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, which media without their own inherit (RFC 3264 §5.1)."""
        return _direction(self.attributes)

    def audio(self) -> Media:
        """The first active (port not 0) audio stream."""
        for m in self.media:
            if m.kind == "audio" and m.port != 0:
                return m
        raise SdpError("no active audio stream (m=audio with a port other than 0)")


class _Builder:
    """The parser's state while it reads one description line by line."""

    def __init__(self) -> None:
        self.origin: Origin | None = None
        self.name: str | None = None
        self.connection: Connection | None = None
        self.timing: list[Timing] = []
        self.attributes: list[Attribute] = []
        self.lines: list[Line] = []
        self.media: list[Media] = []


def _fail(n: int, raw: str, problem: str) -> SdpError:
    return SdpError(f"SDP line {n} ({raw[:60]!r}): {problem}")


def _connection(value: str, n: int, raw: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _fail(n, raw, "a connection line needs <nettype> <addrtype> <address>")
    return Connection(*parts)


def _origin(value: str, n: int, raw: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise _fail(n, raw, "an origin line needs 6 fields")
    if not parts[2].isdigit():
        raise _fail(n, raw, "the origin's session version is not a number")
    return Origin(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])


def _media(value: str, n: int, raw: str) -> Media:
    parts = value.split(" ")
    if len(parts) < 3 or not all(parts):
        raise _fail(n, raw, "a media line needs <media> <port> <proto> <fmt> ...")
    port, slash, count = parts[1].partition("/")
    if not port.isdigit() or int(port) > 65535 or (slash and not count.isdigit()):
        raise _fail(n, raw, f"bad media port {parts[1]!r}")
    return Media(parts[0], int(port), parts[2], tuple(parts[3:]), int(count) if slash else None)


def parse(data: bytes | str) -> SessionDescription:
    """Read a description (RFC 4566 §5); lines may end in CRLF or LF, blank lines are skipped."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    b = _Builder()
    current: Media | None = None
    media_attributes: list[Attribute] = []
    media_lines: list[Line] = []
    first = True
    for n, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        if len(raw) < 2 or raw[1] != "=" or not ("a" <= raw[0] <= "z"):
            raise _fail(n, raw, "not <type>=<value>")
        kind, value = raw[0], raw[2:]
        if first:
            if kind != "v" or value != "0":
                raise _fail(n, raw, "a description starts with v=0")
            first = False
            continue
        if kind == "m":
            if current is not None:
                b.media.append(replace(current, attributes=tuple(media_attributes), lines=tuple(media_lines)))
            current, media_attributes, media_lines = _media(value, n, raw), [], []
        elif kind == "a":
            if not value or value.startswith(":"):
                raise _fail(n, raw, "attribute without a name")
            attribute = Attribute.parse(value)
            if attribute.name == "rtpmap" and RtpMap.parse(attribute.value or "") is None:
                raise _fail(n, raw, "rtpmap is not <payload type> <encoding>/<clock rate>[/<channels>]")
            (media_attributes if current is not None else b.attributes).append(attribute)
        elif current is not None:
            if kind == "c" and current.connection is None:
                current = replace(current, connection=_connection(value, n, raw))
            elif kind in "vostrz":
                raise _fail(n, raw, f"{kind}= belongs to the session part, before the first m=")
            else:
                media_lines.append((kind, value))
        elif kind == "v":
            raise _fail(n, raw, "a second v= line")
        elif kind == "o":
            if b.origin is not None:
                raise _fail(n, raw, "a second origin (o=) line")
            b.origin = _origin(value, n, raw)
        elif kind == "s" and b.name is None:
            b.name = value
        elif kind == "c" and b.connection is None:
            b.connection = _connection(value, n, raw)
        elif kind == "t":
            start, _, stop = value.partition(" ")
            if not start.isdigit() or not stop.isdigit():
                raise _fail(n, raw, "timing is not <start> <stop>")
            b.timing.append(Timing(int(start), int(stop)))
        elif kind == "r":
            if not b.timing:
                raise _fail(n, raw, "r= without a t= before it")
            b.timing[-1] = replace(b.timing[-1], repeats=(*b.timing[-1].repeats, value))
        else:
            b.lines.append((kind, value))
    if first:
        raise SdpError("empty description: a description starts with v=0")
    if current is not None:
        b.media.append(replace(current, attributes=tuple(media_attributes), lines=tuple(media_lines)))
    if b.origin is None:
        raise SdpError("SDP without an origin (o=) line")
    if b.name is None:
        raise SdpError("SDP without a session name (s=) line")
    return SessionDescription(b.origin, b.name, b.connection, tuple(b.timing), tuple(b.attributes),
                              tuple(b.media), tuple(b.lines))


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one side's description says about its audio stream: codec, DTMF type, where it wants RTP."""

    payload_type: int
    codec: str
    clock_rate: int
    dtmf_payload_type: int | None
    address: str
    port: int
    direction: str
    ptime: int


def _effective_direction(sd: SessionDescription, m: Media, host: str) -> str:
    """The stream's direction from its author's side (RFC 3264 §5.1, §8.4 for the 0.0.0.0 hold)."""
    direction = m.direction or sd.direction or "sendrecv"
    if host in _HOLD_ADDRESSES:
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)
    return direction


def negotiated(sd: SessionDescription) -> Negotiated:
    """The first active audio stream as `sd` states it: the first codec listed, the telephone-event payload
    type (RFC 4733), the address and port to send to, the direction and the packet time (default 20 ms)."""
    m = sd.audio()
    connection = m.connection or sd.connection
    if connection is None:
        raise SdpError("no connection address (c=) for the audio stream")
    rtpmap = m.rtpmap
    codec: RtpMap | None = None
    dtmf: int | None = None
    for pt in m.payload_types:
        encoding = rtpmap.get(pt, RtpMap(pt, "unknown", 8000))
        if encoding.encoding.lower() == "telephone-event":
            dtmf = pt if dtmf is None else dtmf
        elif codec is None:
            codec = encoding
    if codec is None:
        raise SdpError("no audio codec in the audio stream: " + m.media_line())
    ptime = m.ptime or next((round(float(v)) for v in _values(sd.attributes, "ptime") if v.isdigit()), 20)
    return Negotiated(codec.payload_type, codec.encoding.upper(), codec.clock_rate, dtmf, connection.host, m.port,
                      _effective_direction(sd, m, connection.host), ptime)


def _origin_for(address: str, session_id: int, version: int) -> Origin:
    c = Connection.for_address(address)
    return Origin("hatif", str(session_id), version, c.nettype, c.addrtype, address)


def make_offer(address: str, port: int, session_id: int, version: int, codecs: tuple[str, ...] = SUPPORTED,
               ptime: int = 20, direction: str = "sendrecv", srtp_key: bytes | None = None,
               proto: str = "RTP/AVP") -> SessionDescription:
    """Hatif's own offer (RFC 3264 §5): one audio stream with `codecs` in order of preference; with
    `srtp_key`, an `a=crypto:1 AES_CM_128_HMAC_SHA1_80` line with it (SDES, RFC 4568), in `proto`
    RTP/SAVP (SRTP or nothing) or RTP/AVP (best effort: the answer says whether SRTP is used)."""
    if direction not in DIRECTIONS:
        raise SdpError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    formats: list[str] = []
    attributes: list[Attribute] = []
    for name in codecs:
        encoding = _OURS.get(name.upper())
        if encoding is None:
            raise SdpError(f"codec {name!r} not supported (we offer {', '.join(SUPPORTED)})")
        formats.append(str(encoding.payload_type))
        attributes.append(Attribute("rtpmap", encoding.value()))
        if encoding.encoding == "telephone-event":
            attributes.append(Attribute("fmtp", f"{encoding.payload_type} {DTMF_EVENTS}"))
    if not any(_OURS[name.upper()].encoding != "telephone-event" for name in codecs):
        raise SdpError("an offer needs at least one audio codec besides telephone-event")
    attributes += [Attribute("ptime", str(ptime)), Attribute(direction)]
    if srtp_key is not None:
        attributes.append(Attribute("crypto", Crypto(1, SRTP_SUITES[0], srtp_key).value()))
    media = Media("audio", port, proto, tuple(formats), attributes=tuple(attributes))
    return SessionDescription(_origin_for(address, session_id, version), "Hatif", Connection.for_address(address),
                              media=(media,))


def _choose(m: Media, want: set[str]) -> tuple[RtpMap, int | None] | None:
    """The first offered codec we support and the offer's telephone-event type, or None (RFC 3264 §6.1)."""
    codec: RtpMap | None = None
    dtmf: int | None = None
    rtpmap = m.rtpmap
    for pt in m.payload_types:
        encoding = rtpmap.get(pt)
        if encoding is None or encoding.clock_rate != 8000 or encoding.channels not in (None, 1):
            continue
        name = encoding.encoding.upper()
        if name == "TELEPHONE-EVENT":
            dtmf = pt if dtmf is None and name in want else dtmf
        elif codec is None and name in want:
            codec = encoding
    return (codec, dtmf) if codec is not None else None


def chosen_crypto(m: Media) -> Crypto | None:
    """The first `a=crypto` of an offered stream that Hatif can take (the offerer's preference, §7.1.1)."""
    return next((c for c in m.crypto if c.usable), None)


def make_answer(offer: SessionDescription, address: str, port: int, session_id: int, version: int,
                supported: tuple[str, ...] = SUPPORTED, ptime: int = 20,
                srtp_key: bytes | None = None) -> SessionDescription:
    """Answer an offer (RFC 3264 §6): one m= line per offered one, in order. The first active RTP/AVP audio
    stream takes the first offered codec we support, the offer's telephone-event payload type and the
    mirrored direction (§6.1); every other stream is rejected with port 0, as are those offered with port 0.

    With `srtp_key`, an RTP/SAVP audio stream with a crypto line we can take is answered too, with that
    line's tag and suite and our own key (SDES, RFC 4568 §7.1.2); without it, or without such a line, an
    RTP/SAVP stream is rejected like any other we cannot carry."""
    want = {s.upper() for s in supported}
    unknown = want - set(_OURS)
    if unknown:
        raise SdpError(f"codec {sorted(unknown)[0]!r} not supported (we answer {', '.join(SUPPORTED)})")
    media: list[Media] = []
    accepted = False
    unanswerable: list[str] = []
    for m in offer.media:
        choice = None
        crypto = chosen_crypto(m) if m.proto == "RTP/SAVP" and srtp_key is not None else None
        if not accepted and m.kind == "audio" and m.port != 0 and (m.proto == "RTP/AVP" or crypto is not None):
            choice = _choose(m, want)
            if choice is None:
                unanswerable.append(m.media_line())
        if choice is None:
            media.append(Media(m.kind, 0, m.proto, m.formats))
            continue
        codec, dtmf = choice
        formats = [str(codec.payload_type)]
        attributes = [Attribute("rtpmap", codec.value())]
        if dtmf is not None:
            formats.append(str(dtmf))
            attributes += [Attribute("rtpmap", f"{dtmf} telephone-event/8000"),
                           Attribute("fmtp", f"{dtmf} {DTMF_EVENTS}")]
        connection = m.connection or offer.connection
        offered = _effective_direction(offer, m, connection.host if connection is not None else "")
        attributes += [Attribute("ptime", str(ptime)), Attribute(MIRROR[offered])]
        if crypto is not None and srtp_key is not None:
            attributes.append(Attribute("crypto", Crypto(crypto.tag, crypto.suite, srtp_key).value()))
        media.append(Media("audio", port, m.proto, tuple(formats), attributes=tuple(attributes)))
        accepted = True
    if not accepted:
        if unanswerable:
            raise SdpError(f"no common codec: we support {', '.join(sorted(want))}; offered {unanswerable[0]!r}")
        raise SdpError("the offer has no active RTP/AVP audio stream (nor an RTP/SAVP one with an a=crypto we take)")
    return SessionDescription(_origin_for(address, session_id, version), "Hatif", Connection.for_address(address),
                              media=tuple(media))


def with_media_address(sd: SessionDescription, address: str, port: int,
                       version: int | None = None) -> SessionDescription:
    """The same description with its audio stream at `address:port`, for media anchoring.

    The origin names `address` and its version grows by one (or is `version`), since the description
    changed (RFC 3264 §8). The stream loses the other side's transport attributes (`a=rtcp`, ICE), which
    name addresses that are not ours; other active streams are disabled with port 0, since nothing would
    carry them to the address they would now point at (RFC 3264 §8.2)."""
    audio = sd.audio()
    ours = Connection.for_address(address)
    origin = replace(sd.origin, session_version=sd.origin.session_version + 1 if version is None else version,
                     nettype=ours.nettype, addrtype=ours.addrtype, address=address)
    media: list[Media] = []
    for m in sd.media:
        if m is audio:
            keep = tuple(a for a in m.attributes if a.name not in _TRANSPORT_ATTRIBUTES)
            own = m.connection is not None or sd.connection is None
            media.append(replace(m, port=port, connection=ours if own else None, attributes=keep))
        else:
            media.append(replace(m, port=0) if m.port != 0 else m)
    attributes = tuple(a for a in sd.attributes if a.name not in _TRANSPORT_ATTRIBUTES)
    return replace(sd, origin=origin, connection=ours if sd.connection is not None else None,
                   attributes=attributes, media=tuple(media))
