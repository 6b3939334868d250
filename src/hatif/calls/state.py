"""The leg and call state machines of call control, sans-IO.

Two machines, each a readable table held against the specs: `(state, event) -> next state`, where the next
state is `None` when the event's handler decides it (a 1xx with SDP makes a leg early, one without makes
it ring). A pair that is not in a table is absorbed: nothing happens, nothing comes out. That is how late
and crossing messages die (a CANCEL after the 200, RFC 3261 §9.2; a 200 after Hatif gave up, §9.1, gets
a BYE instead).

- `LegMachine`: one dialog between Hatif and a party (RFC 3261 §13-15): calling, ringing, early, answered,
  held, ending (Hatif sent CANCEL or BYE and waits for the other side), ended. Hold and resume by re-INVITE
  (RFC 3264 §8.4) from either side; a re-INVITE crossing Hatif's own is answered 491 and Hatif's is retried
  after the wait of RFC 3261 §14.1.
- `CallMachine`: who is bridged with whom, who waits aside while an agent consults, who is being
  transferred, who sits in a conference: states parked, bridged, consulting, transferring, conferenced.
  Legs are named by their ids; the machine never touches a leg, it says what to do with it.

Nothing here owns a socket, a loop or a clock. Every event is a method call taking `now` (seconds, any
monotonic origin) and returning commands (frozen dataclasses) for the shell to execute in order: `leg.py`
and `call.py` build the SIP messages, arm the timers and move the media these commands name.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["inbound", "outbound"]

# -- commands: what the shells execute -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Send a request in (or to set up) the leg's dialog: INVITE, CANCEL, BYE, or a re-INVITE whose offer
    has `direction` (RFC 3264 §8.4: sendonly to hold, sendrecv to resume)."""

    method: str
    direction: str | None = None


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Answer the party's pending request (its INVITE, or the re-INVITE in hand) with `status`."""

    status: int
    reason: str | None = None
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class Retransmit:
    """Send our 2xx to the party's INVITE again: no ACK yet (RFC 3261 §13.3.1.4)."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm (or re-arm) the timer `name` to fire in `delay` seconds: the shell calls `timer_fired`."""

    name: str
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Emit:
    """A call event for the event log (`leg` None: the leg that returned it, or the call itself)."""

    kind: str
    data: Mapping[str, object] = field(default_factory=dict)
    leg: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """An outbound leg rings (`early`: with early media): its call may tell the caller."""

    early: bool


@dataclass(frozen=True, slots=True)
class Answered:
    """The leg is answered: its call may bridge it."""


@dataclass(frozen=True, slots=True)
class Ended:
    """The leg is over for its call (signalling may still finish in `ending`): release media, tell the call."""

    cause: str


@dataclass(frozen=True, slots=True)
class ReinviteDone:
    """Hatif's hold or resume re-INVITE got its final answer (`accepted`), or could not be sent."""

    direction: str
    accepted: bool


@dataclass(frozen=True, slots=True)
class PartyHold:
    """The party held (or resumed) us from its phone: the one it talks to hears music meanwhile."""

    held: bool


LegCommand = (SendRequest | SendResponse | Retransmit | StartTimer | CancelTimer | Emit | Progress | Answered
              | Ended | ReinviteDone | PartyHold)


@dataclass(frozen=True, slots=True)
class BridgeLegs:
    """Join legs `a` and `b` in media (`record` None: as the configuration says)."""

    a: str
    b: str
    record: bool | None = None


@dataclass(frozen=True, slots=True)
class Unbridge:
    """Part `leg` from its partner."""

    leg: str


@dataclass(frozen=True, slots=True)
class PlayMusic:
    """Music on hold to `leg`, looped."""

    leg: str


@dataclass(frozen=True, slots=True)
class PlayRingback:
    leg: str


@dataclass(frozen=True, slots=True)
class StopPlaying:
    leg: str


@dataclass(frozen=True, slots=True)
class HangupLeg:
    leg: str
    cause: str


@dataclass(frozen=True, slots=True)
class JoinRoom:
    leg: str
    room: str


@dataclass(frozen=True, slots=True)
class LeaveRoom:
    leg: str
    room: str


