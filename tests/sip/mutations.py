"""Seeded mutations of valid SIP messages, for fuzzing the listener (no outside state, deterministic)."""

from __future__ import annotations

import random


def corpus(host: str, port: int, number: str) -> list[bytes]:
    """Valid requests and responses of the kinds a SIP server sees most."""
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 7000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
    common = (
        "Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{b};rport\r\n"
        "From: \"Fuzz\" <sip:fuzz@127.0.0.1:{p}>;tag=f{b}\r\n"
        "To: <sip:{n}@{h}>\r\n"
        "Call-ID: {b}@fuzz\r\n"
    )
    out = []
    for method in ("INVITE", "OPTIONS", "REGISTER", "BYE", "CANCEL", "INFO", "MESSAGE"):
        head = (f"{method} sip:{number}@{host}:{port} SIP/2.0\r\n" + common.format(p=port, b="{B}", n=number, h=host)
                + f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:fuzz@127.0.0.1>\r\n")
        body = sdp if method == "INVITE" else b""
        if body:
            head += "Content-Type: application/sdp\r\n"
        out.append(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    out.append(("SIP/2.0 200 OK\r\n" + common.format(p=port, b="{B}", n=number, h=host)
                + "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode())
    out.append(("SIP/2.0 180 Ringing\r\n" + common.format(p=port, b="{B}", n=number, h=host)
                + "CSeq: 2 BYE\r\nl: 0\r\n\r\n").encode())
    return out


def mutate(rng: random.Random, data: bytes, serial: int) -> bytes:
    """One mutated message: 1 to 3 random edits of a valid one."""
    data = data.replace(b"{B}", str(serial).encode())
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        n = len(buf)
        if n == 0:
            buf += bytes(rng.randrange(256) for _ in range(8))
            continue
        i = rng.randrange(n)
        if op == 0:  # flip bytes
            for _ in range(rng.randint(1, 5)):
                buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 1:  # delete a slice
            del buf[i : i + rng.randint(1, 40)]
        elif op == 2:  # insert random bytes
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        elif op == 3:  # truncate
            del buf[i:]
        elif op == 4:  # duplicate a line
            lines = bytes(buf).split(b"\r\n")
            j = rng.randrange(len(lines))
            lines.insert(j, lines[j])
            buf = bytearray(b"\r\n".join(lines))
        elif op == 5:  # swap two lines
            lines = bytes(buf).split(b"\r\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            buf = bytearray(b"\r\n".join(lines))
        elif op == 6:  # a wrong Content-Length
            wrong = b"Content-Length: %d" % rng.randrange(-5, 10**6)
            buf = bytearray(bytes(buf).replace(b"Content-Length: ", wrong, 1))
        elif op == 7:  # special characters in the middle
            buf[i:i] = rng.choice([b"\x00", b"\r", b"\n", b"\r\n\r\n", b";", b",", b"<", b">", b'"', b"\\", b":", b"@",
                                   b"[", b"]", b" ", b"\t", b"\xff\xfe", b"%00", b"\xd9\x87"])
        elif op == 8:  # a very long run
            buf[i:i] = bytes([rng.choice(b"a9;=,<\" ")]) * rng.randint(100, 3000)
        else:  # a header value replaced by garbage
            lines = bytes(buf).split(b"\r\n")
            j = rng.randrange(len(lines))
            name, _, _ = lines[j].partition(b":")
            lines[j] = name + b": " + bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 60)))
            buf = bytearray(b"\r\n".join(lines))
    return bytes(buf)
