"""When a manager's KPI digest is due: the schedule text ("mon 08:00") and its latest occurrence.

Schedules: "mon 08:00" (the default when unset), "daily 08:00", "weekdays 09:00", "mon,thu 08:30",
"fri-mon 07:00", or "off" / "none" / "never". Times are wall times in the manager's zone. Pure:
`now` is given by the caller.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

DEFAULT_SCHEDULE = "mon 08:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEDULE = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*$")


def parse_schedule(text: str | None) -> tuple[frozenset[int], time] | None:
    """("mon 08:00" → ({0}, 08:00)), weekdays 0 = Monday; None for "off".

    None or "" means DEFAULT_SCHEDULE. ValueError naming the field (`digest_schedule`) when malformed.
    """
    raw = (text or DEFAULT_SCHEDULE).strip().lower()
    if raw in ("off", "none", "never"):
        return None
    match = SCHEDULE.match(raw)
    problem = (f"digest_schedule: {text!r} is not like \"mon 08:00\", \"mon,thu 08:30\", \"weekdays 09:00\", "
               "\"daily 08:00\" or \"off\"")
    if not match:
        raise ValueError(problem)
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise ValueError(problem)
    days: set[int] = set()
    for part in match["days"].split(","):
        if part == "daily":
            days.update(range(7))
        elif part == "weekdays":
            days.update(range(5))
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in DAYS or last not in DAYS:
                raise ValueError(problem)
            a, b = DAYS.index(first), DAYS.index(last)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif part in DAYS:
            days.add(DAYS.index(part))
        else:
            raise ValueError(problem)
    return frozenset(days), time(hour, minute)


def latest_occurrence(schedule: str | None, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The latest scheduled instant at or before `now` (aware, UTC), or None when the schedule is off.

    ValueError (see `parse_schedule`) when the schedule is malformed.
    """
    parsed = parse_schedule(schedule)
    if parsed is None:
        return None
    days, at = parsed
    today: date = now.astimezone(zone).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if day.weekday() not in days:
            continue
        candidate = datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)
        if candidate <= now:
            return candidate
    return None


def is_due(schedule: str | None, zone: ZoneInfo, now: datetime, last_sent: datetime,
           catch_up: timedelta) -> bool:
    """True when the latest occurrence is after `last_sent` (the last digest, or the manager's
    creation) and at most `catch_up` ago: a digest missed while no worker ran is not sent days late.
    ValueError when the schedule is malformed."""
    due = latest_occurrence(schedule, zone, now)
    return due is not None and due > last_sent and now - due <= catch_up
