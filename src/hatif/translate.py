"""The floor's own reports in the one event model: call control's `CallEvent` and the ACD router's events.

Call control and the ACD were written before `hatif.events` and still report in their own terms (a string
kind with a dict; the router's frozen outputs on its monotonic clock). Until they emit the typed events
themselves (issue 19's sans-IO call core), the composition root passes each report through here and
publishes what comes out. Reports that are internal to a call (DTMF digits, RTP latching, bridging) have no
event of their own and give None.

Times: both report monotonic loop seconds; `wall0` is the wall-clock time at loop time 0, so `wall0 + t` is
the event's `at`.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import events as ev
from .acd import model as acd
from .calls.api import CallEvent


def _str(data: Mapping[str, object], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _float(data: Mapping[str, object], key: str) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) else 0.0


def call_event(e: CallEvent, wall0: float) -> ev.Event | None:
    """The typed event of one call-control report, or None for a report internal to the call."""
    t, at, cid, lid = e.tenant, wall0 + e.time, e.call_id, e.leg_id
    d = e.data
    match e.kind:
        case "call.started":
            direction = "outbound" if d.get("target") == "originate" else "inbound"
            return ev.CallOffered(
                tenant=t,
                at=at,
                call_id=cid,
                leg_id=lid,
                caller=_str(d, "caller"),
                called=_str(d, "called"),
                direction=direction,
            )
        case "leg.ringing":
            return ev.LegRinging(tenant=t, at=at, call_id=cid, leg_id=lid, early_media=bool(d.get("early")))
        case "leg.answered":
            return ev.LegAnswered(tenant=t, at=at, call_id=cid, leg_id=lid)
        case "leg.held":
            return ev.LegHeld(tenant=t, at=at, call_id=cid, leg_id=lid, by=_str(d, "by", "party"))
        case "leg.resumed":
            return ev.LegResumed(tenant=t, at=at, call_id=cid, leg_id=lid, by=_str(d, "by", "party"))
        case "transfer":
            return ev.CallTransferred(
                tenant=t,
                at=at,
                call_id=cid,
                leg_id=lid,
                how=_str(d, "how", "blind"),
                target=_str(d, "target") or _str(d, "to"),
            )
        case "conference.joined" | "conference.left":
            return ev.CallConferenced(
                tenant=t,
                at=at,
                call_id=cid,
                leg_id=lid,
                room=_str(d, "conference"),
                joined=e.kind == "conference.joined",
            )
        case "record.done":
            return ev.CallRecorded(
                tenant=t, at=at, call_id=cid, leg_id=lid, path=_str(d, "path"), seconds=_float(d, "seconds")
            )
        case "leg.ended":
            return ev.LegEnded(tenant=t, at=at, call_id=cid, leg_id=lid, cause=_str(d, "cause", "normal"))
        case "call.ended":
            return ev.CallEnded(
                tenant=t,
                at=at,
                call_id=cid,
                leg_id=lid,
                cause=_str(d, "outcome", "normal"),
                seconds=_float(d, "duration"),
            )
    return None


def router_events(tenant: str, e: acd.RouterOutput, wall0: float, *, by: str | None = None,
                  wrapup: tuple[str, float | None] | None = None, queues: tuple[str, ...] = ()) -> list[ev.Event]:
    """The typed events of one ACD router event (none for the router's internal steps).

    `by` is who forced an agent's state change (a supervisor; None when the agent or a call did); `wrapup` is the
    queue and seconds of after-call work (None: until the agent says done) when the change starts it; `queues`
    are those an agent logs in to or out of."""
    if isinstance(e, acd.AgentStateChanged):
        at = wall0 + e.at
        out: list[ev.Event] = []
        if e.old is acd.AgentState.LOGGED_OUT:
            out.append(ev.AgentLoggedIn(tenant=tenant, at=at, agent=e.agent, queues=queues))
        if e.old is acd.AgentState.AFTER_CALL_WORK:
            out.append(ev.WrapUpEnded(tenant=tenant, at=at, agent=e.agent))
        out.append(ev.AgentStateChanged(tenant=tenant, at=at, agent=e.agent, state=e.new.value,
                                        reason=e.reason or None, by=by))
        if e.new is acd.AgentState.AFTER_CALL_WORK and wrapup is not None:
            out.append(ev.WrapUpStarted(tenant=tenant, at=at, agent=e.agent, queue=wrapup[0],
                                        seconds=round(wrapup[1], 3) if wrapup[1] is not None else 0.0))
        if e.new is acd.AgentState.LOGGED_OUT:
            out.append(ev.AgentLoggedOut(tenant=tenant, at=at, agent=e.agent, queues=queues))
        return out
    if isinstance(e, acd.MissedInARow):
        return [ev.OfferMissed(tenant=tenant, at=wall0 + e.at, agent=e.agent, queue=e.queue, call_id=e.call_id,
                               in_a_row=e.in_a_row)]
    if not isinstance(e, acd.QueueEvent):
        return []  # an action for the shell, not something that happened
    at, queue, cid = wall0 + e.at, e.queue, e.call_id
    if isinstance(e, acd.CallEntered):
        return [
            ev.QueueEntered(tenant=tenant, at=at, queue=queue, call_id=cid, position=e.position, priority=e.priority)
        ]
    if isinstance(e, acd.CallOffered):
        return [ev.QueueOffered(tenant=tenant, at=at, queue=queue, call_id=cid, agent=agent) for agent in e.agents]
    if isinstance(e, acd.CallAnswered):
        return [
            ev.QueueAnswered(tenant=tenant, at=at, queue=queue, call_id=cid, agent=e.agent, waited=round(e.wait, 3))
        ]
    if isinstance(e, acd.CallAbandoned):
        return [
            ev.QueueAbandoned(
                tenant=tenant, at=at, queue=queue, call_id=cid, waited=round(e.wait, 3), position=e.position
            )
        ]
    if isinstance(e, acd.CallOverflowed):
        return [ev.QueueOverflowed(tenant=tenant, at=at, queue=queue, call_id=cid, to=e.to, reason="rule")]
    if isinstance(e, acd.CallExited):
        return [ev.QueueOverflowed(tenant=tenant, at=at, queue=queue, call_id=cid, to="", reason=e.reason.value)]
    if isinstance(e, acd.CallbackRequested):
        return [ev.CallbackRequested(tenant=tenant, at=at, queue=queue, call_id=cid)]
    if isinstance(e, acd.CallbackAnswered):
        return [ev.CallbackKept(tenant=tenant, at=at, queue=queue, call_id=cid, agent=e.agent)]
    return []
