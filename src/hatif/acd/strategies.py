"""Routing strategies: ordered pools of available agents, one pool per kind of call in a queue.

The router keeps, for every queue, overflow level and language, a pool of the agents who are AVAILABLE
and fit such a call. A call that arrives takes `pick()` (or the whole `ring_group()` for ring-all) from
the first non-empty pool it may use, so no decision scans all agents. Within a pool agents are grouped
by their queue *penalty*: the lowest penalty with anyone in it is served first (as Asterisk's
`app_queue` does); the strategy orders agents inside that group.

A pool is told `add` when an agent becomes available and `discard` when it stops being so. The heap
pool forgets lazily: `discard` only drops the agent from a dict, and stale heap entries are skipped (and
now and then compacted away), so the hot path is a dict operation per pool.
"""

from __future__ import annotations

import heapq
import random
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right, insort

from .model import Strategy

Rank = tuple[float, ...]


def rank_for(strategy: Strategy, *, idle_since: float, calls_taken: int, skill_score: int,
             ordinal: int) -> Rank:
    """The order of an agent inside its penalty group: smaller first.

    `idle_since` is when the agent last became available after a call or a break, `calls_taken` the calls
    of this queue it answered, `skill_score` its total proficiency in the queue's required skills, and
    `ordinal` its fixed place in the queue's round-robin ring.
    """
    if strategy is Strategy.FEWEST_CALLS:
        return (calls_taken, idle_since)
    if strategy is Strategy.BEST_SKILL_MATCH:
        return (-skill_score, idle_since)
    if strategy is Strategy.ROUND_ROBIN:
        return (ordinal,)
    return (idle_since,)


class AgentPool(ABC):
    """The available agents fit for one kind of call, in the order the queue's strategy gives."""

    __slots__ = ()

    @abstractmethod
    def add(self, agent_id: str, penalty: int, rank: Rank) -> None:
        """The agent became available (it must not be in the pool already)."""

    @abstractmethod
    def discard(self, agent_id: str) -> None:
        """The agent is no longer available (no-op when it is not in the pool)."""

    @abstractmethod
    def pick(self) -> str | None:
        """The agent to offer the next call to, left in the pool; None when the pool is empty."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, agent_id: object) -> bool: ...

    def ring_group(self) -> tuple[str, ...]:
        """The agents to ring at once: one, except for ring-all."""
        chosen = self.pick()
        return () if chosen is None else (chosen,)


class HeapPool(AgentPool):
    """Longest idle, fewest calls and best skill match: a heap on (penalty, rank), lazily cleaned."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, Rank, int, str]] = []
        self._live: dict[str, int] = {}
        self._seq = 0

    def add(self, agent_id: str, penalty: int, rank: Rank) -> None:
        self._seq += 1
        self._live[agent_id] = self._seq
        heapq.heappush(self._heap, (penalty, rank, self._seq, agent_id))
        if len(self._heap) > 2 * len(self._live) + 64:
            live = self._live
            self._heap = [e for e in self._heap if live.get(e[3]) == e[2]]
            heapq.heapify(self._heap)

    def discard(self, agent_id: str) -> None:
        self._live.pop(agent_id, None)

    def pick(self) -> str | None:
        heap = self._heap
        live = self._live
        while heap:
            top = heap[0]
            if live.get(top[3]) == top[2]:
                return top[3]
            heapq.heappop(heap)
        return None

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._live


class RoundRobinMemory:
    """The ring position of the last agent a queue offered a call to, shared by the queue's pools."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = -1


class RoundRobinPool(AgentPool):
    """Round robin with memory: the first agent whose ring position follows the last one offered."""

    __slots__ = ("_agent_at", "_memory", "_tiers", "_where")

    def __init__(self, memory: RoundRobinMemory) -> None:
        self._memory = memory
        self._tiers: dict[int, list[int]] = {}
        self._agent_at: dict[int, str] = {}
        self._where: dict[str, tuple[int, int]] = {}

    def add(self, agent_id: str, penalty: int, rank: Rank) -> None:
        ordinal = int(rank[0])
        insort(self._tiers.setdefault(penalty, []), ordinal)
        self._agent_at[ordinal] = agent_id
        self._where[agent_id] = (penalty, ordinal)

    def discard(self, agent_id: str) -> None:
        where = self._where.pop(agent_id, None)
        if where is None:
            return
        penalty, ordinal = where
        tier = self._tiers[penalty]
        del tier[bisect_left(tier, ordinal)]
        del self._agent_at[ordinal]
        if not tier:
            del self._tiers[penalty]

    def pick(self) -> str | None:
        if not self._tiers:
            return None
        tier = self._tiers[min(self._tiers)]
        i = bisect_right(tier, self._memory.last)
        return self._agent_at[tier[i if i < len(tier) else 0]]

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._where


class RandomPool(AgentPool):
    """Any agent of the best penalty group, drawn from the router's seeded generator."""

    __slots__ = ("_rng", "_tiers", "_where")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._tiers: dict[int, list[str]] = {}
        self._where: dict[str, tuple[int, int]] = {}

    def add(self, agent_id: str, penalty: int, rank: Rank) -> None:
        tier = self._tiers.setdefault(penalty, [])
        self._where[agent_id] = (penalty, len(tier))
        tier.append(agent_id)

    def discard(self, agent_id: str) -> None:
        where = self._where.pop(agent_id, None)
        if where is None:
            return
        penalty, index = where
        tier = self._tiers[penalty]
        last = tier.pop()
        if last != agent_id:  # move the last one into the hole
            tier[index] = last
            self._where[last] = (penalty, index)
        if not tier:
            del self._tiers[penalty]

    def pick(self) -> str | None:
        if not self._tiers:
            return None
        return self._rng.choice(self._tiers[min(self._tiers)])

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._where


class RingAllPool(AgentPool):
    """Ring all: every agent of the best penalty group rings at once (listed longest idle first)."""

    __slots__ = ("_tiers", "_where")

    def __init__(self) -> None:
        self._tiers: dict[int, dict[str, Rank]] = {}
        self._where: dict[str, int] = {}

    def add(self, agent_id: str, penalty: int, rank: Rank) -> None:
        self._tiers.setdefault(penalty, {})[agent_id] = rank
        self._where[agent_id] = penalty

    def discard(self, agent_id: str) -> None:
        penalty = self._where.pop(agent_id, None)
        if penalty is None:
            return
        tier = self._tiers[penalty]
        del tier[agent_id]
        if not tier:
            del self._tiers[penalty]

    def ring_group(self) -> tuple[str, ...]:
        if not self._tiers:
            return ()
        tier = self._tiers[min(self._tiers)]
        return tuple(sorted(tier, key=lambda a: (tier[a], a)))

    def pick(self) -> str | None:
        group = self.ring_group()
        return group[0] if group else None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._where


def make_pool(strategy: Strategy, rng: random.Random, memory: RoundRobinMemory) -> AgentPool:
    """An empty pool for a queue using `strategy` (`memory` is the queue's round-robin position)."""
    if strategy is Strategy.ROUND_ROBIN:
        return RoundRobinPool(memory)
    if strategy is Strategy.RANDOM:
        return RandomPool(rng)
    if strategy is Strategy.RING_ALL:
        return RingAllPool()
    return HeapPool()
