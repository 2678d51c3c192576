"""The periodic loops of a process, run by APScheduler 3.

Due work lives in the database (APScheduler 3 cannot share a job store between processes);
APScheduler only ticks the loops of this process, each with coalesce, max_instances=1 and a
misfire grace, so a slow pass is never run twice at once and missed ticks collapse into one.
`cadence worker` runs the loops alone (`BlockingScheduler`); `cadence serve` runs the same loops
in threads beside the HTTP server. Any number of such processes may share one PostgreSQL.

Loop intervals come from the environment (seconds): CADENCE_DISPATCH_INTERVAL (1),
CADENCE_SYNC_INTERVAL (60), CADENCE_RECONCILE_INTERVAL (15), CADENCE_KPI_INTERVAL (300),
CADENCE_DIGEST_INTERVAL (300), CADENCE_NOTIFY_INTERVAL (10), CADENCE_CRM_INTERVAL (10); see docs/workers.md.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.outage import short_error
from cadence.settings import load_settings
from cadence.services.campaigns import finish_campaigns, start_due_campaigns
from cadence.services.stale_drafts import withdraw_stale_drafts
from cadence.services.task_schedule import send_scheduled_tasks
from cadence.worker.leases import LeaseKeeper
from cadence.worker.options import DispatchOptions, positive_setting, worker_identity
from cadence.worker.passes import dispatch_due, follow_due, housekeeping, reconcile_expired, sync_due
from core.outcomes import PassReport

log = logging.getLogger("cadence.runtime")

STOP_GRACE = 8.0  # seconds SIGTERM waits for in-flight work before the process leaves anyway
MISFIRE_GRACE = 30
SYNC_TICK = 5.0  # the sync loop looks this often for mailboxes whose turn came (each every CADENCE_SYNC_INTERVAL)
HOUSEKEEPING_EVERY = 600.0


@dataclass(frozen=True)
class Intervals:
    """Seconds between two ticks of each loop."""

    dispatch: float = 1.0
    sync: float = 60.0
    reconcile: float = 15.0
    kpis: float = 300.0
    digests: float = 300.0
    notify: float = 10.0
    crm: float = 10.0  # the CRM lane (CADENCE_CRM_INTERVAL): its own job, never in the send path

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Intervals":
        env = load_settings().tuning if environ is None else environ  # the environment and .env
        return cls(**{f.name: positive_setting(env, f"CADENCE_{_ENV_NAMES.get(f.name, f.name.upper())}_INTERVAL",
                                        f.default) for f in fields(cls)})


_ENV_NAMES = {"kpis": "KPI", "digests": "DIGEST"}


class _QuietSkips(logging.Filter):
    """A tick that finds the previous pass still running is normal under load; it is not logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


def _quiet_skips() -> None:
    logger = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _QuietSkips) for f in logger.filters):
        logger.addFilter(_QuietSkips())


