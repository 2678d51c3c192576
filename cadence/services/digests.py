"""When managers' digests go out, and the loop that hands each due digest to a poster exactly once.

Schedule: `Rep.digest_schedule` (`core.digest_schedule`; "mon 08:00" when unset) in the manager's
time zone (`Rep.timezone`, else CADENCE_TIMEZONE). A digest is due when the latest scheduled time
is after `Rep.last_digest_at` (or after the rep was created) and less than a day ago (one missed
while no worker ran is not sent days late). It is claimed with a compare-and-set on
`last_digest_at` before posting, so two processes never both send it; a post that failed for a
passing reason gives the claim back, to be tried on the next run.

Posting (Slack's Block Kit, the chart) is the caller's: `bot.digest.send_due_digests` passes it in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import or_, select, update

from cadence.app import App
from cadence.services.reads.digest import zone_of
from core.digest_schedule import is_due
from store.models import Rep

log = logging.getLogger("cadence.digest")

CATCH_UP = timedelta(days=1)  # a digest missed (no worker running) is still sent this long after its time


@dataclass(frozen=True)
class DueDigest:
    """A manager whose digest is due: rep id, email, and `last_digest_at` before the claim."""

    rep_id: int
    email: str
    previous: datetime | None


def due_digests(app: App, now: datetime | None = None) -> list[DueDigest]:
    """The managers (role manager, or anyone with reports) whose digest is due at `now` (default:
    the app's clock). A malformed schedule is logged (naming `digest_schedule`) and skipped."""
    now = now or app.clock.now()
    with app.db.session() as session:
        managers = session.execute(
            select(Rep.id, Rep.email, Rep.timezone, Rep.digest_schedule, Rep.last_digest_at, Rep.created_at)
            .where(or_(Rep.role == "manager", Rep.id.in_(select(Rep.manager_id).where(Rep.manager_id.is_not(None)))))
            .order_by(Rep.id)).all()
    due = []
    for rep_id, email, zone_name, schedule, last, created in managers:
        try:
            if is_due(schedule, zone_of(zone_name, app.settings.timezone), now, last or created, CATCH_UP):
                due.append(DueDigest(rep_id, email, last))
        except ValueError as problem:
            log.error("%s: %s; no digest until it is fixed", email, problem)
    return due


def _swap(app: App, rep_id: int, expected: datetime | None, to: datetime | None) -> bool:
    condition = Rep.last_digest_at.is_(None) if expected is None else Rep.last_digest_at == expected
    with app.db.session() as session:
        return session.execute(update(Rep).where(Rep.id == rep_id, condition).values(last_digest_at=to)).rowcount == 1


def claim_digest(app: App, due: DueDigest, now: datetime) -> bool:
    """Mark `due` as sent at `now`; False when another process claimed it first."""
    return _swap(app, due.rep_id, due.previous, now)


def give_back_digest(app: App, due: DueDigest, now: datetime) -> None:
    """Undo `claim_digest` (the post failed for a passing reason): due again on the next run."""
    _swap(app, due.rep_id, now, due.previous)


def send_due_digests(app: App, post: Callable[[int], bool], is_transient: Callable[[Exception], bool],
                     describe: Callable[[Exception], str] = str) -> int:
    """Claim each due digest and call `post(rep_id)` (True: posted; False: the manager cannot be
    reached, e.g. has no Slack account). An exception for which `is_transient` is true gives the
    claim back; any other drops this digest with a log line. Returns how many were posted."""
    now = app.clock.now()
    posted = 0
    for due in due_digests(app, now):
        if not claim_digest(app, due, now):
            continue  # another process took it
        try:
            if post(due.rep_id):
                posted += 1
            else:
                log.info("%s cannot be reached; this digest is skipped", due.email)
        except Exception as error:
            if is_transient(error):
                give_back_digest(app, due, now)
                log.warning("digest for %s not posted (%s); tried again next run", due.email, describe(error))
            else:
                log.error("digest for %s dropped: %s", due.email, describe(error))
    return posted
