"""Structured logs: one line per event, plain for people, JSON for collectors.

Convention, used everywhere in Hatif: a log call carries a short fixed message and its data as a dict
under the `fields` key of `extra`::

    log = logging.getLogger(__name__)
    log.info("registered", extra={"fields": {"user": "1001", "contact": "sip:1001@10.0.0.7:5060"}})

The message says what happened and never embeds values (so lines can be grouped and counted); values go
in `fields`. Other `extra` keys are ignored. Plain lines read::

    2026-11-23T07:31:02.123Z INFO hatif.sip.registrar registered user=1001 contact=sip:1001@10.0.0.7:5060

Values with spaces, quotes, `=` or control characters are written as JSON strings, and line breaks in
messages are escaped, so a SIP header a caller controls cannot forge a log line. JSON lines hold `ts`,
`level`, `logger`, `msg`, then the fields (a field named like one of these four, or `exc`, is written
as `field.NAME`), and `exc` with the traceback when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})
_BARE_UNSAFE = frozenset(' "=\\')


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (`extra={"fields": {...}}`), or an empty dict."""
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def timestamp(record: logging.LogRecord) -> str:
    """The record's creation time in UTC, ISO 8601 with milliseconds: `2026-11-23T07:31:02.123Z`."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _plain_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c in _BARE_UNSAFE or not c.isprintable() for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


class PlainFormatter(logging.Formatter):
    """`TS LEVEL LOGGER message key=value ...`; a traceback follows on indented lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [timestamp(record), record.levelname, record.name, _one_line(record.getMessage())]
        parts += [f"{_one_line(str(k))}={_plain_value(v)}" for k, v in fields_of(record).items()]
        line = " ".join(parts)
        trace = self._trace(record)
        if trace:
            line += "\n" + "\n".join("    " + t for t in trace.splitlines())
        return line

    def _trace(self, record: logging.LogRecord) -> str:
        out = []
        if record.exc_info:
            out.append(self.formatException(record.exc_info))
        if record.stack_info:
            out.append(self.formatStack(record.stack_info))
        return "\n".join(out)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts`, `level`, `logger`, `msg`, the fields, and `exc` if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            name = str(key)
            entry[f"field.{name}" if name in _RESERVED else name] = value
        trace = []
        if record.exc_info:
            trace.append(self.formatException(record.exc_info))
        if record.stack_info:
            trace.append(self.formatStack(record.stack_info))
        if trace:
            entry["exc"] = "\n".join(trace)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _HatifHandler(logging.StreamHandler[IO[str]]):
    """The handler `setup_logging` installs; recognised so that a second call replaces it."""


def setup_logging(level: str = "info", fmt: Literal["plain", "json"] = "plain",
                  stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record at `level` or above to `stream` (standard error by default) in `fmt`.

    Installs one handler on the root logger, replacing the one an earlier call installed, and returns it.
    """
    threshold = LEVELS.get(level.lower())
    if threshold is None:
        raise ValueError(f"unknown log level {level!r} (expected one of: {', '.join(LEVELS)})")
    if fmt == "plain":
        formatter: logging.Formatter = PlainFormatter()
    elif fmt == "json":
        formatter = JsonFormatter()
    else:
        raise ValueError(f"unknown log format {fmt!r} (expected plain or json)")
    handler = _HatifHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _HatifHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    return handler
