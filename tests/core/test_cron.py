"""Cron expressions of ``AMQ_SCHEDULED_CRON``: next times, both day fields, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sealmq.core.cron import CronError, parse_cron


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", "2026-12-03 17:59:30", "2026-12-03 18:00:00"),
        ("*/15 * * * *", "2026-12-03 17:59:00", "2026-12-03 18:00:00"),
        ("*/15 * * * *", "2026-12-03 18:00:00", "2026-12-03 18:15:00"),  # strictly after
        ("5,35 9-17 * * *", "2026-12-03 17:36:00", "2026-12-04 09:05:00"),
        ("0 9 * * 1-5", "2026-12-04 10:00:00", "2026-12-07 09:00:00"),  # Fri -> Mon
        ("0 0 * * 0", "2026-12-03 00:00:00", "2026-12-06 00:00:00"),  # Sunday as 0
        ("0 0 * * 7", "2026-12-03 00:00:00", "2026-12-06 00:00:00"),  # and as 7
        ("0 0 1 * *", "2026-12-03 00:00:00", "2027-01-01 00:00:00"),  # across a year
        ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),  # the next leap day
        ("30 12 31 * *", "2026-11-01 00:00:00", "2026-12-31 12:30:00"),  # skips November
        # Both day fields restricted: either matches (the 13th, or any Friday).
        ("0 0 13 * 5", "2026-12-03 00:00:00", "2026-12-04 00:00:00"),
        ("0 0 13 * 5", "2026-12-12 00:00:00", "2026-12-13 00:00:00"),
        ("0-10/5 0 * * *", "2026-12-03 00:05:00", "2026-12-03 00:10:00"),
    ],
)
def test_next_time(expression: str, after: str, expected: str) -> None:
    assert parse_cron(expression).next_after(ms(after)) == ms(expected)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week"),
        ("*/0 * * * *", "bad step"),
        ("a * * * *", "is not a number"),
        ("5-1 * * * *", "outside"),
        ("MON * * * *", "is not a number"),
    ],
)
def test_refused(expression: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem):
        parse_cron(expression)


def test_an_expression_that_never_matches_says_so() -> None:
    with pytest.raises(CronError, match="never matches"):
        parse_cron("0 0 30 2 *").next_after(ms("2026-01-01 00:00:00"))
