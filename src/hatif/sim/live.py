"""The live simulator: virtual callers and virtual agents over real SIP against a running Hatif.

Agents register as the users given and answer the calls offered to them after a short random ring,
talk for a handle time drawn from an exponential or lognormal distribution, and hang up; after each
answered call an optional wrap-up pause follows, during which (and during a call) they answer 486 Busy
Here. Callers arrive as a Poisson process, dial the scenario's numbers in turn (a queue's `800`, or
extensions), and wait with an exponential patience: CANCEL when it runs out before the answer.

"Answered" means answered by an agent. A caller put through to a queue or an IVR is answered at SIP level
by Hatif long before an agent takes it; with `wait_for_agent` such a caller keeps waiting (patience still
running, then BYE) until an agent answers the call it is matched to. Matching an agent's incoming call to
the caller behind it:

1. by caller ID, exactly: callers without credentials (a trusted endpoint of the tenant) send a unique
   From user per call (`caller_prefix` and the caller's number), which Hatif's leg toward the agent carries
   as its From user, as a B2BUA passes on the caller ID;
2. otherwise (callers authenticating as one user, so every call has the same From) by order: the
   longest-waiting caller not yet offered to an agent, preferring one who dialed that agent's own user
   name (direct dialing). This is exact for direct dialing and for a first-in-first-out queue offering one
   call at a time, approximate when a queue rings several agents at once.

The figures follow `hatif.sim.fast` (same definitions, same `report()` table), per number dialed and
overall, over every caller: service level = answered by an agent within `answer_within` seconds of the
INVITE / callers; ASA = mean wait of the answered; abandonment = callers who gave up / callers; `waited` =
callers not taken by an agent (ringing there, not turned away busy) within `presented_within` seconds;
occupancy = the agents' time ringing, talking and in wrap-up over their time between the first arrival and
the end of the last call. Calls that got a failure response (486 from a busy agent, 480, 404 ...) or none
count as `left`.

Nothing here compresses time: a scenario of ten minutes takes ten minutes. Keep live runs short (seconds
in tests, a few minutes for a demo) and use `hatif.sim.fast` for days of traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import SimError
from ..sip.transaction import Timers
from .batches import estimates
from .fast import HandleDistribution, QueueResult, SimulationResult
from .ua import Answer, CallOutcome, CallResult, IncomingCall, OutgoingCall, SipCallError, UserAgent

Progress = Callable[[int, int], None]
"""`progress(done, total)`: callers finished so far out of the scenario's callers."""

MAX_CALLERS = 100_000


class LiveError(SimError, RuntimeError):
    """The live run could not start (an agent could not register); the text names who and why."""


@dataclass(frozen=True, slots=True)
class LiveScenario:
    """Who calls whom, how often and for how long, for one live run.

    `numbers` are dialed in turn by successive callers. `agents` are (user, password) pairs. Callers
    arrive for `duration` seconds, or, when `calls` is given, until that many have arrived. `caller` is the
    (user, password) callers authenticate with; None sends them unauthenticated from `caller_port`, which
    the tenant must list as a trusted endpoint. `answer_delay` is the (low, high) range of the agents'
    uniform ringing time. `max_call` bounds any one call.
    """

    numbers: tuple[str, ...]
    agents: tuple[tuple[str, str], ...]
    calls_per_hour: float
    mean_handle: float
    handle: HandleDistribution = HandleDistribution.EXPONENTIAL
    handle_cv: float = 1.0
    mean_patience: float | None = None
    answer_delay: tuple[float, float] = (0.5, 2.0)
    wrapup: float = 0.0
    duration: float = 60.0
    calls: int | None = None
    answer_within: float = 20.0
    presented_within: float = 1.0
    caller: tuple[str, str] | None = None
    caller_port: int = 0
    caller_prefix: str = "sim"
    wait_for_agent: bool = False
    rtp: bool = False
    max_call: float = 600.0
    local_host: str | None = None
    timers: Timers = field(default_factory=Timers)
    batches: int = 10

    def __post_init__(self) -> None:
        if not self.numbers or not all(self.numbers):
            raise ValueError("a live scenario needs at least one number to dial")
        if not self.agents and self.wait_for_agent:
            raise ValueError("wait_for_agent needs agents to answer")
        if self.calls_per_hour <= 0 or self.mean_handle <= 0:
            raise ValueError("calls_per_hour and mean_handle must be positive")
        if self.mean_patience is not None and self.mean_patience <= 0:
            raise ValueError(f"mean_patience must be positive, not {self.mean_patience}")
        low, high = self.answer_delay
        if not 0 <= low <= high:
            raise ValueError(f"answer_delay must be a range 0 <= low <= high, not {self.answer_delay}")
        if self.wrapup < 0 or self.handle_cv <= 0 or self.max_call <= 0 or self.answer_within < 0:
            raise ValueError("wrapup and answer_within must not be negative; handle_cv and max_call must be positive")
        if self.calls is None and self.duration <= 0:
            raise ValueError(f"duration must be positive, not {self.duration}")
        if self.calls is not None and not 1 <= self.calls <= MAX_CALLERS:
            raise ValueError(f"calls must be within 1..{MAX_CALLERS}, not {self.calls}")
        if self.batches < 1:
            raise ValueError(f"batches must be at least 1, not {self.batches}")


