"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio: PCMU, PCMA and telephone-event.

A `SessionDescription` keeps every line in order, so a description Hatif passes on is written out as it
came in except for what Hatif changes on purpose (the connection address and media port when it anchors
media, and the origin's version, RFC 3264 §8). Typed views (`media`, `connection`, `rtpmap`, ...) read
the lines on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 3: ("GSM", 8000), 9: ("G722", 8000), 18: ("G729", 8000)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
_LINE = re.compile(r"([a-z])=(.*)")

Line = tuple[str, str]


class SdpError(ValueError):
    """A description that does not follow RFC 4566, or an offer we cannot answer; the text says where."""


@dataclass(frozen=True, slots=True)
class Media:
    """One `m=` section with its lines."""

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    lines: tuple[Line, ...] = ()

    def attributes(self, name: str) -> list[str]:
        prefix = name + ":"
        return [v[len(prefix):] if v.startswith(prefix) else "" for t, v in self.lines
                if t == "a" and (v == name or v.startswith(prefix))]

    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """Payload type -> (encoding name, clock rate), static types included (RFC 3551)."""
        out: dict[int, tuple[str, int]] = {}
        for f in self.formats:
            if f.isdigit() and int(f) in STATIC:
                out[int(f)] = STATIC[int(f)]
        for v in self.attributes("rtpmap"):
            pt, _, enc = v.partition(" ")
            name, _, rate = enc.partition("/")
            if pt.isdigit() and rate.split("/")[0].isdigit():
                out[int(pt)] = (name, int(rate.split("/")[0]))
        return out

    @property
    def direction(self) -> str | None:
        for t, v in self.lines:
            if t == "a" and v in DIRECTIONS:
                return v
        return None

    @property
    def connection(self) -> str | None:
        for t, v in self.lines:
            if t == "c":
                return v
        return None

    def line(self) -> str:
        return f"{self.kind} {self.port} {self.proto} {' '.join(self.formats)}"


@dataclass(frozen=True, slots=True)
class SessionDescription:
    session: tuple[Line, ...]
    media: tuple[Media, ...]

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return parse(data)

    def serialize(self) -> bytes:
        lines = [f"{t}={v}" for t, v in self.session]
        for m in self.media:
            lines.append(f"m={m.line()}")
            lines.extend(f"{t}={v}" for t, v in m.lines)
        return ("\r\n".join(lines) + "\r\n").encode()

    def value(self, kind: str) -> str | None:
        for t, v in self.session:
            if t == kind:
                return v
        return None

    @property
    def connection(self) -> str | None:
        return self.value("c")

    def audio(self) -> Media:
        for m in self.media:
            if m.kind == "audio" and m.port != 0:
                return m
        raise SdpError("no active audio stream (m=audio with a port)")


def parse(data: bytes | str) -> SessionDescription:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    session: list[Line] = []
    media: list[Media] = []
    current: tuple[str, int, str, tuple[str, ...]] | None = None
    current_lines: list[Line] = []
    for n, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not raw.strip():
            continue
        m = _LINE.fullmatch(raw.rstrip("\r"))
        if not m:
            raise SdpError(f"SDP line {n}: not type=value: {raw[:40]!r}")
        t, v = m.group(1), m.group(2)
        if n == 1 and (t != "v" or v != "0"):
            raise SdpError("SDP line 1: must be v=0")
        if t == "m":
            if current is not None:
                media.append(Media(*current, tuple(current_lines)))
            parts = v.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"SDP line {n}: bad media line {v!r}")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError(f"SDP line {n}: port {port} out of range")
            current = (parts[0], port, parts[2], tuple(parts[3:]))
            current_lines = []
        elif current is None:
            session.append((t, v))
        else:
            current_lines.append((t, v))
    if current is not None:
        media.append(Media(*current, tuple(current_lines)))
    if not session or session[0] != ("v", "0"):
        raise SdpError("SDP must start with v=0")
    if not any(t == "o" for t, _ in session):
        raise SdpError("SDP without an origin (o=) line")
    return SessionDescription(tuple(session), tuple(media))


def _address(connection: str | None) -> str | None:
    if connection is None:
        return None
    parts = connection.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad connection line {connection!r}")
    return parts[2].split("/")[0]


