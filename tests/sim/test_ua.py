"""The simulator's SIP user agent against a real Hatif: registration with digest, calls answered and hung
up from either side, CANCEL when patience runs out, 486, and wrong passwords refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from peers import free_port

from hatif.sim.ua import Answer, CallOutcome, IncomingCall, UserAgent
from hatif.sip.transaction import Timers
from hatif_server import RunningHatif

T = TypeVar("T")
TIMERS = Timers(t1=0.1, t2=0.8, t4=1.0, d=1.0)
PASSWORDS = {"1001": "secret-1001", "1002": "secret-1002", "1003": "secret-1003"}

CONFIG = """
sip:
  listen: ["udp:127.0.0.1:{port}"]
  ring_timeout: 10
  timers: {{t1: 0.1, t2: 0.8, t4: 1.0, d: 1.0}}
  registration: {{min_expires: 10}}
security:
  digest_algorithms: [SHA-256, MD5]  # opted in: these tests check both
  flood_limit: 100000
  auth_failure_limit: 1000
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
    dialplan:
      - {{match: '^1\\d{{3}}$', to: extension}}
      - {{match: '^600$', to: 'app:echo'}}
"""


def config_text(tmp: Path, users: dict[str, str]) -> str:
    lines = "\n".join(f'      - {{username: "{u}", password: "{p}"}}' for u, p in users.items())
    pmin = 39000  # RTP ports of this file's servers (outside free_port's range, which fragments)
    return CONFIG.format(port=free_port(tcp=False), pmin=pmin, pmax=pmin + 399, cache=tmp, users=lines)


@pytest.fixture(scope="module")
def hatif(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHatif]:
    with RunningHatif(config_text(tmp_path_factory.mktemp("cache"), PASSWORDS)) as h:
        yield h


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)
    return asyncio.run(bounded())


def agent(h: RunningHatif, user: str, **kw: object) -> UserAgent:
    return UserAgent(h.address(), user=user, password=PASSWORDS[user], local_host="127.0.0.1", timers=TIMERS,
                     **kw)  # type: ignore[arg-type]


def bindings(h: RunningHatif, user: str) -> int:
    return h.call(lambda: len(h.h.sip.registry.lookup(("default", user), h.h.sip.now())))


def no_calls_left(h: RunningHatif, timeout: float = 5.0) -> bool:
    """Hatif holds no call and no dialog (bounded wait; its transactions end on their own timers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = h.counts()
        if counts["calls"] == 0 and counts["dialogs"] == 0:
            return True
        time.sleep(0.05)
    return False


def test_register_reregister_unregister_with_sha256_and_md5(hatif: RunningHatif) -> None:
    async def scenario() -> None:
        async with agent(hatif, "1001") as a, agent(hatif, "1002", algorithms=("MD5",)) as b:
            first = await a.register(expires=30)
            assert first.ok and first.expires == 30 and first.algorithm == "SHA-256", first
            again = await a.register(expires=60)  # re-registration: same Call-ID, next CSeq, same binding
            assert again.ok and again.expires == 60
            assert bindings(hatif, "1001") == 1
            md5 = await b.register(expires=5)  # below min_expires: 423, then the asked 10 s
            assert md5.ok and md5.algorithm == "MD5" and md5.expires == 10, md5
            gone = await a.unregister()
            assert gone.ok and bindings(hatif, "1001") == 0
            assert bindings(hatif, "1002") == 1
        assert bindings(hatif, "1002") == 0  # close() unregisters

    run(scenario)


def test_wrong_password_is_refused_for_register_and_invite(hatif: RunningHatif) -> None:
    async def scenario() -> None:
        async with UserAgent(hatif.address(), user="1003", password="not-the-password", local_host="127.0.0.1",
                             timers=TIMERS) as ua:
            reg = await ua.register()
            assert reg.status == 401 and not reg.ok
            result = await ua.call("1001", patience=3)
            assert result.outcome is CallOutcome.REJECTED and result.status == 407
        assert bindings(hatif, "1003") == 0

    run(scenario)


def test_answered_call_with_media_and_bye_from_the_caller(hatif: RunningHatif) -> None:
    seen: list[IncomingCall] = []

    async def scenario() -> None:
        async with agent(hatif, "1001", rtp=True) as caller, \
                agent(hatif, "1002", rtp=True, tone_hz=440, answer=Answer(after=0.2),
                      on_ended=seen.append) as callee:
            assert (await callee.register()).ok
            result = await caller.call("1002", patience=5, talk=0.6)
            assert result.outcome is CallOutcome.ANSWERED and result.status == 200, result
            assert result.ended_by == "local"
            assert result.ringing is not None and result.answered is not None
            assert result.invite_sent < result.ringing < result.answered < result.ended
            assert result.answered - result.ringing >= 0.15  # the callee rang for 0.2 s
            # RTP went both ways through Hatif's media anchor.
            assert result.rtp_sent >= 20 and result.rtp_received >= 10, result
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.02)
            assert len(seen) == 1 and seen[0].ended_by == "remote" and seen[0].outcome is CallOutcome.ANSWERED
            assert seen[0].caller == "1001"  # Hatif's new leg names the caller

    run(scenario)
    assert no_calls_left(hatif)


