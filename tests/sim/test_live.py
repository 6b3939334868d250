"""The live simulator against a real Hatif: virtual agents and callers over SIP, figures that add up, and
the `hatif simulate` command line in both modes."""

from __future__ import annotations

import argparse
import io
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import free_port

from hatif.sim import cli
from hatif.sim.live import LiveScenario, run_live
from hatif.sim.ua import CallOutcome
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

TIMERS = Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0)
AGENTS = (("1001", "agent-pass-1"), ("1002", "agent-pass-2"), ("1003", "agent-pass-3"))
CALLER = ("1009", "caller-pass-9")

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: 10
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
  registration: {{min_expires: 10}}
security:
  flood_limit: 100000
media:
  port_min: {pmin}
  port_max: {pmax}
  cache: {cache}
logging:
  level: warning
tenants:
  - name: default
    users:
{users}
    endpoints:
      - {{name: sim, host: 127.0.0.1, port: {caller_port}}}
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
      - {{match: '^600$', to: 'app:echo'}}
"""


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.caller_port = free_port(tcp=False)
        pmin = 39600  # RTP ports of this file's servers (outside free_port's range, which fragments)
        users = "\n".join(f'      - {{username: "{u}", password: "{p}"}}' for u, p in (*AGENTS, CALLER))
        self.hatif = RunningHatif(CONFIG.format(port=free_port(tcp=False), pmin=pmin, pmax=pmin + 399, cache=tmp,
                                                users=users, caller_port=self.caller_port))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("cache"))
    with r.hatif:
        yield r


def no_calls_left(h: RunningHatif, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = h.counts()
        if counts["calls"] == 0 and counts["dialogs"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_callers_dialing_agents_in_turn(rig: Rig) -> None:
    # 20 callers in about 3.5 s dial 1001, 1002, 1003 in turn, from a trusted endpoint (so each sends its
    # own caller ID); agents ring 0.05-0.3 s, talk 0.5 s on average and take 0.2 s of wrap-up. Impatient
    # callers (0.5 s on average) abandon some calls, and a busy agent answers 486 to others.
    scenario = LiveScenario(numbers=("1001", "1002", "1003"), agents=AGENTS, calls_per_hour=20_000,
                            mean_handle=0.5, mean_patience=0.5, answer_delay=(0.05, 0.3), wrapup=0.2, calls=20,
                            answer_within=0.5, caller_port=rig.caller_port, local_host="127.0.0.1", max_call=5.0,
                            timers=TIMERS)
    progress: list[tuple[int, int]] = []
    result = run_live(rig.hatif.address(), scenario, seed=3, progress=lambda d, t: progress.append((d, t)))
    overall = result.summary.overall
    assert overall.offered == 20 and overall.answered + overall.abandoned + overall.left == 20, overall
    assert overall.answered >= 3 and overall.abandoned >= 1, result.report()
    assert sum(q.offered for q in result.summary.queues) == 20
    assert progress[-1] == (20, 20) and len(progress) == 20
    # Every caller that reached an agent reached the one it dialed, matched by its caller ID.
    for caller in result.callers:
        assert caller.result is not None
        if caller.outcome is CallOutcome.ANSWERED:
            assert caller.agent == caller.number, caller
            wait = caller.result.wait
            assert wait is not None and 0.03 <= wait < 2.0
    # No agent ever had two calls at once, and the answered calls match on both sides.
    taken = 0
    for agent, calls in result.agent_calls.items():
        ordered = sorted(calls, key=lambda c: c.offered)
        for before, after in itertools.pairwise(ordered):
            assert after.offered >= before.ended, (agent, before, after)
        taken += sum(1 for c in calls if c.answered is not None)
    assert taken >= overall.answered
    assert sum(result.summary.calls_per_agent.values()) == taken
    assert 0 < result.summary.occupancy < 1
    lines = result.report().splitlines()
    assert [line.split()[0] for line in lines[1:5]] == ["1001", "1002", "1003", "overall"]
    assert lines[4].split()[1] == "20"
    assert any(line.startswith("occupancy ") and "live with 3 agents" in line for line in lines)
    assert no_calls_left(rig.hatif)


def test_waiting_for_an_agent_behind_a_number_hatif_answers(rig: Rig) -> None:
    # 600 is Hatif's echo test: answered at once at SIP level, yet no agent ever takes these callers, so
    # with wait_for_agent every one of them runs out of patience and hangs up (BYE, or CANCEL if sooner).
    scenario = LiveScenario(numbers=("600",), agents=AGENTS[:1], calls_per_hour=36_000, mean_handle=1.0,
                            mean_patience=0.4, calls=5, caller=CALLER, wait_for_agent=True,
                            local_host="127.0.0.1", max_call=5.0, timers=TIMERS)
    result = run_live(rig.hatif.address(), scenario, seed=1)
    overall = result.summary.overall
    assert overall.offered == 5 and overall.abandoned == 5 and overall.answered == 0
    assert overall.service_level.value == 0.0
    sip_answered = [c for c in result.callers if c.result is not None and c.result.answered is not None]
    assert sip_answered and all(c.result is not None and c.result.connected is None for c in sip_answered)
    assert result.agent_calls == {"1001": ()}
    assert no_calls_left(rig.hatif)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hatif")
    verbs = parser.add_subparsers(dest="verb")
    cli.add_parser(verbs)
    return parser.parse_args(["simulate", *argv])


def test_cli_fast_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["--mode", "fast", "--agents", "5", "--calls-per-hour", "80", "--handle", "180",
                  "--patience", "120", "--calls", "2000", "--seed", "4", "--compare"])
    assert cli.run(args) == 0
    out, err = capsys.readouterr()
    assert "SL 20s" in out and "ASA" in out and "abandoned" in out and "occupancy" in out
    overall = next(line for line in out.splitlines() if line.startswith("overall"))
    assert overall.split()[1] == "2,000"
    assert "longest_idle" in out and "fewest_calls" in out  # the strategy comparison
    assert "2000/2000" in err  # the progress bar ended full


def test_cli_live_and_usage_errors(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    host, port = rig.hatif.address()
    args = parse(["--mode", "live", "--server", f"{host}:{port}", "--number", "600", "--agents", "1001-1002",
                  "--password", "agent-pass-1", "--caller", "1009:caller-pass-9", "--calls", "3",
                  "--calls-per-hour", "36000", "--handle", "1", "--patience", "0.3", "--wait-for-agent",
                  "--local-host", "127.0.0.1", "--quiet"])
    # 1002's password is not agent-pass-1: the run cannot start, and says who could not register.
    assert cli.run(args) == 1
    assert "1002" in capsys.readouterr().err
    args = parse(["--mode", "live", "--server", f"{host}:{port}", "--number", "600",
                  "--agents", "1001:agent-pass-1,1002:agent-pass-2", "--caller", "1009:caller-pass-9",
                  "--calls", "3", "--calls-per-hour", "36000", "--handle", "1", "--patience", "0.3",
                  "--wait-for-agent", "--local-host", "127.0.0.1"])
    assert cli.run(args) == 0
    out, err = capsys.readouterr()
    assert "overall" in out and "live with 2 agents" in out and "3/3" in err
    assert cli.run(parse(["--mode", "live", "--number", "600", "--agents", "1001"])) == 2  # no --server
    assert "--server" in capsys.readouterr().err
    assert cli.run(parse(["--mode", "fast", "--agents", "1001-1003"])) == 2
    assert "--agents" in capsys.readouterr().err
    stream = io.StringIO()
    bar = cli.ProgressBar(stream, width=10)
    bar(5, 10)
    bar(10, 10)
    assert stream.getvalue().endswith("10/10\n")
