"""Agent state requests as events between two ACD services (two "nodes"), each with its own bus and outbox over one
shared in-memory log, the relay between them a loop callback: every node applies every request, in the log's
order; only the origin reports what its router did; the router's own not-ready after missed offers is shared."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from hatif.acd import AgentState, AgentStateChanged, RouterOutput
from hatif.acd.service import AcdService
from hatif.acd.settings import AgentSettings, QueueSettings
from hatif.acd.states import StateRefused, StateRequest, StateRules, WorkState
from hatif.bus import Bus, accepting
from hatif.events import STREAMS, AgentStateRequested, Event
from hatif.outbox import Outbox

S, W = AgentState, WorkState
RULES = StateRules(("break", "lunch"), require_reason=True, missed_in_a_row=1)


class MemoryLog:
    """The store's event log in memory: numbers each stream, shared by the nodes."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Event]] = {s: [] for s in STREAMS}
        self.lock = threading.Lock()

    def append(self, events: Sequence[Event]) -> list[Event]:
        with self.lock:
            out = []
            for e in events:
                kept = self.streams[e.STREAM]
                kept.append(e.numbered(len(kept) + 1))
                out.append(kept[-1])
            return out

    def since(self, stream: str, seq: int, *, limit: int = 1000, tenant: str | None = None) -> list[Event]:
        with self.lock:
            return [e for e in self.streams[stream] if e.seq > seq and tenant in (None, e.tenant)][:limit]

    def last(self) -> dict[str, int]:
        with self.lock:
            return {s: len(v) for s, v in self.streams.items()}


class Relay:
    def __init__(self) -> None:
        self.to: Outbox | None = None

    def publish(self, event: Event) -> None:
        assert self.to is not None
        asyncio.get_running_loop().call_soon(self.to.arrive, event)


class Node:
    def __init__(self, name: str, log: MemoryLog, relay: Relay, listen: bool = True) -> None:
        loop = asyncio.get_running_loop()
        control = SimpleNamespace(loop=loop, server=SimpleNamespace(
            directory=SimpleNamespace(language=lambda tenant, user: "en")))
        self.bus = Bus()
        self.outbox = Outbox(self.bus, log, relay=relay)
        self.acd = AcdService(control, "acme", (QueueSettings(name="sales", wrapup=5.0, ring_timeout=10.0),),  # type: ignore[arg-type]
                              (AgentSettings(user="a1", queues=("sales",)),  # type: ignore[arg-type]
                               AgentSettings(user="a2", queues=("sales",))),  # type: ignore[arg-type]
                              store=None, rules=RULES, publish=self.outbox.emit, node=name)
        self.reported: list[RouterOutput] = []
        self.acd.listeners.append(lambda e, _: self.reported.append(e))
        if listen:
            self.bus.listen(self.acd.on_event, accepting(["agents"], tenant="acme", types=(AgentStateRequested,)))

    def state(self, agent: str = "a1") -> tuple[AgentState, str]:
        status = self.acd.router.agent_status(agent)
        return status.state, status.reason

    def changes(self) -> list[tuple[str, AgentState]]:
        return [(e.agent, e.new) for e in self.reported if isinstance(e, AgentStateChanged)]


async def _nodes() -> tuple[Node, Node, MemoryLog]:
    log, to_b, to_a = MemoryLog(), Relay(), Relay()
    a, b = Node("a", log, to_b), Node("b", log, to_a)
    to_b.to, to_a.to = b.outbox, a.outbox
    await a.outbox.start()
    await b.outbox.start()
    return a, b, log


async def _settle(*nodes: Node, seq: int) -> None:
    for _ in range(200):  # bounded: 2 s
        if all(n.acd.applied >= seq for n in nodes):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not applied everywhere: {[n.acd.applied for n in nodes]} < {seq}")


async def _close(*nodes: Node) -> None:
    for n in nodes:
        await n.outbox.close()
        await n.acd.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_a_request_on_one_node_is_applied_on_both_and_reported_once() -> None:
    async def main() -> None:
        a, b, log = await _nodes()
        try:
            view = await a.acd.request(StateRequest("a1", W.LOGGED_IN, "a1"))
            assert view.state == "available" and view.queues == ("sales",)
            view = await a.acd.request(StateRequest("a1", W.NOT_READY, "sup1", "lunch"))
            assert (view.state, view.reason) == ("not_ready", "lunch")
            await _settle(a, b, seq=2)
            assert a.state() == b.state() == (S.NOT_READY, "lunch")
            assert a.changes() == [("a1", S.AVAILABLE), ("a1", S.NOT_READY)]
            assert b.changes() == []  # the origin reports; b applied quietly
            assert b.acd.view("a1") is not None and b.acd.view("a1").reason == "lunch"  # type: ignore[union-attr]
            requested = log.since("agents", 0)
            assert [(e.state, e.by, e.origin) for e in requested] == [  # type: ignore[attr-defined]
                ("logged_in", "a1", "a"), ("not_ready", "sup1", "a")]
        finally:
            await _close(a, b)
    run(main())


