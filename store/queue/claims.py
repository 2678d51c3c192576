"""Claims, leases, concurrency slots and sync leases of the delivery queue, and the row changes
of one message (release, sent, its sequence ended)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.mailbox import DraftRef, SentRef
from core.outcomes import Work
from core.vocabulary import (
    CampaignState,
    EnrollmentState,
    EventKind,
    MailboxHealth,
    MessageState,
    TaskState,
)
from store.bulk import among
from store.events import record
from store.mailboxes import usable_now
from store.models import (
    Campaign,
    Enrollment,
    MailboxQuota,
    MailboxRow,
    MailboxSend,
    MailboxSlot,
    Message,
    Task,
    WorkerRow,
)

log = logging.getLogger("cadence.delivery")

PENDING = (MessageState.PLANNED.value, MessageState.SCHEDULED.value)
SOON = timedelta(seconds=2)  # a message given back unsent (no free slot, stopping) is tried again after this


# -- locking -----------------------------------------------------------------------------------

def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def skip_locked(session: Session, query, of=None):
    """PostgreSQL: rows another worker has locked are skipped. SQLite has one writer anyway.

    FOR NO KEY UPDATE: keys never change, and rows that merely reference the locked ones (events)
    can still be inserted meanwhile.
    """
    return query if is_sqlite(session) else query.with_for_update(skip_locked=True, of=of, key_share=True)


def locked(session: Session, query, of=None):
    """PostgreSQL: lock the rows read until the transaction ends (SQLite: BEGIN IMMEDIATE did)."""
    return query if is_sqlite(session) else query.with_for_update(of=of, key_share=True)


# -- one message -------------------------------------------------------------------------------

def release(message: Message) -> None:
    """The claim on `message` ends (its holder is done with it)."""
    message.lease_owner, message.lease_until, message.claim_token = None, None, None


def draft_ref(message: Message) -> DraftRef:
    """The provider draft of a message, as stored."""
    return DraftRef(draft_id=message.provider_draft_id, message_id=message.message_id,
                    provider_message_id=message.provider_message_id, provider_thread_id=message.provider_thread_id,
                    web_link=message.web_link)


def set_sent(message: Message, sent: SentRef, now: datetime) -> None:
    """The message went out: state, time, the provider's ids; its claim and reservations end."""
    message.state, message.sent_at = MessageState.SENT.value, sent.sent_at or now
    message.provider_message_id = sent.provider_message_id or message.provider_message_id
    message.provider_thread_id = sent.provider_thread_id or message.provider_thread_id
    message.updated_at = now
    message.quota_buckets = None
    message.lease_owner, message.lease_until, message.claim_token = None, None, None


def record_sent(session: Session, message: Message, sent: SentRef, now: datetime, detail: str = "") -> None:
    """One message is known to have gone out (from a send, a check or a sync): its row, its send in
    the rate window and a `sent` event. The sequence's next step is the caller's (`move_on`)."""
    set_sent(message, sent, now)
    session.execute(update(MailboxSend).where(MailboxSend.message_id == message.id,
                                              MailboxSend.finished_at.is_(None)).values(finished_at=now))
    enrollment = message.enrollment
    record(session, EventKind.SENT, now, detail or f"step {message.position} sent to {message.to_address}",
           campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
           contact_id=enrollment.contact_id, mailbox_id=message.mailbox_id)


def end_enrollment(session: Session, enrollment: Enrollment, state: EnrollmentState, reason: str,
                   now: datetime) -> list[Message]:
    """End a sequence: pending messages are cancelled, open tasks go stale. Returns stale task messages."""
    if enrollment.state != EnrollmentState.ACTIVE.value:
        return []
    enrollment.state, enrollment.ended_at, enrollment.end_reason = state.value, now, reason
    session.execute(update(Message).where(Message.enrollment_id == enrollment.id, Message.state.in_(PENDING))
                    .values(state=MessageState.CANCELLED.value, updated_at=now))
    stale = session.execute(select(Task, Message).join(Message, Message.id == Task.message_id).where(
        Message.enrollment_id == enrollment.id, Task.state == TaskState.OPEN.value)).all()
    for task, message in stale:
        task.state, task.closed_at = TaskState.STALE.value, now
        message.state = MessageState.CANCELLED.value
        record(session, EventKind.DRAFT_STALE, now, f"draft for {message.to_address} is stale: {reason}",
               level="warning", campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id,
               message_id=message.id, contact_id=enrollment.contact_id)
    return [m for _, m in stale]


