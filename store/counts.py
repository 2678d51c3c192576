"""Per-campaign counters: read them, and fold PostgreSQL's per-connection rows.

The database keeps them (triggers of migration 0010_campaign_counts) in the same transaction as
the messages, tasks and events they count, so reading a campaign's figures never scans it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text

from store.tables import campaign_counts as counts_table

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session


def campaign_counts(session: "Session | Connection", campaign_id: int) -> dict[str, dict[int, int]]:
    """{name: {position: n}} of the campaign, zero figures left out. Names: "msg:<message state>",
    "task:<task state>", "ev:<opened|clicked|replied|bounced>" (distinct messages) per step;
    "who:<kind>" (distinct contacts), "delivered" (contacts with a delivered message) and
    "deferred" (scheduled messages deferred at least once) at position 0. `session`: an ORM session
    or a Core connection."""
    counts: dict[str, dict[int, int]] = defaultdict(dict)
    c = counts_table.c
    for position, name, n in session.execute(
            select(c.position, c.name, func.sum(c.n)).where(c.campaign_id == campaign_id)
            .group_by(c.position, c.name)):
        if n:
            counts[name][position] = int(n)
    return counts


def fold_counts(session: "Session") -> int:
    """PostgreSQL: fold every connection's counter rows into one row per key (rows a running
    transaction holds wait for the next fold). Returns the rows written; 0 on SQLite, which keeps
    one row per key anyway."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    return session.execute(text("SELECT cadence_fold_counts()")).scalar() or 0
