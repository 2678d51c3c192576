"""The passes of due work: claim and carry out due messages, reconcile interrupted sends, sync
mailboxes; `run_pass` is the unit every loop (worker, serve, demo, `worker --once`) runs.

How an automatic email goes out, with any number of workers sharing one database
(docs/workers.md tells the operator's side): claim (`store.queue.claims.claim_due`), record the
intent (`store.queue.intent.begin`), create the draft and store its id (`record_drafts`) before
`send_draft`, then write the outcome by the claim's holder only (`store.queue.outcomes`).
A message in `sending` whose lease ran out is reconciled before anything else is sent: the
provider is asked (`check_sent`); only NOT_SENT is sent again, UNKNOWN becomes `in_doubt`.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.outage import short_error
from cadence.services import health
from cadence.services.campaigns import finish_campaigns, start_due_campaigns
from cadence.services.crm_sync import sync_crm
from cadence.services.limits import mailbox_limits
from cadence.services.sequences import move_on_many
from cadence.services.stale_drafts import withdraw_stale_drafts
from cadence.services.sync import sync_mailbox
from cadence.services.task_schedule import send_scheduled_tasks
from cadence.worker.lanes import Lane, check, draft_step, earlier_draft, in_lanes, send_step
from cadence.worker.leases import LeaseKeeper, keeper_for, retrying
from cadence.worker.options import LANE_CHUNK, LEASE, DispatchOptions, worker_identity
from cadence.worker.slots import mailbox_slot
from core.campaign import CampaignSpec
from core.compose import Tracking
from core.mailbox import Disconnected, DraftRef
from core.outcomes import CHECK_LATER, LOST, Outcome, PassReport, Work
from core.vocabulary import MailboxHealth, StepAction
from store.queue.claims import SOON, claim_expired, claim_syncs, end_syncs, next_due
from store.queue.claims import claim_due as claim_rows
from store.counts import fold_counts
from store.queue.claims import housekeeping as housekeeping_rows
from store.queue.intent import Intent, claim_and_begin, drafts_in_use, record_drafts
from store.queue.outcomes import write_outcomes

log = logging.getLogger("cadence.delivery")


def claim_due(app: App, worker: str, limit: int = 100, keeper: LeaseKeeper | None = None) -> tuple[str, list[int]]:
    """Lease up to `limit` due messages of sending campaigns on connected mailboxes to a new token.

    Returns (token, message ids); the token is held by `keeper` (release it when done).
    """
    now = app.clock.now()
    lease = keeper.lease if keeper else LEASE
    token = keeper.token() if keeper else uuid.uuid4().hex[:24]
    with app.db.session(immediate=True) as session:
        ids = claim_rows(session, now, worker, token, now + lease, limit)
    if not ids and keeper is not None:
        keeper.release(token)
    return token, ids


def dispatch_due(app: App, worker: str | None = None, *, keeper: LeaseKeeper | None = None,
                 options: DispatchOptions | None = None, max_batches: int = 1000) -> PassReport:
    """Reconcile interrupted sends, then claim and carry out everything due now, batch after batch.

    The next batch is claimed (its intent recorded, `_claim_and_begin`) in a second thread while
    this one carries out the current batch: a claim waits on the database most of its time, and
    that wait now overlaps the work of sending (issue 17: one process reached 0.5-0.6 of the raw
    writes with the two one after the other). A batch claimed ahead is always carried out, even
    when the worker is stopping (its messages are then released, as any batch's are).
    """
    with keeper_for(app, worker, keeper, options) as keeper:
        report = reconcile_expired(app, keeper=keeper)
        pool = None
        ahead = ThreadPoolExecutor(1, thread_name_prefix="cadence-claim")

        def claim() -> tuple[str, Intent] | None:
            """A claimed batch and the token holding it, or None (nothing claimed, token released;
            or the worker is stopping: a claim ahead may start after the signal)."""
            if keeper.stopping.is_set():
                return None
            token = keeper.token()
            try:
                claimed, intent = _claim_and_begin(app, keeper, token)
            except BaseException:
                keeper.release(token)
                raise
            if not claimed:
                keeper.release(token)
                return None
            return token, intent

        try:
            batch = claim() if max_batches > 0 else None
            left = max_batches - 1
            while batch is not None:
                token, intent = batch
                following = ahead.submit(claim) if left > 0 else None
                left -= 1
                try:
                    if pool is None and keeper.options.threads > 1:
                        pool = ThreadPoolExecutor(keeper.options.threads, thread_name_prefix="cadence-mailbox")
                    report.add(_carry_out(app, keeper, token, intent, pool))
                except BaseException:
                    if following is not None:  # its messages wait in `sending` for their lease to run out
                        following.add_done_callback(_let_lapse(keeper))
                    raise
                finally:
                    keeper.release(token)
                batch = following.result() if following is not None else None
        finally:
            ahead.shutdown(wait=True)
            if pool is not None:
                pool.shutdown(wait=True)
    return report


def _let_lapse(keeper: LeaseKeeper) -> Callable[[Future], None]:
    """For a batch claimed ahead that will not be carried out: stop extending its lease, so that
    reconciliation (`reconcile_expired`) settles its messages once the lease runs out."""
    def done(future: Future) -> None:
        if not future.cancelled() and future.exception() is None and future.result() is not None:
            keeper.release(future.result()[0])

    return done


def follow_due(app: App, keeper: LeaseKeeper, seconds: float, *, least: float = 0.02) -> PassReport:
    """For `seconds`: wait until the next message falls due (`store.queue.claims.next_due`) and
    dispatch it then, instead of at the loop's next tick. Returns at once when nothing falls due
    within the time left, or when the worker stops."""
    report = PassReport()
    end = time.monotonic() + seconds
    while not keeper.stopping.is_set():
        now = app.clock.now()
        with app.db.session(readonly=True) as session:
            due = next_due(session, now)
        wait = max((due - now).total_seconds(), least) if due is not None else None
        if wait is None or time.monotonic() + wait >= end:
            return report
        if keeper.stopping.wait(wait):
            return report
        report.add(dispatch_due(app, keeper=keeper))
    return report


def _claim_and_begin(app: App, keeper: LeaseKeeper, token: str) -> tuple[int, Intent]:
    """Claim a batch and record its intent in one transaction (store.queue.intent.claim_and_begin).

    Not tried again here: a transaction that fails leaves nothing claimed, the next pass claims.
    """
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        return claim_and_begin(session, now, keeper.worker, token, keeper.options.batch, until=now + keeper.lease,
                               limits_of=lambda row: mailbox_limits(app, row), tracking=_tracking(app),
                               zone=ZoneInfo(app.settings.timezone))


def _tracking(app: App):
    def tracking(spec: CampaignSpec) -> Tracking:
        return Tracking(app.settings.secret_keys[0], app.settings.public_url, clicks=spec.track_clicks,
                        opens=spec.track_opens)

    return tracking


def _carry_out(app: App, keeper: LeaseKeeper, token: str, intent: Intent,
               pool: ThreadPoolExecutor | None) -> PassReport:
    works, report = intent.works, intent.report
    if not works:
        return report
    lanes = {mid: Lane(app, keeper, intent.mailboxes[mid], intent.limits[mid]) for mid in {w.mailbox_id for w in works}}
    orphans: list[tuple[int, int, DraftRef]] = []
    per_mailbox: dict[int, list[Work]] = defaultdict(list)
    for work in works:
        per_mailbox[work.mailbox_id].append(work)
    # In rounds of LANE_CHUNK messages per mailbox, so that a busy mailbox's first emails go out
    # before its last drafts are made; each round's draft ids are recorded in one transaction.
    for start in range(0, max(len(items) for items in per_mailbox.values()), LANE_CHUNK):
        chunk = [w for items in per_mailbox.values() for w in items[start:start + LANE_CHUNK]]
        in_lanes(lanes, chunk, draft_step, pool)
        orphans += _record_drafts(app, keeper, token, chunk)
        in_lanes(lanes, chunk, send_step, pool)
    report.add(_finish(app, keeper, token, works, lanes))
    adopted: set[int] = set()
    if orphans:
        with app.db.session(readonly=True) as session:
            adopted = drafts_in_use(session, {message_id: draft.draft_id for _box, message_id, draft in orphans})
    for mailbox_id, message_id, draft in orphans:  # made by this worker, recorded by nobody: never to be sent
        if message_id in adopted:  # the claim's new holder found it by Message-ID and sends it
            continue
        try:
            lanes[mailbox_id].call(lambda box: box.delete_draft(draft))
        except Exception as exc:
            log.warning("could not delete unrecorded draft %s: %s", draft.draft_id, exc)
    return report


def _record_drafts(app: App, keeper: LeaseKeeper, token: str, works: list[Work]) -> list[tuple[int, int, DraftRef]]:
    """Store new draft ids of automatic messages, by the claim's holder only, before any send.

    Returns the drafts to delete: made by this worker but recorded by nobody (the claim was lost);
    a draft it found by Message-ID stays, for whoever holds the claim now.
    """
    todo = {w.message_id: w for w in works
            if w.action == StepAction.AUTO.value and w.new_draft and w.outcome is None}
    if not todo:
        return []

    def write() -> set[int]:
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            return record_drafts(session, now, token, {mid: w.draft for mid, w in todo.items()}, now + keeper.lease)

    try:
        recorded = retrying(keeper, write, "recording draft ids")
    except DBAPIError as exc:
        # Whether it committed is unknown: nothing is sent, drafts stay; reconciliation decides.
        log.error("could not record %d draft ids; they are not sent now: %s", len(todo), short_error(exc))
        for work in todo.values():
            work.outcome = Outcome(LOST)
        return []
    orphans = []
    for message_id, work in todo.items():
        if message_id not in recorded:
            work.outcome = Outcome(LOST)
            # A draft found by Message-ID may already be the one the claim's new holder recorded.
            if work.made_draft:
                orphans.append((work.mailbox_id, message_id, work.draft))
    return orphans


def _finish(app: App, keeper: LeaseKeeper, token: str, works: list[Work],
            lanes: dict[int, Lane] | None = None) -> PassReport:
    """Write every outcome, for the messages this claim still holds, in one transaction."""
    counted = [w for w in works if not (w.outcome and w.outcome.kind == LOST)]
    if not counted:
        return PassReport()
    disconnected = {mid: lane.disconnected for mid, lane in (lanes or {}).items() if lane.disconnected}
    windowed = any(lane.limits.per_minute for lane in (lanes or {}).values())

    def write() -> PassReport:
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            return write_outcomes(session, now, token, counted, disconnected=disconnected, windowed=windowed,
                                  move_on=lambda s, moves, at: move_on_many(s, app.clock, moves, at))

    try:
        return retrying(keeper, write, "recording send outcomes")
    except DBAPIError as exc:
        log.error("could not record the outcome of %d messages; reconciliation will settle them after "
                  "their lease: %s", len(counted), short_error(exc))
        return PassReport()


def reconcile_expired(app: App, worker: str | None = None, *, keeper: LeaseKeeper | None = None,
                      options: DispatchOptions | None = None) -> PassReport:
    """Messages left in `sending` whose lease ran out: the provider says what happened to them.

    SENT is recorded; NOT_SENT is due again at once (with its draft, when there is one: a draft
    made but never recorded is found by its Message-ID and recorded now); UNKNOWN is `in_doubt`.
    A check that fails is tried again later; nothing is sent here.
    """
    report = PassReport()
    with keeper_for(app, worker, keeper, options) as keeper:
        while not keeper.stopping.is_set():
            token = keeper.token()
            try:
                now = app.clock.now()
                with app.db.session(immediate=True) as session:
                    works, rows = claim_expired(session, now, keeper.worker, token, now + keeper.lease,
                                                keeper.options.batch)
                if not works:
                    return report
                lanes = {}
                for mailbox_id, row in rows.items():
                    try:
                        lanes[mailbox_id] = Lane(app, keeper, row, mailbox_limits(app, row))
                    except Exception as exc:
                        health.say_once(row.address, row.id, exc)
                for work in works:
                    if work.mailbox_id not in lanes:
                        work.outcome = Outcome(CHECK_LATER, detail="this worker cannot reach the mailbox",
                                               at=now + SOON)

                def ask(lane: Lane, items: list[Work]) -> None:
                    for work in items:
                        if lane.keeper.stopping.is_set():
                            work.outcome = Outcome(CHECK_LATER, detail="the worker stopped", at=lane.now())
                            continue
                        if work.draft is None:  # it may have died after making the draft: adopt that one
                            try:
                                work.draft = earlier_draft(lane, work)
                            except Exception as exc:
                                # Judged without it, the message would be due again as having no draft
                                # while its draft waits in Drafts: not knowing decides nothing.
                                log.warning("looking for the draft of message %s failed: %s", work.message_id, exc)
                                if isinstance(exc, Disconnected):
                                    lane.disconnected = exc.reason
                                work.outcome = Outcome(CHECK_LATER, detail=f"looking for its draft failed: {exc}",
                                                       at=lane.retry_at(1))
                                continue
                        work.outcome = check(lane, work, "the worker sending it stopped", reconciling=True)

                in_lanes(lanes, works, ask, None)
                report.add(_finish(app, keeper, token, works, lanes))
            finally:
                keeper.release(token)
    return report


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
            rows = claim_syncs(session, now, every, limit, token, now + keeper.lease)
        for row in rows:
            if keeper.stopping.is_set():
                break
            try:
                limits = mailbox_limits(app, row)
                with mailbox_slot(app, keeper, row.id, limits.concurrency) as free:
                    if free:
                        report.add(sync_mailbox(app, row.id))
                if row.health != MailboxHealth.CONNECTED.value or row.health_failures:
                    health.mark_usable(app, row.id)
            except DBAPIError:
                raise
            except Exception as exc:  # one mailbox's trouble must not stop the others' sync: said once, retried later
                log.debug("sync of %s failed", row.address, exc_info=True)
                health.mark_unusable(app, row.id, exc)
    finally:
        try:
            with app.db.session(immediate=True) as session:
                end_syncs(session, token)
        except DBAPIError as exc:  # the sync leases run out instead
            log.warning("could not end sync leases: %s", short_error(exc))
        keeper.release(token)
    return report, len(rows)


def housekeeping(app: App) -> None:
    """Forget counts nobody needs any more: old quota buckets and sliding-window rows; fold the
    campaign counters' per-connection rows (PostgreSQL)."""
    with app.db.session(immediate=True) as session:
        housekeeping_rows(session, app.clock.now())
    with app.db.session(immediate=True) as session:
        fold_counts(session)


def run_pass(app: App, worker: str | None = None) -> PassReport:
    """Launch due campaigns, reconcile interrupted sends, sync mailboxes, send what is due,
    withdraw stale task drafts from the reps' Drafts, finish."""
    with LeaseKeeper(app, worker or worker_identity()) as keeper:
        report = PassReport()
        report.launched = start_due_campaigns(app)
        report.add(reconcile_expired(app, keeper=keeper))
        report.add(sync_due(app, keeper))
        report.add(dispatch_due(app, keeper=keeper))
        withdraw_stale_drafts(app)
        report.tasks_done += send_scheduled_tasks(app)
        report.finished = finish_campaigns(app)
    sync_crm(app)  # the CRM lane last: a slow CRM never delays this pass's sending
    return report
