"""Writing how claimed messages ended, for the messages a claim still holds, in one transaction."""
from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime
from typing import Callable

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from core.email.message_id import new_message_id
from core.mailbox import SentRef
from core.outcomes import (
    CHECK_LATER,
    DRAFTED,
    FAILED,
    IN_DOUBT,
    LOST,
    NOT_SENT,
    RELEASE,
    RETRY,
    SENT,
    WAIT,
    Outcome,
    PassReport,
    Work,
    capped_reasons,
)
from core.vocabulary import DeferralCause, EnrollmentState, EventKind, MessageState, TaskState
from store.bulk import among, update_by_id
from store.events import add_events, event_row, record
from store.mailboxes import mark_disconnected
from store.models import Enrollment, MailboxQuota, MailboxRow, MailboxSend, Message, Task
from store.queue.claims import end_enrollment, locked, release, set_sent

log = logging.getLogger("cadence.delivery")

# The sequences moved on by sent messages: (session, [(enrollment, position)], now).
MoveOn = Callable[[Session, list, datetime], None]


def write_outcomes(session: Session, now: datetime, token: str, works: list[Work], *,
                   disconnected: dict[int, str], windowed: bool, move_on: MoveOn) -> PassReport:
    """Write every outcome of `works` (LOST ones aside) for the messages `token` still holds.

    A work without an outcome is left `sending` for reconciliation (check_later). Sent and other
    finished sends leave the per-minute window's open rows (`windowed`); sends known not to have
    happened are taken out of it and give their daily reservations back. `disconnected`: mailbox
    id → reason, marked disconnected here. `move_on` schedules the next steps of sent messages.
    """
    by_id = {w.message_id: w for w in works if not (w.outcome and w.outcome.kind == LOST)}
    report = PassReport()
    if not by_id:
        return report
    rows = session.execute(locked(session, select(
        Message.id, Message.enrollment_id, Message.mailbox_id, Message.campaign_id, Message.position,
        Message.to_address, Message.message_id, Message.provider_message_id, Message.provider_thread_id)
        .where(among(session, Message.id, by_id), Message.claim_token == token).order_by(Message.id),
        of=Message)).all()
    if not rows:
        return report
    enrollments = {e.id: e for e in session.scalars(select(Enrollment).where(
        among(session, Enrollment.id, {r.enrollment_id for r in rows})))}
    returned: Counter = Counter()
    finished, dropped, moves, sent_rows, events = [], [], [], [], []
    others = []
    for row in rows:
        outcome = by_id[row.id].outcome
        if outcome is not None and outcome.kind == SENT:  # the common case, written in bulk
            sent = outcome.sent or SentRef(row.message_id)
            enrollment = enrollments[row.enrollment_id]
            sent_rows.append({
                "id": row.id, "sent_at": sent.sent_at or now,
                "provider_message_id": sent.provider_message_id or row.provider_message_id,
                "provider_thread_id": sent.provider_thread_id or row.provider_thread_id})
            events.append(event_row(EventKind.SENT, now, outcome.detail or
                                    f"step {row.position} sent to {row.to_address}",
                                    campaign_id=row.campaign_id, enrollment_id=enrollment.id, message_id=row.id,
                                    contact_id=enrollment.contact_id, mailbox_id=row.mailbox_id))
            moves.append((enrollment, row.position))
            finished.append(row.id)
            report.sent += 1
            report.reconciled += outcome.reconciled
        else:
            others.append(row.id)
    update_by_id(session, Message, sent_rows, state=MessageState.SENT.value, updated_at=now, quota_buckets=None,
                 lease_owner=None, lease_until=None, claim_token=None)
    if others:
        messages = session.scalars(select(Message).where(among(session, Message.id, others))
                                   .order_by(Message.id)).all()
        boxes = {b.id: b for b in session.scalars(select(MailboxRow).where(
            MailboxRow.id.in_({m.mailbox_id for m in messages})))}
        for message in messages:
            work = by_id[message.id]
            outcome = work.outcome or Outcome(CHECK_LATER, at=now,
                                              detail="the worker could not tell how the provider call ended")
            _apply(session, message, work, outcome, enrollments[message.enrollment_id],
                   boxes[message.mailbox_id], now, report, returned, moves)
            if outcome.kind in NOT_SENT and not outcome.late:
                dropped.append(message.id)  # this worker's own attempt did not send it
            elif outcome.kind != CHECK_LATER:
                finished.append(message.id)
        for mailbox_id, reason in disconnected.items():
            if mailbox_id in boxes:
                mark_disconnected(session, boxes[mailbox_id], reason, now)
    give_back(session, returned)
    if windowed and finished:
        session.execute(update(MailboxSend).where(MailboxSend.message_id.in_(finished),
                                                  MailboxSend.finished_at.is_(None)).values(finished_at=now))
    if windowed and dropped:  # not sent: they do not count in the window
        session.execute(delete(MailboxSend).where(MailboxSend.message_id.in_(dropped),
                                                  MailboxSend.finished_at.is_(None)))
    add_events(session, events)
    move_on(session, moves, now)
    return report


def give_back(session: Session, counts: Counter) -> None:
    """Daily reservations of sends known not to have happened are counted no more.

    `counts`: (mailbox id, bucket key) → how many to give back.
    """
    for (mailbox_id, bucket), n in sorted(counts.items()):
        session.execute(update(MailboxQuota).where(MailboxQuota.mailbox_id == mailbox_id,
                                                   MailboxQuota.bucket == bucket)
                        .values(used=case((MailboxQuota.used > n, MailboxQuota.used - n), else_=0)))


