"""The tenant's schedules and number lists, which IVR conditions consult (`hours`, `caller_in`).

Configured beside the flows::

    timezone: Asia/Riyadh
    schedules:
      office:
        open: {sun-thu: "08:00-17:00", sat: ["09:00-12:00", "16:00-20:00"]}
        holidays: ["2026-09-23", "12-31"]
    lists:
      vip: ["+966 50 123 4567", "1001"]

A schedule is judged in its own `timezone` or the tenant's (IANA names, read with `zoneinfo`), so a
center in Riyadh and one in Tehran each open at their own 08:00, daylight saving included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    model_validator,
)

_NUMBER_CHARS = re.compile(r"\+?[0-9 ()./-]+")
_TIME = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (such as Asia/Riyadh or Europe/London)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
"""An IANA time zone name checked against the system's zoneinfo database (for the tenant's `timezone`)."""


def normalize_number(text: str) -> str:
    """A telephone number as digits with its leading + kept: '+966 (50) 123-4567' -> '+966501234567'."""
    text = text.strip()
    digits = "".join(c for c in text if c.isascii() and c.isdigit())
    return "+" + digits if text.startswith("+") else digits


def parse_number(text: str) -> str:
    if not _NUMBER_CHARS.fullmatch(text.strip()) or not any(c.isdigit() for c in text):
        raise ValueError(f"{text!r} is not a telephone number (digits, with an optional leading +)")
    number = normalize_number(text)
    if len(number.lstrip("+")) > 32:
        raise ValueError(f"{text!r} is too long for a telephone number (at most 32 digits)")
    return number


def _minutes(text: str, original: str) -> int:
    m = _TIME.fullmatch(text.strip())
    if m is None or (int(m.group(1)) == 24 and m.group(2) != "00"):
        raise ValueError(f"{original!r}: {text.strip()!r} is not a time of day HH:MM (00:00 to 24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Open from `start` to `end` (minutes after midnight); an `end` at or before `start` runs past midnight."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        first, sep, second = text.partition("-")
        if not sep:
            raise ValueError(f"{text!r} is not a range of hours, e.g. '08:00-17:00'")
        start, end = _minutes(first, text), _minutes(second, text)
        if start == 24 * 60:
            raise ValueError(f"{text!r}: a range cannot start at 24:00")
        return cls(start, end)

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


def _time_range(value: object) -> TimeRange:
    if isinstance(value, TimeRange):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a range of hours, e.g. '08:00-17:00'")
    return TimeRange.parse(value)


def _days(text: str) -> tuple[int, ...]:
    """`mon`, `sun-thu` or `sat-wed` (wrapping over the week) as weekday numbers (Monday is 0)."""
    first, sep, last = text.strip().lower().partition("-")
    if first not in _WEEKDAYS or (sep and last not in _WEEKDAYS):
        raise ValueError(f"{text!r} is not a day or a range of days (mon, tue, wed, thu, fri, sat, sun; e.g. sun-thu)")
    a = _WEEKDAYS.index(first)
    b = _WEEKDAYS.index(last) if sep else a
    return tuple((a + i) % 7 for i in range((b - a) % 7 + 1))


def _day_key(value: str) -> str:
    _days(value)
    return value.strip().lower()


def _ranges(value: object) -> object:
    return [value] if isinstance(value, str | TimeRange) else value


def _holiday(value: object) -> str:
    """A date `YYYY-MM-DD` (YAML reads it as a date) or a yearly `MM-DD`, kept as text."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
                return date.fromisoformat(text).isoformat()
            if re.fullmatch(r"[0-9]{2}-[0-9]{2}", text):
                date.fromisoformat(f"2000-{text}")  # a leap year: 02-29 is a valid yearly date
                return text
        except ValueError:
            raise ValueError(f"{value!r} is not a real date") from None
    raise ValueError(f"{value!r} is not a holiday: a date YYYY-MM-DD, or MM-DD for every year")


Range = Annotated[TimeRange, PlainValidator(_time_range), PlainSerializer(str)]


class Schedule(_Model):
    """Weekly opening hours with holidays, in `timezone` (the tenant's when absent).

    `open` maps days (`mon`, or a range such as `sun-thu`) to one range or a list of ranges of hours;
    days not named are closed. A range ending at or before its start (`22:00-06:00`) runs into the next
    morning. `holidays` are closed all day: `2026-09-23` on that date, `01-01` every year. Closed dates
    are judged by the local calendar date, so a night range is cut at midnight before a holiday.
    """

    timezone: TimeZoneName | None = None
    open: dict[Annotated[str, AfterValidator(_day_key)], Annotated[tuple[Range, ...], BeforeValidator(_ranges)]]
    holidays: tuple[Annotated[str, PlainValidator(_holiday)], ...] = ()

    _week: tuple[tuple[TimeRange, ...], ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        week: list[list[TimeRange]] = [[] for _ in range(7)]
        for key, ranges in self.open.items():
            for day in _days(key):
                week[day] += ranges
        self._week = tuple(tuple(day) for day in week)

    def is_open(self, when: float, zone: ZoneInfo | None = None) -> bool:
        """Whether the schedule is open at Unix time `when` (in `timezone`, else in `zone`, else UTC)."""
        tz = ZoneInfo(self.timezone) if self.timezone else zone or ZoneInfo("UTC")
        local = datetime.fromtimestamp(when, tz)
        if self._closed_on(local.date()):
            return False
        minute = local.hour * 60 + local.minute
        today, yesterday = self._week[local.weekday()], self._week[(local.weekday() - 1) % 7]
        for r in today:
            if r.start <= minute and (r.overnight or minute < r.end):
                return True
        return any(r.overnight and minute < r.end for r in yesterday)

    def _closed_on(self, day: date) -> bool:
        return day.isoformat() in self.holidays or day.isoformat()[5:] in self.holidays


def _number_list(value: object) -> object:
    return {"numbers": value} if isinstance(value, list | tuple) else value


class NumberList(_Model):
    """A named list of telephone numbers (VIP callers, blocked numbers), compared after normalizing.

    Written as a list or as `{numbers: [...], description: ...}`; `+966 50 123 4567` and `+966501234567`
    are the same entry. A number is matched whole: `0501234567` is not `+966501234567`.
    """

    numbers: tuple[Annotated[str, AfterValidator(parse_number)], ...]
    description: str | None = None

    _set: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return _number_list(data)

    def model_post_init(self, context: Any, /) -> None:
        self._set = frozenset(self.numbers)

    def __contains__(self, number: object) -> bool:
        return isinstance(number, str) and normalize_number(number) in self._set
