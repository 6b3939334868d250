"""UDP and TCP transports for SIP (RFC 3261 §18): the asyncio shell that only moves bytes.

UDP sockets are read with `loop.add_reader` and `recvfrom` in a loop (a batch per wake-up, a buffer
per datagram of at most 64 KiB), which is several times faster than asyncio's datagram protocol and works
the same under uvloop. TCP connections are framed by Content-Length (`StreamFramer`) and kept in a table
by remote address so that responses and later requests reuse them (RFC 3261 §18.2.2, §18.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .errors import ParseError
from .message import StreamFramer

log = logging.getLogger(__name__)

Addr = tuple[str, int]
MAX_DATAGRAM = 65535
UDP_BATCH = 64
SO_TIMESTAMP = 29  # Linux: the kernel stamps each datagram with its arrival time (SCM_TIMESTAMP, a timeval)
_TIMEVAL = struct.Struct("@qq")


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from, or where one goes: transport name and remote address."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)


Receiver = Callable[[bytes, Peer], None]


class QueueDelay:
    """How long the message being handled waited in its socket's queue before Hatif read it (seconds).

    Read by admission control from inside the receiver: under overload the kernel's receive buffer is where
    the backlog waits, so this is the age of a request when Hatif first sees it. UDP datagrams carry the
    kernel's arrival stamp (Linux `SO_TIMESTAMP`); stream messages, or systems without the stamp, report 0."""

    __slots__ = ("seconds", "shed")

    def __init__(self) -> None:
        self.seconds = 0.0
        # Each datagram goes to `shed` first with its delay (admission control's refusal from raw bytes);
        # when it returns True the datagram was dealt with and is not parsed.
        self.shed: Callable[[bytes, Peer, float], bool] | None = None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class UdpListener:
    """One bound UDP socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, receiver: Receiver,
                 delay: QueueDelay | None = None) -> None:
        self.loop = loop
        self.sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self.sock.bind((host.strip("[]"), port))
        self.sock.setblocking(False)
        self.receiver = receiver
        self.local: Addr = self.sock.getsockname()[:2]
        self.delay = delay if delay is not None else QueueDelay()
        self.stamped = False
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
                self.stamped = True
        loop.add_reader(self.sock.fileno(), self._readable_stamped if self.stamped else self._readable)
        self.dropped_sends = 0

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        receiver = self.receiver
        self.delay.seconds = 0.0
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors surface here on some systems; never kill the listener
                log.debug("udp receive error", extra={"fields": {"error": str(e)}})
                continue
            try:
                receiver(data, Peer("udp", addr[0], addr[1]))
            except Exception:  # the listener must survive any bug in a handler
                log.exception("error handling a datagram", extra={"fields": {"source": f"{addr[0]}:{addr[1]}"}})

    def _readable_stamped(self) -> None:
        """The same batch read, noting each datagram's time in the kernel queue for admission control."""
        recvmsg = self.sock.recvmsg
        receiver = self.receiver
        delay = self.delay
        wall = time.time
        unpack = _TIMEVAL.unpack_from
        for _ in range(UDP_BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("udp receive error", extra={"fields": {"error": str(e)}})
                continue
            delay.seconds = 0.0
            for level, kind, stamp in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(stamp) >= _TIMEVAL.size:
                    sec, usec = unpack(stamp)
                    delay.seconds = max(0.0, wall() - (sec + usec / 1e6))
            peer = Peer("udp", addr[0], addr[1])
            try:
                if delay.shed is not None and delay.shed(data, peer, delay.seconds):
                    continue
                receiver(data, peer)
            except Exception:  # the listener must survive any bug in a handler
                log.exception("error handling a datagram", extra={"fields": {"source": f"{addr[0]}:{addr[1]}"}})

    def send(self, data: bytes, addr: Addr) -> None:
        try:
            self.sock.sendto(data, (addr[0].strip("[]"), addr[1]))
        except (BlockingIOError, InterruptedError):
            self.dropped_sends += 1  # UDP is lossy by design; the transaction layer retransmits
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                log.warning("udp send failed", extra={"fields": {"dest": f"{addr[0]}:{addr[1]}", "error": str(e)}})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class TcpConnection(asyncio.Protocol):
    """A SIP-over-TCP connection, inbound or outbound."""

    def __init__(self, owner: TcpListener, max_size: int) -> None:
        self.owner = owner
        self.framer = StreamFramer(max_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", host, port)
        self.owner.connections[self.peer.addr] = self

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.owner.delay.seconds = 0.0
        self.framer.feed(data)
        while True:
            try:
                msg = self.framer.next_message()
            except ParseError as e:
                log.info("closing tcp connection: bad framing",
                         extra={"fields": {"source": f"{self.peer.host}:{self.peer.port}", "error": e.reason}})
                if self.transport is not None:
                    self.transport.close()
                return
            if msg is None:
                return
            try:
                self.owner.receiver(msg, self.peer)
            except Exception:
                log.exception("error handling a tcp message")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.owner.connections.get(self.peer.addr) is self:
            del self.owner.connections[self.peer.addr]

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class TcpListener:
    """A TCP server socket plus the table of live connections (inbound and outbound)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receiver: Receiver, max_size: int,
                 max_connections: int = 10_000) -> None:
        self.loop = loop
        self.receiver = receiver
        self.max_size = max_size
        self.max_connections = max_connections
        self.connections: dict[Addr, TcpConnection] = {}
        self.server: asyncio.base_events.Server | None = None
        self.local: Addr = ("", 0)
        self._pending: dict[Addr, list[bytes]] = {}
        self.delay = QueueDelay()

    async def start(self, host: str, port: int) -> None:
        self.server = await self.loop.create_server(
            lambda: TcpConnection(self, self.max_size), host.strip("[]"), port, reuse_address=True)
        self.local = self.server.sockets[0].getsockname()[:2]

    def send(self, data: bytes, addr: Addr) -> None:
        conn = self.connections.get(addr)
        if conn is not None:
            conn.send(data)
            return
        pending = self._pending.get(addr)
        if pending is not None:
            pending.append(data)
            return
        if len(self.connections) + len(self._pending) >= self.max_connections:
            log.warning("tcp connection limit reached", extra={"fields": {"dest": f"{addr[0]}:{addr[1]}"}})
            return
        self._pending[addr] = [data]
        self.loop.create_task(self._connect(addr))

    async def _connect(self, addr: Addr) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: TcpConnection(self, self.max_size), addr[0].strip("[]"),
                                            addr[1]), 5.0)
        except (OSError, TimeoutError) as e:
            log.info("tcp connect failed", extra={"fields": {"dest": f"{addr[0]}:{addr[1]}", "error": str(e)}})
            self._pending.pop(addr, None)
            return
        for data in self._pending.pop(addr, []):
            conn.send(data)
        # The connection registered itself under the address the kernel reports; keep ours too.
        self.connections.setdefault(addr, conn)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        self.connections.clear()


class TransportSet:
    """All listening sockets of a SIP server; sends on the transport a `Peer` names."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receiver: Receiver, max_message_size: int = 65535) -> None:
        self.loop = loop
        self.receiver = receiver
        self.max_message_size = max_message_size
        self.udp: list[UdpListener] = []
        self.tcp: list[TcpListener] = []
        self.delay = QueueDelay()  # shared by every listener: the message being handled now

    async def listen(self, transport: str, host: str, port: int) -> Addr:
        """Start listening; returns the bound address (so port 0 picks a free port)."""
        if transport == "udp":
            u = UdpListener(self.loop, host, port, self.receiver, self.delay)
            self.udp.append(u)
            return u.local
        if transport == "tcp":
            t = TcpListener(self.loop, self.receiver, self.max_message_size)
            t.delay = self.delay
            await t.start(host, port)
            self.tcp.append(t)
            return t.local
        raise ValueError(f"unsupported transport {transport!r}")

    def send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            if not self.udp:
                raise ValueError("no udp listener to send from")
            self.udp[0].send(data, peer.addr)
        elif peer.transport == "tcp":
            if not self.tcp:
                raise ValueError("no tcp listener to send from")
            self.tcp[0].send(data, peer.addr)
        else:
            raise ValueError(f"unsupported transport {peer.transport!r}")

    def local_address(self, transport: str) -> Addr:
        lst: list[UdpListener] | list[TcpListener] = self.udp if transport == "udp" else self.tcp
        if not lst:
            lst = self.udp or self.tcp
        return lst[0].local

    def close(self) -> None:
        for u in self.udp:
            u.close()
        for t in self.tcp:
            t.close()
        self.udp.clear()
        self.tcp.clear()
