"""The terminal's live summary: the table for a hand-made ACD snapshot, and the redraw loop."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from hatif.acd.snapshot import AcdSnapshot, AgentSnapshot, QueueSnapshot
from hatif.sim.summary import cells, duration, render, service_level, summary_loop


def queue(name: str, *, waiting: int = 0, available: int = 0, logged_in: int = 0, longest: float = 0.0,
          answered: int = 0, in_target: int = 0, abandoned: int = 0, target: float = 20.0) -> QueueSnapshot:
    return QueueSnapshot(name, waiting, 0, available, logged_in, longest, answered + abandoned + waiting, answered,
                         in_target, abandoned, target)


SNAPSHOT = AcdSnapshot("default", (
    queue("sales", waiting=2, available=1, logged_in=3, longest=35.4, answered=12, in_target=10, abandoned=1),
    queue("support", available=2, logged_in=2),
), (
    AgentSnapshot("1001", "on_call", "", 65.0),
    AgentSnapshot("1002", "not_ready", "lunch", 760.0),
    AgentSnapshot("1003", "after_call_work", "", 3725.9),
))


def test_render_a_small_center_exactly() -> None:
    assert render(SNAPSHOT).splitlines() == [
        "Hatif · tenant default · 2 waiting · 0 of 3 agents available",
        "queue    waiting  longest  agents  answered  abandoned  service level",
        "sales          2     0:35     1/3        12          1     76% in 20s",
        "support        0        —     2/2         0          0              —",
        "",
        "agent  state            reason      for",
        "1001   on call                     1:05",
        "1002   not ready        lunch     12:40",
        "1003   after-call work          1:02:05",
    ]


def test_service_level_formatting_and_no_division_by_zero() -> None:
    assert service_level(queue("q")) == "—"  # nothing ended waiting yet
    assert service_level(queue("q", answered=0, abandoned=4)) == "0% in 20s"
    assert service_level(queue("q", answered=3, in_target=3)) == "100% in 20s"
    assert service_level(queue("q", answered=250, in_target=249, target=30)) == "99% in 30s"  # 99.6%: not 100%
    assert service_level(queue("q", answered=3, in_target=1, target=12.5)) == "33% in 12.5s"
    empty = AcdSnapshot("t", (), ())
    assert render(empty).splitlines() == ["Hatif · tenant t · 0 waiting · 0 of 0 agents available", "no queues", "",
                                          "no agents"]


def test_times_in_state() -> None:
    assert [duration(s) for s in (0, 9.99, 60, 3599, 3600, 36_061)] == [
        "0:00", "0:09", "1:00", "59:59", "1:00:00", "10:01:01"]
    assert duration(-2.0) == duration(float("nan")) == duration(float("inf")) == "0:00"


def test_width_is_respected_and_names_in_any_script_do_not_break_it() -> None:
    snap = AcdSnapshot("مركز", (queue("مبيعات-الرياض-" * 4, waiting=1, longest=5),),
                       (AgentSnapshot("أميرة حداد", "available", "", 4.0),
                        AgentSnapshot("رضا کریمی", "not_ready", "ناهار", 30.0),
                        AgentSnapshot("客服一号", "ringing", "", 1.0),
                        AgentSnapshot("x", "some_new_state", "", 1.0)))
    for width in (100, 40, 20):
        text = render(snap, width)
        assert all(cells(line) <= width for line in text.splitlines()), (width, text)
    lines = render(snap).splitlines()
    assert lines[2].startswith("مبيعات-الرياض-") and "…" in lines[2]  # a long name is cut, not the columns
    assert any(line.startswith("أميرة حداد") and "available" in line for line in lines)
    assert any("ناهار" in line for line in lines)
    assert any(line.startswith("x ") and "some new state" in line for line in lines)
    assert cells("客服") == 4 and cells("é") == 1  # wide characters take two cells, a combining mark none


def test_many_agents_are_counted_not_listed() -> None:
    agents = tuple(AgentSnapshot(f"{1000 + i}", "available", "", 1.0) for i in range(55))
    lines = render(AcdSnapshot("t", (), agents)).splitlines()
    assert lines[-1] == "… and 15 more agents"
    assert len(lines) == 1 + 1 + 1 + 1 + 40 + 1


def test_summary_loop_writes_blocks_until_stopped() -> None:
    out = io.StringIO()
    reads: list[float] = []

    def get() -> AcdSnapshot | None:
        reads.append(time.monotonic())
        return None if len(reads) == 1 else SNAPSHOT

    async def run() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(summary_loop(get, out, every=0.05, stop=stop))
        await asyncio.sleep(0.3)
        stop.set()
        started = time.monotonic()
        await asyncio.wait_for(task, 1.0)
        return time.monotonic() - started

    took = asyncio.run(run())
    assert took < 0.2
    text = out.getvalue()
    assert "\x1b[" not in text  # not a terminal: blocks follow one another, no cursor movement
    assert text.startswith("Hatif · no ACD figures yet\n\n")
    assert len(reads) >= 3 and text.count("Hatif · ") == len(reads)  # one block per read
    assert text.count("Hatif · tenant default") == len(reads) - 1 >= 2
    assert render(SNAPSHOT) + "\n\n" in text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_loop_redraws_in_place_on_a_terminal_and_survives_a_failing_read() -> None:
    out = FakeTerminal()
    calls = 0

    def get() -> AcdSnapshot:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the ACD is restarting")
        return SNAPSHOT

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(summary_loop(get, out, every=0.03, stop=stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 1.0)

    asyncio.run(run())
    text = out.getvalue()
    assert text.startswith(render(SNAPSHOT, 100) + "\n")  # the first block is drawn as is
    assert "\x1b[9F\x1b[J" + "Hatif · the ACD figures could not be read" in text  # back over its 9 lines
    assert "\x1b[1F\x1b[J" + render(SNAPSHOT, 100) in text  # then over the one-line note
    assert calls >= 4


def test_summary_loop_refuses_a_zero_period() -> None:
    with pytest.raises(ValueError, match="every"):
        asyncio.run(summary_loop(lambda: None, io.StringIO(), every=0, stop=asyncio.Event()))