def _c(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


@dataclass(frozen=True, slots=True)
class Negotiated:
    payload_type: int
    codec: str
    clock_rate: int
    dtmf_payload_type: int | None
    address: str
    port: int
    direction: str
    ptime: int


def negotiated(sd: SessionDescription) -> Negotiated:
    """The audio stream as this description states it: first codec listed, DTMF type, where to send."""
    m = sd.audio()
    rtpmap = m.rtpmap()
    address = _address(m.connection) or _address(sd.connection)
    if address is None:
        raise SdpError("no connection address (c=) for the audio stream")
    codec_pt: int | None = None
    dtmf: int | None = None
    for f in m.formats:
        if not f.isdigit():
            continue
        name = rtpmap.get(int(f), ("", 0))[0].lower()
        if name == "telephone-event":
            dtmf = dtmf if dtmf is not None else int(f)
        elif codec_pt is None:
            codec_pt = int(f)
    if codec_pt is None:
        raise SdpError("no audio codec in the audio stream")
    name, rate = rtpmap.get(codec_pt, ("unknown", 8000))
    ptimes = m.attributes("ptime")
    ptime = int(ptimes[0]) if ptimes and ptimes[0].isdigit() else 20
    direction = m.direction or next((v for t, v in sd.session if t == "a" and v in DIRECTIONS), "sendrecv")
    return Negotiated(codec_pt, name.upper(), rate, dtmf, address, m.port, direction, ptime)


def _bump_origin(session: tuple[Line, ...], address: str | None, version: int | None = None) -> tuple[Line, ...]:
    out = []
    for t, v in session:
        if t == "o":
            parts = v.split()
            if len(parts) == 6 and parts[2].isdigit():
                parts[2] = str(version if version is not None else int(parts[2]) + 1)
                if address is not None:
                    parts[4], parts[5] = ("IP6" if ":" in address else "IP4"), address
                v = " ".join(parts)
        out.append((t, v))
    return tuple(out)


def with_media_address(sd: SessionDescription, address: str, port: int) -> SessionDescription:
    """The same description with the audio stream at `address:port` (media anchoring)."""
    session = tuple((t, _c(address) if t == "c" else v) for t, v in _bump_origin(sd.session, address))
    has_session_c = any(t == "c" for t, _ in session)
    media = []
    done = False
    for m in sd.media:
        if m.kind == "audio" and m.port != 0 and not done:
            lines = tuple((t, _c(address)) if t == "c" else (t, v) for t, v in m.lines
                          if not (t == "a" and (v.startswith("rtcp:") or v.startswith("candidate:"))))
            if not has_session_c and not any(t == "c" for t, _ in lines):
                lines = (("c", _c(address)), *lines)
            media.append(replace(m, port=port, lines=lines))
            done = True
        else:
            media.append(m)
    return SessionDescription(session, tuple(media))


def make_offer(address: str, port: int, session_id: int, version: int,
               codecs: tuple[str, ...] = ("PCMU", "PCMA", "telephone-event"), ptime: int = 20,
               direction: str = "sendrecv") -> SessionDescription:
    formats: list[str] = []
    lines: list[Line] = []
    for name in codecs:
        if name == "PCMU":
            formats.append("0")
            lines.append(("a", "rtpmap:0 PCMU/8000"))
        elif name == "PCMA":
            formats.append("8")
            lines.append(("a", "rtpmap:8 PCMA/8000"))
        elif name == "telephone-event":
            formats.append("101")
            lines += [("a", "rtpmap:101 telephone-event/8000"), ("a", "fmtp:101 0-16")]
        else:
            raise SdpError(f"codec {name!r} not supported")
    lines += [("a", f"ptime:{ptime}"), ("a", direction)]
    session = (("v", "0"), ("o", f"hatif {session_id} {version} IN {'IP6' if ':' in address else 'IP4'} {address}"),
               ("s", "Hatif"), ("c", _c(address)), ("t", "0 0"))
    return SessionDescription(session, (Media("audio", port, "RTP/AVP", tuple(formats), tuple(lines)),))


def make_answer(offer: SessionDescription, address: str, port: int, session_id: int, version: int,
                supported: tuple[str, ...] = ("PCMU", "PCMA", "telephone-event")) -> SessionDescription:
    """Answer an offer (RFC 3264 §6): first offered codec we support, the offer's telephone-event type,
    the mirrored direction; other streams rejected with port 0."""
    want = {s.upper() for s in supported}
    media: list[Media] = []
    chosen_any = False
    for m in offer.media:
        if m.kind != "audio" or m.port == 0 or chosen_any:
            media.append(Media(m.kind, 0, m.proto, m.formats[:1]))
            continue
        rtpmap = m.rtpmap()
        codec: int | None = None
        dtmf: int | None = None
        for f in m.formats:
            if not f.isdigit():
                continue
            name, rate = rtpmap.get(int(f), ("", 0))
            if name.lower() == "telephone-event" and "TELEPHONE-EVENT" in want and dtmf is None and rate == 8000:
                dtmf = int(f)
            elif codec is None and name.upper() in want and name.lower() != "telephone-event" and rate == 8000:
                codec = int(f)
        if codec is None:
            raise SdpError("no common codec: the offer has none of " + ", ".join(sorted(want - {"TELEPHONE-EVENT"})))
        name, rate = rtpmap[codec]
        formats = [str(codec)]
        lines: list[Line] = [("a", f"rtpmap:{codec} {name}/{rate}")]
        if dtmf is not None:
            formats.append(str(dtmf))
            lines += [("a", f"rtpmap:{dtmf} telephone-event/8000"), ("a", f"fmtp:{dtmf} 0-16")]
        ptimes = m.attributes("ptime")
        lines.append(("a", f"ptime:{ptimes[0] if ptimes else 20}"))
        direction = m.direction or next((v for t, v in offer.session if t == "a" and v in DIRECTIONS), "sendrecv")
        lines.append(("a", MIRROR[direction]))
        media.append(Media("audio", port, m.proto, tuple(formats), tuple(lines)))
        chosen_any = True
    if not chosen_any:
        raise SdpError("the offer has no active audio stream")
    session = (("v", "0"), ("o", f"hatif {session_id} {version} IN {'IP6' if ':' in address else 'IP4'} {address}"),
               ("s", "Hatif"), ("c", _c(address)), ("t", "0 0"))
    return SessionDescription(session, tuple(media))