@dataclass(frozen=True, slots=True)
class Changed:
    """Who is bridged with whom changed: wake whoever waits on it (`Call.wait_bridged`)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The request does not apply now (no consultation to complete, ...): nothing else was done."""

    reason: str


@dataclass(frozen=True, slots=True)
class CallOver:
    """Every leg ended: the call's record can be written."""


CallCommand = (BridgeLegs | Unbridge | PlayMusic | PlayRingback | StopPlaying | HangupLeg | JoinRoom | LeaveRoom | Emit
               | Changed | Refused | CallOver)


# -- the leg ------------------------------------------------------------------------------------------


class LegPhase(enum.Enum):
    CALLING = "calling"  # inbound: INVITE received; outbound: INVITE sent
    RINGING = "ringing"  # 180 sent or received
    EARLY = "early"  # 183 with SDP: early media flows
    ANSWERED = "answered"
    HELD = "held"  # answered, and on hold by Hatif, by the party, or both
    ENDING = "ending"  # Hatif gave up (CANCEL, BYE): over for the call, the other side still to answer
    ENDED = "ended"

    @property
    def up(self) -> bool:
        """Answered and not over: the dialog carries the call."""
        return self in (LegPhase.ANSWERED, LegPhase.HELD)

    @property
    def over(self) -> bool:
        """Over for the call (ending or ended)."""
        return self in (LegPhase.ENDING, LegPhase.ENDED)


CALLING, RINGING, EARLY = LegPhase.CALLING, LegPhase.RINGING, LegPhase.EARLY
ANSWERED, HELD, ENDING, ENDED = LegPhase.ANSWERED, LegPhase.HELD, LegPhase.ENDING, LegPhase.ENDED
SETUP = (CALLING, RINGING, EARLY)
UP = (ANSWERED, HELD)


STAY: Literal["stay"] = "stay"


def _each(states: tuple[LegPhase, ...], event: str, to: LegPhase | Literal["stay"] | None
          ) -> dict[tuple[LegPhase, str], LegPhase | None]:
    """One row per state: `event` leads each of `states` to `to` (STAY: each stays where it is)."""
    return {(s, event): (s if to == STAY else to) for s in states}

# (state, event) -> next state; None: the handler decides. Events missing here are absorbed.
LEG_TRANSITIONS: Mapping[tuple[LegPhase, str], LegPhase | None] = {
    # inbound, Hatif is the UAS (RFC 3261 §13.3)
    **_each((CALLING, RINGING), "ring", None),  # 180, or 183 with our SDP
    **_each(SETUP, "answer", None),  # 200 with our SDP, retransmitted until the ACK; held if the offer held
    **_each(SETUP, "reject", ENDED),  # a final failure to the INVITE
    **_each(SETUP, "cancel", ENDED),  # CANCEL received: 487 (RFC 3261 §9.2); absorbed once answered
    **_each(UP, "ack", STAY),
    **_each(UP, "timer:2xx", None),  # retransmit the 2xx, or give up: no ACK within 64*T1
    # outbound, Hatif is the UAC (RFC 3261 §13.2)
    (CALLING, "invite"): CALLING,
    **_each(SETUP, "provisional", None),  # 180/183: ringing or early
    (ENDING, "provisional"): ENDING,  # the CANCEL that waited for a provisional response goes now
    **_each(SETUP, "accepted", None),  # a 2xx: answered (or a BYE when its SDP is unusable)
    (ENDING, "accepted"): ENDING,  # the 200 raced our CANCEL: ACK and BYE (RFC 3261 §9.1)
    **_each(SETUP, "failed", ENDED),  # a 300-699
    (ENDING, "failed"): ENDED,  # the 487 to our CANCEL
    **_each(SETUP, "timed_out", ENDED),  # Timer B: no one there
    (ENDING, "timed_out"): ENDED,
    **_each(SETUP, "timer:ring", ENDING),  # no answer within the ring timeout: CANCEL
    **_each(SETUP, "give_up", ENDING),
    # both ways
    **_each(SETUP, "hangup", None),  # inbound: a final response; outbound: CANCEL
    **_each(UP, "hangup", ENDING),  # BYE
    **_each(UP, "bye", ENDED),
    (ENDING, "bye"): ENDED,  # BYEs crossed
    (ENDING, "bye_done"): ENDED,
    **_each(UP, "hold", HELD),  # re-INVITE, sendonly (RFC 3264 §8.4)
    (HELD, "resume"): None,  # re-INVITE, sendrecv: answered, unless the party still holds us
    **_each(UP, "reinvite_answered", STAY),
    **_each(UP, "timer:glare", STAY),  # retry the re-INVITE a 491 refused (RFC 3261 §14.1)
    **_each(UP, "offer", STAY),  # the party's re-INVITE: 491 if ours is pending (glare, §14.2)
    **_each(UP, "party_hold", HELD),
    (HELD, "party_resume"): None,
}


