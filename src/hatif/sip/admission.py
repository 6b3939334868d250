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
and a dispatcher's probe still gets its answer. Refusals are stateless `503` with `Retry-After` (RFC 3261
§21.5.4): no transaction, call, dialog or media port exists for a request turned away.

Sans-IO: the queue delay and the time come in as numbers, the verdict goes out as a value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    """Bounds of admission control (filled from `sip.admission` in the configuration)."""

    max_queue_delay: float = 0.5
    """Seconds a new INVITE may have waited unread before it is refused: below T1 (0.5 s), so a caller that
    sees an answer has retransmitted at most once, and far below any caller's patience."""
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
        self._refused_since: float | None = None  # start of the current run of refusals, for the log

    def invite(self, queue_delay: float, now: float) -> Refusal | None:
        """A new INVITE that waited `queue_delay` seconds unread: None to take it, or why not."""
        s = self.settings
        if queue_delay > self.worst_delay:
            self.worst_delay = queue_delay
        if self.draining:
            return self._refuse(Refusal(503, "Service Unavailable: shutting down", s.drain_retry_after,
                                        "draining"), now)
        if queue_delay > s.max_queue_delay:
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
