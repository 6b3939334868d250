"""Admission control: which new requests Hatif takes on, decided before any work is done for them.

Under overload the backlog does not wait inside Hatif: it waits in the kernel's socket buffer, where every
datagram is read in order. Answering it all late is the failure mode to avoid (issue 20): a caller who
retransmitted for seconds has likely given up, and an answered INVITE whose caller is gone holds an RTP port
and a dialog until "no ACK" 32 s later, so the backlog turns into a shortage that outlives the overload.
Kamailio and OpenSIPS answer `503` early under load; RFC 7339 exists for the same reason.

The measure of capacity is the time a new INVITE waited in the queue before Hatif read it (the kernel's
arrival stamp, `transport.QueueDelay`): it grows exactly when requests arrive faster than this process,
on this machine, with its current mix of work, handles them, whatever the rate; no figure of calls per
second is configured. A second bound, the number of calls being set up at once (INVITE received, not yet
answered or failed), keeps slow set-ups (a callee that rings, an application that thinks) from piling up.

Only dialog-creating requests are shed: an INVITE outside a dialog (and REGISTER and OPTIONS while
draining). Retransmissions of an INVITE already taken are absorbed by its transaction, and in-dialog
requests (ACK, BYE, re-INVITE, UPDATE) and OPTIONS are never refused for load, so live calls stay healthy
and a dispatcher's probe still gets its answer. A refusal is `503` with `Retry-After` (RFC 3261 §21.5.4)
from a server transaction of its own, which absorbs the INVITE's retransmissions and its ACK (a
retransmission read after the load fell must not become a call whose caller already had its 503); no
call, dialog or media port exists for a request turned away.

Refusing must cost far less than a call, or refusing is itself the overload: at four times capacity three
requests in four are refused, and a refusal through the parser and a transaction costs a fifth of a call,
which leaves a fraction of the capacity for calls. So a late INVITE is refused from its raw bytes, before
parsing (`Shedder`, called by the UDP transport only while the queue delay is past the bound): the 503
copies the request's Via, From, To, Call-ID and CSeq lines, its To tag marks it as a refusal so that its
ACK is dropped unread too, and its branch is remembered for Timer B (32 s) so that a retransmission read
after the load fell is refused again instead of becoming a call. An INVITE whose transaction exists (a
retransmission of one taken on) is never refused there.

Sans-IO: the queue delay, the time and the bytes come in, the verdict and the bytes to send go out.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """Bounds of admission control (filled from `sip.admission` in the configuration)."""

    max_queue_delay: float = 0.2
    """Seconds a new INVITE may have waited unread before it is refused: well below T1 (0.5 s), so a caller
    is answered before its first retransmission (at 0.5 s the queue would double with retransmissions, as
    measured with SIPp), and far below any caller's patience."""
    late_for: float = 0.1
    """Seconds the queue delay must stay past `max_queue_delay` before INVITEs are refused (CoDel's
    interval): a stall that clears at once (a collection, a slow disk) leaves a burst of late datagrams
    that are read in milliseconds; that is not an overload, and refusing them would fail calls for nothing."""
    max_setups: int = 1000
    """Calls being set up at once (INVITE taken, not yet answered or failed)."""
    retry_after: int = 5
    """Seconds a refused caller is asked to wait (`Retry-After`) when the refusal is for load."""
    drain_retry_after: int = 30
    """`Retry-After` while draining: a dispatcher should send the traffic elsewhere for a while."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request turned away: the status, the reason phrase and the `Retry-After` seconds to answer with."""

    status: int
    reason: str
    retry_after: int
    cause: str  # "late", "busy", "draining": what the statistics count


