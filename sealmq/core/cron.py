"""Cron expressions for scheduled delivery (``AMQ_SCHEDULED_CRON``).

The five fields of Unix cron, as ActiveMQ reads them: minute (0-59), hour (0-23),
day of month (1-31), month (1-12) and day of week (0-7, 0 and 7 both Sunday). Each
field is ``*`` or a list of ``n``, ``a-b``, ``*/s`` or ``a-b/s``. When both day fields
are restricted a day matches if either does (Vixie cron). Times are UTC.

Written here rather than taken from a library: it is one function, and the broker
needs nothing else of cron.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronError", "CronSchedule", "parse_cron"]

#: How far ahead a next time is looked for before the expression is called empty
#: (``0 0 30 2 *`` never happens).
_HORIZON_DAYS = 5 * 366

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))


class CronError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day-of-month field is *
    any_weekday: bool  # the day-of-week field is *

    def _day_matches(self, day: datetime) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python's Monday=0 -> cron's Sunday=0
        in_month = day.day in self.days
        in_week = weekday in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_week
        if self.any_weekday:
            return in_month
        return in_month or in_week

    def next_after(self, after_ms: int) -> int:
        """The first matching minute strictly after ``after_ms`` (ms since the epoch)."""
        t = datetime.fromtimestamp(after_ms // 60_000 * 60, UTC) + timedelta(minutes=1)
        limit = t + timedelta(days=_HORIZON_DAYS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return int(t.timestamp() * 1000)
        raise CronError("the expression never matches")


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if spec == "*":
            start, end = low, high
        else:
            first, dash, last = spec.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise CronError(f"{name}: {part!r} is not a number, range or */step")
            start = int(first)
            end = int(last) if dash else (high if step_text else start)
        if not low <= start <= end <= high:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> CronSchedule:
    """The schedule of a five-field cron expression; :class:`CronError` says what is wrong."""
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minutes, hours, days, months = (
        _field(value, name, low, high)
        for value, (name, low, high) in zip(fields, _FIELDS, strict=False)
    )
    weekdays = frozenset(d % 7 for d in _field(fields[4], "day of week", 0, 7))
    return CronSchedule(minutes, hours, days, months, weekdays, fields[2] == "*", fields[4] == "*")
