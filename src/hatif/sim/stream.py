"""The demo's gentle live traffic: virtual agents and virtual callers over real SIP, until stopped.

`hatif demo` starts one `DemoStream` next to the server so that a newcomer sees calls flowing at once,
and a real softphone registered as one of the other demo users takes part like any agent. Unlike
`hatif.sim.live`, which runs a scenario to its end and measures it, this runs without end at a low rate
and only counts what happened; it never raises out of its background task (a server gone shows as
failed calls in the log), and `stop()` ends every call and unregisters within a bounded time.

Agents register as the users given and answer every call offered to them after a short random ring
(1-3 s by default), talk for an exponential handle time (capped), then hang up. They take no breaks and
never answer busy: readiness, breaks and one-call-at-a-time are the ACD's business, not the phone's.

Callers arrive as a Poisson process, dial one of the numbers at random from one UDP port (the tenant lists
it as a trusted endpoint, so no password is needed), each with its own caller ID (`+9665` and eight
random digits by default, a Saudi mobile), which Hatif carries to the agent's phone. A caller waits with
an exponential patience: a queue answers it at SIP level at once (music), so it counts as waiting until an
agent's phone answers the call that carries its caller ID (`OutgoingCall.connect()`), and gives up (BYE or
CANCEL) when its patience runs out first. Once connected it stays until the far side hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SimError
from ..sip.transaction import Timers
from .ua import Answer, CallOutcome, IncomingCall, OutgoingCall, SipCallError, UserAgent

log = logging.getLogger(__name__)

CALLER_ID_TRIES = 20  # draws of a random caller ID before giving up on a unique one


class DemoStreamError(SimError, RuntimeError):
    """The stream could not start (bad settings, a local port in use); the text names the problem."""


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What the stream did so far. `answered` callers were connected to an agent; `skipped` arrivals found
    `max_callers` already on the line and did not call."""

    agents: int
    agents_registered: int
    placed: int
    waiting: int  # callers on the line not yet connected to an agent
    in_progress: int  # callers on the line, connected or not
    answered: int
    abandoned: int
    rejected: int
    failed: int
    skipped: int
    agent_calls: int  # calls the virtual agents answered


class _Agent:
    """One virtual agent: a registered user agent that answers whatever it is offered."""

    def __init__(self, stream: DemoStream, user: str, password: str) -> None:
        self.stream = stream
        self.user = user
        self.password = password
        self.rng = random.Random(f"{stream.seed}/agent/{user}")
        self.registered = False
        self.ua = UserAgent(stream.server, user=user, password=password, local_host=stream.local_host,
                            timers=stream.timers, answer=self.decide, on_answered=stream._agent_answered,
                            rtp=stream.rtp, max_calls=4, max_duration=stream.max_call)

    def decide(self, call: IncomingCall) -> Answer:
        s = self.stream
        handle = min(self.rng.expovariate(1.0 / s.mean_handle), s.max_handle)
        log.debug("demo agent offered a call", extra={"fields": {"agent": self.user, "caller": call.caller}})
        return Answer(after=self.rng.uniform(*s.answer_delay), hang_up_after=handle)