def _apply(session: Session, message: Message, work: Work, outcome: Outcome, enrollment: Enrollment,
           box: MailboxRow, now: datetime, report: PassReport, returned: Counter, moves: list) -> None:
    ids = dict(campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
               contact_id=enrollment.contact_id)
    kind = outcome.kind
    held = list(message.quota_buckets or [])
    if kind in NOT_SENT:
        for bucket in held:
            returned[(message.mailbox_id, bucket)] += 1
    if kind != CHECK_LATER:
        message.quota_buckets = None
    if kind == SENT:
        set_sent(message, outcome.sent or SentRef(message.message_id), now)
        record(session, EventKind.SENT, now, outcome.detail or f"step {message.position} sent to {message.to_address}",
               mailbox_id=message.mailbox_id, **ids)
        moves.append((enrollment, message.position))
        report.sent += 1
        report.reconciled += outcome.reconciled
    elif kind == DRAFTED:
        draft = work.draft
        message.state, message.updated_at = MessageState.DRAFTED.value, now
        message.provider_draft_id, message.provider_message_id = draft.draft_id, draft.provider_message_id
        message.provider_thread_id, message.web_link = draft.provider_thread_id, draft.web_link
        release(message)
        task = Task(message_id=message.id, rep_id=box.owner_id, state=TaskState.OPEN.value, created_at=now)
        session.add(task)
        session.flush()
        record(session, EventKind.TASK_CREATED, now, f"task {task.id}: draft to {message.to_address} ready in "
               f"{box.address}", mailbox_id=box.id, data={"task_id": task.id, "web_link": draft.web_link}, **ids)
        report.drafted += 1
    elif kind in (RETRY, WAIT, RELEASE):
        if message.state == MessageState.SENDING.value:
            message.state = MessageState.SCHEDULED.value  # a stored draft is the one sent next time
            if work.draft is not None and not message.provider_draft_id:  # found by reconciliation
                draft = work.draft
                message.provider_draft_id, message.provider_message_id = draft.draft_id, draft.provider_message_id
                message.provider_thread_id, message.web_link = draft.provider_thread_id, draft.web_link
        if kind == RETRY:
            message.due_at = outcome.at or now
            message.due_reasons = capped_reasons(list(message.due_reasons or []) + [
                f"retry at {message.due_at.isoformat()}: {outcome.detail}"])
            record(session, EventKind.RECONCILED if outcome.reconciled else EventKind.DEFERRED, now,
                   f"step {message.position} to {message.to_address}: {outcome.detail}; "
                   f"{'goes' if outcome.reconciled else 'retry'} at {message.due_at.isoformat()}",
                   level="warning", data={"due_at": message.due_at, "why": outcome.detail,
                                          **({} if outcome.reconciled else {"cause": outcome.cause.value})}, **ids)
            if outcome.reconciled:
                report.reconciled += 1
            else:
                report.deferred += 1
        elif kind == WAIT:
            record(session, EventKind.DEFERRED, now, f"step {message.position} to {message.to_address} waits "
                   f"until {box.address} is reconnected: {outcome.detail}", level="warning",
                   data={"why": outcome.detail, "cause": DeferralCause.MAILBOX_DISCONNECTED.value}, **ids)
            report.deferred += 1
        elif outcome.at is not None:
            message.due_at = max(message.due_at or outcome.at, outcome.at)
        message.updated_at = now
        release(message)
    elif kind == FAILED:
        message.state, message.error, message.updated_at = MessageState.FAILED.value, outcome.detail, now
        release(message)
        end_enrollment(session, enrollment, EnrollmentState.FAILED, f"provider refused: {outcome.detail}", now)
        record(session, EventKind.FAILED, now, f"step {message.position} to {message.to_address}: {outcome.detail}",
               level="error", **ids)
        report.failed += 1
    elif kind == IN_DOUBT:
        message.state, message.error, message.updated_at = MessageState.IN_DOUBT.value, outcome.detail, now
        release(message)
        record(session, EventKind.IN_DOUBT, now, f"step {message.position} to {message.to_address}: cannot tell "
               f"whether it was sent ({outcome.detail}); a person must decide, it is not sent again",
               level="error", mailbox_id=message.mailbox_id, **ids)
        log.error("message %s to %s is in doubt: %s", message.id, message.to_address, outcome.detail)
        report.in_doubt += 1
    elif kind == CHECK_LATER:
        at = outcome.at or now
        message.lease_owner, message.claim_token, message.lease_until = None, None, at
        record(session, EventKind.RECONCILED, now, f"step {message.position} to {message.to_address}: "
               f"{outcome.detail}; asked again from {at.isoformat()}", level="warning", **ids)


def send_again(session: Session, message: Message, at: datetime, now: datetime) -> None:
    """A sent automatic email goes out once more at `at` (after a soft bounce), under a new
    Message-ID so that its first sending and the report about it stay told apart; the next
    step, scheduled from the first sending, waits for the new one."""
    domain = message.message_id.rpartition("@")[2].rstrip(">") or "cadence.invalid"
    message.message_id = new_message_id(uuid.uuid4().hex, domain)
    message.state, message.due_at = MessageState.SCHEDULED.value, at
    message.due_reasons = ["sent again a day after a soft bounce"]
    message.provider_draft_id = message.provider_message_id = message.provider_thread_id = None
    message.web_link = message.sent_at = message.error = None
    message.lease_owner = message.lease_until = message.claim_token = message.quota_buckets = None
    message.attempts, message.updated_at = 0, now
    session.execute(update(Message).where(
        Message.enrollment_id == message.enrollment_id, Message.position == message.position + 1,
        Message.state == MessageState.SCHEDULED.value).values(
        state=MessageState.PLANNED.value, due_at=None, due_reasons=None, updated_at=now))