def cause_of(status: int) -> str:
    """Why an outbound attempt failed, from the final status (RFC 3261 §21)."""
    if status in (486, 600):
        return "busy"
    if status == 480:
        return "unavailable"
    if status == 487:
        return "cancelled"
    if status in (408, 504):
        return "no_answer"
    if status in (603, 403):
        return "rejected"
    return "failed"


class LegMachine:
    """The state of one leg: which messages it sends, which timers it keeps, what it tells its call.

    The shell sets `remote_held` itself from the first offer or answer (before the leg is up, that is a
    description, not an event); afterwards every change comes in through `party_hold`.

    `t1` and `t2` are the SIP timers (RFC 3261 Table 4) that pace the retransmission of our 2xx."""

    def __init__(self, direction: Direction, now: float, *, t1: float = 0.5, t2: float = 4.0) -> None:
        self.direction = direction
        self.state = CALLING
        self.started = now
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.cause = ""
        self.status: int | None = None  # an outbound leg's final failure status (or the one sent inbound)
        self.reason = ""
        self.held = False  # Hatif put this party on hold
        self.remote_held = False  # this party put Hatif on hold
        self.acked = direction == "outbound"
        self._t1, self._t2 = t1, t2
        self._provisional = False  # outbound: a provisional response came (a CANCEL may be sent)
        self._cancel_pending = False  # outbound: gave up before any provisional response
        self._bye_sent = False
        self._timers: set[str] = set()
        self._interval = t1
        self._retransmit_until = 0.0
        self._reinvites: deque[str] = deque()  # directions asked for; the first is in flight
        self._in_flight = False

    def __repr__(self) -> str:
        return f"<LegMachine {self.direction} {self.state.value}>"

    @property
    def reinvite_pending(self) -> bool:
        """Hatif's own re-INVITE is out (or waits to be retried after a 491)."""
        return bool(self._reinvites)

    @property
    def timers(self) -> frozenset[str]:
        """The timers the shell should have armed now."""
        return frozenset(self._timers)

    def _go(self, event: str) -> LegPhase | bool | None:
        """The table's entry for `event` in the current state; False when the event is absorbed."""
        key = (self.state, event)
        if key not in LEG_TRANSITIONS:
            return False
        return LEG_TRANSITIONS[key]

    def _enter(self, state: LegPhase | bool | None) -> None:
        if isinstance(state, LegPhase):
            self.state = state

    def _start(self, name: str, delay: float) -> StartTimer:
        self._timers.add(name)
        return StartTimer(name, delay)

    def _cancel(self, name: str) -> list[LegCommand]:
        if name not in self._timers:
            return []
        self._timers.discard(name)
        return [CancelTimer(name)]

    def _over(self, cause: str, now: float, state: LegPhase) -> list[LegCommand]:
        """Leave the live states: timers cancelled, pending re-INVITEs answered False, the call told."""
        self.state = state
        self.cause = self.cause or cause
        self.ended_at = now
        out: list[LegCommand] = [CancelTimer(name) for name in sorted(self._timers)]
        self._timers.clear()
        out += [ReinviteDone(d, False) for d in self._reinvites]
        self._reinvites.clear()
        out.append(Ended(self.cause))
        return out

    # -- inbound ----------------------------------------------------------------------------------------

    def ring(self, now: float, early_media: bool = False) -> list[LegCommand]:
        """Tell the caller it rings: 180, or 183 with our SDP when Hatif plays something before answering."""
        if self.direction != "inbound" or self._go("ring") is False:
            return []
        self.state = EARLY if early_media else RINGING
        if early_media:
            out: list[LegCommand] = [SendResponse(183, "Session Progress", early_media=True)]
        else:
            out = [SendResponse(180, "Ringing")]
        return [*out, Emit("leg.ringing", {"early": early_media})]

    def answer(self, now: float) -> list[LegCommand]:
        """200 OK, retransmitted at T1, 2*T1 ... T2 until the ACK comes (RFC 3261 §13.3.1.4)."""
        if self.direction != "inbound" or self._go("answer") is False:
            return []
        self.state = HELD if self.remote_held else ANSWERED
        self.acked = False
        self._interval = self._t1
        self._retransmit_until = now + 64 * self._t1
        self.answered_at = now
        return [SendResponse(200, "OK"), self._start("2xx", self._t1), Emit("leg.answered"), Answered()]

    def reject(self, status: int, now: float, reason: str | None = None, cause: str | None = None
               ) -> list[LegCommand]:
        """A final failure to the caller's INVITE (nothing once answered: `hangup` sends a BYE then)."""
        if self.direction != "inbound" or self._go("reject") is False:
            return []
        self.status = status
        return [SendResponse(status, reason), *self._over(cause or cause_of(status), now, ENDED)]

    def cancel(self, now: float) -> list[LegCommand]:
        """The caller's CANCEL: 487 to its INVITE (RFC 3261 §9.2); after our 200 it changes nothing."""
        if self.direction != "inbound" or self._go("cancel") is False:
            return []
        self.status = 487
        return [SendResponse(487), *self._over("cancelled", now, ENDED)]

    def ack(self, now: float) -> list[LegCommand]:
        if self._go("ack") is False:
            return []
        self.acked = True
        return self._cancel("2xx")

    # -- outbound ---------------------------------------------------------------------------------------

    def invite(self, ring_timeout: float, now: float) -> list[LegCommand]:
        """Call the party: the INVITE, and the ring timeout after which Hatif gives up."""
        if self.direction != "outbound" or self._go("invite") is False:
            return []
        return [SendRequest("INVITE"), self._start("ring", ring_timeout)]

    def provisional(self, status: int, now: float, early_media: bool = False) -> list[LegCommand]:
        """A 1xx (not 100): ringing, or early media when it carried usable SDP."""
        if self.direction != "outbound" or status == 100 or (to := self._go("provisional")) is False:
            return []
        self._provisional = True
        if to is ENDING:
            if not self._cancel_pending:
                return []
            self._cancel_pending = False
            return [SendRequest("CANCEL")]
        if early_media:
            self.state = EARLY
        elif self.state is CALLING:
            self.state = RINGING
        early = self.state is EARLY
        return [Emit("leg.ringing", {"early": early, "status": status}), Progress(early)]

    def accepted(self, now: float, usable: bool = True) -> list[LegCommand]:
        """A 2xx (the shell ACKed it): answered; or, when Hatif gave up meanwhile or the answer's SDP is
        unusable, a BYE at once (RFC 3261 §9.1, §15)."""
        if self.direction != "outbound" or (to := self._go("accepted")) is False:
            return []
        if to is ENDING:
            self._cancel_pending = False
            if self._bye_sent:
                return []
            self._bye_sent = True
            return [SendRequest("BYE")]
        if not usable:
            self._bye_sent = True
            return [SendRequest("BYE"), *self._over("failed", now, ENDING)]
        self.state = HELD if self.remote_held else ANSWERED  # the answer may hold us from the start
        self.answered_at = now
        return [*self._cancel("ring"), Emit("leg.answered"), Answered()]

    def failed(self, status: int, now: float, reason: str = "") -> list[LegCommand]:
        """A final failure (300-699): busy, unavailable, rejected ... (401/407 count as unavailable: Hatif
        holds no credentials for the parties it calls)."""
        if self.direction != "outbound" or (to := self._go("failed")) is False:
            return []
        if to is ENDED and self.state is ENDING:
            self.state = ENDED
            return []
        self.status, self.reason = status, reason
        if status in (401, 407):
            self.status, self.reason = 480, "Temporarily Unavailable"
        return self._over(cause_of(self.status), now, ENDED)

    def timed_out(self, now: float) -> list[LegCommand]:
        """Timer B (or the CANCEL's 64*T1): no final response will come."""
        if self.direction != "outbound" or self._go("timed_out") is False:
            return []
        if self.state is ENDING:
            self.state = ENDED
            return []
        self.status, self.reason = 408, "Request Timeout"
        return self._over("unreachable", now, ENDED)

    def give_up(self, cause: str, now: float) -> list[LegCommand]:
        """Stop calling: CANCEL once a provisional response came; until then it waits (RFC 3261 §9.1)."""
        if self.direction != "outbound" or self._go("give_up") is False:
            return []
        self.cause = cause
        out: list[LegCommand] = []
        if self._provisional:
            out.append(SendRequest("CANCEL"))
        else:
            self._cancel_pending = True
        return [*out, *self._over(cause, now, ENDING)]

    # -- both ways --------------------------------------------------------------------------------------

    def hangup(self, cause: str, now: float) -> list[LegCommand]:
        """End the leg however far it got: BYE, CANCEL, or a final response to the caller."""
        if (to := self._go("hangup")) is False:
            return []
        if to is ENDING:
            self._bye_sent = True
            return [SendRequest("BYE"), *self._over(cause, now, ENDING)]
        if self.direction == "inbound":
            return self.reject(486 if cause == "busy" else 480, now, "No Answer" if cause == "no_answer" else None,
                               cause)
        return self.give_up(cause, now)

    def bye(self, now: float) -> list[LegCommand]:
        """The party's BYE (the shell answers it once the call's records are durable)."""
        if self._go("bye") is False:
            return []
        if self.state is ENDING:
            self.state = ENDED
            return []
        return self._over("normal", now, ENDED)

    def bye_done(self, now: float) -> list[LegCommand]:
        """Our BYE got its final response (or timed out): the dialog is gone."""
        if self._go("bye_done") is not False:
            self.state = ENDED
        return []

    def timer_fired(self, name: str, now: float) -> list[LegCommand]:
        """A timer armed by a `StartTimer` is due."""
        self._timers.discard(name)
        if self._go(f"timer:{name}") is False:
            return []
        if name == "ring":
            self.cause = "no_answer"
            self.status, self.reason = 480, "No Answer"
            return self.give_up("no_answer", now)
        if name == "2xx":
            if self.acked:
                return []
            if now >= self._retransmit_until:
                return self.hangup("no_ack", now)
            self._interval = min(self._interval * 2, self._t2)
            return [Retransmit(), self._start("2xx", self._interval)]
        if name == "glare" and self._reinvites:
            self._in_flight = True
            return [SendRequest("INVITE", self._reinvites[0])]
        return []

    # -- hold and resume --------------------------------------------------------------------------------

    def hold(self, now: float) -> list[LegCommand]:
        """Hatif holds the party: a re-INVITE with a sendonly offer (RFC 3264 §8.4)."""
        if self.held or (to := self._go("hold")) is False:
            return [ReinviteDone("sendonly", False)]
        self._enter(to)
        self.held = True
        return self._reinvite("sendonly")

    def resume(self, now: float) -> list[LegCommand]:
        if not self.held or self._go("resume") is False:
            return [ReinviteDone("sendrecv", False)]
        self.held = False
        self.state = HELD if self.remote_held else ANSWERED
        return self._reinvite("sendrecv")

    def _reinvite(self, direction: str) -> list[LegCommand]:
        self._reinvites.append(direction)
        if self._in_flight or len(self._reinvites) > 1:
            return []  # after the one in flight is answered
        self._in_flight = True
        return [SendRequest("INVITE", direction)]

    def reinvite_answered(self, status: int, now: float, jitter: float = 0.5) -> list[LegCommand]:
        """The final answer to Hatif's re-INVITE (408 when it timed out). A 491 means the party's re-INVITE
        crossed ours: retry after 2.1-4 s when Hatif chose the Call-ID (an outbound leg), 0-2 s otherwise
        (RFC 3261 §14.1); `jitter` in [0, 1) picks where in that window, so the machine draws nothing."""
        if self._go("reinvite_answered") is False or not self._reinvites:
            return []
        self._in_flight = False
        if status == 491:
            delay = 2.1 + 1.9 * jitter if self.direction == "outbound" else 2.0 * jitter
            return [self._start("glare", delay)]
        direction = self._reinvites.popleft()
        accepted = status < 300
        kind = "leg.held" if direction == "sendonly" else "leg.resumed"
        out: list[LegCommand] = [Emit(kind, {"by": "hatif", "accepted": accepted}), ReinviteDone(direction, accepted)]
        if self._reinvites:
            self._in_flight = True
            out.append(SendRequest("INVITE", self._reinvites[0]))
        return out

    def offer(self, now: float) -> list[LegCommand]:
        """The party's re-INVITE (or UPDATE) with an offer: 491 while ours is unanswered (RFC 3261 §14.2),
        else nothing here (the shell answers it, then says whether it holds us with `party_hold`)."""
        if self._go("offer") is False:
            return [SendResponse(481)] if self.state.over else []
        if self._in_flight:
            return [SendResponse(491, "Request Pending")]
        return []

    def party_hold(self, held: bool, now: float) -> list[LegCommand]:
        """The party's offer said sendonly or inactive (`held`), or sendrecv again."""
        if held == self.remote_held or (to := self._go("party_hold" if held else "party_resume")) is False:
            return []
        self.remote_held = held
        if to is None:
            to = HELD if self.held else ANSWERED
        self._enter(to)
        return [Emit("leg.held" if held else "leg.resumed", {"by": "party"}), PartyHold(held)]