def test_bye_from_the_callee(hatif: RunningHatif) -> None:
    async def scenario() -> None:
        async with agent(hatif, "1001") as caller, \
                agent(hatif, "1002", answer=Answer(after=0.0, hang_up_after=0.3)) as callee:
            assert (await callee.register()).ok
            result = await caller.call("1002", patience=5)
            assert result.outcome is CallOutcome.ANSWERED and result.ended_by == "remote", result
            assert result.answered is not None and 0.25 <= result.ended - result.answered < 2.0

    run(scenario)


def test_cancel_when_patience_runs_out_and_486(hatif: RunningHatif) -> None:
    ended: list[IncomingCall] = []

    def policy(call: IncomingCall) -> Answer:
        return Answer(after=5.0) if call.caller == "1001" else Answer(reject=486)

    async def scenario() -> None:
        async with agent(hatif, "1001") as caller, agent(hatif, "1003") as other, \
                agent(hatif, "1002", answer=policy, on_ended=ended.append) as callee:
            assert (await callee.register()).ok
            (await other.register())
            abandoned = await caller.call("1002", patience=0.4)
            assert abandoned.outcome is CallOutcome.ABANDONED and abandoned.status == 487, abandoned
            assert abandoned.ringing is not None and 0.35 <= abandoned.ended - abandoned.invite_sent < 3
            busy = await other.call("1002", patience=5)
            assert busy.outcome is CallOutcome.REJECTED and busy.status == 486, busy
            for _ in range(50):
                if len(ended) == 2:
                    break
                await asyncio.sleep(0.02)
            outcomes = sorted((c.outcome.value if c.outcome else "", c.status) for c in ended)
            assert outcomes == [("abandoned", 487), ("rejected", 486)]

    run(scenario)
    assert no_calls_left(hatif)


def test_unregistered_callee_and_close_ends_calls(hatif: RunningHatif) -> None:
    async def scenario() -> None:
        async with agent(hatif, "1001") as caller:
            unreachable = await caller.call("1003", patience=5)
            assert unreachable.outcome is CallOutcome.REJECTED and unreachable.status == 480
            echo = caller.place("600", patience=5)  # answered by Hatif itself; nobody hangs up
            for _ in range(100):
                if echo.answered is not None:
                    break
                await asyncio.sleep(0.02)
            assert echo.answered is not None
            await caller.close()
            result = await echo.wait()
            assert result.outcome is CallOutcome.ANSWERED and result.ended_by == "local"

    run(scenario)
    assert no_calls_left(hatif)
