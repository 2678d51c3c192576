"""The intent transaction of a claimed batch, and the draft ids recorded before any send.

`claim_and_begin` claims due messages, checks each again, reserves the mailbox's limits, builds
its email and records the intent (automatic messages move to `sending`, leased to the claim;
every message's `attempts` goes up), all in the caller's one transaction. Only then does the
worker call the provider; a later attempt of a message whose intent was recorded without a draft
id looks the draft up by its Message-ID before making one (`Work.may_have_draft`).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.campaign import CampaignSpec
from core.compose import Tracking, compose_email, display_name
from core.headers import HeaderInjection
from core.mailbox import DraftRef, OutgoingEmail
from core.outcomes import PassReport, Work, capped_reasons, live_exclusion
from core.quota import Allotment, Bucket, Limits, RATE_WINDOW, Refusal, daily_buckets
from core.schedule import next_open_slot
from core.vocabulary import CampaignState, DeferralCause, EventKind, MailboxHealth, MessageState, StepAction
from store.bulk import among, update_by_id
from store.campaigns import read_spec
from store.events import record
from store.history import replied_contacts
from store.models import Campaign, Contact, Enrollment, MailboxQuota, MailboxRow, MailboxSend, Message, Rep
from store.queue.claims import SOON, draft_ref, due_query, end_enrollment, is_sqlite, locked, release, skip_locked

log = logging.getLogger("cadence.delivery")


class Loaded:
    """Everything the messages of one batch refer to, read in a handful of queries."""

    def __init__(self, session: Session, messages: list[Message]):
        self.session = session
        self.enrollments = {e.id: e for e in session.scalars(select(Enrollment).where(
            among(session, Enrollment.id, {m.enrollment_id for m in messages})))}
        # Contacts and reps are only read here: rows of the columns used, not tracked objects.
        self.contacts = {c.id: c for c in session.execute(select(
            Contact.id, Contact.email, Contact.first_name, Contact.last_name, Contact.country, Contact.opted_out_at,
            Contact.bounced_at).where(among(session, Contact.id, {e.contact_id for e in self.enrollments.values()})))}
        self.campaigns = {c.id: c for c in session.scalars(select(Campaign).where(
            among(session, Campaign.id, {m.campaign_id for m in messages})))}
        self.mailboxes = {b.id: b for b in session.scalars(select(MailboxRow).where(
            among(session, MailboxRow.id, {m.mailbox_id for m in messages})))}
        self.reps = {r.id: r for r in session.execute(select(Rep.id, Rep.name).where(
            among(session, Rep.id, {b.owner_id for b in self.mailboxes.values()})))}
        self.messages = messages
        self._specs: dict[int, CampaignSpec] = {}
        self._sent: dict[int, list[Message]] | None = None

    def spec(self, campaign: Campaign) -> CampaignSpec:
        if campaign.id not in self._specs:
            self._specs[campaign.id] = read_spec(self.session, campaign)
        return self._specs[campaign.id]

    def sent_before(self, message: Message, spec: CampaignSpec) -> list[Message]:
        """The earlier messages of the enrollment that really went out, by position (threaded steps only)."""
        if not spec.step(message.position).thread:
            return []
        if self._sent is None:
            threaded = {m.enrollment_id for m in self.messages if m.position > 1}
            self._sent = defaultdict(list)
            for sent in self.session.scalars(select(Message).where(
                    among(self.session, Message.enrollment_id, threaded), Message.state == MessageState.SENT.value)
                    .order_by(Message.enrollment_id, Message.position)):
                self._sent[sent.enrollment_id].append(sent)
        return [m for m in self._sent.get(message.enrollment_id, []) if m.position < message.position]

    def email(self, message: Message, spec: CampaignSpec, now: datetime,
              tracking: Callable[[CampaignSpec], Tracking]) -> OutgoingEmail:
        """The email of `message` (core.compose), from the rows of this batch."""
        enrollment = self.enrollments[message.enrollment_id]
        contact = self.contacts[enrollment.contact_id]
        box = self.mailboxes[message.mailbox_id]
        rep = self.reps[box.owner_id]
        auto = message.action == StepAction.AUTO.value
        return compose_email(message, step=spec.step(message.position), earlier=self.sent_before(message, spec),
                             from_address=box.address, from_name=rep.name or None,
                             to_name=display_name(contact.first_name, contact.last_name),
                             zone=ZoneInfo(enrollment.zone), now=now, tracking=tracking(spec) if auto else None,
                             threaded=lambda position: spec.step(position).thread)


class QuotaGate:
    """Daily caps and the per-minute window of the mailboxes of one intent transaction.

    The mailbox rows are locked first, in id order, so reservations of different workers for the
    same mailbox happen one after the other and never deadlock; counts are then read, allotted in
    memory (core.quota.Allotment) and written back (`write`) before the transaction commits.
    """

    def __init__(self, session: Session, now: datetime, wanted: dict[int, tuple[int, list[Bucket], int | None]]):
        self.session, self.now = session, now
        self.wanted = wanted  # message id -> (mailbox id, buckets, per-minute rate)
        keys = {(mailbox_id, b.key) for mailbox_id, buckets, _ in wanted.values() for b in buckets}
        rate_boxes = sorted({mailbox_id for mailbox_id, _, rate in wanted.values() if rate})
        boxes = sorted({mailbox_id for mailbox_id, _ in keys} | set(rate_boxes))
        self.rows: dict[tuple[int, str], MailboxQuota] = {}
        self.new_sends: list[MailboxSend] = []
        used: dict[tuple[int, str], int] = {}
        window: dict[int, list[datetime]] = defaultdict(list)
        if boxes:
            if not is_sqlite(session):
                session.execute(select(MailboxRow.id).where(MailboxRow.id.in_(boxes)).order_by(MailboxRow.id)
                                .with_for_update(key_share=True))
            if keys:
                query = select(MailboxQuota).where(MailboxQuota.mailbox_id.in_(boxes),
                                                   MailboxQuota.bucket.in_({bucket for _, bucket in keys}))
                for row in session.scalars(locked(session, query)):
                    self.rows[(row.mailbox_id, row.bucket)] = row
                    used[(row.mailbox_id, row.bucket)] = row.used
            if rate_boxes:
                for mailbox_id, finished_at in session.execute(
                        select(MailboxSend.mailbox_id, MailboxSend.finished_at).where(
                            MailboxSend.mailbox_id.in_(rate_boxes),
                            (MailboxSend.finished_at.is_(None)) | (MailboxSend.finished_at > now - RATE_WINDOW))):
                    window[mailbox_id].append(finished_at or now)
        self.allotment = Allotment(now, used, window)

    def take(self, message: Message) -> Refusal | None:
        """Reserve every limit for `message`, or say when it can go, why not now and its cause."""
        mailbox_id, buckets, rate = self.wanted.get(message.id, (message.mailbox_id, [], None))
        refused = self.allotment.take(mailbox_id, buckets, rate)
        if refused is not None:
            return refused
        if rate:
            self.new_sends.append(MailboxSend(mailbox_id=mailbox_id, message_id=message.id, started_at=self.now))
        held = [b.key for b in buckets] or None
        if message.quota_buckets != held:  # an unchanged object costs the flush nothing
            message.quota_buckets = held
        return None

    def write(self) -> None:
        for (mailbox_id, bucket), used in self.allotment.used.items():
            row = self.rows.get((mailbox_id, bucket))
            if row is None:
                self.session.add(MailboxQuota(mailbox_id=mailbox_id, bucket=bucket, used=used))
            elif row.used != used:
                row.used = used
        self.session.add_all(self.new_sends)


def defer(session: Session, message: Message, spec: CampaignSpec, enrollment: Enrollment, contact: Contact,
          reopens: datetime, why: str, now: datetime, cause: DeferralCause) -> None:
    """A limit holds the message back: it says so, and when it goes (`due_reasons`, a `deferred` event
    whose data holds `cause`, a DeferralCause value)."""
    zone = ZoneInfo(enrollment.zone)
    at, moves = (next_open_slot(reopens, zone, spec.send_window, contact.country)
                 if spec.send_window else (reopens, ()))
    message.due_at = at
    message.due_reasons = capped_reasons(list(message.due_reasons or []) + [
        f"deferred: {why}; goes at {at.isoformat()}", *moves])
    message.updated_at = now
    release(message)
    record(session, EventKind.DEFERRED, now, f"step {message.position} to {contact.email} deferred to "
           f"{at.isoformat()}: {why}", level="warning", campaign_id=message.campaign_id,
           enrollment_id=enrollment.id, message_id=message.id, data={"due_at": at, "why": why, "cause": cause.value})


@dataclass
class Intent:
    """What `claim_and_begin` hands to the provider calls: the works, their mailbox rows and limits."""

    works: list[Work] = field(default_factory=list)
    mailboxes: dict[int, MailboxRow] = field(default_factory=dict)
    limits: dict[int, Limits | None] = field(default_factory=dict)
    report: PassReport = field(default_factory=PassReport)


def claim_and_begin(session: Session, now: datetime, owner: str, token: str, limit: int, *, until: datetime,
                    limits_of: Callable[[MailboxRow], Limits], tracking: Callable[[CampaignSpec], Tracking],
                    zone: ZoneInfo) -> tuple[int, Intent]:
    """Claim up to `limit` due messages and record their intent, in the caller's one transaction.

    The due rows are locked as `claim_due` finds them (FOR UPDATE SKIP LOCKED on PostgreSQL, the
    one writer on SQLite) and only those that go to the provider are leased to `token` (held by
    `owner`) until `until`, in the same statement that records their intent; the others are
    released (left as they were, or deferred, cancelled, failed). Returns (messages claimed, the intent).
    """
    # The ids first: the due rows are sorted to find the oldest, and sorting whole rows (bodies
    # and all) spills to disk once thousands are due.
    ids = list(session.scalars(skip_locked(session, due_query(Message.id, now, limit), of=Message)))
    messages = session.scalars(select(Message).where(among(session, Message.id, ids)).order_by(Message.id)
                               ).all() if ids else []
    intent = _intend(session, now, messages, until=until, limits_of=limits_of, tracking=tracking, zone=zone,
                     claim={"lease_owner": owner[:64], "claim_token": token})
    return len(messages), intent


def _intend(session: Session, now: datetime, messages: list[Message], *, until: datetime,
            limits_of: Callable[[MailboxRow], Limits], tracking: Callable[[CampaignSpec], Tracking],
            zone: ZoneInfo, claim: dict[str, str]) -> Intent:
    """The intent transaction: checks, limits, the email, and `sending` for automatic messages.

    `messages`: locked by this transaction, by id. `limits_of(row)` gives a mailbox's limits (an
    exception: this worker cannot use the mailbox); `tracking(spec)` the tracking of a campaign's
    automatic emails; `zone`: the days of daily caps; `claim`: the lease columns written with the
    intent. Messages cancelled, excluded, failed or deferred since they were due are released here.
    """
    intent = Intent()
    report = intent.report
    if not messages:
        return intent
    loaded = Loaded(session, messages)
    limits = intent.limits
    for box in loaded.mailboxes.values():
        try:
            limits[box.id] = limits_of(box)
        except Exception as exc:  # e.g. this machine lacks the provider's client settings
            log.error("mailbox %s cannot be used by this worker: %s", box.address, exc)
            limits[box.id] = None
    wanted = {}
    for message in messages:
        limit = limits.get(message.mailbox_id)
        if message.action == StepAction.AUTO.value and message.state == MessageState.SCHEDULED.value and limit:
            campaign = loaded.campaigns[message.campaign_id]
            buckets = daily_buckets(campaign.id, loaded.spec(campaign).daily_limit, limit.daily, now, zone)
            if buckets or limit.per_minute:
                wanted[message.id] = (message.mailbox_id, buckets, limit.per_minute)
    gate = QuotaGate(session, now, wanted)
    replied = replied_contacts(session, loaded.contacts)  # a reply in any campaign since it was prepared
    works = intent.works
    for message in messages:
        if message.state != MessageState.SCHEDULED.value:
            release(message)  # cancelled or moved on since it was claimed
            continue
        enrollment = loaded.enrollments[message.enrollment_id]
        campaign = loaded.campaigns[message.campaign_id]
        contact = loaded.contacts[enrollment.contact_id]
        box = loaded.mailboxes[message.mailbox_id]
        if (campaign.state != CampaignState.SENDING.value or box.health != MailboxHealth.CONNECTED.value
                or limits.get(box.id) is None):
            if limits.get(box.id) is None:
                message.due_at = max(message.due_at or now, now + SOON)
            release(message)
            continue
        live = live_exclusion(campaign.state, enrollment.state, contact.opted_out_at is not None,
                              contact.bounced_at is not None, contact.id in replied)
        if live:
            state, reason = live
            if state is not None:
                end_enrollment(session, enrollment, state, reason, now)
            if message.state == MessageState.SCHEDULED.value:
                message.state = MessageState.CANCELLED.value
            record(session, EventKind.EXCLUDED, now, f"{contact.email}: not sent: {reason}", level="warning",
                   campaign_id=campaign.id, enrollment_id=enrollment.id, message_id=message.id,
                   contact_id=contact.id, data={"cause": reason})
            release(message)
            continue
        spec = loaded.spec(campaign)
        auto = message.action == StepAction.AUTO.value
        email = None
        if not (auto and message.provider_draft_id):  # an existing draft is sent as it is
            try:
                email = loaded.email(message, spec, now, tracking)
            except Exception as refused:  # a header injection, or data no email can be made of
                if not isinstance(refused, HeaderInjection):
                    log.exception("message %s: no email could be built", message.id)
                message.state, message.error = MessageState.FAILED.value, str(refused)
                record(session, EventKind.FAILED, now, f"step {message.position} to {contact.email}: {refused}",
                       level="error", campaign_id=campaign.id, enrollment_id=enrollment.id,
                       message_id=message.id)
                release(message)
                report.failed += 1
                continue
        if auto:
            refused = gate.take(message)
            if refused is not None:
                defer(session, message, spec, enrollment, contact, refused.at, refused.why, now, refused.cause)
                report.deferred += 1
                continue
        works.append(Work(message.id, message.mailbox_id, message.action, message.position, message.to_address,
                          message.message_id, message.attempts + 1, email,
                          draft_ref(message) if message.provider_draft_id else None,
                          may_have_draft=message.attempts > 0 and not message.provider_draft_id))
    gate.write()
    going = {action: [w.message_id for w in works if w.action == action] for action in StepAction}
    if going[StepAction.AUTO]:  # the recorded intent, one statement for the batch
        session.execute(update(Message).where(among(session, Message.id, going[StepAction.AUTO])).values(
            state=MessageState.SENDING.value, attempts=Message.attempts + 1, lease_until=until,
            updated_at=now, **claim).execution_options(synchronize_session=False))
    if going[StepAction.TASK]:  # a task draft's intent: a retry after this looks for the draft first
        session.execute(update(Message).where(among(session, Message.id, going[StepAction.TASK])).values(
            attempts=Message.attempts + 1, lease_until=until, updated_at=now, **claim)
            .execution_options(synchronize_session=False))
    intent.mailboxes = loaded.mailboxes
    return intent


def record_drafts(session: Session, now: datetime, token: str, drafts: dict[int, DraftRef],
                  until: datetime) -> set[int]:
    """Store new draft ids of automatic messages, for those `token` still holds in `sending`.

    A message that has another draft id stored already keeps it. Returns the ids recorded.
    """
    owned = session.execute(locked(session, select(Message.id, Message.provider_draft_id).where(
        among(session, Message.id, drafts), Message.claim_token == token,
        Message.state == MessageState.SENDING.value).order_by(Message.id), of=Message)).all()
    changes = []
    for message_id, stored in owned:
        draft = drafts[message_id]
        if stored not in (None, draft.draft_id):
            continue
        changes.append({"id": message_id, "provider_draft_id": draft.draft_id,
                        "provider_message_id": draft.provider_message_id,
                        "provider_thread_id": draft.provider_thread_id, "web_link": draft.web_link})
    update_by_id(session, Message, changes, lease_until=until, updated_at=now)
    return {change["id"] for change in changes}


def drafts_in_use(session: Session, drafts: dict[int, str]) -> set[int]:
    """The message ids of `drafts` ({message id: provider draft id}) whose stored draft id is that
    draft: another worker found it by Message-ID and recorded it, so it is no orphan to delete."""
    if not drafts:
        return set()
    return {message_id for message_id, stored in session.execute(
        select(Message.id, Message.provider_draft_id).where(among(session, Message.id, drafts)))
        if stored is not None and stored == drafts[message_id]}
