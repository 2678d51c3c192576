"""Sends, opens, clicks and replies of one campaign per day (the web dashboard's chart)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from cadence.app import App
from core.vocabulary import EventKind
from store.counts import day_counts

CHARTED = {EventKind.SENT.value: "sent", EventKind.OPENED.value: "opens", EventKind.CLICKED.value: "clicks",
           EventKind.REPLIED.value: "replies"}
MAX_DAYS = 60


@dataclass(frozen=True)
class DayActivity:
    """One UTC day of a campaign: emails sent, opens, clicks (tracked events) and replies."""

    day: date
    sent: int = 0
    opens: int = 0
    clicks: int = 0
    replies: int = 0


def daily_activity(app: App, campaign_id: int, *, days: int = MAX_DAYS) -> list[DayActivity]:
    """Every UTC day from the campaign's first charted event to its last (at most the last `days`
    of them), days without any included as zeros; [] when nothing was sent yet. Counts are events
    (`sent`, `opened`, `clicked`, `replied`) as stored, so an open repeated within a minute counts
    once. Read from the campaign's per-day counters (`store.counts.day_counts`): a few rows per
    day, whatever the size of the campaign."""
    with app.db.session(readonly=True) as session:
        by_day = day_counts(session, campaign_id)
    counts = {day: {CHARTED[kind]: n for kind, n in kinds.items() if kind in CHARTED}
              for day, kinds in by_day.items()}
    counts = {day: kinds for day, kinds in counts.items() if kinds}
    if not counts:
        return []
    last = max(counts)
    first = max(min(counts), last - timedelta(days=days - 1))
    span = (last - first).days + 1
    return [DayActivity(d, **counts.get(d, {})) for d in (first + timedelta(days=i) for i in range(span))]
