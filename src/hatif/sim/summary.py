"""The live summary `hatif demo` shows in the terminal until the web board exists: queues and agents.

`render` turns one `AcdSnapshot` into a small table (per queue: callers waiting, the longest wait, agents
available of those logged in, answered, abandoned, service level; then one line per agent: state, reason,
time in it). `summary_loop` redraws it every few seconds: in place on a terminal (ANSI cursor movement),
as successive blocks on anything else (a file, a pipe, a test's StringIO). It writes to the stream it is
given, never through logging: the table is for a person looking at the terminal, not a log record.

Widths are counted in terminal cells (wide East Asian characters take two, combining marks none), so a
name in any script lines up or, at worst, is cut with an ellipsis; nothing here depends on names being ASCII.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import unicodedata
from collections.abc import Callable
from typing import TextIO

from ..acd.snapshot import AcdSnapshot, AgentSnapshot, QueueSnapshot

log = logging.getLogger(__name__)

NONE = "—"
MAX_AGENT_LINES = 40  # agents listed; the rest are counted on one line
CURSOR_UP_AND_CLEAR = "\x1b[{n}F\x1b[J"  # ECMA-48 CPL (to the start of the line n lines up), then ED

STATE_NAMES = {
    "logged_out": "logged out",
    "available": "available",
    "ringing": "ringing",
    "on_call": "on call",
    "after_call_work": "after-call work",
    "not_ready": "not ready",
}

QUEUE_HEADER = ("queue", "waiting", "longest", "agents", "answered", "abandoned", "service level")
AGENT_HEADER = ("agent", "state", "reason", "for")


def cells(text: str) -> int:
    """Terminal cells `text` takes: 2 for wide and full-width characters, 0 for combining marks."""
    n = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def fit(text: str, width: int) -> str:
    """`text` cut to at most `width` cells, with an ellipsis when cut."""
    if cells(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = cells(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool = False) -> str:
    text = fit(text, width)
    space = " " * (width - cells(text))
    return space + text if right else text + space


def duration(seconds: float) -> str:
    """`m:ss` below an hour, `h:mm:ss` above; negative or not-a-number times show as 0:00."""
    s = int(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def service_level(q: QueueSnapshot) -> str:
    """The share answered within target as a whole percentage (rounded down, so 99.6% is not 100%), with the
    target, or an em dash before any call ended waiting."""
    sl = q.service_level
    if sl is None:
        return NONE
    percent = math.floor(100 * sl + 1e-9)
    return f"{percent}% in {q.service_level_target:g}s"


def _queue_row(q: QueueSnapshot) -> tuple[str, ...]:
    longest = duration(q.longest_wait) if q.waiting else NONE
    return (q.name, str(q.waiting), longest, f"{q.available}/{q.logged_in}", str(q.answered), str(q.abandoned),
            service_level(q))


def _agent_row(a: AgentSnapshot) -> tuple[str, ...]:
    return (a.agent, STATE_NAMES.get(a.state, a.state.replace("_", " ")), a.reason or "", duration(a.since))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int], width: int,
           name_max: int) -> list[str]:
    """Columns as wide as their widest cell (the first at most `name_max`), two spaces apart, lines cut to
    `width` cells."""
    widths = [max(cells(r[i]) for r in (header, *rows)) for i in range(len(header))]
    widths[0] = min(widths[0], name_max)
    lines = []
    for r in (header, *rows):
        line = "  ".join(_pad(cell, widths[i], i in right) for i, cell in enumerate(r)).rstrip()
        lines.append(fit(line, width))
    return lines


def render(snapshot: AcdSnapshot, width: int = 100) -> str:
    """The snapshot as lines of text no wider than `width` cells (see the module docstring)."""
    width = max(width, 20)
    queues = snapshot.queues
    agents = snapshot.agents
    waiting = sum(q.waiting for q in queues)
    available = sum(1 for a in agents if a.state == "available")
    logged_in = sum(1 for a in agents if a.state != "logged_out")
    title = (f"Hatif · tenant {snapshot.tenant} · {waiting} waiting · "
             f"{available} of {logged_in} agents available")
    lines = [fit(title, width)]
    if queues:
        lines += _table(QUEUE_HEADER, [_queue_row(q) for q in queues], {1, 2, 3, 4, 5, 6}, width, 24)
    else:
        lines.append("no queues")
    lines.append("")
    if agents:
        shown = [_agent_row(a) for a in agents[:MAX_AGENT_LINES]]
        lines += _table(AGENT_HEADER, shown, {3}, width, 24)
        if len(agents) > MAX_AGENT_LINES:
            lines.append(f"… and {len(agents) - MAX_AGENT_LINES} more agents")
    else:
        lines.append("no agents")
    return "\n".join(lines)


def _width(out: TextIO, default: int) -> int:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.get_terminal_size(out.fileno()).columns - 1
    return default


def _isatty(out: TextIO) -> bool:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return out.isatty()
    return False


async def summary_loop(get: Callable[[], AcdSnapshot | None], out: TextIO, *, every: float = 2.0,
                       stop: asyncio.Event, width: int = 100, note: str = "") -> None:
    """Write `render(get())` to `out` every `every` seconds until `stop` is set, with `note` (how to call,
    where the log is) below each block.

    On a terminal each block replaces the last (the cursor goes back up over it); elsewhere blocks follow
    one another, a blank line apart. `get` returning None (no ACD yet) writes a one-line note; `get`
    raising is logged and the loop goes on; `out` failing (a closed pipe) ends the loop.
    """
    if every <= 0:
        raise ValueError(f"every must be positive, not {every}")
    tty = _isatty(out)
    drawn = 0  # lines of the last block, to go back over on a terminal
    while not stop.is_set():
        try:
            snapshot = get()
            text = render(snapshot, _width(out, width) if tty else width) if snapshot is not None \
                else "Hatif · no ACD figures yet"
        except Exception:
            log.exception("live summary: reading the ACD failed")
            text = "Hatif · the ACD figures could not be read (see the log)"
        block = text + "\n" + ("\n" + "\n".join(fit(line, width) for line in note.splitlines()) + "\n"
                                 if note else "")
        try:
            if tty:
                out.write((CURSOR_UP_AND_CLEAR.format(n=drawn) if drawn else "") + block)
                drawn = block.count("\n")
            else:
                out.write(block + "\n")
            out.flush()
        except (OSError, ValueError):
            return  # the terminal or pipe is gone
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
