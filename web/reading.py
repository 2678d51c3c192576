"""What the pages show, read through the one read side (`cadence.services.reads`), with the
visibility rules of Slack: a campaign or task the viewer may not see is None (the page answers 404).

Views share figures: a campaign's status is computed at most once per STATUS_STALENESS seconds
whatever the number of open dashboards and live refreshes; older figures of the same state are
served while one refresh runs in the background, so they lag the store by at most
STATUS_STALENESS plus one computation (a change of state, and every change made from the web app,
computes them again at once). Viewers with nothing cached wait for one computation instead of
each running their own. A team's /tasks list is shared the same way (TASKS_STALENESS).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from cadence.app import App
from cadence.services.reads import (
    TaskDetail,
    TaskPage,
    Viewer,
    campaign_status_by_id,
    open_tasks,
    task_detail,
    visible_campaign,
    visible_campaigns,
)
from cadence.services.reads.activity import DayActivity, daily_activity
from cadence.services.reads.feed import FeedItem, feed
from cadence.services.reads.launch import LaunchOptions, launch_options
from cadence.services.reads.people import CampaignRef

log = logging.getLogger("cadence.web")

STATUS_STALENESS = 1.0
# A dashboard's chart of sends, opens, clicks and replies per day (read from per-day counters, a
# few rows per day) is recomputed when the campaign's state changes, when its totals (sent, opens,
# clicks, replies) have changed and the chart is ACTIVITY_MIN_AGE old, and at least every
# ACTIVITY_STALENESS seconds.
ACTIVITY_STALENESS = 10.0
ACTIVITY_MIN_AGE = 1.0
TASKS_STALENESS = 2.0  # seconds a team's /tasks list may lag changes made outside the web app
LAUNCH_STALENESS = 10.0  # seconds the launch form's choices (mailboxes, owners, companies) may lag
TASKS_PER_PAGE = 50  # rows of one page of /tasks (overdue first; the page says which rows of how many)


@dataclass(frozen=True)
class CampaignView:
    """One campaign as a viewer sees it: the `cadence status --json` document and whether they may
    change it (every sending mailbox is their team's)."""

    id: int
    name: str
    state: str
    status: dict
    may_control: bool


class Reading:
    """One per server: the read side plus the shared cache of live figures."""

    def __init__(self, app: App):
        self.app = app
        self._figures: dict[int, tuple[float, dict]] = {}
        self._activity: dict[int, tuple[float, tuple, list[DayActivity]]] = {}
        self._lock = threading.Lock()
        self._launch: dict[tuple, tuple[float, LaunchOptions | None]] = {}
        self._tasks: dict[tuple, tuple[float, TaskPage]] = {}
        self._tasks_generation = 0
        self._computing: dict[tuple, threading.Lock] = {}

    def _single(self, key: tuple) -> threading.Lock:
        """The lock under which `key` (what, campaign id) is computed: one computation at a time."""
        with self._lock:
            return self._computing.setdefault(key, threading.Lock())

    def forget(self, campaign_id: int) -> None:
        """Drop a campaign's shared figures (after a change made here: the next page computes them)."""
        with self._lock:
            self._figures.pop(campaign_id, None)
            self._activity.pop(campaign_id, None)

    def _cached_status(self, ref: CampaignRef, *, stale_ok: bool = False) -> dict | None:
        """The shared figures of `ref` when they are of its current state (and, unless `stale_ok`,
        younger than STATUS_STALENESS); starts one refresh in the background when they are older."""
        with self._lock:
            cached = self._figures.get(ref.id)
        if cached is None or cached[1]["state"] != ref.state:
            return None
        if time.monotonic() - cached[0] < STATUS_STALENESS:
            return cached[1]
        if not stale_ok:
            return None
        self._refresh_later(("status", ref.id), lambda: self._compute_status(ref))
        return cached[1]

    def _refresh_later(self, key: tuple, compute) -> None:
        """Run `compute` in a thread unless a computation of `key` is under way."""
        lock = self._single(key)
        if not lock.acquire(blocking=False):
            return

        def run() -> None:
            try:
                compute()
            except Exception:  # the next request computes it again; the server keeps serving
                log.exception("refreshing %s failed", key)
            finally:
                lock.release()

        threading.Thread(target=run, name=f"cadence-web-refresh-{key[0]}", daemon=True).start()

    def _status(self, ref: CampaignRef, fresh: bool) -> dict | None:
        if not fresh:
            # Figures up to STATUS_STALENESS old are served as they are; older ones of the same
            # state are served while one refresh runs (never one computation per viewer).
            cached = self._cached_status(ref, stale_ok=True)
            if cached is not None:
                return cached
            with self._single(("status", ref.id)):
                cached = self._cached_status(ref)  # computed meanwhile by another viewer
                return cached if cached is not None else self._compute_status(ref)
        return self._compute_status(ref)

    def _compute_status(self, ref: CampaignRef) -> dict | None:
        status = campaign_status_by_id(self.app, ref.id)
        if status is not None:
            with self._lock:
                if len(self._figures) > 10_000:
                    self._figures.clear()
                self._figures[ref.id] = (time.monotonic(), status)
        return status

    def _view(self, viewer: Viewer, ref: CampaignRef, fresh: bool) -> CampaignView | None:
        status = self._status(ref, fresh)
        if status is None:
            return None
        return CampaignView(ref.id, ref.name, status["state"], status, viewer.may_control_campaign(ref.owner_ids))

    def campaigns(self, viewer: Viewer) -> list[CampaignView]:
        """The campaigns the viewer may see, sending ones first, then by name."""
        views = (self._view(viewer, ref, fresh=False) for ref in visible_campaigns(self.app, viewer))
        return [v for v in views if v is not None]

    def campaign(self, viewer: Viewer, campaign_id: int, *, fresh: bool = True) -> CampaignView | None:
        """One campaign, or None when it does not exist or is not the viewer's to see.
        `fresh=False` (live refresh) may reuse figures up to STATUS_STALENESS seconds old."""
        ref = visible_campaign(self.app, viewer, campaign_id)
        return self._view(viewer, ref, fresh) if ref is not None else None

    def campaign_state(self, viewer: Viewer, campaign_id: int) -> str | None:
        ref = visible_campaign(self.app, viewer, campaign_id)
        return ref.state if ref is not None else None

    def tasks(self, viewer: Viewer, page: int = 1) -> TaskPage:
        """Page `page` (1-based; past the last: the last) of the open tasks of the viewer (a
        manager: of the team; an admin: all), TASKS_PER_PAGE rows, overdue first, with their total:
        shared by the viewers of one team, served up to TASKS_STALENESS old (older while one refresh
        runs); any task action made in the web app drops them (`forget_tasks`)."""
        page = max(1, page)
        with self._lock:
            first = self._tasks.get((viewer.team_ids, 1))
        if first is not None:  # a number past the end is the last page (one copy kept, not one per number)
            page = min(page, max(1, -(-first[1].total // TASKS_PER_PAGE)))
        key = (viewer.team_ids, page)
        with self._lock:
            cached = self._tasks.get(key)
        if cached is not None:
            if time.monotonic() - cached[0] >= TASKS_STALENESS:
                self._refresh_later(("tasks", key), lambda: self._compute_tasks(viewer, key))
            return cached[1]
        # one lock per team (not per number asked, which any URL may name)
        with self._single(("tasks", viewer.team_ids)):
            with self._lock:
                cached = self._tasks.get(key)
            return cached[1] if cached is not None else self._compute_tasks(viewer, key)

    def _compute_tasks(self, viewer: Viewer, key: tuple) -> TaskPage:
        """Computes page key[1] and keeps it under the page it turned out to be (the last one, past the end)."""
        with self._lock:
            generation = self._tasks_generation
        offset = (key[1] - 1) * TASKS_PER_PAGE
        found = open_tasks(self.app, viewer.rep_ids, limit=TASKS_PER_PAGE, offset=offset, overdue_first=True)
        if not found.tasks and offset:  # past the end (tasks went meanwhile, or a typed URL): the last page
            offset = max(0, (found.total - 1) // TASKS_PER_PAGE * TASKS_PER_PAGE)
            found = (open_tasks(self.app, viewer.rep_ids, limit=TASKS_PER_PAGE, offset=offset, overdue_first=True)
                     if found.total else TaskPage([], 0, 0))
        with self._lock:
            if generation == self._tasks_generation:  # not dropped meanwhile by a task action
                if len(self._tasks) > 10_000:
                    self._tasks.clear()
                actual = (key[0], found.offset // TASKS_PER_PAGE + 1)
                if actual != key:  # a page that went past the end (tasks went) is not served any more
                    self._tasks.pop(key, None)
                self._tasks[actual] = (time.monotonic(), found)
        return found

    def forget_tasks(self) -> None:
        """Drop every shared task list (a task was sent, saved, scheduled or skipped here)."""
        with self._lock:
            self._tasks.clear()
            self._tasks_generation += 1

    def task(self, viewer: Viewer, task_id: int) -> TaskDetail | None:
        """One task with its full draft, or None when it does not exist or is not the viewer's."""
        detail = task_detail(self.app, task_id)
        return detail if detail is not None and viewer.may_act_for(detail.rep_id) else None

    def activity(self, view: CampaignView) -> list[DayActivity]:
        """Sends, opens, clicks and replies per day of a campaign the viewer may see: recomputed at
        once on a change of state; otherwise an older chart is served while one refresh runs when
        the totals changed (after ACTIVITY_MIN_AGE) or it is ACTIVITY_STALENESS old."""
        d = view.status["delivery"]
        totals = (view.state, d["sent"], d["opens"], d["clicks"], d["replies"])

        def compute() -> list[DayActivity]:
            days = daily_activity(self.app, view.id)
            with self._lock:
                if len(self._activity) > 10_000:
                    self._activity.clear()
                self._activity[view.id] = (time.monotonic(), totals, days)
            return days

        with self._lock:
            cached = self._activity.get(view.id)
        if cached is not None and cached[1][0] == view.state:
            age = time.monotonic() - cached[0]
            if not (age < ACTIVITY_MIN_AGE or (cached[1] == totals and age < ACTIVITY_STALENESS)):
                self._refresh_later(("activity", view.id), compute)
            return cached[2]
        with self._single(("activity", view.id)):
            with self._lock:
                cached = self._activity.get(view.id)
            if cached is not None and cached[1][0] == view.state:
                return cached[2]
            return compute()

    def launch_options(self, viewer: Viewer, campaign_id: int) -> LaunchOptions | None:
        """The launch form's choices for this viewer's team: served up to LAUNCH_STALENESS old
        (older while one refresh runs)."""
        key = (campaign_id, viewer.team_ids)

        def compute() -> LaunchOptions | None:
            options = launch_options(self.app, viewer, campaign_id)
            with self._lock:
                if len(self._launch) > 10_000:
                    self._launch.clear()
                self._launch[key] = (time.monotonic(), options)
            return options

        with self._lock:
            cached = self._launch.get(key)
        if cached is not None:
            if time.monotonic() - cached[0] >= LAUNCH_STALENESS:
                self._refresh_later(("launch", key), compute)
            return cached[1]
        with self._single(("launch", key)):  # viewers arriving together wait for one computation
            with self._lock:
                cached = self._launch.get(key)
            return cached[1] if cached is not None else compute()

    def feed(self, viewer: Viewer, after_id: int = 0) -> list[FeedItem]:
        return feed(self.app, viewer, after_id=after_id)
