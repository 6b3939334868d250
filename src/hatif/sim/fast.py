"""The fast simulator: a discrete-event run of the real ACD router on a virtual clock (no sockets).

Callers arrive per queue as Poisson processes, talk for exponential or lognormal handle times, and,
when the queue's traffic has a patience, hang up after an exponential patience if nobody answered.
Agents answer offers at once; wrap-up comes from the queue configuration and runs on the router's
own timers. Everything random is drawn from streams derived from one seed: one per traffic source
(arrivals, handle times, patience, priority, language, in arrival order) and one for the router, so two
runs of one scenario with different strategies see the very same callers (common random numbers).

Definitions, per arrival queue (a call that overflows stays counted where it arrived) and overall, over
the calls after the warm-up:

* `service_level` = calls answered within `answer_within` seconds of arriving / calls offered (every
  arrival, so abandoned, rejected and overflowed calls count as not answered in time);
* `asa` = mean wait of the answered calls; `abandonment_rate` = abandoned / offered;
* `waited` = calls not answered the moment they arrived / calls offered (Erlang's probability of wait);
* `occupancy` = agents' time ringing, talking or in after-call work over that time plus available time,
  between the first and the last counted arrival (NOT_READY time is left out).

Each figure comes with the half-width of its 95 % confidence interval by batch means (`batches.py`): the
counted calls are cut, in arrival order, into `batches` consecutive batches whose ratios are treated as
independent (Law & Kelton, *Simulation Modeling and Analysis*, §9.5.3).
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from ..acd import (
    AgentProfile,
    AgentState,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallExited,
    CallOverflowed,
    CallRejected,
    Offer,
    PlaceCallback,
    QueueConfig,
    QueueMembership,
    Router,
    RouterOutput,
    Strategy,
)
from ..acd.model import VOICEMAIL
from .batches import Estimate, estimates

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""`progress(done, total)`: calls arrived so far out of the scenario's calls."""


class HandleDistribution(enum.Enum):
    EXPONENTIAL = "exponential"
    LOGNORMAL = "lognormal"


@dataclass(frozen=True, slots=True)
class Traffic:
    """Callers of one queue: Poisson arrivals (`arrival_rate` per second) and what they are like.

    `handle_cv` is the coefficient of variation of lognormal handle times. `mean_patience` None means
    callers never hang up. `languages` is a mix of (language, weight); empty means no language.
    """

    queue: str
    arrival_rate: float
    mean_handle: float
    handle: HandleDistribution = HandleDistribution.EXPONENTIAL
    handle_cv: float = 1.0
    mean_patience: float | None = None
    vip_share: float = 0.0
    languages: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        where = f"traffic of queue {self.queue!r}"
        if self.arrival_rate <= 0 or self.mean_handle <= 0:
            raise ValueError(f"{where}: arrival_rate and mean_handle must be positive")
        if self.handle_cv <= 0:
            raise ValueError(f"{where}: handle_cv must be positive, not {self.handle_cv}")
        if self.mean_patience is not None and self.mean_patience <= 0:
            raise ValueError(f"{where}: mean_patience must be positive, not {self.mean_patience}")
        if not 0 <= self.vip_share <= 1:
            raise ValueError(f"{where}: vip_share must be within 0..1, not {self.vip_share}")