class DemoStream:
    """Virtual agents and callers against the Hatif at `server`, from `start()` until `stop()`.

    `agents`: (user, password) pairs the virtual agents register as. `numbers`: what callers dial, one at
    random per call. `calls_per_hour`: the callers' Poisson arrival rate. `mean_handle` (seconds, capped
    at `max_handle`) and `answer_delay` (the (low, high) range of the uniform ring time) shape the agents;
    `mean_patience` the callers (capped at `max_call`, which also bounds any one call). At most
    `max_callers` callers are on the line at once. Callers send from `caller_port` on `local_host` (None:
    the address that reaches the server), which the tenant must list as a trusted endpoint; their caller ID
    is `caller_prefix` and `caller_digits` random digits. `rtp` sends 20 ms frames of silence on answered
    calls. `seed` makes the draws repeatable.
    """

    def __init__(self, server: tuple[str, int], *, agents: Sequence[tuple[str, str]], numbers: Sequence[str],
                 calls_per_hour: float = 60.0, mean_handle: float = 40.0, max_handle: float = 300.0,
                 answer_delay: tuple[float, float] = (1.0, 3.0), mean_patience: float = 90.0,
                 max_callers: int = 20, caller_port: int = 0, local_host: str | None = None,
                 caller_prefix: str = "+9665", caller_digits: int = 8, rtp: bool = True,
                 max_call: float = 900.0, timers: Timers | None = None, seed: int | None = None) -> None:
        if not numbers or not all(numbers):
            raise DemoStreamError("the demo stream needs at least one number to dial (numbers)")
        if calls_per_hour <= 0:
            raise DemoStreamError(f"calls_per_hour must be positive, not {calls_per_hour}")
        if mean_handle <= 0 or max_handle <= 0 or mean_patience <= 0 or max_call <= 0:
            raise DemoStreamError("mean_handle, max_handle, mean_patience and max_call must be positive")
        low, high = answer_delay
        if not 0 <= low <= high:
            raise DemoStreamError(f"answer_delay must be a range 0 <= low <= high, not {answer_delay}")
        if max_callers < 1:
            raise DemoStreamError(f"max_callers must be at least 1, not {max_callers}")
        if not 4 <= caller_digits <= 15:
            raise DemoStreamError(f"caller_digits must be within 4..15, not {caller_digits}")
        users = [user for user, _ in agents]
        if len(set(users)) != len(users):
            raise DemoStreamError(f"an agent user is listed twice: {', '.join(users)}")
        self.server = server
        self.numbers = tuple(numbers)
        self.calls_per_hour = calls_per_hour
        self.mean_handle = mean_handle
        self.max_handle = max_handle
        self.answer_delay = answer_delay
        self.mean_patience = mean_patience
        self.max_callers = max_callers
        self.caller_port = caller_port
        self.local_host = local_host
        self.caller_prefix = caller_prefix
        self.caller_digits = caller_digits
        self.rtp = rtp
        self.max_call = max_call
        self.timers = timers or Timers()
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.rng = random.Random(f"{self.seed}/callers")
        self._agents = [_Agent(self, user, password) for user, password in agents]
        self._callers = UserAgent(server, local_host=local_host, local_port=caller_port, timers=self.timers,
                                  answer=Answer(reject=486), rtp=rtp, max_calls=max_callers,
                                  max_duration=max_call)
        self._waiting: dict[str, OutgoingCall] = {}  # caller ID -> a caller not yet connected to an agent
        self._on_line: set[str] = set()  # caller IDs of every caller on the line
        self._follow: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._opened: list[UserAgent] = []
        self._counts = dict.fromkeys(("placed", "answered", "abandoned", "rejected", "failed", "skipped",
                                      "agent_calls"), 0)
        self.started = False
        self.stopped = False

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets and begin: agents register, then callers arrive, in a background task.

        Raises `DemoStreamError` only when a socket cannot be opened (the callers' port in use); anything
        later (a registration refused, the server gone) is logged.
        """
        if self.started:
            raise DemoStreamError("the demo stream was started already")
        self.started = True
        try:
            for ua in (*(a.ua for a in self._agents), self._callers):
                self._opened.append(await ua.open())
        except OSError as e:
            await self._close_all(1.0)
            raise DemoStreamError(f"the demo stream could not open its sockets (callers' port {self.caller_port}): "
                                  f"{e}") from e
        self._task = asyncio.get_running_loop().create_task(self._run(), name="demo-stream")
        log.info("demo stream started", extra={"fields": {
            "agents": ",".join(a.user for a in self._agents), "numbers": ",".join(self.numbers),
            "calls_per_hour": self.calls_per_hour, "caller_address": "{}:{}".format(*self.caller_address)}})

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop calling, end every call and unregister every agent, within about `timeout` seconds."""
        if self.stopped or not self.started:
            self.stopped = True
            return
        self.stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_all(timeout)
        for task in list(self._follow):
            task.cancel()
        if self._follow:
            await asyncio.wait(list(self._follow), timeout=1.0)
        s = self.stats
        log.info("demo stream stopped", extra={"fields": {
            "placed": s.placed, "answered": s.answered, "abandoned": s.abandoned, "rejected": s.rejected,
            "failed": s.failed, "skipped": s.skipped}})

    async def _close_all(self, timeout: float) -> None:
        """Callers first (their BYE and CANCEL end Hatif's calls, which then hang up the agents' legs while
        the agents still listen), then the agents together. Each `close` takes at most two waits of `limit`
        (the calls' last answers, the unregistration); callers have no registration, agents no calls of
        their own, so the whole stays within about `timeout`."""
        limit = max(0.1, timeout / 2)
        if self._callers in self._opened:
            with contextlib.suppress(Exception):
                await self._callers.close(timeout=limit)
        agents = [a.ua for a in self._agents if a.ua in self._opened]
        results = await asyncio.gather(*(ua.close(timeout=limit) for ua in agents), return_exceptions=True)
        for ua, r in zip(agents, results, strict=True):
            if isinstance(r, Exception):
                log.warning("demo agent did not close cleanly", extra={"fields": {"agent": ua.user, "error": str(r)}})
        self._opened.clear()

    @property
    def caller_address(self) -> tuple[str, int]:
        """Where the callers send from (the trusted endpoint's host and port), once started."""
        return self._callers.address

    @property
    def stats(self) -> StreamStats:
        c = self._counts
        return StreamStats(len(self._agents), sum(a.registered for a in self._agents), c["placed"],
                           len(self._waiting), len(self._on_line), c["answered"], c["abandoned"], c["rejected"],
                           c["failed"], c["skipped"], c["agent_calls"])

    # -- the background task --------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._register_agents()
            await self._arrivals()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("demo stream stopped by an error")

    async def _register_agents(self) -> None:
        results = await asyncio.gather(*(a.ua.register(expires=300, refresh=True) for a in self._agents),
                                       return_exceptions=True)
        for agent, r in zip(self._agents, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("demo agent could not register", extra={"fields": {"agent": agent.user, "error": str(r)}})
            elif not r.ok:
                log.warning("demo agent could not register", extra={"fields": {"agent": agent.user,
                                                                               "status": r.status, "reason": r.reason}})
            else:
                agent.registered = True

    async def _arrivals(self) -> None:
        """A Poisson process: exponential gaps between arrivals, until cancelled."""
        rate = self.calls_per_hour / 3600.0
        while not self.stopped:
            await asyncio.sleep(self.rng.expovariate(rate))
            try:
                self._arrive()
            except Exception:
                log.exception("demo caller could not call")

    def _arrive(self) -> None:
        if len(self._on_line) >= self.max_callers:
            self._counts["skipped"] += 1
            return
        caller_id = self._caller_id()
        if caller_id is None:
            self._counts["skipped"] += 1
            return
        number = self.rng.choice(self.numbers)
        patience = min(self.rng.expovariate(1.0 / self.mean_patience), self.max_call)
        try:
            call = self._callers.place(number, patience=patience, wait_for_connect=True, from_user=caller_id)
        except SipCallError as e:
            self._counts["failed"] += 1
            log.info("demo caller could not call", extra={"fields": {"number": number, "error": str(e)}})
            return
        self._counts["placed"] += 1
        self._on_line.add(caller_id)
        self._waiting[caller_id] = call
        log.debug("demo caller calls", extra={"fields": {"caller": caller_id, "number": number,
                                                         "patience": round(patience, 1)}})
        task = asyncio.get_running_loop().create_task(self._follow_call(caller_id, call))
        self._follow.add(task)
        task.add_done_callback(self._follow.discard)

    def _caller_id(self) -> str | None:
        for _ in range(CALLER_ID_TRIES):
            candidate = f"{self.caller_prefix}{self.rng.randrange(10 ** self.caller_digits):0{self.caller_digits}d}"
            if candidate not in self._on_line:
                return candidate
        return None

    async def _follow_call(self, caller_id: str, call: OutgoingCall) -> None:
        try:
            result = await call.wait()
            key = {CallOutcome.ANSWERED: "answered", CallOutcome.ABANDONED: "abandoned",
                   CallOutcome.REJECTED: "rejected"}.get(result.outcome, "failed")
            self._counts[key] += 1
            log.debug("demo call ended", extra={"fields": {"caller": caller_id, "number": result.number,
                                                           "outcome": result.outcome.value, "status": result.status}})
        except asyncio.CancelledError:
            self._counts["failed"] += 1
            raise
        except Exception:
            self._counts["failed"] += 1
            log.exception("demo call failed", extra={"fields": {"caller": caller_id}})
        finally:
            if self._waiting.get(caller_id) is call:
                del self._waiting[caller_id]
            self._on_line.discard(caller_id)

    def _agent_answered(self, call: IncomingCall) -> None:
        """An agent's phone answered: the caller whose caller ID the call carries is connected to a person."""
        self._counts["agent_calls"] += 1
        caller = self._waiting.pop(call.caller, None)
        if caller is not None:
            caller.connect()