@dataclass(slots=True)
class CallerRecord:
    """One virtual caller: what it was given and what happened to it."""

    index: int
    number: str
    caller_id: str
    arrival: float  # seconds after the start of the run
    patience: float | None
    handle: float
    placed: float | None = None  # loop time of the INVITE
    presented: float | None = None  # loop time the matched agent was offered the call
    agent: str | None = None
    result: CallResult | None = None

    @property
    def outcome(self) -> CallOutcome:
        return self.result.outcome if self.result is not None else CallOutcome.FAILED


@dataclass(frozen=True, slots=True)
class AgentCall:
    """A call an agent took (rang, and was answered or cancelled), in loop time."""

    agent: str
    caller: int | None  # the matched caller's index
    offered: float
    answered: float | None
    ended: float
    busy_until: float  # end of wrap-up for an answered call
    outcome: CallOutcome


@dataclass(frozen=True, slots=True)
class LiveResult:
    """A live run: the figures (`summary`, as the fast simulator gives them) and every call behind them."""

    summary: SimulationResult
    callers: tuple[CallerRecord, ...]
    agent_calls: Mapping[str, tuple[AgentCall, ...]]
    busy_rejects: int  # 486 answers agents gave while on a call or in wrap-up
    left_by_status: Mapping[int, int]
    seconds: float

    def report(self) -> str:
        """The fast simulator's table, with the last line telling the live run's length and failures."""
        s = self.summary
        table = s.report().splitlines()[:-1]
        agents = len(self.agent_calls)
        table.append(f"occupancy {100 * s.occupancy:.1f}%, {self.seconds:,.1f} s live with {agents} agents, "
                     f"seed {s.seed} (± is the 95% confidence half-width by batch means)")
        if self.left_by_status:
            parts = ", ".join(f"{status} ×{n}" for status, n in sorted(self.left_by_status.items()))
            table.append(f"left by final status: {parts}; busy agents answered 486 {self.busy_rejects} times")
        return "\n".join(table)


class _Agent:
    """One virtual agent: a registered user agent that takes one call at a time."""

    def __init__(self, run: _LiveRun, user: str, password: str) -> None:
        self.run = run
        self.user = user
        s = run.scenario
        self.rng = random.Random(f"{run.seed}/agent/{user}")
        self.ua = UserAgent(run.server, user=user, password=password, local_host=s.local_host, timers=s.timers,
                            answer=self.decide, on_answered=self.answered, on_ended=self.ended, rtp=s.rtp,
                            max_calls=4, max_duration=s.max_call)
        self.current: IncomingCall | None = None
        self.wrapup_until = -math.inf
        self.calls: list[AgentCall] = []
        self.busy_rejects = 0

    def decide(self, call: IncomingCall) -> Answer:
        now = self.ua.loop.time()
        if self.current is not None or now < self.wrapup_until:
            self.busy_rejects += 1
            return Answer(reject=486)
        self.current = call
        caller = self.run.match(call, self.user)
        call.user_data = caller
        s = self.run.scenario
        handle = caller.handle if caller is not None else _handle_time(self.rng, s)
        return Answer(after=self.rng.uniform(*s.answer_delay), hang_up_after=handle)

    def answered(self, call: IncomingCall) -> None:
        caller = call.user_data
        if isinstance(caller, CallerRecord) and self.run.scenario.wait_for_agent:
            outgoing = self.run.placed.get(caller.index)
            if outgoing is not None:
                outgoing.connect()

    def ended(self, call: IncomingCall) -> None:
        if call is not self.current:
            return
        self.current = None
        assert call.ended is not None
        busy_until = call.ended
        if call.answered is not None:
            busy_until += self.run.scenario.wrapup
            self.wrapup_until = busy_until
        caller = call.user_data
        self.calls.append(AgentCall(self.user, caller.index if isinstance(caller, CallerRecord) else None,
                                    call.offered, call.answered, call.ended, busy_until,
                                    call.outcome or CallOutcome.FAILED))


