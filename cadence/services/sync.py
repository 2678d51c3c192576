"""Mailbox sync: what happened in the reps' mailboxes (sent drafts, replies, bounces) moves campaigns."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cadence.app import App
from cadence.services.sequences import mark_sent
from core.mailbox import Disconnected, MailboxError, ObservedMessage, SentRef
from core.observations import SOFT_WINDOW, Meaning, Tracked, classify, judge_bounce
from core.outcomes import PassReport
from core.vocabulary import DeferralCause, EnrollmentState, EventKind, MailboxHealth, MessageState, StepAction, TaskState
from store.events import record
from store.mailboxes import mark_disconnected
from store.models import Contact, Enrollment, Event, MailboxRow, Message, Task
from store.queue.claims import end_enrollment, end_open_tasks_elsewhere
from store.queue.outcomes import send_again

log = logging.getLogger("cadence.sync")
# Failures of the database itself (outage, lost connection, pool exhausted), never skipped as one
# message's fault: skipping would advance the cursor past observations nobody recorded.
_DATABASE_AWAY = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)

TRACKED_STATES = (MessageState.SENT.value, MessageState.SENDING.value, MessageState.DRAFTED.value,
                  MessageState.IN_DOUBT.value)


class StoreLookup:
    """`core.observations.Lookup` over one mailbox's messages in the store."""

    def __init__(self, session, mailbox_id: int):
        self.session, self.mailbox_id = session, mailbox_id

    def _tracked(self, where, order=None) -> list[Tracked]:
        rows = self.session.execute(
            select(Message.id, Message.state, Message.to_address, Message.message_id, Message.provider_message_id,
                   Message.provider_thread_id, Message.subject, Message.sent_at)
            .where(Message.mailbox_id == self.mailbox_id, Message.state.in_(TRACKED_STATES), where)
            .order_by(*(order or (Message.position.desc(),)))).all()
        return [Tracked(r[0], MessageState(r[1]), r[2].lower(), r[3], r[4], r[5], r[6] or "", r[7]) for r in rows]

    def by_message_ids(self, message_ids: list[str]) -> list[Tracked]:
        found = self._tracked(Message.message_id.in_(message_ids))
        order = {mid: i for i, mid in enumerate(message_ids)}
        return sorted(found, key=lambda t: order.get(t.message_id, len(order)))

    def by_provider_id(self, provider_message_id: str) -> Tracked | None:
        found = self._tracked(Message.provider_message_id == provider_message_id)
        return found[0] if found else None

    def by_thread(self, provider_thread_id: str) -> list[Tracked]:
        return self._tracked(Message.provider_thread_id == provider_thread_id)

    def sent_to(self, address: str, since: datetime) -> list[Tracked]:
        return self._tracked(and_(func.lower(Message.to_address) == address.lower(),
                                  Message.state == MessageState.SENT.value, Message.sent_at >= since),
                             order=(Message.sent_at.desc(), Message.position.desc()))


def sync_mailboxes(app: App, mailbox_ids: list[int] | None = None) -> PassReport:
    report = PassReport()
    with app.db.session() as session:
        query = select(MailboxRow.id).where(MailboxRow.health == MailboxHealth.CONNECTED.value)
        if mailbox_ids is not None:
            query = query.where(MailboxRow.id.in_(mailbox_ids))
        ids = list(session.scalars(query))
    for mailbox_id in ids:
        report.add(sync_mailbox(app, mailbox_id))
    return report


def sync_mailbox(app: App, mailbox_id: int) -> PassReport:
    report = PassReport()
    with app.db.session() as session:
        box = session.get(MailboxRow, mailbox_id)
        cursor = box.sync_cursor
        threads = list(session.scalars(select(Message.provider_thread_id).where(
            Message.mailbox_id == mailbox_id, Message.provider_thread_id.is_not(None),
            Message.state.in_(TRACKED_STATES)).distinct())) if cursor else []
    mailbox = app.mailbox(box)
    try:
        result = mailbox.poll(cursor, threads)
    except Disconnected as problem:
        with app.db.session() as session:
            mark_disconnected(session, session.get(MailboxRow, mailbox_id), problem.reason, app.clock.now())
        return report
    except MailboxError as problem:
        with app.db.session() as session:
            record(session, EventKind.DEFERRED, app.clock.now(), f"sync of {box.address} failed: {problem.reason}",
                   level="warning", mailbox_id=mailbox_id, data={"cause": DeferralCause.SYNC_FAILED.value})
        return report
    now = app.clock.now()
    with app.db.session() as session:
        box = session.get(MailboxRow, mailbox_id)
        lookup = StoreLookup(session, mailbox_id)
        for observed in result.observations:
            report.observations += 1
            # One message the store or the rules cannot take is skipped (one log line naming it);
            # the rest of the mailbox goes on.
            counts = {name: getattr(report, name) for name in report.COUNTS}
            savepoint = session.begin_nested()
            try:
                _apply(session, app, box, observed, classify(observed, lookup, box.address, now), report, now)
                session.flush()
                savepoint.commit()
            except _DATABASE_AWAY:
                raise  # not this message's fault: the pass fails, the cursor stays, all is read again
            except Exception as failure:  # noqa: BLE001 - any one message's fault stays with that message
                if isinstance(failure, DBAPIError) and failure.connection_invalidated:
                    raise
                savepoint.rollback()
                for name, value in counts.items():
                    setattr(report, name, value)
                log.warning("mailbox %s: message %s (from %s) skipped, it cannot be read: %s: %s", box.address,
                            observed.provider_message_id, observed.from_address or "unknown sender",
                            type(failure).__name__, failure)
        box.sync_cursor, box.last_synced_at = result.cursor, now
    return report


