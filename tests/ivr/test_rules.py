"""Schedules (weekly hours, holidays, time zones, night ranges) and number lists."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from hatif.ivr.rules import NumberList, Schedule, normalize_number

RIYADH = ZoneInfo("Asia/Riyadh")
TEHRAN = ZoneInfo("Asia/Tehran")


def at(zone: ZoneInfo, *when: int) -> float:
    year, month, day, hour, minute = when
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def test_the_same_instant_is_open_in_one_zone_and_closed_in_another() -> None:
    office = Schedule.model_validate({"open": {"sat-thu": "08:00-17:00"}})
    instant = datetime(2026, 6, 7, 5, 0, tzinfo=UTC).timestamp()  # Sunday: 08:00 Riyadh, 08:30 Tehran, 05:00 UTC
    assert office.is_open(instant, RIYADH)
    assert office.is_open(instant, TEHRAN)
    assert not office.is_open(instant)  # UTC
    assert not office.is_open(instant - 60, RIYADH)
    assert office.is_open(instant - 60, TEHRAN)
    own_zone = Schedule.model_validate({"timezone": "Asia/Tehran", "open": {"sat-thu": "08:00-17:00"}})
    assert own_zone.is_open(instant - 60, RIYADH)  # a schedule's own zone wins over the tenant's


def test_day_boundary_and_night_ranges() -> None:
    clinic = Schedule.model_validate(yaml.safe_load("""
open:
  sun-wed: "08:00-24:00"
  thu: ["08:00-12:00", "20:00-02:00"]   # Thursday night runs into Friday 02:00
holidays: [2026-06-12]
"""))
    assert clinic.is_open(at(RIYADH, 2026, 6, 10, 23, 59), RIYADH)    # Wednesday
    assert not clinic.is_open(at(RIYADH, 2026, 6, 11, 0, 0), RIYADH)  # Thursday 00:00: Wednesday ended at 24:00
    assert clinic.is_open(at(RIYADH, 2026, 6, 11, 11, 59), RIYADH)
    assert not clinic.is_open(at(RIYADH, 2026, 6, 11, 12, 0), RIYADH)
    assert clinic.is_open(at(RIYADH, 2026, 6, 11, 23, 30), RIYADH)
    assert clinic.is_open(at(RIYADH, 2026, 6, 5, 1, 59), RIYADH)      # Friday 01:59 after Thursday night
    assert not clinic.is_open(at(RIYADH, 2026, 6, 5, 2, 0), RIYADH)
    assert not clinic.is_open(at(RIYADH, 2026, 6, 12, 1, 0), RIYADH)  # but Friday 12 June is a holiday
    assert not clinic.is_open(at(RIYADH, 2026, 6, 13, 10, 0), RIYADH)  # Saturday: not listed


def test_holidays_dated_and_yearly() -> None:
    office = Schedule.model_validate({"open": {"sat-wed": "08:00-16:00"}, "holidays": ["03-21", "2026-04-01"]})
    assert not office.is_open(at(TEHRAN, 2026, 3, 21, 10, 0), TEHRAN)   # Nowruz, every year
    assert not office.is_open(at(TEHRAN, 2027, 3, 21, 10, 0), TEHRAN)
    assert not office.is_open(at(TEHRAN, 2026, 4, 1, 10, 0), TEHRAN)    # Islamic Republic Day, that year
    assert office.is_open(at(TEHRAN, 2027, 3, 31, 10, 0), TEHRAN)        # a Wednesday, no holiday
    assert office.holidays == ("03-21", "2026-04-01")


@pytest.mark.parametrize(("data", "message"), [
    ({"open": {"mon-fry": "08:00-17:00"}}, "'mon-fry' is not a day or a range of days"),
    ({"open": {"mon": "8-17"}}, "'8-17': '8' is not a time of day HH:MM"),
    ({"open": {"mon": "08:00-24:30"}}, "'24:30' is not a time of day"),
    ({"open": {"mon": "0800"}}, "'0800' is not a range of hours"),
    ({"open": {"mon": "08:00-17:00"}, "holidays": ["02-30"]}, "'02-30' is not a real date"),
    ({"open": {"mon": "08:00-17:00"}, "holidays": ["Christmas"]}, "is not a holiday"),
    ({"open": {"mon": "08:00-17:00"}, "timezone": "Asia/Riyad"}, "'Asia/Riyad' is not an IANA time zone"),
    ({"open": {"mon": "08:00-17:00"}, "close": {}}, "Extra inputs are not permitted"),
])
def test_schedule_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        Schedule.model_validate(data)


def test_number_lists_normalize() -> None:
    vip = NumberList.model_validate(["+966 50 123 4567", "(021) 8888-0000", 1001])
    assert vip.numbers == ("+966501234567", "0218888-0000".replace("-", ""), "1001")
    assert "+966501234567" in vip
    assert "+966-50-123-4567" in vip
    assert "966501234567" not in vip  # the + is part of the number
    assert "1001" in vip
    assert "alice" not in vip
    assert normalize_number(" +98 (912) 000.0000 ") == "+989120000000"
    long_form = NumberList.model_validate({"numbers": ["1002"], "description": "doctors on call"})
    assert "1002" in long_form
    with pytest.raises(ValidationError, match="'call me' is not a telephone number"):
        NumberList.model_validate(["call me"])
