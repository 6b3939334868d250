"""Routing strategies: each one through the router with a fake clock, and the agent pools on their own."""

from __future__ import annotations

import random
from collections import Counter

from hatif.acd import (
    MISSED,
    AgentProfile,
    AgentState,
    AgentStateChanged,
    CancelOffer,
    Offer,
    QueueConfig,
    QueueMembership,
    Router,
    RouterOutput,
    SkillRequirement,
    Strategy,
)
from hatif.acd.strategies import (
    HeapPool,
    RandomPool,
    RingAllPool,
    RoundRobinMemory,
    RoundRobinPool,
    make_pool,
    rank_for,
)


def offered(out: list[RouterOutput]) -> tuple[str, ...]:
    offers = [o for o in out if isinstance(o, Offer)]
    assert len(offers) == 1, out
    return offers[0].agents


def serve(r: Router, call_id: str, now: float) -> str:
    """Enqueue a call, let the one agent offered answer it and hang up at once; return that agent."""
    (chosen,) = offered(r.enqueue(call_id, "q", now))
    r.offer_answered(call_id, chosen, now)
    r.call_ended(call_id, now)
    return chosen


def center(strategy: Strategy, agents: list[str], requirements: tuple[SkillRequirement, ...] = (),
           seed: int = 0) -> Router:
    r = Router([QueueConfig("q", strategy=strategy, requirements=requirements)], rng=random.Random(seed))
    for i, a in enumerate(agents):
        r.agent_login(AgentProfile(a), ["q"], float(i))
    return r


def test_longest_idle() -> None:
    r = center(Strategy.LONGEST_IDLE, ["a1", "a2", "a3"])
    assert [serve(r, f"c{i}", 10.0 + i) for i in range(4)] == ["a1", "a2", "a3", "a1"]


def test_longest_idle_keeps_idle_time_when_an_offer_is_cancelled() -> None:
    r = center(Strategy.LONGEST_IDLE, ["a1", "a2"])
    assert offered(r.enqueue("c1", "q", 10.0)) == ("a1",)
    r.abandon("c1", 11.0)  # a1 rang but never talked: still the longest idle
    assert offered(r.enqueue("c2", "q", 12.0)) == ("a1",)


def test_round_robin_with_memory() -> None:
    r = center(Strategy.ROUND_ROBIN, ["a1", "a2", "a3"])
    assert offered(r.enqueue("long", "q", 5.0)) == ("a1",)
    r.offer_answered("long", "a1", 5.0)
    assert [serve(r, "c-1", 6.0), serve(r, "c-2", 7.0)] == ["a2", "a3"]
    r.call_ended("long", 8.0)
    # a1 has been free the shortest time, yet it is next in the ring after a3 (longest idle would pick a2).
    assert [serve(r, "c-3", 9.0), serve(r, "c-4", 9.5)] == ["a1", "a2"]
    # Every agent is free before each call; the ring remembers where it stopped.
    assert [serve(r, f"c{i}", 10.0 + i) for i in range(5)] == ["a3", "a1", "a2", "a3", "a1"]
    assert offered(r.enqueue("busy", "q", 20.0)) == ("a2",)
    r.offer_answered("busy", "a2", 20.0)
    assert serve(r, "c5", 21.0) == "a3"
    assert serve(r, "c6", 22.0) == "a1"
    assert serve(r, "c7", 23.0) == "a3"  # a2 is still busy: skipped


def test_fewest_calls() -> None:
    r = center(Strategy.FEWEST_CALLS, ["a1", "a2"])
    r.agent_set_not_ready("a2", "coaching", 2.0)
    assert [serve(r, "c1", 3.0), serve(r, "c2", 4.0)] == ["a1", "a1"]
    r.agent_set_ready("a2", 5.0)
    r.agent_login(AgentProfile("a3"), ["q"], 6.0)
    # a1 is idle longest but has answered two calls; a2 and a3 none (a2 free since earlier).
    assert [serve(r, "c3", 7.0), serve(r, "c4", 8.0), serve(r, "c5", 9.0)] == ["a2", "a3", "a2"]


def test_ring_all_rings_the_best_penalty_group_and_first_answer_wins() -> None:
    r = Router([QueueConfig("q", strategy=Strategy.RING_ALL)])
    r.agent_login(AgentProfile("a1"), ["q"], 0.0)
    r.agent_login(AgentProfile("a2"), ["q"], 1.0)
    r.agent_login(AgentProfile("backup"), [QueueMembership("q", penalty=1)], 2.0)
    assert offered(r.enqueue("c1", "q", 10.0)) == ("a1", "a2")
    out = r.offer_answered("c1", "a2", 11.0)
    assert CancelOffer("c1", ("a1",), "answered elsewhere") in out
    assert AgentStateChanged("a1", AgentState.RINGING, AgentState.AVAILABLE, "cancel_offer", 11.0) in out
    assert offered(r.enqueue("c2", "q", 12.0)) == ("a1",)
    assert offered(r.enqueue("c3", "q", 13.0)) == ("backup",)
    # Nobody answers c2: every agent it rang missed it.
    out = r.tick(27.0)
    assert AgentStateChanged("a1", AgentState.RINGING, AgentState.NOT_READY, MISSED, 27.0) in out
    r.check_invariants()


