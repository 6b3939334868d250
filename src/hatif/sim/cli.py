"""`hatif simulate`: the fast simulator (the real router on a virtual clock) or a live run over real SIP.

    hatif simulate --mode fast --agents 12 --calls-per-hour 200 --handle 180 --patience 180 --hours 100
    hatif simulate --mode live --server 127.0.0.1:5060 --number 1001 --agents 1001-1003 \\
        --caller 1005:hatif-demo --calls-per-hour 600 --handle 20 --patience 30 --duration 120

Both print the same table (service level, ASA, abandonment, share that waited, per number or queue and
overall, then occupancy) to standard output, and a progress bar to standard error. Exit codes as for
`hatif`: 0 done, 1 the live run could not start (an agent could not register, no server), 2 a usage error.

A live run sends every request from this machine's address: a Hatif with the default flood limit
(`security.flood_limit`, 16 requests in 2 s) bans it within seconds. For a live run, raise the limit, or
list the callers as a trusted endpoint and give its port with `--caller-port` (they then need no
`--caller` credentials, and each call carries its own caller ID).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from ..acd import Strategy
from ..config import DEMO_PASSWORD, parse_host_port
from ..errors import SimError
from ..sip.transaction import Timers
from .fast import HandleDistribution, SimulationResult, compare_strategies, run_fast, single_queue_scenario
from .live import LiveError, LiveScenario, run_live


class UsageError(SimError, ValueError):
    """A command-line value that cannot be used; the text names the option."""


class ProgressBar:
    """`[#######.......] 45/100` on one line of `stream`, redrawn as work progresses, ended by a newline."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self._drawn = -1

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        if filled == self._drawn and done != total:
            return
        self._drawn = filled
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
            self._drawn = -1
        self.stream.flush()


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `simulate` verb to the `hatif` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="simulate a contact center: fast (virtual clock) or live (virtual agents over SIP)",
        description="Simulate callers and agents. fast: the real ACD router on a virtual clock (days in "
                    "seconds). live: virtual agents and callers over real SIP against a running Hatif, in "
                    "real time.")
    p.add_argument("--mode", choices=("fast", "live"), default="fast")
    p.add_argument("--agents", default="10", metavar="N|USERS",
                   help="fast: how many agents; live: 1001-1005, or 1001,1002 (with --password), "
                        "or 1001:PASS,1002:PASS")
    p.add_argument("--calls-per-hour", type=float, default=120.0, metavar="RATE", help="Poisson arrival rate")
    p.add_argument("--handle", type=float, metavar="SECONDS", help="mean handle time (fast 180, live 20)")
    p.add_argument("--handle-dist", choices=[d.value for d in HandleDistribution], default="exponential")
    p.add_argument("--handle-cv", type=float, default=1.0, help="coefficient of variation of lognormal handle times")
    p.add_argument("--patience", type=float, metavar="SECONDS", help="mean (exponential) patience; default: none")
    p.add_argument("--wrapup", type=float, default=0.0, metavar="SECONDS", help="after-call work per call")
    p.add_argument("--answer-within", type=float, default=20.0, metavar="T", help="service-level threshold")
    p.add_argument("--calls", type=int, help="fast: calls to simulate (default 10000); live: stop after this many")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    fast = p.add_argument_group("fast mode")
    fast.add_argument("--hours", type=float, help="simulate this many hours of arrivals instead of --calls")
    fast.add_argument("--warmup", type=int, default=0, metavar="CALLS", help="calls left out of the figures")
    fast.add_argument("--strategy", choices=[s.value for s in Strategy], default=Strategy.LONGEST_IDLE.value)
    fast.add_argument("--compare", action="store_true", help="also run every routing strategy on the same callers")
    live = p.add_argument_group("live mode")
    live.add_argument("--server", metavar="HOST:PORT", help="the Hatif to call (required in live mode)")
    live.add_argument("--number", action="append", metavar="NUMBER",
                      help="number the callers dial (repeat, or comma-separate, to dial several in turn)")
    live.add_argument("--password", default=DEMO_PASSWORD, help="the agents' password when --agents has none")
    live.add_argument("--caller", metavar="USER:PASSWORD", help="credentials of the callers (default: none, "
                      "as a trusted endpoint at --caller-port)")
    live.add_argument("--caller-port", type=int, default=0, help="local UDP port of the callers")
    live.add_argument("--duration", type=float, default=60.0, metavar="SECONDS", help="how long callers arrive")
    live.add_argument("--answer-delay", default="0.5,2", metavar="LOW,HIGH", help="agents ring this long")
    live.add_argument("--wait-for-agent", action="store_true",
                      help="a caller answered by an IVR or queue waits until an agent takes the call")
    live.add_argument("--rtp", action="store_true", help="send 20 ms RTP frames on answered calls")
    live.add_argument("--local-host", metavar="ADDRESS", help="local address to bind (default: the route to "
                                                               "the server)")
    live.add_argument("--max-call", type=float, default=600.0, metavar="SECONDS", help="bound on any one call")
    live.add_argument("--t1", type=float, default=0.5, help="SIP timer T1 of the virtual phones (RFC 3261)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run `hatif simulate` with parsed arguments; the exit code."""
    try:
        if args.mode == "fast":
            return _fast(args)
        return _live(args)
    except UsageError as e:
        sys.stderr.write(f"hatif simulate: {e}\n")
        return 2


def _progress(args: argparse.Namespace) -> ProgressBar | None:
    return None if args.quiet else ProgressBar(sys.stderr)


def _fast(args: argparse.Namespace) -> int:
    try:
        agents = int(args.agents)
    except ValueError:
        raise UsageError(f"--agents: fast mode wants a number of agents, not {args.agents!r}") from None
    calls = args.calls if args.calls is not None else 10_000
    if args.hours is not None:
        calls = max(1, round(args.hours * args.calls_per_hour))
    try:
        scenario = single_queue_scenario(
            agents, args.calls_per_hour, args.handle if args.handle is not None else 180.0,
            mean_patience=args.patience, strategy=Strategy(args.strategy), wrapup=args.wrapup, calls=calls,
            answer_within=args.answer_within, warmup_calls=args.warmup, handle=HandleDistribution(args.handle_dist),
            handle_cv=args.handle_cv)
    except ValueError as e:
        raise UsageError(str(e)) from None
    result = run_fast(scenario, args.seed, _progress(args))
    sys.stdout.write(result.report() + "\n")
    if args.compare:
        others = compare_strategies(scenario, list(Strategy), args.seed)
        sys.stdout.write("\n" + _comparison(others, args.answer_within) + "\n")
    return 0


def _comparison(results: Mapping[Strategy, SimulationResult], within: float) -> str:
    lines = [f"{'strategy':<18}{'SL ' + format(within, 'g') + 's':>9}{'ASA':>9}{'abandoned':>11}{'occupancy':>11}"
             f"{'calls per agent':>17}"]
    for strategy, r in results.items():
        o = r.overall
        spread = f"{min(r.calls_per_agent.values())}-{max(r.calls_per_agent.values())}"
        lines.append(f"{strategy.value:<18}{100 * o.service_level.value:8.1f}%{o.asa.value:8.1f}s"
                     f"{100 * o.abandonment_rate.value:10.1f}%{100 * r.occupancy:10.1f}%{spread:>17}")
    return "\n".join(lines)


def parse_agents(text: str, password: str) -> tuple[tuple[str, str], ...]:
    """`1001-1005`, `1001,1002` or `1001:PASS,1002:PASS` as (user, password) pairs."""
    out: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        user, colon, pw = part.partition(":")
        first, dash, last = user.partition("-")
        if dash and not colon:
            if not (first.isdigit() and last.isdigit() and int(first) <= int(last) and len(first) == len(last)):
                raise UsageError(f"--agents: {part!r} is not a range of extensions like 1001-1005")
            if int(last) - int(first) >= 1000:
                raise UsageError(f"--agents: {part!r} is more than 1000 agents")
            out += [(str(n).zfill(len(first)), password) for n in range(int(first), int(last) + 1)]
        elif user:
            out.append((user, pw if colon else password))
        else:
            raise UsageError(f"--agents: {part!r} has no user name")
    return tuple(out)


def _range(text: str, option: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not LOW,HIGH in seconds") from None
    return pair


def _live(args: argparse.Namespace) -> int:
    if not args.server:
        raise UsageError("--server HOST:PORT is required in live mode")
    try:
        server = parse_host_port(args.server)
    except ValueError as e:
        raise UsageError(f"--server: {e}") from None
    numbers = tuple(n.strip() for text in (args.number or []) for n in text.split(",") if n.strip())
    if not numbers:
        raise UsageError("--number is required in live mode (the number callers dial, e.g. a queue's 800)")
    caller: tuple[str, str] | None = None
    if args.caller:
        user, colon, pw = args.caller.partition(":")
        if not colon or not user:
            raise UsageError("--caller wants USER:PASSWORD")
        caller = (user, pw)
    try:
        scenario = LiveScenario(
            numbers=numbers, agents=parse_agents(args.agents, args.password), calls_per_hour=args.calls_per_hour,
            mean_handle=args.handle if args.handle is not None else 20.0,
            handle=HandleDistribution(args.handle_dist), handle_cv=args.handle_cv, mean_patience=args.patience,
            answer_delay=_range(args.answer_delay, "--answer-delay"), wrapup=args.wrapup, duration=args.duration,
            calls=args.calls, answer_within=args.answer_within, caller=caller, caller_port=args.caller_port,
            wait_for_agent=args.wait_for_agent, rtp=args.rtp, max_call=args.max_call, local_host=args.local_host,
            timers=Timers(t1=args.t1, t2=8 * args.t1, t4=10 * args.t1, d=min(32.0, 64 * args.t1)))
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        result = run_live(server, scenario, seed=args.seed, progress=_progress(args))
    except (LiveError, OSError) as e:
        sys.stderr.write(f"hatif simulate: {e}\n")
        return 1
    sys.stdout.write(result.report() + "\n")
    return 0