def _apply(session, app: App, box: MailboxRow, observed: ObservedMessage, decision, report: PassReport,
           now: datetime) -> None:
    if decision.meaning is Meaning.UNRELATED or decision.message is None:
        return
    message = session.get(Message, decision.message.key)
    enrollment = session.get(Enrollment, message.enrollment_id)
    at = observed.received_at or now
    dedup = f"{box.id}:{observed.provider_message_id}:{decision.meaning.value}"
    common = dict(campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
                  contact_id=enrollment.contact_id, mailbox_id=box.id)
    raw = {"observed": observed.raw, "why": decision.why, "rule": decision.rule.value if decision.rule else None}
    if decision.meaning is Meaning.DRAFT_SENT:
        task = session.scalar(select(Task).where(Task.message_id == message.id))
        if task is not None and task.state == TaskState.OPEN.value:
            task.state, task.closed_at = TaskState.DONE.value, at
            record(session, EventKind.TASK_DONE, now, f"task {task.id}: the rep sent the draft to "
                   f"{message.to_address}", dedup_key=dedup, data=raw, **common)
            report.tasks_done += 1
        message.subject = observed.subject or message.subject
        mark_sent(session, app.clock, message, SentRef(observed.message_id or message.message_id,
                                                       observed.provider_message_id, observed.provider_thread_id, at),
                  now, f"step {message.position} sent by the rep from {box.address}")
        if observed.message_id and observed.message_id != message.message_id:
            message.message_id = observed.message_id  # replies will quote the id the world saw
    elif decision.meaning is Meaning.OUR_SEND:
        if message.state in (MessageState.SENDING.value, MessageState.IN_DOUBT.value):
            mark_sent(session, app.clock, message, SentRef(message.message_id, observed.provider_message_id,
                                                           observed.provider_thread_id, at),
                      now, f"step {message.position} to {message.to_address}: seen in Sent, so it was sent")
            report.reconciled += 1
    elif decision.meaning is Meaning.AUTO_REPLY:
        record(session, EventKind.AUTO_REPLIED, now, f"{observed.from_address}: {decision.why}; the sequence goes on "
               f"(rule {decision.rule.value})",
               dedup_key=dedup, data=raw, **common)
    elif decision.meaning is Meaning.REPLY:
        if record(session, EventKind.REPLIED, at, f"{observed.from_address} replied (rule {decision.rule.value}: "
                  f"{decision.why.split(': ', 1)[-1]}): {observed.snippet[:200]}",
                  dedup_key=dedup, data={**raw, "subject": observed.subject, "snippet": observed.snippet},
                  **common) is not None:
            end_enrollment(session, enrollment, EnrollmentState.REPLIED, "the contact replied", now)
            end_open_tasks_elsewhere(session, enrollment.contact_id, enrollment, EnrollmentState.REPLIED,
                                     "the contact replied", now)
            report.replies += 1
    elif decision.meaning is Meaning.BOUNCE:
        _bounced(session, app, message, enrollment, decision, observed, dedup, raw, common, report, at, now)


def _bounced(session, app: App, message: Message, enrollment: Enrollment, decision, observed: ObservedMessage,
             dedup: str, raw: dict, common: dict, report: PassReport, at: datetime, now: datetime) -> None:
    """Hard: the sequence ends and the address is excluded everywhere. Soft: that email goes again
    a day later (automatic steps; a rep's own email is only recorded); see core.observations."""
    bounce = decision.bounce
    contact = session.get(Contact, enrollment.contact_id)
    earlier_soft = session.scalar(select(func.count(Event.id)).where(
        Event.contact_id == contact.id, Event.kind == EventKind.SOFT_BOUNCED.value,
        Event.at >= at - SOFT_WINDOW, Event.at <= at)) or 0
    verdict = judge_bounce(bounce, at, earlier_soft)
    data = {**raw, "severity": "hard" if verdict.hard else "soft", "status": bounce.status if bounce else None,
            "cause": verdict.cause, "recipient": bounce.recipient if bounce else None}
    if verdict.hard:
        if record(session, EventKind.BOUNCED, at, f"{message.to_address} bounced: {verdict.cause} "
                  f"(rule {decision.rule.value if decision.rule else '-'})", level="warning",
                  dedup_key=dedup, data=data, **common) is not None:
            contact.bounced_at = contact.bounced_at or at
            end_enrollment(session, enrollment, EnrollmentState.BOUNCED, f"bounced: {verdict.cause}", now)
            end_open_tasks_elsewhere(session, contact.id, enrollment, EnrollmentState.BOUNCED,
                                     f"bounced: {verdict.cause}", now)
            report.bounces += 1
        return
    why_not = None
    if message.action != StepAction.AUTO.value:
        why_not = "a rep's own email"
    elif message.state != MessageState.SENT.value or enrollment.state != EnrollmentState.ACTIVE.value:
        why_not = "the sequence has ended"
    elif session.scalar(select(func.count(Message.id)).where(
            Message.enrollment_id == message.enrollment_id, Message.position > message.position,
            Message.state.in_(TRACKED_STATES))):
        why_not = "a later step went out already"
    retry = why_not is None
    detail = verdict.cause if retry else f"{verdict.cause.split('; sent again', 1)[0]}; not sent again ({why_not})"
    if record(session, EventKind.SOFT_BOUNCED, at, f"{message.to_address} bounced (soft): {detail}", level="warning",
              dedup_key=dedup, data={**data, "retry_at": verdict.retry_at if retry else None}, **common) is None:
        return
    report.bounces += 1
    if retry:
        send_again(session, message, verdict.retry_at, now)