class _LiveRun:
    def __init__(self, server: tuple[str, int], scenario: LiveScenario, seed: int, progress: Progress | None) -> None:
        self.server = server
        self.scenario = scenario
        self.seed = seed
        self.progress = progress
        self.callers = _callers(scenario, seed)
        self.waiting: dict[int, CallerRecord] = {}  # callers not yet offered to an agent, in arrival order
        self.by_caller_id: dict[str, CallerRecord] = {}
        self.placed: dict[int, OutgoingCall] = {}
        self.done = 0

    def match(self, call: IncomingCall, agent: str) -> CallerRecord | None:
        """The caller behind an agent's incoming call (see the module docstring for the rules)."""
        caller = self.by_caller_id.get(call.caller)
        if caller is None or caller.index not in self.waiting:
            candidates = list(self.waiting.values())
            direct = [c for c in candidates if c.number == agent]
            pool = direct or candidates
            caller = pool[0] if pool else None
        if caller is None:
            return None
        self.waiting.pop(caller.index, None)
        self.by_caller_id.pop(caller.caller_id, None)
        caller.presented = call.offered
        caller.agent = agent
        return caller

    async def run(self) -> LiveResult:
        s = self.scenario
        agents = [_Agent(self, user, password) for user, password in s.agents]
        caller_user, caller_password = s.caller if s.caller is not None else (None, None)
        callers_ua = UserAgent(self.server, user=caller_user, password=caller_password, local_host=s.local_host,
                               local_port=s.caller_port, timers=s.timers, rtp=s.rtp, max_calls=1000,
                               max_duration=s.max_call, answer=Answer(reject=486))
        opened: list[UserAgent] = []
        try:
            for a in agents:
                opened.append(await a.ua.open())
            opened.append(await callers_ua.open())
            registrations = await asyncio.gather(*(a.ua.register(expires=300, refresh=True) for a in agents))
            for a, r in zip(agents, registrations, strict=True):
                if not r.ok:
                    raise LiveError(f"agent {a.user} could not register: {r.status} {r.reason}")
            loop = asyncio.get_running_loop()
            start = loop.time()
            tasks: list[asyncio.Task[None]] = []
            for caller in self.callers:
                delay = start + caller.arrival - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(self._call(callers_ua, caller)))
            if tasks:
                # Every call ends by itself within max_call (plus a transaction timeout): this only guards.
                await asyncio.wait(tasks, timeout=s.max_call + 4 * s.timers.timeout)
            end = loop.time()
        finally:
            for ua in reversed(opened):
                with contextlib.suppress(Exception):
                    await ua.close()
        return self.result(agents, start, end)

    async def _call(self, ua: UserAgent, caller: CallerRecord) -> None:
        s = self.scenario
        self.waiting[caller.index] = caller
        self.by_caller_id[caller.caller_id] = caller
        try:
            outgoing = ua.place(caller.number, patience=caller.patience, wait_for_connect=s.wait_for_agent,
                                from_user=caller.caller_id if s.caller is None else None, display=caller.caller_id)
        except SipCallError:
            self.waiting.pop(caller.index, None)
            self._finished()
            return
        caller.placed = outgoing.invite_sent
        self.placed[caller.index] = outgoing
        try:
            caller.result = await outgoing.wait()
        finally:
            self.placed.pop(caller.index, None)
            self.waiting.pop(caller.index, None)
            self.by_caller_id.pop(caller.caller_id, None)
            self._finished()

    def _finished(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, len(self.callers))

    # -- figures --------------------------------------------------------------------------------------

    def result(self, agents: list[_Agent], start: float, end: float) -> LiveResult:
        s = self.scenario
        ended = [c.result.ended for c in self.callers if c.result is not None]
        last = max(ended, default=end)
        window = max(last - start, 1e-9)
        busy = 0.0
        for a in agents:
            for c in a.calls:
                busy += max(0.0, min(c.busy_until, last) - max(c.offered, start))
        occupancy = busy / (window * len(agents)) if agents else 0.0
        names = list(dict.fromkeys(s.numbers))
        queues = tuple(self.summarize(n, [c for c in self.callers if c.number == n]) for n in names)
        overall = self.summarize("*", list(self.callers))
        per_agent = {a.user: sum(1 for c in a.calls if c.answered is not None) for a in agents}
        summary = SimulationResult(self.seed, s.answer_within, queues, overall, min(1.0, occupancy), window,
                                   MappingProxyType(per_agent))
        left = Counter(c.result.status if c.result is not None else 0 for c in self.callers
                       if c.outcome in (CallOutcome.REJECTED, CallOutcome.FAILED))
        return LiveResult(summary, tuple(self.callers), MappingProxyType({a.user: tuple(a.calls) for a in agents}),
                          sum(a.busy_rejects for a in agents), MappingProxyType(dict(left)), end - start)

    def summarize(self, name: str, calls: list[CallerRecord]) -> QueueResult:
        within = self.scenario.answer_within
        presented_within = self.scenario.presented_within

        def wait(c: CallerRecord) -> float:
            w = c.result.wait if c.result is not None else None
            return w if w is not None else math.inf

        def ratios(part: list[CallerRecord]) -> tuple[float, float, float, float]:
            n = len(part)
            if not n:
                return math.nan, math.nan, math.nan, math.nan
            answered = [c for c in part if c.outcome is CallOutcome.ANSWERED]
            sl = sum(1 for c in answered if wait(c) <= within) / n
            asa = sum(wait(c) for c in answered) / len(answered) if answered else math.nan
            abandoned = sum(1 for c in part if c.outcome is CallOutcome.ABANDONED) / n
            quick = sum(1 for c in part if c.presented is not None and c.placed is not None
                        and c.presented - c.placed <= presented_within)
            return sl, asa, abandoned, 1.0 - quick / n

        batches = max(1, min(self.scenario.batches, len(calls) // 2))
        size = len(calls) / batches
        per_batch = [ratios(calls[round(b * size):round((b + 1) * size)]) for b in range(batches)]
        answered = [c for c in calls if c.outcome is CallOutcome.ANSWERED]
        return QueueResult(
            name, len(calls), len(answered), sum(1 for c in answered if wait(c) <= within),
            sum(1 for c in calls if c.outcome is CallOutcome.ABANDONED),
            sum(1 for c in calls if c.outcome in (CallOutcome.REJECTED, CallOutcome.FAILED)),
            *estimates(ratios(calls), per_batch))


def _handle_time(rng: random.Random, s: LiveScenario) -> float:
    if s.handle is HandleDistribution.EXPONENTIAL:
        return rng.expovariate(1.0 / s.mean_handle)
    sigma2 = math.log1p(s.handle_cv ** 2)
    return rng.lognormvariate(math.log(s.mean_handle) - sigma2 / 2, math.sqrt(sigma2))


def _callers(s: LiveScenario, seed: int) -> list[CallerRecord]:
    """Every caller of the run, drawn up front in arrival order from streams of the seed."""
    arrivals = random.Random(f"{seed}/arrivals")
    patience = random.Random(f"{seed}/patience")
    handles = random.Random(f"{seed}/handle")
    rate = s.calls_per_hour / 3600.0
    limit = s.calls if s.calls is not None else MAX_CALLERS
    out: list[CallerRecord] = []
    t = arrivals.expovariate(rate)
    while len(out) < limit and (s.calls is not None or t < s.duration):
        i = len(out)
        p = None if s.mean_patience is None else patience.expovariate(1.0 / s.mean_patience)
        number = s.numbers[i % len(s.numbers)]
        out.append(CallerRecord(i, number, f"{s.caller_prefix}{i + 1:05d}", t, p, _handle_time(handles, s)))
        t += arrivals.expovariate(rate)
    return out


async def run_live_async(server: tuple[str, int], scenario: LiveScenario, *, seed: int = 1,
                         progress: Progress | None = None) -> LiveResult:
    """Run `scenario` against the Hatif at `server` (host, port) on the running event loop."""
    return await _LiveRun(server, scenario, seed, progress).run()


def run_live(server: tuple[str, int], scenario: LiveScenario, *, seed: int = 1,
             progress: Progress | None = None) -> LiveResult:
    """Run `scenario` against the Hatif at `server` (host, port): a new event loop, for as long as it takes."""
    return asyncio.run(run_live_async(server, scenario, seed=seed, progress=progress))