# -- the call -----------------------------------------------------------------------------------------


class CallState(enum.Enum):
    PARKED = "parked"  # no one bridged: an application talks to the caller, or it waits
    BRIDGED = "bridged"
    CONSULTING = "consulting"  # an agent talks to a third party while its party waits with music
    TRANSFERRING = "transferring"  # a party hears ringback while Hatif calls its new partner
    CONFERENCED = "conferenced"  # a leg of the call is in a conference room


PARKED, BRIDGED, CONSULTING = CallState.PARKED, CallState.BRIDGED, CallState.CONSULTING
TRANSFERRING, CONFERENCED = CallState.TRANSFERRING, CallState.CONFERENCED

# event -> the call states it applies in; anywhere else it is refused (the shell hears `Refused`). Events not
# named here (bridge, target answered or failed, join, leave, hold, a leg's end) apply in every state.
CALL_ACCEPTS: Mapping[str, frozenset[CallState]] = {
    # blind: the partner goes, a new one is called (not while a party waits aside: it would be forgotten)
    "transfer": frozenset({PARKED, BRIDGED, CONFERENCED, TRANSFERRING}),
    # attended, step one: the partner waits with music (again after a consultation that failed)
    "consult": frozenset({PARKED, BRIDGED, CONSULTING}),
    "complete": frozenset({CONSULTING}),  # the waiting party and the consulted one talk; the agent goes
    "cancel_consult": frozenset({CONSULTING}),  # the consulted party goes; the agent is back with its party
}