def test_refused_requests_change_nothing_anywhere() -> None:
    async def main() -> None:
        a, b, log = await _nodes()
        try:
            with pytest.raises(StateRefused, match="log in first"):
                await a.acd.request(StateRequest("a1", W.AVAILABLE, "a1"))
            with pytest.raises(StateRefused, match="reason is required"):
                await b.acd.request(StateRequest("a1", W.NOT_READY, "a1"))
            with pytest.raises(StateRefused, match="no agent 'zz'"):
                await b.acd.request(StateRequest("zz", W.LOGGED_IN, "zz"))
            assert log.since("agents", 0) == []
        finally:
            await _close(a, b)
    run(main())


def test_conflicting_requests_on_two_nodes_end_the_same_on_both() -> None:
    async def main() -> None:
        a, b, log = await _nodes()
        try:
            await a.acd.request(StateRequest("a1", W.LOGGED_IN, "a1"))
            await _settle(a, b, seq=1)
            for reason in ("lunch", "break", "lunch"):
                await asyncio.gather(a.acd.request(StateRequest("a1", W.NOT_READY, "sup1", reason)),
                                     b.acd.request(StateRequest("a1", W.AVAILABLE, "sup2")))
            await _settle(a, b, seq=7)
            assert a.state() == b.state()
            last = log.since("agents", 6)[-1]
            assert isinstance(last, AgentStateRequested)
            assert a.state()[0] is (S.AVAILABLE if last.state == "available" else S.NOT_READY)
        finally:
            await _close(a, b)
    run(main())


def test_the_routers_not_ready_after_a_missed_offer_reaches_the_other_node() -> None:
    async def main() -> None:
        a, b, log = await _nodes()
        try:
            await a.acd.request(StateRequest("a1", W.LOGGED_IN, "a1"))
            await _settle(a, b, seq=1)
            now = a.acd.loop.time()
            a.acd._apply(a.acd.router.enqueue("c1", "sales", now))  # a call on node a only, offered to a1
            a.acd._apply(a.acd.router.tick(now + 10.0))  # it rang out
            assert a.state() == (S.NOT_READY, "missed")
            await _settle(a, b, seq=2)
            assert b.state() == (S.NOT_READY, "missed")
            shared = log.since("agents", 1)
            assert [(e.state, e.reason, e.by) for e in shared] == [  # type: ignore[attr-defined]
                ("not_ready", "missed", "acd")]
            assert a.changes().count(("a1", S.NOT_READY)) == 1  # its echo changed nothing on a
        finally:
            await _close(a, b)
    run(main())


def test_feature_codes_take_the_shared_path() -> None:
    from hatif.services import Services

    async def main() -> None:
        a, b, log = await _nodes()
        said: list[str] = []

        async def say(text: str) -> None:
            said.append(text)

        call = SimpleNamespace(tenant="acme", caller=SimpleNamespace(party="a1"), language="en", say=say,
                               outcome="")
        services = Services(config=None, control=None, store=None, acd={"acme": a.acd})  # type: ignore[arg-type]
        try:
            await services._agent(call, "login")  # type: ignore[arg-type]
            await services._agent(call, "pause:lunch")  # type: ignore[arg-type]
            await _settle(a, b, seq=2)
            assert b.state() == (S.NOT_READY, "lunch")
            await services._agent(call, "pause")  # type: ignore[arg-type]  # the tenant requires a reason
            await services._agent(call, "ready")  # type: ignore[arg-type]
            await _settle(a, b, seq=3)
            assert a.state()[0] is b.state()[0] is S.AVAILABLE
            assert [(e.state, e.by) for e in log.since("agents", 0)] == [  # type: ignore[attr-defined]
                ("logged_in", "a1"), ("not_ready", "a1"), ("available", "a1")]
            assert len(said) == 4
        finally:
            await _close(a, b)
    run(main())


def test_a_node_that_starts_later_replays_the_agreed_states_then_follows() -> None:
    from hatif.services import Services

    async def main() -> None:
        a, b, log = await _nodes()
        late: Node | None = None
        try:
            await a.acd.request(StateRequest("a1", W.LOGGED_IN, "a1"))
            await a.acd.request(StateRequest("a2", W.NOT_READY, "sup1", "break"))
            await b.acd.request(StateRequest("a1", W.NOT_READY, "a1", "lunch"))
            to_late = Relay()
            late = Node("c", log, Relay(), listen=False)
            to_late.to = late.outbox
            a.outbox.relay = to_late  # from now on, a's events reach the late node too
            await late.outbox.start()
            services = Services(config=None, control=None, store=None,  # type: ignore[arg-type]
                                bus=late.bus, outbox=late.outbox)
            await services._follow_agent_states(late.acd)
            assert late.state("a1") == (S.NOT_READY, "lunch") and late.state("a2") == (S.NOT_READY, "break")
            assert late.changes() == []  # replayed quietly: reported when they happened
            await a.acd.request(StateRequest("a1", W.AVAILABLE, "a1"))
            await _settle(a, late, seq=4)
            assert late.state("a1") == (S.AVAILABLE, "set_ready")
        finally:
            await _close(a, b, *([late] if late is not None else []))
    run(main())
