"""Digest schedules ("mon 08:00" …) and when a digest is due, without a database."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.digest_schedule import is_due, latest_occurrence, parse_schedule

PARIS = ZoneInfo("Europe/Paris")
DAY = timedelta(days=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_parsing():
    assert parse_schedule(None) == parse_schedule("") == (frozenset({0}), time(8, 0))
    assert parse_schedule("daily 07:05") == (frozenset(range(7)), time(7, 5))
    assert parse_schedule(" Weekdays 09:15 ")[0] == frozenset(range(5))
    assert parse_schedule("sat-mon 10:00")[0] == frozenset({5, 6, 0})
    assert parse_schedule("never") is None and parse_schedule("OFF") is None
    for bad in ("mon", "mon 25:00", "mon 8:7", "noday 08:00", "mon-xyz 08:00", "mon,,tue 08:00"):
        with pytest.raises(ValueError, match=r"^digest_schedule: "):
            parse_schedule(bad)


def test_latest_occurrence_is_a_wall_time_in_the_managers_zone():
    # Monday 30 November 2026, 08:00 in Paris is 07:00 UTC
    assert latest_occurrence("mon 08:00", PARIS, at("2026-11-30T07:00:00Z")) == at("2026-11-30T07:00:00Z")
    assert latest_occurrence("mon 08:00", PARIS, at("2026-11-30T06:59:00Z")) == at("2026-11-23T07:00:00Z")
    assert latest_occurrence("off", PARIS, at("2026-11-30T07:00:00Z")) is None


def test_due_once_after_its_time_and_not_days_late():
    monday = at("2026-11-30T07:00:00Z")
    created = at("2026-11-01T00:00:00Z")
    assert is_due("mon 08:00", PARIS, monday, created, DAY)
    assert not is_due("mon 08:00", PARIS, monday, monday, DAY)  # already sent at that time
    assert not is_due("mon 08:00", PARIS, monday + DAY + timedelta(minutes=1), created, DAY)  # missed: too late
    assert not is_due("mon 08:00", PARIS, monday, at("2026-11-30T07:30:00Z"), DAY)  # manager created after it
    with pytest.raises(ValueError):
        is_due("whenever", PARIS, monday, created, DAY)