@dataclass(frozen=True, slots=True)
class SimAgent:
    profile: AgentProfile
    queues: tuple[QueueMembership, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to simulate: queues, their traffic, the agents, and how many calls."""

    queues: tuple[QueueConfig, ...]
    traffic: tuple[Traffic, ...]
    agents: tuple[SimAgent, ...]
    calls: int = 10_000
    answer_within: float = 20.0
    warmup_calls: int = 0
    batches: int = 20

    def __post_init__(self) -> None:
        names = {q.name for q in self.queues}
        for t in self.traffic:
            if t.queue not in names:
                raise ValueError(f"traffic for queue {t.queue!r}, which the scenario does not define")
        if not self.traffic:
            raise ValueError("a scenario needs at least one traffic source")
        if self.calls < 1 or not 0 <= self.warmup_calls < self.calls:
            raise ValueError(f"calls ({self.calls}) must be positive and above warmup_calls ({self.warmup_calls})")
        if self.batches < 1:
            raise ValueError(f"batches must be at least 1, not {self.batches}")

    def with_strategy(self, strategy: Strategy) -> Scenario:
        """The same scenario with every queue using `strategy`."""
        return replace(self, queues=tuple(replace(q, strategy=strategy) for q in self.queues))


def single_queue_scenario(agents: int, calls_per_hour: float, mean_handle: float, *,
                          mean_patience: float | None = None, strategy: Strategy = Strategy.LONGEST_IDLE,
                          wrapup: float = 0.0, calls: int = 10_000, answer_within: float = 20.0,
                          warmup_calls: int = 0, handle: HandleDistribution = HandleDistribution.EXPONENTIAL,
                          handle_cv: float = 1.0, batches: int = 20) -> Scenario:
    """One queue, `agents` identical agents: the textbook Erlang C (or, with patience, Erlang A) center."""
    if agents < 1:
        raise ValueError(f"a scenario needs at least one agent, not {agents}")
    queue = QueueConfig("queue", strategy=strategy, wrapup=wrapup)
    traffic = Traffic("queue", calls_per_hour / 3600.0, mean_handle, handle, handle_cv, mean_patience)
    staff = tuple(SimAgent(AgentProfile(f"agent{i + 1}"), (QueueMembership("queue"),)) for i in range(agents))
    return Scenario((queue,), (traffic,), staff, calls, answer_within, warmup_calls, batches)


@dataclass(frozen=True, slots=True)
class QueueResult:
    queue: str
    offered: int
    answered: int
    answered_within: int
    abandoned: int
    left: int  # rejected, timed out, sent to voicemail, or stranded (no agent could ever take it)
    service_level: Estimate
    asa: Estimate
    abandonment_rate: Estimate
    waited: Estimate


@dataclass(frozen=True, slots=True)
class SimulationResult:
    seed: int
    answer_within: float
    queues: tuple[QueueResult, ...]
    overall: QueueResult
    occupancy: float
    simulated_seconds: float
    calls_per_agent: Mapping[str, int]  # answered calls, counted ones only (fairness between agents)

    def queue(self, name: str) -> QueueResult:
        for q in self.queues:
            if q.queue == name:
                return q
        raise KeyError(f"no traffic arrived to queue {name!r} in this simulation")

    def report(self) -> str:
        """A plain-text table of the results, one line per queue and one overall, for the command line."""
        def pct(e: Estimate) -> str:
            return f"{100 * e.value:5.1f}% ±{100 * e.half_width:4.1f}"

        t = f"{self.answer_within:g}s"
        lines = [f"{'queue':<14}{'offered':>9}{'answered':>10}{'abandoned':>10}{'left':>7}  "
                 f"{'SL ' + t:<14}{'ASA':<16}{'abandoned':<14}{'waited':<14}"]
        for q in (*self.queues, self.overall):
            name = "overall" if q is self.overall else q.queue
            lines.append(f"{name:<14}{q.offered:>9,}{q.answered:>10,}{q.abandoned:>10,}{q.left:>7,}  "
                         f"{pct(q.service_level):<14}{q.asa.value:6.1f}s ±{q.asa.half_width:5.1f}  "
                         f"{pct(q.abandonment_rate):<14}{pct(q.waited):<14}")
        lines.append(f"occupancy {100 * self.occupancy:.1f}%, {self.simulated_seconds / 3600:,.1f} simulated hours, "
                     f"seed {self.seed} (± is the 95% confidence half-width by batch means)")
        return "\n".join(line.rstrip() for line in lines)


_ARRIVAL, _END, _ABANDON = 0, 1, 2
_PENDING, _ANSWERED, _ABANDONED, _LEFT = 0, 1, 2, 3
_BUSY = frozenset({AgentState.RINGING, AgentState.ON_CALL, AgentState.AFTER_CALL_WORK})


class _Run:
    """One simulation: the router, the event heap and what happened to each call."""

    def __init__(self, scenario: Scenario, seed: int, progress: Progress | None) -> None:
        self.scenario = scenario
        self.progress = progress
        self.router = Router(scenario.queues, rng=random.Random(f"{seed}/router"))
        self.streams = [random.Random(f"{seed}/traffic/{i}/{t.queue}") for i, t in enumerate(scenario.traffic)]
        self.heap: list[tuple[float, int, int, int]] = []
        self.seq = 0
        n = scenario.calls
        self.source = [0] * n
        self.arrived_at = [0.0] * n
        self.handle = [0.0] * n
        self.wait = [0.0] * n
        self.outcome = [_PENDING] * n
        self.arrived = 0
        self.now = 0.0
        self.agent_state: dict[str, AgentState] = {}
        self.agent_since: dict[str, float] = {}
        self.busy_time = 0.0
        self.available_time = 0.0
        self.window: list[tuple[float, float]] = []  # (busy, available) at the first and last counted arrival
        self.calls_per_agent: dict[str, int] = {a.profile.agent_id: 0 for a in scenario.agents}

    def push(self, when: float, kind: int, index: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, kind, index))

    def run(self) -> None:
        for agent in self.scenario.agents:
            self.feed(self.router.agent_login(agent.profile, agent.queues, 0.0))
        for i, traffic in enumerate(self.scenario.traffic):
            self.push(self.streams[i].expovariate(traffic.arrival_rate), _ARRIVAL, i)
        router = self.router
        heap = self.heap
        total = self.scenario.calls
        step = max(1, total // 200)
        while True:
            deadline = router.next_deadline()
            if heap and (deadline is None or heap[0][0] < deadline):
                when, _, kind, index = heapq.heappop(heap)
                self.now = when
                if kind == _ARRIVAL:
                    if self.arrived < total:
                        self.arrive(index, when)
                        if self.progress is not None and (self.arrived % step == 0 or self.arrived == total):
                            self.progress(self.arrived, total)
                elif kind == _END:
                    self.feed(router.call_ended(str(index), when))
                elif self.outcome[index] == _PENDING:
                    self.feed(router.abandon(str(index), when))
            elif deadline is not None:
                self.now = deadline
                self.feed(router.tick(deadline))
            else:
                break

    def arrive(self, source: int, now: float) -> None:
        traffic = self.scenario.traffic[source]
        rng = self.streams[source]
        i = self.arrived
        self.arrived += 1
        if i == self.scenario.warmup_calls:
            self.window.append(self.occupancy_snapshot(now))
        if self.arrived == self.scenario.calls:
            self.window.append(self.occupancy_snapshot(now))
        self.source[i] = source
        self.arrived_at[i] = now
        if traffic.handle is HandleDistribution.EXPONENTIAL:
            self.handle[i] = rng.expovariate(1.0 / traffic.mean_handle)
        else:
            sigma2 = math.log1p(traffic.handle_cv ** 2)
            self.handle[i] = rng.lognormvariate(math.log(traffic.mean_handle) - sigma2 / 2, math.sqrt(sigma2))
        patience = None if traffic.mean_patience is None else rng.expovariate(1.0 / traffic.mean_patience)
        priority = 1 if traffic.vip_share and rng.random() < traffic.vip_share else 0
        language = None
        if traffic.languages:
            names = [name for name, _ in traffic.languages]
            language = rng.choices(names, [w for _, w in traffic.languages])[0]
        self.feed(self.router.enqueue(str(i), traffic.queue, now, priority=priority, language=language))
        if patience is not None and self.outcome[i] == _PENDING:
            self.push(now + patience, _ABANDON, i)
        if self.arrived < self.scenario.calls:
            self.push(now + rng.expovariate(traffic.arrival_rate), _ARRIVAL, source)

    def feed(self, outputs: list[RouterOutput]) -> None:
        """Act on the router's outputs: agents answer offers at once, answered calls end after their handle time."""
        pending = outputs
        warmup = self.scenario.warmup_calls
        while pending:
            answers: list[tuple[str, str]] = []
            for o in pending:
                if type(o) is AgentStateChanged:
                    self.agent_changed(o)
                elif type(o) is Offer:
                    answers.append((o.call_id, o.agents[0]))
                elif type(o) is CallAnswered:
                    i = int(o.call_id)
                    self.outcome[i] = _ANSWERED
                    self.wait[i] = o.at - self.arrived_at[i]
                    self.push(o.at + self.handle[i], _END, i)
                    if i >= warmup:
                        self.calls_per_agent[o.agent] += 1
                elif type(o) is CallAbandoned:
                    i = int(o.call_id)
                    self.outcome[i] = _ABANDONED
                    self.wait[i] = o.at - self.arrived_at[i]
                elif type(o) is CallRejected or type(o) is CallExited:
                    self.outcome[int(o.call_id)] = _LEFT
                elif type(o) is CallOverflowed and o.to == VOICEMAIL:
                    self.outcome[int(o.call_id)] = _LEFT
                elif type(o) is PlaceCallback:
                    raise AssertionError(f"the fast simulator requests no callbacks, yet got {o}")
            pending = []
            for call_id, agent in answers:
                pending += self.router.offer_answered(call_id, agent, self.now)

    def agent_changed(self, change: AgentStateChanged) -> None:
        old = self.agent_state.get(change.agent)
        if old is not None:
            spent = change.at - self.agent_since[change.agent]
            if old in _BUSY:
                self.busy_time += spent
            elif old is AgentState.AVAILABLE:
                self.available_time += spent
        self.agent_state[change.agent] = change.new
        self.agent_since[change.agent] = change.at

    def occupancy_snapshot(self, now: float) -> tuple[float, float]:
        busy, available = self.busy_time, self.available_time
        for agent, state in self.agent_state.items():
            if state in _BUSY:
                busy += now - self.agent_since[agent]
            elif state is AgentState.AVAILABLE:
                available += now - self.agent_since[agent]
        return busy, available

    def result(self, seed: int) -> SimulationResult:
        s = self.scenario
        # Calls still waiting when nothing more can happen (nobody logged in can ever take them) never got
        # an answer: they count as having left.
        self.outcome = [_LEFT if o == _PENDING else o for o in self.outcome]
        counted = range(s.warmup_calls, s.calls)
        names = sorted({t.queue for t in s.traffic})
        by_queue = {name: [i for i in counted if s.traffic[self.source[i]].queue == name] for name in names}
        queues = tuple(self.summarize(name, calls) for name, calls in by_queue.items())
        overall = self.summarize("*", list(counted))
        (busy0, avail0), (busy1, avail1) = self.window
        spent = (busy1 - busy0) + (avail1 - avail0)
        occupancy = (busy1 - busy0) / spent if spent > 0 else 0.0
        return SimulationResult(seed, s.answer_within, queues, overall, occupancy, self.now,
                                MappingProxyType(dict(self.calls_per_agent)))

    def summarize(self, name: str, calls: list[int]) -> QueueResult:
        outcome, wait, within = self.outcome, self.wait, self.scenario.answer_within

        def ratios(part: list[int]) -> tuple[float, float, float, float]:
            answered = [i for i in part if outcome[i] == _ANSWERED]
            n = len(part)
            if not n:
                return math.nan, math.nan, math.nan, math.nan
            sl = sum(1 for i in answered if wait[i] <= within) / n
            asa = sum(wait[i] for i in answered) / len(answered) if answered else math.nan
            abandoned = sum(1 for i in part if outcome[i] == _ABANDONED) / n
            waited = 1.0 - sum(1 for i in answered if wait[i] == 0.0) / n
            return sl, asa, abandoned, waited

        batches = self.scenario.batches
        size = len(calls) / batches
        per_batch = [ratios(calls[round(b * size):round((b + 1) * size)]) for b in range(batches)]
        answered = [i for i in calls if outcome[i] == _ANSWERED]
        return QueueResult(
            name, len(calls), len(answered), sum(1 for i in answered if wait[i] <= within),
            sum(1 for i in calls if outcome[i] == _ABANDONED), sum(1 for i in calls if outcome[i] == _LEFT),
            *estimates(ratios(calls), per_batch))


def run_fast(scenario: Scenario, seed: int, progress: Progress | None = None) -> SimulationResult:
    """Simulate `scenario` with the real router; the same seed gives the same result."""
    run = _Run(scenario, seed, progress)
    run.run()
    log.debug("simulated %d calls over %.0f s", scenario.calls, run.now)
    return run.result(seed)


def compare_strategies(scenario: Scenario, strategies: Iterable[Strategy], seed: int,
                       progress: Progress | None = None) -> Mapping[Strategy, SimulationResult]:
    """Run the scenario once per strategy, with the same callers each time (common random numbers)."""
    return {strategy: run_fast(scenario.with_strategy(strategy), seed, progress) for strategy in strategies}
