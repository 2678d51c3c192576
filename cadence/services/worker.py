"""One pass of due work, the unit every loop (worker, serve, demo, `worker --once`) runs."""
from __future__ import annotations

from cadence.app import App
from cadence.services.delivery import (
    PassReport,
    dispatch_due,
    finish_campaigns,
    reconcile_expired,
    start_due_campaigns,
    worker_identity,
)
from cadence.services.sync import sync_mailboxes


def run_pass(app: App, worker: str | None = None) -> PassReport:
    """Launch due campaigns, reconcile interrupted sends, sync mailboxes, send what is due, finish."""
    worker = worker or worker_identity()
    report = PassReport()
    report.launched = start_due_campaigns(app)
    report.add(reconcile_expired(app, worker))
    report.add(sync_mailboxes(app))
    report.add(dispatch_due(app, worker))
    report.finished = finish_campaigns(app)
    return report
