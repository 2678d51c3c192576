"""One pass of due work, the unit every loop (worker, serve, demo, `worker --once`) runs."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.services.delivery import (
    LeaseKeeper,
    PassReport,
    _short,
    _skip_locked,
    dispatch_due,
    finish_campaigns,
    mailbox_limits,
    mailbox_slot,
    reconcile_expired,
    start_due_campaigns,
    worker_identity,
)
from cadence.services.sync import sync_mailbox
from core.vocabulary import MailboxHealth
from store.models import MailboxRow

log = logging.getLogger("cadence.worker")


def sync_due(app: App, keeper: LeaseKeeper, every: timedelta = timedelta(0), limit: int = 50) -> PassReport:
    """Sync the connected mailboxes not synced for `every`, each by one worker at a time.

    A mailbox is leased to this worker for its sync (the heartbeat extends it) and the provider
    calls hold one of its concurrency slots, like sends do.
    """
    report = PassReport()
    while not keeper.stopping.is_set():
        synced, claimed = _sync_some(app, keeper, every, limit)
        report.add(synced)
        if claimed < limit:
            return report
    return report


def _sync_some(app: App, keeper: LeaseKeeper, every: timedelta, limit: int) -> tuple[PassReport, int]:
    report = PassReport()
    token = keeper.token()
    try:
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            query = (select(MailboxRow).where(
                MailboxRow.health == MailboxHealth.CONNECTED.value,
                or_(MailboxRow.sync_until.is_(None), MailboxRow.sync_until < now),
                or_(MailboxRow.last_synced_at.is_(None), MailboxRow.last_synced_at <= now - every))
                .order_by(MailboxRow.last_synced_at.asc().nulls_first(), MailboxRow.id).limit(limit))
            rows = session.scalars(_skip_locked(app, query)).all()
            for row in rows:
                row.sync_owner, row.sync_until = token, now + keeper.lease
        for row in rows:
            if keeper.stopping.is_set():
                break
            try:
                limits = mailbox_limits(app, row)
                with mailbox_slot(app, keeper, row.id, limits.concurrency) as free:
                    if free:
                        report.add(sync_mailbox(app, row.id))
            except DBAPIError:
                raise
            except Exception:  # one mailbox's trouble must not stop the others' sync
                log.exception("sync of %s failed", row.address)
    finally:
        try:
            with app.db.session(immediate=True) as session:
                session.execute(update(MailboxRow).where(MailboxRow.sync_owner == token)
                                .values(sync_owner=None, sync_until=None))
        except DBAPIError as exc:  # the sync leases run out instead
            log.warning("could not end sync leases: %s", _short(exc))
        keeper.release(token)
    return report, len(rows)


def run_pass(app: App, worker: str | None = None) -> PassReport:
    """Launch due campaigns, reconcile interrupted sends, sync mailboxes, send what is due, finish."""
    with LeaseKeeper(app, worker or worker_identity()) as keeper:
        report = PassReport()
        report.launched = start_due_campaigns(app)
        report.add(reconcile_expired(app, keeper=keeper))
        report.add(sync_due(app, keeper))
        report.add(dispatch_due(app, keeper=keeper))
        report.finished = finish_campaigns(app)
    return report