def end_open_tasks_elsewhere(session: Session, contact_id: int, ended: Enrollment, state: EnrollmentState,
                             reason: str, now: datetime) -> list[Message]:
    """The contact replied or bounced in `ended`'s campaign: their other sequences that wait on an
    open task end too (the check at the moment of sending would stop them anyway, and a draft in
    a rep's Drafts waits for nobody's check). Returns the stale task messages."""
    others = session.scalars(select(Enrollment).join(Message, Message.enrollment_id == Enrollment.id)
                             .join(Task, Task.message_id == Message.id)
                             .where(Enrollment.contact_id == contact_id, Enrollment.id != ended.id,
                                    Enrollment.state == EnrollmentState.ACTIVE.value,
                                    Task.state == TaskState.OPEN.value).distinct().order_by(Enrollment.id)).all()
    campaign = session.get(Campaign, ended.campaign_id)
    where = f" in campaign {campaign.name!r}" if campaign is not None else " in another campaign"
    stale: list[Message] = []
    for enrollment in others:
        stale += end_enrollment(session, enrollment, state, reason + where, now)
    return stale


# -- claims and leases -------------------------------------------------------------------------

def claim_due(session: Session, now: datetime, owner: str, token: str, until: datetime, limit: int) -> list[int]:
    """Lease up to `limit` due messages of sending campaigns on connected mailboxes to `token`.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so workers never claim the same rows; SQLite: one writer
    (the session must be an immediate one). Message objects the session already holds are not
    refreshed (use a fresh session). Returns the message ids, oldest due first.
    """
    ids = list(session.scalars(skip_locked(session, due_query(Message.id, now, limit), of=Message)))
    if ids:
        # no session object to keep in step (the caller's session is fresh): without this, the
        # ORM looks the rows up again after the UPDATE, since it cannot evaluate `among` in Python
        session.execute(update(Message).where(among(session, Message.id, ids))
                        .values(lease_owner=owner[:64], lease_until=until, claim_token=token)
                        .execution_options(synchronize_session=False))
    return ids


def due_query(what, now: datetime, limit: int):
    """SELECT `what` of up to `limit` due messages of sending campaigns on connected mailboxes,
    not leased, oldest due first (lock them with `skip_locked(…, of=Message)`)."""
    return (select(what).join(Campaign, Campaign.id == Message.campaign_id)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
            .where(Message.state == MessageState.SCHEDULED.value, Message.due_at <= now,
                   Campaign.state == CampaignState.SENDING.value,
                   MailboxRow.health == MailboxHealth.CONNECTED.value,
                   or_(Message.lease_until.is_(None), Message.lease_until < now))
            .order_by(Message.due_at, Message.id).limit(limit))


def next_due(session: Session, now: datetime) -> datetime | None:
    """When the next message of a sending campaign on a connected mailbox falls due after `now`
    (None: none is scheduled)."""
    return session.scalar(select(Message.due_at).join(Campaign, Campaign.id == Message.campaign_id)
                          .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                          .where(Message.state == MessageState.SCHEDULED.value, Message.due_at > now,
                                 Campaign.state == CampaignState.SENDING.value,
                                 MailboxRow.health == MailboxHealth.CONNECTED.value)
                          .order_by(Message.due_at).limit(1))


def claim_expired(session: Session, now: datetime, owner: str, token: str, until: datetime,
                  limit: int) -> tuple[list[Work], dict[int, MailboxRow]]:
    """Reconciliation candidates: messages left in `sending` whose lease ran out, on connected
    mailboxes, leased to `token`. Returns their works and their mailbox rows by id."""
    query = (select(Message).join(MailboxRow, MailboxRow.id == Message.mailbox_id)
             .where(Message.state == MessageState.SENDING.value,
                    MailboxRow.health == MailboxHealth.CONNECTED.value,
                    or_(Message.lease_until.is_(None), Message.lease_until < now))
             .order_by(Message.id).limit(limit))
    messages = session.scalars(skip_locked(session, query, of=Message)).all()
    works = []
    for message in messages:
        message.claim_token, message.lease_owner, message.lease_until = token, owner, until
        works.append(Work(message.id, message.mailbox_id, message.action, message.position,
                          message.to_address, message.message_id, message.attempts,
                          draft=draft_ref(message) if message.provider_draft_id else None))
    rows = {b.id: b for b in session.scalars(select(MailboxRow).where(
        MailboxRow.id.in_({m.mailbox_id for m in messages})))} if messages else {}
    return works, rows


