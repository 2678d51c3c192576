"""When a backlog of deferred automatic emails clears, given a daily allowance and the send days."""
from __future__ import annotations

from datetime import date, timedelta


def clearing_day(pending: int, per_day: int, today: date, days: frozenset[int] = frozenset(range(7)),
                 sent_today: int = 0) -> tuple[int, date]:
    """(sending days needed, the date of the last of them) to send `pending` emails at `per_day` a day
    on the weekdays `days` (0 = Monday), today counting with what is left of its allowance.

    Raises ValueError when `per_day` < 1 or `days` is empty.
    """
    if per_day < 1 or not days:
        raise ValueError("per_day must be at least 1 and days must name a weekday")
    left, day, used = pending, today, 0
    while True:
        if day.weekday() in days:
            allowance = per_day - (sent_today if day == today else 0)
            if allowance > 0 and left > 0:
                used += 1
                left -= allowance
            if left <= 0:
                return used, day
        day += timedelta(days=1)