class Admission:
    """Decides for each new INVITE (and OPTIONS/REGISTER while draining) whether Hatif takes it on."""

    def __init__(self, settings: AdmissionSettings | None = None) -> None:
        self.settings = settings or AdmissionSettings()
        self.draining = False
        self.setups = 0  # calls being set up now (counted by call control)
        self.stats = {"admitted": 0, "refused_late": 0, "refused_busy": 0, "refused_draining": 0}
        self.worst_delay = 0.0  # the longest queue delay seen since `take_worst_delay`
        self.behind = False  # the queue delay has stayed past the bound for `late_for` seconds
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._refused_since: float | None = None  # start of the current run of refusals, for the log

    def observe(self, queue_delay: float, now: float) -> bool:
        """Each datagram's queue delay as it is read; True when this one is to be refused if it is a new
        INVITE: Hatif is behind and it waited past the bound. Behind starts once the delay stayed past
        the bound for `late_for` seconds and ends once it stayed under it as long (under overload the
        delay swings around the bound; a short dip does not reopen the door)."""
        if queue_delay > self.settings.max_queue_delay:
            if queue_delay > self.worst_delay:
                self.worst_delay = queue_delay
            self._below_since = None
            if self._above_since is None:
                self._above_since = now
            if not self.behind and now - self._above_since >= self.settings.late_for:
                self.behind = True
            return self.behind
        self._above_since = None
        if self.behind:
            if self._below_since is None:
                self._below_since = now
            elif now - self._below_since >= self.settings.late_for:
                self.behind = False
        return False

    def invite(self, queue_delay: float, now: float) -> Refusal | None:
        """A new INVITE that waited `queue_delay` seconds unread: None to take it, or why not."""
        s = self.settings
        if self.draining:
            return self._refuse(Refusal(503, "Service Unavailable: shutting down", s.drain_retry_after,
                                        "draining"), now)
        if self.behind and queue_delay > s.max_queue_delay:
            return self._refuse(Refusal(503, "Service Unavailable: overloaded", s.retry_after, "late"), now)
        if self.setups >= s.max_setups:
            return self._refuse(Refusal(503, "Service Unavailable: too many calls being set up",
                                        s.retry_after, "busy"), now)
        self.stats["admitted"] += 1
        return None

    def other(self, method: str, now: float) -> Refusal | None:
        """A request outside a dialog that is not an INVITE: only refused while draining (OPTIONS answered
        503 tells a dispatcher to move traffic away, RFC 3261 §11; REGISTER belongs elsewhere too)."""
        if self.draining and method in ("OPTIONS", "REGISTER"):
            return self._refuse(Refusal(503, "Service Unavailable: shutting down",
                                        self.settings.drain_retry_after, "draining"), now)
        return None

    def setup_started(self) -> None:
        self.setups += 1

    def setup_finished(self) -> None:
        self.setups = max(0, self.setups - 1)

    def _refuse(self, refusal: Refusal, now: float) -> Refusal:
        self.stats["refused_" + refusal.cause] += 1
        if self._refused_since is None:
            self._refused_since = now
        return refusal

    def take_refusals_since(self) -> float | None:
        """When the refusals counted since the last call began (None: none), and forget it; for the log."""
        since, self._refused_since = self._refused_since, None
        return since

    def take_worst_delay(self) -> float:
        worst, self.worst_delay = self.worst_delay, 0.0
        return worst


# -- refusing from raw bytes ------------------------------------------------------------------------------

SHED_TAG = b"hs"  # To tags of raw refusals start so; Hatif's other tags are hex (`dialog.new_tag`)
_HEAD_END = b"\r\n\r\n"
_TO_TAG = re.compile(rb"\r\n(?:to|t)[ \t]*:[^\r\n]*;[ \t]*tag[ \t]*=[ \t]*([^;, \t\r\n]*)", re.IGNORECASE)
_TOP_VIA = re.compile(
    rb"\r\n(?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z]+)[ \t]+([^;,\s]+)([^,\r\n]*)",
    re.IGNORECASE)
_BRANCH = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;, \t\r\n]+)", re.IGNORECASE)
_RPORT = re.compile(rb";[ \t]*rport\b", re.IGNORECASE)
_COPIED_LINE = re.compile(rb"^(?:via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*",
                          re.IGNORECASE | re.MULTILINE)
_TO_NAME = re.compile(rb"(?:to|t)[ \t]*:", re.IGNORECASE)
MAGIC_COOKIE = b"z9hG4bK"


@dataclass(frozen=True, slots=True)
class RawInvite:
    """What the raw bytes of a new INVITE tell: its server transaction key (RFC 3261 §17.2.3) and where
    a response goes (`rport`: the source address, RFC 3581; else the source host and the Via port)."""

    key: tuple[str, str, str]
    rport: bool
    port: int


