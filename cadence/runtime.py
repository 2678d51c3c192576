"""The periodic loops of a process, run by APScheduler 3.

Due work lives in the database (APScheduler 3 cannot share a job store between processes);
APScheduler only ticks the loops of this process, each with coalesce, max_instances=1 and a
misfire grace, so a slow pass is never run twice at once and missed ticks collapse into one.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from cadence.app import App
from cadence.services.delivery import (
    dispatch_due,
    finish_campaigns,
    reconcile_expired,
    start_due_campaigns,
    worker_identity,
)
from cadence.services.sync import sync_mailboxes

log = logging.getLogger("cadence.runtime")


@dataclass(frozen=True)
class Intervals:
    dispatch: float = 5.0
    sync: float = 60.0
    reconcile: float = 60.0
    digests: float = 300.0


def _guarded(name: str, fn):
    def run() -> None:
        try:
            fn()
        except Exception:  # a failing loop logs and tries again on its next tick
            log.exception("%s failed", name)
    run.__name__ = name
    return run


def _jobs(app: App, worker: str):
    def dispatch() -> None:
        start_due_campaigns(app)
        dispatch_due(app, worker)
        finish_campaigns(app)

    def digests() -> None:
        try:
            from bot.digest import send_due_digests
        except ImportError:
            return
        send_due_digests(app)

    return {
        "dispatch": lambda: dispatch(),
        "sync": lambda: sync_mailboxes(app),
        "reconcile": lambda: reconcile_expired(app, worker),
        "digests": digests,
    }


def _add_jobs(scheduler, app: App, worker: str, intervals: Intervals) -> None:
    first_run = datetime.now(timezone.utc)  # start every loop at once, then tick
    for name, fn in _jobs(app, worker).items():
        scheduler.add_job(_guarded(name, fn), "interval", seconds=getattr(intervals, name), id=name,
                          coalesce=True, max_instances=1, misfire_grace_time=30, next_run_time=first_run)


def start_background_scheduler(app: App, intervals: Intervals = Intervals()) -> BackgroundScheduler:
    """For `cadence serve`: the same loops, in threads beside the HTTP server."""
    scheduler = BackgroundScheduler(timezone="UTC")
    _add_jobs(scheduler, app, worker_identity(), intervals)
    scheduler.start()
    return scheduler


def run_worker(app: App, intervals: Intervals = Intervals()) -> None:
    """`cadence worker`: the loops alone, until SIGTERM or SIGINT (in-flight work finishes)."""
    scheduler = BlockingScheduler(timezone="UTC")
    worker = worker_identity()
    _add_jobs(scheduler, app, worker, intervals)

    def stop(signum, _frame) -> None:
        log.info("signal %s: finishing in-flight work and stopping", signum)
        threading.Thread(target=lambda: scheduler.shutdown(wait=True), daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("worker %s started", worker)
    scheduler.start()