def test_random_is_reproducible_from_the_seed_and_spreads_calls() -> None:
    agents = ["a1", "a2", "a3", "a4"]

    def picks(seed: int) -> list[str]:
        r = center(Strategy.RANDOM, agents, seed=seed)
        return [serve(r, f"c{i}", 10.0 + i) for i in range(400)]

    first = picks(1)
    assert first == picks(1)
    assert first != picks(2)
    counts = Counter(first)
    # 400 draws of 4 equally likely agents: each count is 100 +- 8.7 (1 sd); 60..140 is beyond 4.5 sd.
    assert set(counts) == set(agents) and all(60 <= n <= 140 for n in counts.values()), counts


def test_best_skill_match() -> None:
    needs = (SkillRequirement("sales", 3), SkillRequirement("billing", 1))
    r = Router([QueueConfig("q", strategy=Strategy.BEST_SKILL_MATCH, requirements=needs)])
    r.agent_login(AgentProfile("x", {"sales": 9, "billing": 1}), ["q"], 0.0)  # score 10
    r.agent_login(AgentProfile("y", {"sales": 5, "billing": 8}), ["q"], 1.0)  # score 13
    r.agent_login(AgentProfile("z", {"sales": 3, "billing": 2, "french": 10}), ["q"], 2.0)  # score 5
    r.agent_login(AgentProfile("w", {"sales": 8, "billing": 2}), ["q"], 3.0)  # score 10, idle less than x
    order = []
    for i in range(4):
        (chosen,) = offered(r.enqueue(f"c{i}", "q", 10.0 + i))
        r.offer_answered(f"c{i}", chosen, 10.0 + i)
        order.append(chosen)
    assert order == ["y", "x", "w", "z"]


# --- the pools -----------------------------------------------------------------------------------

def test_rank_for_each_strategy() -> None:
    def rank(s: Strategy) -> tuple[float, ...]:
        return rank_for(s, idle_since=5.0, calls_taken=3, skill_score=12, ordinal=7)

    assert rank(Strategy.LONGEST_IDLE) == (5.0,)
    assert rank(Strategy.FEWEST_CALLS) == (3, 5.0)
    assert rank(Strategy.BEST_SKILL_MATCH) == (-12, 5.0)
    assert rank(Strategy.ROUND_ROBIN) == (7,)
    memory = RoundRobinMemory()
    kinds = {s: type(make_pool(s, random.Random(0), memory)) for s in Strategy}
    assert kinds[Strategy.ROUND_ROBIN] is RoundRobinPool and kinds[Strategy.RANDOM] is RandomPool
    assert kinds[Strategy.RING_ALL] is RingAllPool and kinds[Strategy.LONGEST_IDLE] is HeapPool


def test_heap_pool_forgets_lazily_and_stays_correct_under_churn() -> None:
    pool = HeapPool()
    rng = random.Random(5)
    live: dict[str, tuple[int, tuple[float, ...]]] = {}
    for step in range(5_000):
        agent = f"a{rng.randrange(40)}"
        if agent in live:
            pool.discard(agent)
            del live[agent]
        else:
            live[agent] = (rng.randrange(3), (float(step),))
            pool.add(agent, *live[agent])
        assert len(pool) == len(live)
        best = min(live, key=lambda a: (*live[a], a), default=None) if live else None
        assert pool.pick() == best
    assert all(a in pool for a in live) and not any(f"a{i}" in pool for i in range(40) if f"a{i}" not in live)


def test_round_robin_pool_wraps_and_respects_penalty() -> None:
    memory = RoundRobinMemory()
    pool = RoundRobinPool(memory)
    for ordinal, agent in enumerate(["a", "b", "c"]):
        pool.add(agent, 0, (ordinal,))
    pool.add("spare", 1, (3,))
    memory.last = 1
    assert pool.pick() == "c"
    memory.last = 2
    assert pool.pick() == "a"
    for agent in ("a", "b", "c"):
        pool.discard(agent)
    assert pool.pick() == "spare" and len(pool) == 1
    pool.discard("spare")
    pool.discard("spare")
    assert pool.pick() is None


def test_random_pool_draws_only_from_the_best_penalty_group() -> None:
    pool = RandomPool(random.Random(3))
    for i in range(10):
        pool.add(f"a{i}", i % 2, (0.0,))
    for i in (0, 4, 8):
        pool.discard(f"a{i}")
    draws = {pool.pick() for _ in range(200)}
    assert draws == {"a2", "a6"}
    pool.discard("a2")
    pool.discard("a6")
    assert {pool.pick() for _ in range(200)} == {"a1", "a3", "a5", "a7", "a9"}
    assert len(pool) == 5 and "a1" in pool and "a0" not in pool


def test_ring_all_pool_groups() -> None:
    pool = RingAllPool()
    pool.add("late", 0, (9.0,))
    pool.add("early", 0, (1.0,))
    pool.add("spare", 2, (0.0,))
    assert pool.ring_group() == ("early", "late")
    assert pool.pick() == "early"
    pool.discard("early")
    pool.discard("late")
    assert pool.ring_group() == ("spare",)
    pool.discard("spare")
    assert pool.ring_group() == () and pool.pick() is None