def extend_leases(session: Session, tokens: list[str], until: datetime) -> None:
    """Every message claim, concurrency slot and sync lease held by `tokens` lasts until `until`."""
    session.execute(update(Message).where(Message.claim_token.in_(tokens)).values(lease_until=until))
    session.execute(update(MailboxSlot).where(MailboxSlot.holder.in_(tokens)).values(lease_until=until))
    session.execute(update(MailboxRow).where(MailboxRow.sync_owner.in_(tokens)).values(sync_until=until))


def note_worker(session: Session, name: str, started_at: datetime, now: datetime, in_flight: int) -> None:
    """The worker's row in `workers`: alive at `now`, holding `in_flight` leases."""
    row = session.get(WorkerRow, name)
    if row is None:
        session.add(WorkerRow(name=name, started_at=started_at, seen_at=now, in_flight=in_flight))
    else:
        row.seen_at, row.in_flight, row.stopped_at = now, in_flight, None


def note_worker_stopped(session: Session, name: str, now: datetime) -> None:
    row = session.get(WorkerRow, name)
    if row is not None:
        row.stopped_at, row.seen_at, row.in_flight = now, now, 0


# -- concurrency slots and sync leases ---------------------------------------------------------

def ensure_slots(session: Session, mailbox_id: int, capacity: int) -> None:
    """The mailbox's slot rows 0 … capacity-1 exist (made by whichever worker comes first)."""
    insert = sqlite_insert if is_sqlite(session) else pg_insert
    session.execute(insert(MailboxSlot).values([{"mailbox_id": mailbox_id, "slot": n} for n in range(capacity)])
                    .on_conflict_do_nothing())


def take_slot(session: Session, now: datetime, mailbox_id: int, capacity: int, holder: str,
              until: datetime) -> int | None:
    """Lease the lowest free slot (< capacity) of the mailbox to `holder`; None when all are held."""
    query = (select(MailboxSlot.slot).where(
        MailboxSlot.mailbox_id == mailbox_id, MailboxSlot.slot < capacity,
        or_(MailboxSlot.holder.is_(None), MailboxSlot.lease_until < now))
        .order_by(MailboxSlot.slot).limit(1))
    slot = session.scalar(skip_locked(session, query))
    if slot is not None:
        session.execute(update(MailboxSlot).where(MailboxSlot.mailbox_id == mailbox_id, MailboxSlot.slot == slot)
                        .values(holder=holder, lease_until=until))
    return slot


def free_slot(session: Session, mailbox_id: int, slot: int, holder: str) -> None:
    session.execute(update(MailboxSlot).where(
        MailboxSlot.mailbox_id == mailbox_id, MailboxSlot.slot == slot, MailboxSlot.holder == holder)
        .values(holder=None, lease_until=None))


def claim_syncs(session: Session, now: datetime, every: timedelta, limit: int, token: str,
                until: datetime) -> list[MailboxRow]:
    """Lease to `token` up to `limit` mailboxes not synced for `every`, least recent first: connected
    ones, and unusable ones whose back-off is over (their sync is the try that may bring them back)."""
    query = (select(MailboxRow).where(
        usable_now(now),
        or_(MailboxRow.sync_until.is_(None), MailboxRow.sync_until < now),
        or_(MailboxRow.last_synced_at.is_(None), MailboxRow.last_synced_at <= now - every))
        .order_by(MailboxRow.last_synced_at.asc().nulls_first(), MailboxRow.id).limit(limit))
    rows = session.scalars(skip_locked(session, query)).all()
    for row in rows:
        row.sync_owner, row.sync_until = token, until
    return rows


def end_syncs(session: Session, token: str) -> None:
    session.execute(update(MailboxRow).where(MailboxRow.sync_owner == token).values(sync_owner=None, sync_until=None))


def housekeeping(session: Session, now: datetime) -> None:
    """Forget counts nobody needs any more: old quota buckets and sliding-window rows."""
    old_day = (now - timedelta(days=3)).date().isoformat()
    sending = select(Message.id).where(Message.state == MessageState.SENDING.value)
    session.execute(update(MailboxSend).where(MailboxSend.finished_at.is_(None), MailboxSend.message_id.not_in(
        sending), MailboxSend.started_at < now - timedelta(minutes=10)).values(finished_at=now))
    session.execute(delete(MailboxSend).where(MailboxSend.finished_at < now - timedelta(hours=1)))
    session.execute(delete(MailboxQuota).where(MailboxQuota.bucket < f"day:{old_day}"))