class CallMachine:
    """Who talks with whom in one call, and what transfers, consultations and conferences do to it.

    The state is read off the relations (a consultation outranks a transfer, which outranks a conference,
    which outranks a bridge), so it can never disagree with them; `CALL_ACCEPTS` says which events apply in
    which state."""

    def __init__(self) -> None:
        self.caller: str | None = None
        self.live: dict[str, str] = {}  # leg -> its party, while the leg is not over
        self.ended: set[str] = set()
        self.partner: dict[str, str] = {}  # who each leg is bridged with (both ways)
        self.held_aside: dict[str, str] = {}  # agent -> the party waiting with music while the agent consults
        self.transferring: dict[str, str] = {}  # leg -> the target it waits for (blind transfer)
        self.rooms: dict[str, str] = {}  # leg -> the conference room it is in
        self.over = False

    @property
    def state(self) -> CallState:
        if self.held_aside:
            return CONSULTING
        if self.transferring:
            return TRANSFERRING
        if self.rooms:
            return CONFERENCED
        if self.partner:
            return BRIDGED
        return PARKED

    def _refused(self, event: str) -> list[CallCommand] | None:
        if self.state in CALL_ACCEPTS[event]:
            return None
        return [Refused(f"{event} does not apply to a call {self.state.value}")]

    def add_leg(self, leg: str, party: str, *, caller: bool = False) -> None:
        self.live[leg] = party
        if caller:
            self.caller = leg

    def _up(self, leg: str | None) -> bool:
        return leg is not None and leg in self.live

    # -- bridges ----------------------------------------------------------------------------------------

    def _unbridge(self, leg: str) -> list[CallCommand]:
        other = self.partner.pop(leg, None)
        if other is None:
            return []
        self.partner.pop(other, None)
        return [Unbridge(leg)]

    def _bridge(self, a: str, b: str, record: bool | None = None) -> list[CallCommand]:
        if a == b or not (self._up(a) and self._up(b)):
            return [Refused("a bridge needs two live legs")]
        for agent, waiting in list(self.held_aside.items()):
            if waiting in (a, b):  # a party waiting aside that is bridged no longer waits
                del self.held_aside[agent]
        out = [*self._unbridge(a), *self._unbridge(b), StopPlaying(a), StopPlaying(b), BridgeLegs(a, b, record)]
        self.partner[a], self.partner[b] = b, a
        return [*out, Changed()]

    def bridge(self, a: str, b: str, now: float, record: bool | None = None) -> list[CallCommand]:
        """Join two legs (each leaves whoever it was bridged with)."""
        return self._bridge(a, b, record)

    def unbridge(self, leg: str, now: float) -> list[CallCommand]:
        return [*self._unbridge(leg), Changed()]

    # -- blind transfer ---------------------------------------------------------------------------------

    def transfer(self, leg: str, target: str, now: float) -> list[CallCommand]:
        """Blind transfer: `leg`'s partner is released and `leg` hears ringback while `target` is called."""
        if (refused := self._refused("transfer")) is not None:
            return refused
        if not self._up(leg):
            return [Refused("the leg to transfer has ended")]
        out: list[CallCommand] = []
        other = self.partner.get(leg)
        if other is not None:
            out += [*self._unbridge(leg), HangupLeg(other, "transferred")]
        self.transferring[leg] = target
        return [*out, Emit("transfer", {"target": target, "how": "blind"}, leg), PlayRingback(leg)]

    def target_answered(self, leg: str, new: str, now: float) -> list[CallCommand]:
        """The transfer target answered: bridge it to `leg`, or let it go if `leg` hung up meanwhile."""
        self.transferring.pop(leg, None)
        if not self._up(leg):
            return [HangupLeg(new, "cancelled"), Changed()]
        if not self._up(new):
            return [StopPlaying(leg), Changed()]
        return self._bridge(leg, new)

    def target_failed(self, leg: str, now: float, new: str | None = None) -> list[CallCommand]:
        """The target was not reached (busy, no answer, not callable): `leg` stays, alone."""
        self.transferring.pop(leg, None)
        out: list[CallCommand] = []
        if new is not None and self._up(new):
            out.append(HangupLeg(new, "cancelled"))
        if self._up(leg):
            out.append(StopPlaying(leg))
        return [*out, Changed()]

    # -- attended transfer ------------------------------------------------------------------------------

    def consult(self, agent: str, now: float) -> list[CallCommand]:
        """Attended transfer, step one: the agent's partner waits with music; the agent hears ringback."""
        if (refused := self._refused("consult")) is not None:
            return refused
        if not self._up(agent):
            return [Refused("the consulting leg has ended")]
        out: list[CallCommand] = []
        held = self.partner.get(agent)
        if held is not None and agent not in self.held_aside:
            out += [*self._unbridge(agent), PlayMusic(held)]
            self.held_aside[agent] = held
        return [*out, PlayRingback(agent)]

    def consult_answered(self, agent: str, new: str, target: str, now: float) -> list[CallCommand]:
        """The consulted party answered: the agent talks to it (its own party still waits)."""
        if not self._up(agent):
            return [HangupLeg(new, "cancelled"), Changed()]
        return [*self._bridge(agent, new), Emit("transfer", {"target": target, "how": "consult"}, agent)]

    def consult_failed(self, agent: str, now: float, new: str | None = None) -> list[CallCommand]:
        """The consulted party was not reached: the agent decides (`cancel_consult` brings its party back)."""
        out: list[CallCommand] = []
        if new is not None and self._up(new):
            out.append(HangupLeg(new, "cancelled"))
        if self._up(agent):
            out.append(StopPlaying(agent))
        return out

    def complete(self, agent: str, now: float) -> list[CallCommand]:
        """Attended transfer, done: the waiting party and the consulted one talk; the agent leaves."""
        if (refused := self._refused("complete")) is not None:
            return refused
        held = self.held_aside.get(agent)
        consulted = self.partner.get(agent)
        if held is None or not self._up(held) or consulted is None:
            return [Refused("no consultation of this leg to complete")]
        del self.held_aside[agent]
        out = [*self._unbridge(agent), *self._bridge(held, consulted), HangupLeg(agent, "transferred")]
        return [*out, Emit("transfer", {"how": "attended", "to": self.live[consulted]}, held)]

    def cancel_consult(self, agent: str, now: float) -> list[CallCommand]:
        """Attended transfer, abandoned: the consulted party is released, the agent is back with its party."""
        if (refused := self._refused("cancel_consult")) is not None:
            return refused
        held = self.held_aside.pop(agent, None)
        consulted = self.partner.get(agent)
        out: list[CallCommand] = []
        if consulted is not None:
            out += [*self._unbridge(agent), HangupLeg(consulted, "normal")]
        if held is None or not self._up(held):
            return [*out, Changed(), Refused("no party waits for this leg")]
        if not self._up(agent):
            return [*out, StopPlaying(held), Changed()]
        return [*out, *self._bridge(held, agent)]

    # -- hold and conferences ---------------------------------------------------------------------------

    def hold(self, leg: str, now: float, music: bool = True) -> list[CallCommand]:
        """Hatif held `leg` (its leg machine sent the re-INVITE): music to it."""
        return [PlayMusic(leg)] if music and self._up(leg) else []

    def resume(self, leg: str, now: float) -> list[CallCommand]:
        return [StopPlaying(leg)] if self._up(leg) else []

    def party_hold(self, leg: str, held: bool, now: float) -> list[CallCommand]:
        """A party held us from its phone: the one it talks to hears music until it resumes."""
        other = self.partner.get(leg)
        if other is None or not self._up(other):
            return []
        return [PlayMusic(other) if held else StopPlaying(other)]

    def join(self, leg: str, room: str, now: float) -> list[CallCommand]:
        """Put a leg in a named room (it leaves its partner; music or prompts stop)."""
        if not self._up(leg):
            return [Refused("an ended leg joins no conference")]
        out: list[CallCommand] = [*self._unbridge(leg), StopPlaying(leg)]
        before = self.rooms.get(leg)
        if before is not None and before != room:
            out.append(LeaveRoom(leg, before))
        self.rooms[leg] = room
        return [*out, JoinRoom(leg, room)]

    def leave(self, leg: str, now: float) -> list[CallCommand]:
        room = self.rooms.pop(leg, None)
        return [] if room is None else [LeaveRoom(leg, room)]

    # -- the end ----------------------------------------------------------------------------------------

    def leg_ended(self, leg: str, cause: str, now: float) -> list[CallCommand]:
        """A leg is over. An agent hanging up while it consults completes the transfer, as on a desk phone;
        the caller hanging up ends every other leg; the last leg's end ends the call."""
        if leg not in self.live:
            return []
        del self.live[leg]
        self.ended.add(leg)
        self.transferring.pop(leg, None)
        out = self.leave(leg, now)
        consulted = self.partner.get(leg)
        out += self._unbridge(leg)
        held = self.held_aside.pop(leg, None)
        if held is not None and self._up(held):
            if consulted is not None and self._up(consulted):
                out += self._bridge(held, consulted)
            else:
                out += [StopPlaying(held), Changed()]
        for agent, waiting in list(self.held_aside.items()):
            if waiting == leg:
                del self.held_aside[agent]
        if leg == self.caller:
            out += [HangupLeg(other, cause) for other in self.live]
        out.append(Changed())
        if not self.live and not self.over:
            self.over = True
            out.append(CallOver())
        return out
