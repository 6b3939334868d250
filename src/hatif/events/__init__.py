"""The one event model (issue 11, first step): every state change Hatif reports is one frozen, typed event.

An event says what happened to what, in which tenant, and when (`at`, wall-clock seconds since the epoch). It
belongs to one *stream* (`calls`, `queues`, `agents`, `users`, `config`) and gets that stream's next sequence
number when the bus publishes it (`seq`; 0 until then), so a consumer that reconnects asks for what came
after the last number it saw. `SCHEMA` is the version of the event's fields: a field is only ever added with a
default, and a change that is not that raises the version.

Events travel as plain dicts (`to_dict` / `from_dict`): `{"event": NAME, "schema": N, "seq": ..., ...fields}`,
the form the durable outbox, the NATS adapter and the WebSocket feed carry. `docs/events.md` lists every event.
This layer imports nothing of Hatif.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, dataclass_transform

from ..errors import HatifError

STREAMS = {"calls": "call.", "queues": "queue.", "agents": "agent.", "users": "user.", "config": "config."}
"""Each stream and the prefix of its events' names."""

E = TypeVar("E", bound="Event")
_BY_NAME: dict[str, type[Event]] = {}


class EventError(HatifError, ValueError):
    """A dict that is not an event this version knows (unknown name, newer schema, missing or wrong field)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The fields every event has. Subclasses set `NAME` (dotted, stream first) and `STREAM`."""

    NAME: ClassVar[str] = ""
    STREAM: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1

    tenant: str
    at: float
    seq: int = 0

    def numbered(self: E, seq: int) -> E:
        return dataclasses.replace(self, seq=seq)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.NAME, "schema": self.SCHEMA}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, dict) else value
        return out


def event_types() -> dict[str, type[Event]]:
    """Every event class by name, in the order they are defined."""
    return dict(_BY_NAME)


def from_dict(data: dict[str, Any]) -> Event:
    """The event `to_dict` made; `EventError` names what is wrong with anything else."""
    name = data.get("event")
    cls = _BY_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EventError(f"unknown event {name!r}")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or schema > cls.SCHEMA:
        raise EventError(f"{name}: schema {schema!r} is newer than this version's {cls.SCHEMA}")
    names = {f.name for f in dataclasses.fields(cls)}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    try:
        return cls(**fields)
    except TypeError as e:
        raise EventError(f"{name}: {e}") from None


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def event(cls: type[E]) -> type[E]:
    """Makes `cls` a frozen event class and registers it by its `NAME` (unique, starting with its stream)."""
    made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    if made.STREAM not in STREAMS or not made.NAME.startswith(STREAMS[made.STREAM]):
        raise TypeError(f"{made.__name__}: NAME {made.NAME!r} must start with its stream's prefix")
    if made.NAME in _BY_NAME:
        raise TypeError(f"{made.__name__}: event name {made.NAME!r} is taken by {_BY_NAME[made.NAME].__name__}")
    _BY_NAME[made.NAME] = made
    return made


# -- calls and legs --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CallEventBase(Event):
    STREAM: ClassVar[str] = "calls"
    call_id: str
    leg_id: str | None = None


@event
class CallOffered(CallEventBase):
    """A call came in (or Hatif placed one): who from, to what number."""
    NAME: ClassVar[str] = "call.offered"
    caller: str = ""
    called: str = ""
    direction: str = "inbound"


@event
class LegRinging(CallEventBase):
    """A leg Hatif placed is ringing (180), with early media (183) or not."""
    NAME: ClassVar[str] = "call.leg.ringing"
    early_media: bool = False


@event
class LegAnswered(CallEventBase):
    """A leg was answered (200 to an INVITE, or Hatif answered the caller)."""
    NAME: ClassVar[str] = "call.leg.answered"


@event
class LegHeld(CallEventBase):
    """A leg was put on hold, by its phone (a sendonly re-INVITE) or by Hatif (it hears music)."""
    NAME: ClassVar[str] = "call.leg.held"
    by: str = "party"  # "party" (the phone held) or "hatif"


@event
class LegResumed(CallEventBase):
    """A held leg was taken off hold."""
    NAME: ClassVar[str] = "call.leg.resumed"
    by: str = "party"


@event
class CallTransferred(CallEventBase):
    """A transfer began (consult) or completed (blind, attended), and to whom."""
    NAME: ClassVar[str] = "call.transferred"
    how: str = "blind"  # blind, consult, attended
    target: str = ""


@event
class CallConferenced(CallEventBase):
    """A leg joined or left a conference room."""
    NAME: ClassVar[str] = "call.conferenced"
    room: str = ""
    joined: bool = True


@event
class CallRecorded(CallEventBase):
    """A recording of the call (or of a leg) was finished and written."""
    NAME: ClassVar[str] = "call.recorded"
    path: str = ""
    seconds: float = 0.0


