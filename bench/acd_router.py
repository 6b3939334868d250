"""ACD routing decisions per second, and how fast a freed agent gets the next call, on one core.

    .venv/bin/python bench/acd_router.py

A center of 1,000 agents with 5 skills each (of 20, proficiency 1..10) and 1 to 3 languages, and 100
queues each needing two skills; a third of the queues widen their requirements after 30 s, a fifth
route by language (half preferring, half requiring). Agents serve every queue whose skills they have.

A *routing decision* is a router call that ends with an agent picked for a call: `enqueue` when
fitting agents are free (light load), or `call_ended` when calls are waiting (the agent, freed, is
given the next call at once). Both are timed call by call with `perf_counter`; the figure is decisions
divided by the time spent in them, best of five rounds of 40,000 decisions (as the other benchmarks, so
that other work on the machine weighs less). The latency is the same `call_ended` calls under a backlog
of about 5,000 waiting calls: from the agent hanging up to the `Offer` of its next call, 99th percentile
over all rounds, garbage collector on.

Prints two lines: `acd_router: N routing decisions/s ...` and `acd_router: agent free -> offer p99 ...`.
"""

from __future__ import annotations

import logging
import random
import sys
import time

from hatif.acd import (
    AgentProfile,
    LanguageMode,
    Offer,
    OverflowRule,
    QueueConfig,
    QueueMembership,
    Router,
    RouterOutput,
    SkillRequirement,
    Strategy,
    WidenSkills,
)

AGENTS = 1_000
QUEUES = 100
SKILLS = [f"skill{i:02d}" for i in range(20)]
LANGUAGES = ["en", "ar", "fa"]


def build(rng: random.Random) -> tuple[Router, list[AgentProfile], list[list[QueueMembership]], list[QueueConfig]]:
    strategies = [Strategy.LONGEST_IDLE] * 5 + [Strategy.FEWEST_CALLS, Strategy.BEST_SKILL_MATCH,
                                                 Strategy.ROUND_ROBIN, Strategy.RANDOM]
    queues = []
    for i in range(QUEUES):
        first, second = rng.sample(SKILLS, 2)
        requirements = (SkillRequirement(first, rng.randint(1, 4)), SkillRequirement(second, rng.randint(1, 4)))
        overflow = (OverflowRule(30.0, WidenSkills(requirements[:1])),) if i % 3 == 0 else ()
        language = (LanguageMode.PREFER if i % 10 == 0 else LanguageMode.REQUIRE) if i % 5 == 0 \
            else LanguageMode.IGNORE
        queues.append(QueueConfig(f"q{i:03d}", strategy=strategies[i % len(strategies)], requirements=requirements,
                                  overflow=overflow, language=language, wrapup=0.0))
    router = Router(queues, rng=random.Random(7))
    profiles, memberships = [], []
    for i in range(AGENTS):
        skills = {s: rng.randint(1, 10) for s in rng.sample(SKILLS, 5)}
        languages = frozenset(rng.sample(LANGUAGES, rng.randint(1, 3)))
        profile = AgentProfile(f"a{i:04d}", skills, languages)
        mine = [QueueMembership(q.name, rng.choice((0, 0, 0, 1))) for q in queues
                if all(r.skill in skills for r in q.requirements)]
        profiles.append(profile)
        memberships.append(mine)
    return router, profiles, memberships, queues


def offered(outputs: list[RouterOutput]) -> Offer | None:
    for o in outputs:
        if type(o) is Offer:
            return o
    return None


def one_round(router: Router, rng: random.Random, served: list[str], now: float, first_call: int,
              calls: int) -> tuple[int, float, list[float], float, int]:
    """`calls` light-load decisions, then `calls` hand-overs under a backlog, then the backlog drained.

    Returns the decisions made, the time spent making them, the hand-over latencies, the clock and the
    next call number.
    """
    clock = time.perf_counter
    decisions = 0
    spent = 0.0
    n = first_call
    # Light load: every call finds a free agent at once.
    for _ in range(calls):
        n += 1
        now += 0.01
        call = f"c{n}"
        t0 = clock()
        out = router.enqueue(call, rng.choice(served), now, language=rng.choice(LANGUAGES))
        dt = clock() - t0
        offer = offered(out)
        if offer is None:
            router.abandon(call, now)
            continue
        decisions += 1
        spent += dt
        router.offer_answered(call, offer.agents[0], now)
        router.call_ended(call, now)
    # Backlog: every agent busy and calls waiting; each hang-up hands the agent its next call.
    talking: dict[str, str] = {}
    waiting: set[str] = set()
    for _ in range(6 * AGENTS):
        n += 1
        out = router.enqueue(f"c{n}", rng.choice(served), now, language=rng.choice(LANGUAGES))
        offer = offered(out)
        if offer is None:
            waiting.add(f"c{n}")
        else:
            router.offer_answered(offer.call_id, offer.agents[0], now)
            talking[offer.agents[0]] = offer.call_id
    latencies = []
    agents = sorted(talking)
    for _ in range(calls):
        now += 0.01
        agent = rng.choice(agents)
        call = talking.pop(agent, None)
        if call is None:
            continue
        t0 = clock()
        out = router.call_ended(call, now)
        dt = clock() - t0
        offer = offered(out)
        if offer is not None:
            decisions += 1
            spent += dt
            latencies.append(dt)
            router.offer_answered(offer.call_id, agent, now)
            talking[agent] = offer.call_id
            waiting.discard(offer.call_id)
        n += 1
        out = router.enqueue(f"c{n}", rng.choice(served), now, language=rng.choice(LANGUAGES))
        if offered(out) is None:
            waiting.add(f"c{n}")
    # Back to an idle center for the next round.
    for call in sorted(waiting):
        router.abandon(call, now)
    for call in talking.values():
        router.call_ended(call, now)
    router.check_invariants()
    return decisions, spent, latencies, now, n


def main() -> None:
    rng = random.Random(2024)
    router, profiles, memberships, queues = build(rng)
    for profile, mine in zip(profiles, memberships, strict=True):
        router.agent_login(profile, mine, 0.0)
    served = [q.name for q in queues if any(q.name in {m.queue for m in mine} for mine in memberships)]
    now, n = 0.0, 0
    best_rate = 0.0
    handovers: list[float] = []
    for _ in range(5):
        decisions, spent, latencies, now, n = one_round(router, rng, served, now, n, 20_000)
        best_rate = max(best_rate, decisions / spent)
        handovers += latencies
    handovers.sort()
    p99 = handovers[int(0.99 * (len(handovers) - 1))]
    out = sys.stdout
    out.write(f"acd_router: {best_rate:,.0f} routing decisions/s "
              f"({AGENTS:,} agents, {QUEUES} queues, 5 skills/agent; best of 5 rounds)\n")
    out.write(f"acd_router: agent free -> offer p99 {p99 * 1e3:.3f} ms ({len(handovers):,} hand-overs, "
              "garbage collector on)\n")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
