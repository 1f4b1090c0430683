"""Months in a building's own time zone. Pure: no Django.

A building's month runs from local midnight on the 1st to local midnight on the 1st of the next
month; as instants these are 28 to 31 days apart give or take the hour a DST change adds or takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Month:
    first_day: date
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC

    @property
    def label(self) -> str:
        return self.first_day.strftime("%Y-%m")


def parse_month(text: str) -> date:
    """``2026-11`` -> date(2026, 11, 1); anything else is a ValueError saying what is expected."""
    match = MONTH.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a month: write it as YYYY-MM, e.g. 2026-11")
    return date(int(match.group(1)), int(match.group(2)), 1)


def next_month(first_day: date) -> date:
    return date(first_day.year + first_day.month // 12, first_day.month % 12 + 1, 1)


def previous_month(first_day: date) -> date:
    return date(first_day.year - (first_day.month == 1), (first_day.month - 2) % 12 + 1, 1)


def month_in(first_day: date, timezone: str) -> Month:
    zone = ZoneInfo(timezone)
    start = datetime.combine(first_day.replace(day=1), datetime.min.time(), zone)
    end = datetime.combine(next_month(first_day.replace(day=1)), datetime.min.time(), zone)
    return Month(first_day.replace(day=1), start.astimezone(UTC), end.astimezone(UTC))


def month_of(instant: datetime, timezone: str) -> date:
    """The first day of the local month that ``instant`` falls in."""
    return instant.astimezone(ZoneInfo(timezone)).date().replace(day=1)


def last_closable_month(now: datetime, timezone: str) -> date:
    """The latest month whose end (local midnight on the 1st) has passed at ``now``."""
    return previous_month(month_of(now, timezone))


def days_in(first_day: date) -> int:
    return (next_month(first_day) - first_day).days


def local_day(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


def local_days_between(start: date, end: date) -> int:
    """Days from ``start`` to ``end`` inclusive (0 when ``end`` is before ``start``)."""
    return max((end - start).days + 1, 0)


__all__ = [
    "Month", "days_in", "last_closable_month", "local_day", "local_days_between", "month_in", "month_of",
    "next_month", "parse_month", "previous_month",
]
