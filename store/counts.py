"""Per-campaign counters: read them, and fold PostgreSQL's per-connection rows.

The database keeps them (triggers of migrations 0010_campaign_counts and 0012_campaign_day_counts)
in the same transaction as the messages, tasks and events they count, so reading a campaign's
figures, or its chart per day, never scans it.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text

from store.tables import campaign_counts as counts_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

DAY = "day:"  # names of the per-day rows; their `position` is the UTC day, as days since EPOCH
EPOCH = date(1970, 1, 1)


def _sums(session: "Session | Connection", campaign_id: int, *, days: bool) -> list[tuple[int, str, int]]:
    """(position, name, n) of the campaign's non-zero counters: the per-day ones or all the others
    (the rows of several connections added up)."""
    c = counts_table.c
    named = c.name.like(f"{DAY}%") if days else c.name.not_like(f"{DAY}%")
    return [(position, name, int(n)) for position, name, n in session.execute(
        select(c.position, c.name, func.sum(c.n)).where(c.campaign_id == campaign_id, named)
        .group_by(c.position, c.name)) if n]


def campaign_counts(session: "Session | Connection", campaign_id: int) -> dict[str, dict[int, int]]:
    """{name: {position: n}} of the campaign, zero figures left out. Names: "msg:<message state>",
    "task:<task state>", "ev:<opened|clicked|replied|bounced>" (distinct messages) per step;
    "who:<kind>" (distinct contacts), "delivered" (contacts with a delivered message) and
    "deferred" (scheduled messages deferred at least once) at position 0. `session`: an ORM session
    or a Core connection."""
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    for position, name, n in _sums(session, campaign_id, days=False):
        counts[name][position] = n
    return counts


def day_counts(session: "Session | Connection", campaign_id: int) -> dict[date, dict[str, int]]:
    """{UTC day: {kind: n}} of the campaign's sent, opened, clicked and replied events (migration
    0012_campaign_day_counts), days and kinds without any left out."""
    days: dict[date, dict[str, int]] = defaultdict(dict)
    for position, name, n in _sums(session, campaign_id, days=True):
        days[EPOCH + timedelta(days=position)][name[len(DAY):]] = n
    return dict(days)


def fold_counts(session: "Session") -> int:
    """PostgreSQL: fold every connection's counter rows into one row per key (rows a running
    transaction holds wait for the next fold). Returns the rows written; 0 on SQLite, which keeps
    one row per key anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    return session.execute(text("SELECT cadence_fold_counts()")).scalar() or 0