class Runtime:
    """The loops of one process, their lease keeper and a graceful stop.

    `shutdown()` (SIGTERM) stops new claims and new provider calls at once, lets calls already
    under way finish and record their outcome, gives back what was claimed but not started, and
    returns within `STOP_GRACE` seconds.
    """

    def __init__(self, app: App, scheduler: BaseScheduler, *, intervals: Intervals | None = None,
                 options: DispatchOptions | None = None, worker: str | None = None):
        self.app = app
        self.scheduler = scheduler
        self.intervals = intervals or Intervals.from_env()
        self.keeper = LeaseKeeper(app, worker or worker_identity(), options or DispatchOptions.from_env(),
                                  register=True)
        self._running = 0
        self._idle = threading.Condition()
        self._stopped = False
        _quiet_skips()
        self._add_jobs()

    @property
    def worker(self) -> str:
        return self.keeper.worker

    # -- the loops ------------------------------------------------------------------------

    def jobs(self) -> dict[str, Callable[[], object]]:
        app, keeper = self.app, self.keeper
        sync_every = timedelta(seconds=self.intervals.sync)
        last_housekeeping = [0.0]

        def dispatch() -> PassReport:
            started = time.monotonic()
            report = PassReport()
            report.launched = start_due_campaigns(app)
            report.add(dispatch_due(app, keeper=keeper))
            withdraw_stale_drafts(app)
            report.tasks_done += send_scheduled_tasks(app)
            report.finished = finish_campaigns(app)
            # Until the next tick, a message that falls due goes when it does, not on the tick.
            report.add(follow_due(app, keeper, self.intervals.dispatch - (time.monotonic() - started)))
            return report

        def reconcile() -> PassReport:
            report = reconcile_expired(app, keeper=keeper)
            if time.monotonic() - last_housekeeping[0] >= HOUSEKEEPING_EVERY:
                housekeeping(app)
                last_housekeeping[0] = time.monotonic()
            return report

        return {
            "dispatch": dispatch,
            "sync": lambda: sync_due(app, keeper, every=sync_every),
            "reconcile": reconcile,
            "kpis": lambda: _optional("cadence.services.reporting", "refresh_kpis", app),
            "digests": lambda: _optional("bot.digest", "send_due_digests", app),
            "notify": lambda: (_optional("bot.notify", "send_notifications", app)
                               if app.settings.slack_bot_token else None),
            "crm": lambda: _optional("cadence.services.crm_sync", "sync_crm", app),
        }

    def _add_jobs(self) -> None:
        first_run = datetime.now(timezone.utc)  # start every loop at once, then tick
        ticks = {**{f.name: getattr(self.intervals, f.name) for f in fields(Intervals)},
                 "sync": min(self.intervals.sync, SYNC_TICK)}
        for name, fn in self.jobs().items():
            self.scheduler.add_job(self._guarded(name, fn), "interval", seconds=ticks[name],
                                   id=name, name=name, coalesce=True, max_instances=1,
                                   misfire_grace_time=MISFIRE_GRACE, next_run_time=first_run)

    def _guarded(self, name: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            if self.keeper.stopping.is_set():
                return
            with self._idle:
                self._running += 1
            try:
                result = fn()
                if isinstance(result, PassReport) and result.busy():
                    log.info("%s: %s", name, result.describe())
            except DBAPIError as exc:  # the database is away (restart …): the next tick tries again
                log.warning("%s: database unavailable, trying again on the next tick: %s", name, short_error(exc))
            except Exception:  # a failing loop logs and tries again on its next tick
                log.exception("%s failed", name)
            finally:
                with self._idle:
                    self._running -= 1
                    self._idle.notify_all()

        run.__name__ = name
        return run

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> "Runtime":
        self.keeper.start()
        log.info("worker %s started (dispatch every %ss, lease %ss)", self.worker, self.intervals.dispatch,
                 self.keeper.lease.total_seconds())
        self.scheduler.start()
        return self

    def wait_idle(self, timeout: float) -> bool:
        """True when no loop is running any more, False when `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def shutdown(self, wait: bool = True, grace: float = STOP_GRACE) -> bool:
        """Stop gracefully; True when every loop finished within `grace` seconds."""
        if self._stopped:
            return True
        self._stopped = True
        self.keeper.stopping.set()
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # already stopped
            pass
        idle = self.wait_idle(grace) if wait else False
        if not idle and wait:
            log.warning("stopping with work still under way; its leases run out and it is reconciled")
        self.keeper.stop()
        log.info("worker %s stopped", self.worker)
        return idle


def _optional(module: str, name: str, app: App):
    """Call `module.name(app)` when that part is installed (Slack digests, notifications, KPI caches)."""
    import importlib

    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return fn(app)


def start_background_scheduler(app: App, intervals: Intervals | None = None) -> Runtime:
    """For `cadence serve`: the same loops, in threads beside the HTTP server; `shutdown()` stops them."""
    return Runtime(app, BackgroundScheduler(timezone="UTC"), intervals=intervals).start()


def run_worker(app: App, intervals: Intervals | None = None) -> None:
    """`cadence worker`: the loops alone, until SIGTERM or SIGINT; exits within 10 s of it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("apscheduler.executors.default", "apscheduler.scheduler"):  # every tick is not news
        logging.getLogger(name).setLevel(logging.WARNING)
    runtime = Runtime(app, BlockingScheduler(timezone="UTC"), intervals=intervals)
    signalled = threading.Event()

    def stop(signum, _frame) -> None:
        if signalled.is_set():  # a second signal: leave now
            os._exit(1)
        signalled.set()
        log.info("signal %s: finishing in-flight work and stopping", signum)
        runtime.keeper.stopping.set()
        threading.Thread(target=lambda: runtime.scheduler.shutdown(wait=False), daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runtime.start()  # blocks until the scheduler is shut down
    idle = runtime.shutdown(wait=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if not idle:
        os._exit(0)  # a provider call is still hanging: its thread must not hold the exit