@event
class LegEnded(CallEventBase):
    """A leg ended and why (normal, busy, no_answer, cancelled, rtp_timeout, session_expired, ...)."""
    NAME: ClassVar[str] = "call.leg.ended"
    cause: str = "normal"


@event
class CallEnded(CallEventBase):
    """The call ended: its last leg is gone; the cause and how long it lasted."""
    NAME: ClassVar[str] = "call.ended"
    cause: str = "normal"
    seconds: float = 0.0


# -- queues ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEventBase(Event):
    STREAM: ClassVar[str] = "queues"
    queue: str
    call_id: str


@event
class QueueEntered(QueueEventBase):
    """A call joined a queue at a position, with a priority."""
    NAME: ClassVar[str] = "queue.entered"
    position: int = 1
    priority: int = 0


@event
class QueuePosition(QueueEventBase):
    """A waiting call moved up in its queue."""
    NAME: ClassVar[str] = "queue.position"
    position: int = 1


@event
class QueueOffered(QueueEventBase):
    """The router offered a waiting call to an agent."""
    NAME: ClassVar[str] = "queue.offered"
    agent: str = ""


@event
class QueueAnswered(QueueEventBase):
    """An agent answered a queued call, after the caller waited this long."""
    NAME: ClassVar[str] = "queue.answered"
    agent: str = ""
    waited: float = 0.0


@event
class QueueAbandoned(QueueEventBase):
    """The caller hung up while waiting."""
    NAME: ClassVar[str] = "queue.abandoned"
    waited: float = 0.0
    position: int = 1


@event
class QueueOverflowed(QueueEventBase):
    """A call left its queue for another destination (timeout, no agents, full)."""
    NAME: ClassVar[str] = "queue.overflowed"
    to: str = ""
    reason: str = ""


@event
class CallbackRequested(QueueEventBase):
    """A waiting caller asked to be called back and left the queue, keeping their place."""
    NAME: ClassVar[str] = "queue.callback.requested"
    number: str = ""


@event
class CallbackKept(QueueEventBase):
    """The kept callback was placed and an agent took it."""
    NAME: ClassVar[str] = "queue.callback.kept"
    agent: str = ""


# -- agents ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEventBase(Event):
    STREAM: ClassVar[str] = "agents"
    agent: str


@event
class AgentLoggedIn(AgentEventBase):
    """An agent logged in to these queues."""
    NAME: ClassVar[str] = "agent.logged_in"
    queues: tuple[str, ...] = ()


@event
class AgentLoggedOut(AgentEventBase):
    """An agent logged out of these queues."""
    NAME: ClassVar[str] = "agent.logged_out"
    queues: tuple[str, ...] = ()


@event
class AgentStateChanged(AgentEventBase):
    """available, not_ready (with the tenant's reason code), busy, wrap_up."""
    NAME: ClassVar[str] = "agent.state"
    state: str = "available"
    reason: str | None = None
    by: str | None = None  # the supervisor who forced it, if one did


@event
class AgentStateRequested(AgentEventBase):
    """Someone asked for an agent's work state: logged_in (to `queues`, None: all of its queues), available,
    not_ready (with `reason`) or logged_out. `by` is who asked (the agent, a supervisor, "acd" when the router
    made the agent not ready after missed offers); `origin` is the node that took the request. Every node
    applies it to its own router, in the stream's order; the resulting `agent.state` comes from the origin."""
    NAME: ClassVar[str] = "agent.state.requested"
    state: str = "available"
    reason: str | None = None
    queues: tuple[str, ...] | None = None
    by: str = ""
    origin: str = ""


@event
class WrapUpStarted(AgentEventBase):
    """After-call work began, for this many seconds (the queue's setting)."""
    NAME: ClassVar[str] = "agent.wrap_up.started"
    queue: str = ""
    seconds: float = 0.0


@event
class WrapUpEnded(AgentEventBase):
    """After-call work ended; the agent is available again unless paused."""
    NAME: ClassVar[str] = "agent.wrap_up.ended"
    queue: str = ""


@event
class OfferMissed(AgentEventBase):
    """An agent let an offered call ring out; how many in a row."""
    NAME: ClassVar[str] = "agent.offer.missed"
    queue: str = ""
    call_id: str = ""
    in_a_row: int = 1


# -- users and configuration ------------------------------------------------------------------------------

@event
class UserChanged(Event):
    """A person was added, changed (roles, password, lock-out) or removed; `change` says which."""
    NAME: ClassVar[str] = "user.changed"
    STREAM: ClassVar[str] = "users"
    user: str
    change: str = "added"  # added, changed, removed, locked, unlocked
    by: str | None = None


@event
class ConfigChanged(Event):
    """A configuration object (a queue, a flow, a trunk, ...) was created, changed or deleted at run time."""
    NAME: ClassVar[str] = "config.changed"
    STREAM: ClassVar[str] = "config"
    kind: str
    name: str
    change: str = "changed"  # created, changed, deleted
    by: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