def read_new_invite(data: bytes) -> RawInvite | None:
    """A new INVITE (no To tag, an RFC 3261 branch, an IPv4 or name sent-by) from raw bytes; None for
    anything else or anything unclear, which then takes the ordinary path through the parser."""
    if not data.startswith(b"INVITE "):
        return None
    end = data.find(_HEAD_END)
    head = data[:end] if end > 0 else data
    if _TO_TAG.search(head):
        return None
    via = _TOP_VIA.search(head)
    if via is None:
        return None
    branch = _BRANCH.search(via.group(3))
    if branch is None or not branch.group(1).startswith(MAGIC_COOKIE):
        return None
    sent_by = via.group(2)
    host, _, port_text = sent_by.partition(b":")
    if b"[" in host or (port_text and not port_text.isdigit()):
        return None
    port = int(port_text) if port_text else 5060
    key = (branch.group(1).decode("ascii", "replace"), f"{host.decode('ascii', 'replace').lower()}:{port}", "INVITE")
    return RawInvite(key, _RPORT.search(via.group(3)) is not None, port)


def is_shed_ack(data: bytes) -> bool:
    """An ACK of one of our raw refusals (its To tag is ours): nothing to do, dropped unread."""
    if not data.startswith(b"ACK "):
        return False
    end = data.find(_HEAD_END)
    tag = _TO_TAG.search(data[:end] if end > 0 else data)
    return tag is not None and tag.group(1).startswith(SHED_TAG)


def refusal_bytes(data: bytes, status: int, reason: str, retry_after: int, tag: bytes) -> bytes:
    """A response to the request in `data` made of its own Via, From, To, Call-ID and CSeq lines (RFC 3261
    §8.2.6.2, folded continuations kept) with the To tag `tag`, `Retry-After` and no body."""
    end = data.find(_HEAD_END)
    head = data[:end] if end > 0 else data
    out = [f"SIP/2.0 {status} {reason}".encode()]
    for line in _COPIED_LINE.findall(head):
        if line[:1] in b"tT" and _TO_NAME.match(line):
            line = line + b";tag=" + tag
        out.append(line)
    out.append(b"Retry-After: %d" % retry_after)
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(out)


class Shedder:
    """Refuses late INVITEs from their raw bytes and remembers them for `window` seconds (Timer B).

    The memory is two generations of branch sets swapped every `window`, so it costs one set lookup and
    is bounded (`limit` branches per generation; past it the older generation is dropped early)."""

    def __init__(self, retry_after: int = 5, window: float = 32.0, limit: int = 200_000) -> None:
        self.retry_after = retry_after
        self.window = window
        self.limit = limit
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self._turned = 0.0
        self._tags = itertools.count(1)
        self._tag_prefix = SHED_TAG + secrets.token_hex(4).encode() + b"."  # tags unique to this process
        self.stats = {"refused": 0, "acks_dropped": 0}

    def shed(self, data: bytes, now: float, known: Callable[[tuple[str, str, str]], bool],
             ) -> tuple[bytes, RawInvite] | bool:
        """For a datagram read while Hatif is behind: (the 503 to send, where it goes) for a new INVITE;
        True to drop it (the ACK of one of our refusals); False to hand it to the ordinary path (anything
        else: in-dialog requests, responses, OPTIONS, retransmissions of INVITEs taken on)."""
        invite = read_new_invite(data)
        if invite is None:
            if is_shed_ack(data):
                self.stats["acks_dropped"] += 1
                return True
            return False
        if known(invite.key):
            return False
        self.remember(invite.key[0], now)
        self.stats["refused"] += 1
        tag = self._tag_prefix + b"%x" % next(self._tags)
        return refusal_bytes(data, 503, "Service Unavailable: overloaded", self.retry_after, tag), invite

    def drop_ack(self, data: bytes) -> bool:
        """Whether `data` is the ACK of one of our raw refusals (read at any delay: it is never parsed)."""
        if self.stats["refused"] and is_shed_ack(data):
            self.stats["acks_dropped"] += 1
            return True
        return False

    def remember(self, branch: str, now: float) -> None:
        if now - self._turned >= self.window or len(self._current) >= self.limit:
            self._previous, self._current = self._current, set()
            self._turned = now
        self._current.add(branch)

    def expire(self, now: float) -> None:
        """Forgets generations older than `window` even when no refusal comes to turn them (after a load, the
        branches it refused would otherwise stay until the next one: tens of thousands of strings)."""
        if now - self._turned >= 2 * self.window:
            self._previous, self._current = set(), set()
        elif now - self._turned >= self.window:
            self._previous, self._current = self._current, set()
            self._turned = now

    @property
    def remembered(self) -> int:
        return len(self._current) + len(self._previous)

    def refused_before(self, branch: str | None) -> bool:
        """Whether an INVITE with this branch was refused from its raw bytes in the last window or two."""
        return branch is not None and (branch in self._current or branch in self._previous)
