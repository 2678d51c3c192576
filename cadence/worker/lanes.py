"""One mailbox's provider calls in one batch (a lane): drafts, sends and checks, each under a
concurrency slot; what the provider answers is judged by `core.outcomes`."""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.worker.leases import LeaseKeeper
from cadence.worker.slots import mailbox_slot
from core.mailbox import Disconnected, DraftNotFound, DraftRef, MailboxError, SendInDoubt
from core.outcomes import (
    CHECK_LATER,
    DRAFTED,
    RELEASE,
    SENT,
    Outcome,
    Work,
    backoff,
    judge_check,
    judge_crash,
    judge_problem,
)
from core.quota import Limits
from core.vocabulary import StepAction
from store.models import MailboxRow
from store.queue.claims import SOON

log = logging.getLogger("cadence.delivery")


class NoSlot(Exception):
    """No concurrency slot of the mailbox came free in time."""


class Lane:
    """One mailbox's provider calls in one batch: in order, each under a concurrency slot.

    After a disconnection or a rate limit, the rest of the lane is not tried (`blocked`).
    """

    def __init__(self, app: App, keeper: LeaseKeeper, row: MailboxRow, limits: Limits):
        self.app, self.keeper, self.row, self.limits = app, keeper, row, limits
        self.blocked: Outcome | None = None
        self.disconnected: str | None = None

    def call(self, fn: Callable):
        try:
            with mailbox_slot(self.app, self.keeper, self.row.id, self.limits.concurrency) as free:
                if not free:
                    raise NoSlot()
                return fn(self.app.mailbox(self.row))
        except DBAPIError as exc:  # the slot could not be taken: the database is away
            raise NoSlot() from exc

    def now(self) -> datetime:
        return self.app.clock.now()

    def retry_at(self, attempts: int) -> datetime:
        """Exponential backoff from the operator's retry base, with jitter."""
        return backoff(self.keeper.options.retry_base, attempts, self.now(), random.random())

    def problem(self, problem: MailboxError, work: Work) -> Outcome:
        verdict = judge_problem(problem, self.now(), self.retry_at(work.attempts))
        if verdict.disconnected is not None:
            self.disconnected = verdict.disconnected
        if verdict.blocks:
            self.blocked = verdict.outcome  # the mailbox must wait: the rest of the lane waits too
        return verdict.outcome


def held(lane: Lane, work: Work) -> bool:
    """True (with the outcome set) when the lane may not call the provider for `work` now:
    the mailbox is blocked (rate limit, disconnected) or the worker is stopping."""
    if lane.blocked is not None:
        work.outcome = lane.blocked
        return True
    if lane.keeper.stopping.is_set():
        work.outcome = Outcome(RELEASE, at=lane.now())
        return True
    return False


def draft_step(lane: Lane, works: list[Work]) -> None:
    """Create the drafts: every task's, and every automatic message's that has none yet (one an
    interrupted attempt made is reused: `earlier_draft`)."""
    for work in works:
        if work.outcome is not None or (work.action == StepAction.AUTO.value and work.draft is not None):
            continue
        if held(lane, work):
            continue
        try:
            draft = earlier_draft(lane, work) if work.may_have_draft else None
            made = draft is None
            if made:
                draft = lane.call(lambda box: box.create_draft(work.email))
        except NoSlot:
            work.outcome = Outcome(RELEASE, at=lane.now() + SOON)
            continue
        except MailboxError as problem:
            work.outcome = lane.problem(problem, work)
            continue
        except Exception as exc:  # a connector bug must not stop the others
            log.warning("creating the draft of message %s failed: %s: %s", work.message_id, type(exc).__name__, exc)
            work.outcome = judge_crash(exc, attempts=work.attempts, doing="creating the draft",
                                       backoff_at=lane.retry_at(work.attempts))
            continue
        work.draft, work.new_draft, work.made_draft = draft, True, made
        if work.action == StepAction.TASK.value:
            work.outcome = Outcome(DRAFTED)


def earlier_draft(lane: Lane, work: Work) -> DraftRef | None:
    """The draft an earlier, interrupted attempt made of `work` (found by Message-ID), or None.

    The first found is kept; any further copy is deleted, so the rep's Drafts never holds two.
    """
    found = lane.call(lambda box: box.find_drafts(work.rfc_message_id))
    if not found:
        return None
    for extra in found[1:]:
        lane.call(lambda box, extra=extra: box.delete_draft(extra))
    log.info("message %s: reusing the draft %s an interrupted attempt made", work.message_id, found[0].draft_id)
    return found[0]


def send_step(lane: Lane, works: list[Work]) -> None:
    """Send the recorded drafts; an interrupted send is checked with the provider at once."""
    for work in works:
        if work.outcome is not None or work.action != StepAction.AUTO.value or work.draft is None:
            continue
        if held(lane, work):
            continue
        try:
            sent = lane.call(lambda box: box.send_draft(work.draft))
        except NoSlot:
            work.outcome = Outcome(RELEASE, at=lane.now() + SOON)
            continue
        except (SendInDoubt, DraftNotFound) as doubt:
            work.outcome = check(lane, work, doubt.reason)
            continue
        except MailboxError as problem:
            work.outcome = lane.problem(problem, work)
            continue
        except Exception as exc:  # not a provider answer we know: it may have gone out
            log.exception("sending message %s failed unexpectedly", work.message_id)
            work.outcome = check(lane, work, f"sending failed unexpectedly: {exc}")
            continue
        work.outcome = Outcome(SENT, sent=sent)


def check(lane: Lane, work: Work, why: str, *, reconciling: bool = False) -> Outcome:
    """Ask the provider whether the message went out; only its answer decides."""
    try:
        status = lane.call(lambda box: box.check_sent(work.rfc_message_id, work.draft))
    except NoSlot:
        return Outcome(CHECK_LATER, detail=f"{why}; no request slot of the mailbox came free to check",
                       at=lane.now() + SOON)
    except Exception as exc:
        if isinstance(exc, Disconnected):
            lane.disconnected = exc.reason
        reason = exc.reason if isinstance(exc, MailboxError) else str(exc)
        return Outcome(CHECK_LATER, detail=f"{why}; checking failed: {reason}", at=lane.retry_at(1))
    return judge_check(status, rfc_message_id=work.rfc_message_id, position=work.position,
                       to_address=work.to_address, why=why, now=lane.now(),
                       backoff_at=lane.now() if reconciling else lane.retry_at(1), reconciling=reconciling)


def in_lanes(lanes: dict[int, Lane], works: list[Work], step: Callable[[Lane, list[Work]], None],
             pool: ThreadPoolExecutor | None) -> None:
    """Run `step` for each mailbox's works; mailboxes side by side when there is a pool."""
    groups: dict[int, list[Work]] = defaultdict(list)
    for work in works:
        if work.outcome is None:
            groups[work.mailbox_id].append(work)

    def run(item: tuple[int, list[Work]]) -> None:
        mailbox_id, items = item
        try:
            step(lanes[mailbox_id], items)
        except Exception:  # outcomes not set stay unknown: writing them leaves them to reconciliation
            log.exception("provider calls of mailbox %s stopped", mailbox_id)

    if pool is None or len(groups) <= 1:
        for item in groups.items():
            run(item)
    else:
        list(pool.map(run, groups.items()))
