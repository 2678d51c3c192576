"""Carrying out due work: launching, claiming and sending due messages, drafting tasks, moving on.

Every automatic send has a recorded intent: the provider's draft id and our Message-ID are
committed (state `sending`) before `send_draft` is called. A message found in `sending` whose
lease expired is reconciled with the provider (`check_sent`) before anything else, and is only
sent again when the provider says it was not sent; otherwise it is marked in doubt.
"""
from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cadence.app import App
from cadence.services.directory import mark_disconnected
from cadence.services.errors import UserError
from cadence.services.events import record
from core.campaign import CampaignSpec
from core.headers import HeaderInjection, check_display_name
from core.mailbox import (
    Disconnected,
    DraftNotFound,
    DraftRef,
    MailboxError,
    OutgoingEmail,
    PermanentError,
    SendCheck,
    SendInDoubt,
    SentRef,
    ThreadRef,
    TransientError,
)
from core.render import RenderedEmail, quote_previous
from core.schedule import EnrollmentTiming, ScheduleError, due_time
from core.tracking import add_open_pixel, rewrite_links, sign_token
from core.vocabulary import (
    CampaignState,
    EnrollmentState,
    EventKind,
    MailboxHealth,
    MessageState,
    StepAction,
    TaskState,
)
from store.campaigns import read_spec
from store.models import Campaign, Contact, Enrollment, MailboxQuota, MailboxRow, Message, Rep, Task

LEASE = timedelta(minutes=5)
RETRY_BASE = timedelta(minutes=1)
PENDING = (MessageState.PLANNED.value, MessageState.SCHEDULED.value)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class PassReport:
    launched: int = 0
    sent: int = 0
    drafted: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    reconciled: int = 0
    observations: int = 0
    replies: int = 0
    bounces: int = 0
    tasks_done: int = 0
    finished: list[str] = field(default_factory=list)

    def add(self, other: "PassReport") -> None:
        for name in ("launched", "sent", "drafted", "deferred", "failed", "in_doubt", "reconciled",
                     "observations", "replies", "bounces", "tasks_done"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finished += other.finished


# -- campaign state ----------------------------------------------------------------------------

def _campaign(session, name: str) -> Campaign:
    from cadence.services.audience import campaign_or_error

    return campaign_or_error(session, name)


def send_campaign(app: App, name: str, at: datetime | None = None) -> Campaign:
    """Start sending now or at `at`; refused unless the latest preparation is clean and current."""
    now = app.clock.now()
    with app.db.session() as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state in (CampaignState.SENDING, CampaignState.SCHEDULED, CampaignState.PAUSED):
            raise UserError(f"campaign {campaign.name!r} is already {state}")
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} was stopped; a stopped campaign can never be sent again")
        if state is CampaignState.FAILED:
            raise UserError(f"campaign {campaign.name!r}: the latest preparation failed; see `cadence logs "
                            f"{campaign.name!r} --errors`, fix it and prepare again")
        if state is not CampaignState.PREPARED and state is not CampaignState.FINISHED:
            raise UserError(f"campaign {campaign.name!r} is {state}; prepare it first (`cadence prepare`)")
        if (campaign.prepared_content_version != campaign.content_version
                or campaign.prepared_audience_version != campaign.audience_version):
            raise UserError(f"campaign {campaign.name!r} changed after it was prepared; prepare it again "
                            "before sending")
        campaign.send_at = at if at and at > now else now
        campaign.state = (CampaignState.SCHEDULED if at and at > now else CampaignState.SENDING).value
        record(session, EventKind.CAMPAIGN_STATE, now,
               f"send {'scheduled for ' + campaign.send_at.isoformat() if campaign.state == 'scheduled' else 'started'}",
               campaign_id=campaign.id)
        campaign_id = campaign.id
    if at is None or at <= now:
        start_due_campaigns(app, only=campaign_id)
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def pause_campaign(app: App, name: str) -> Campaign:
    return _transition(app, name, {CampaignState.SENDING, CampaignState.SCHEDULED}, CampaignState.PAUSED, "paused")


def resume_campaign(app: App, name: str) -> Campaign:
    now = app.clock.now()
    with app.db.session() as session:
        campaign = _campaign(session, name)
        target = CampaignState.SCHEDULED if campaign.send_at and campaign.send_at > now and not campaign.started_at \
            else CampaignState.SENDING
    campaign = _transition(app, name, {CampaignState.PAUSED}, target, "resumed")
    start_due_campaigns(app, only=campaign.id)
    return campaign


def stop_campaign(app: App, name: str) -> Campaign:
    """Stop for good; a preparation in progress is stopped instead (the campaign stays editable)."""
    now = app.clock.now()
    with app.db.session() as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state is CampaignState.PREPARING:
            campaign.state = CampaignState.DRAFT.value
            record(session, EventKind.CAMPAIGN_STATE, now, "preparation stopped by `cadence stop`",
                   level="warning", campaign_id=campaign.id)
            return campaign
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} is already stopped")
        campaign.state, campaign.stopped_at = CampaignState.STOPPED.value, now
        session.execute(update(Message).where(Message.campaign_id == campaign.id, Message.state.in_(PENDING))
                        .values(state=MessageState.CANCELLED.value, updated_at=now))
        session.execute(update(Enrollment).where(Enrollment.campaign_id == campaign.id,
                                                 Enrollment.state == EnrollmentState.ACTIVE.value)
                        .values(state=EnrollmentState.STOPPED.value, ended_at=now, end_reason="campaign stopped"))
        open_tasks = session.execute(
            select(Task, Message).join(Message, Message.id == Task.message_id)
            .where(Message.campaign_id == campaign.id, Task.state == TaskState.OPEN.value)).all()
        for task, message in open_tasks:
            task.state, task.closed_at = TaskState.SKIPPED.value, now
            message.state = MessageState.CANCELLED.value
        record(session, EventKind.CAMPAIGN_STATE, now, "stopped for good; no email of it will be sent",
               campaign_id=campaign.id)
        drafts = [(m.mailbox_id, _draft_ref(m)) for _, m in open_tasks if m.provider_draft_id]
        campaign_id = campaign.id
    for mailbox_id, draft in drafts:  # best effort: a stopped campaign's drafts leave the reps' mailboxes
        try:
            with app.db.session() as session:
                box = session.get(MailboxRow, mailbox_id)
            app.mailbox(box).delete_draft(draft)
        except MailboxError:
            pass
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def _transition(app: App, name: str, allowed: set[CampaignState], target: CampaignState, verb: str) -> Campaign:
    with app.db.session() as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state not in allowed:
            raise UserError(f"campaign {campaign.name!r} is {state}; it cannot be {verb}")
        campaign.state = target.value
        record(session, EventKind.CAMPAIGN_STATE, app.clock.now(), verb, campaign_id=campaign.id)
        return campaign


# -- launching and scheduling ------------------------------------------------------------------

def start_due_campaigns(app: App, only: int | None = None) -> int:
    """Scheduled campaigns whose time came start sending; sending campaigns launch new people."""
    now = app.clock.now()
    with app.db.session() as session:
        query = select(Campaign).where(or_(
            Campaign.state == CampaignState.SENDING.value,
            (Campaign.state == CampaignState.SCHEDULED.value) & (Campaign.send_at <= now)))
        if only is not None:
            query = query.where(Campaign.id == only)
        campaigns = session.scalars(query).all()
        ids = []
        for campaign in campaigns:
            if campaign.state == CampaignState.SCHEDULED.value:
                campaign.state = CampaignState.SENDING.value
                record(session, EventKind.CAMPAIGN_STATE, now, "scheduled send started", campaign_id=campaign.id)
            campaign.started_at = campaign.started_at or now
            ids.append(campaign.id)
    return sum(launch_enrollments(app, cid) for cid in ids)


def launch_enrollments(app: App, campaign_id: int, enrollment_ids: list[int] | None = None) -> int:
    """Give prepared, not yet launched enrollments their launch time and first due time."""
    now = app.clock.now()
    launched = 0
    last = 0
    while True:
        with app.db.session() as session:
            query = select(Enrollment).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None),
                Enrollment.state == EnrollmentState.ACTIVE.value, Enrollment.id > last).order_by(Enrollment.id).limit(500)
            if enrollment_ids is not None:
                query = query.where(Enrollment.id.in_(enrollment_ids))
            batch = session.scalars(query).all()
            if not batch:
                return launched
            last = batch[-1].id
            spec = read_spec(session, session.get(Campaign, campaign_id))
            for enrollment in batch:
                first = session.scalar(select(Message).where(Message.enrollment_id == enrollment.id,
                                                             Message.position == 1))
                if first is None or first.state != MessageState.PLANNED.value:
                    continue  # not prepared (excluded or prepared before a change): left for a new preparation
                enrollment.launched_at = now
                _schedule(session, app, spec, enrollment, first, now)
                launched += 1


def _timing(session, enrollment: Enrollment, contact: Contact | None = None) -> EnrollmentTiming:
    zone = ZoneInfo(enrollment.zone)
    contact = contact or session.get(Contact, enrollment.contact_id)
    send_at = None
    if enrollment.send_at_local:
        send_at = datetime.strptime(enrollment.send_at_local, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
    done = session.execute(select(Message.position, Message.sent_at, Message.updated_at, Message.state).where(
        Message.enrollment_id == enrollment.id,
        Message.state.in_((MessageState.SENT.value, MessageState.SKIPPED.value)))).all()
    sent = {pos: (sent_at or updated) for pos, sent_at, updated, _ in done}
    return EnrollmentTiming(launched_at=enrollment.launched_at, zone=zone, country=contact.country,
                            send_at=send_at, sent=sent)


def _schedule(session, app: App, spec: CampaignSpec, enrollment: Enrollment, message: Message, now: datetime) -> None:
    try:
        due = due_time(spec, message.position, _timing(session, enrollment), app.clock)
    except ScheduleError as exc:
        message.state, message.error = MessageState.FAILED.value, str(exc)
        record(session, EventKind.FAILED, now, f"step {message.position}: {exc}", level="error",
               campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id, message_id=message.id)
        return
    message.state, message.due_at, message.due_reasons = MessageState.SCHEDULED.value, due.at, list(due.reasons)
    message.updated_at = now
    record(session, EventKind.SCHEDULED, now, f"step {message.position} due {due.at.isoformat()}: "
           + "; ".join(due.reasons), campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id,
           message_id=message.id, data={"due_at": due.at, "reasons": list(due.reasons)})


def move_on(session, app: App, enrollment: Enrollment, after_position: int, now: datetime) -> None:
    """Step `after_position` is over (sent or skipped): schedule the next one, or finish."""
    if enrollment.state != EnrollmentState.ACTIVE.value:
        return
    following = session.scalar(select(Message).where(Message.enrollment_id == enrollment.id,
                                                     Message.position == after_position + 1))
    if following is None:
        enrollment.state, enrollment.ended_at = EnrollmentState.FINISHED.value, now
        enrollment.end_reason = "every step carried out"
        record(session, EventKind.FINISHED, now, "sequence finished", campaign_id=enrollment.campaign_id,
               enrollment_id=enrollment.id, contact_id=enrollment.contact_id)
        return
    if following.state == MessageState.PLANNED.value:
        spec = read_spec(session, session.get(Campaign, enrollment.campaign_id))
        _schedule(session, app, spec, enrollment, following, now)


def end_enrollment(session, enrollment: Enrollment, state: EnrollmentState, reason: str, now: datetime) -> list[Message]:
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


# -- claiming ----------------------------------------------------------------------------------

def claim_due(app: App, worker: str, limit: int = 100) -> list[int]:
    """Lease up to `limit` due messages of sending campaigns on connected mailboxes.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so workers never claim the same rows; SQLite: one writer.
    """
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        query = (select(Message.id).join(Campaign, Campaign.id == Message.campaign_id)
                 .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                 .where(Message.state == MessageState.SCHEDULED.value, Message.due_at <= now,
                        Campaign.state == CampaignState.SENDING.value,
                        MailboxRow.health == MailboxHealth.CONNECTED.value,
                        or_(Message.lease_until.is_(None), Message.lease_until < now))
                 .order_by(Message.due_at, Message.id).limit(limit))
        if not app.db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Message)
        ids = list(session.scalars(query))
        if ids:
            session.execute(update(Message).where(Message.id.in_(ids))
                            .values(lease_owner=worker, lease_until=now + LEASE))
    return ids


def release(session, message: Message) -> None:
    message.lease_owner, message.lease_until = None, None


# -- quotas ------------------------------------------------------------------------------------

def _reserve(session, app: App, mailbox_id: int, bucket: str, cap: int) -> bool:
    """Count one send in `bucket` unless it would pass `cap`; atomic across workers."""
    insert_fn = sqlite_insert if app.db.is_sqlite else pg_insert
    session.execute(insert_fn(MailboxQuota).values(mailbox_id=mailbox_id, bucket=bucket, used=0)
                    .on_conflict_do_nothing())
    result = session.execute(update(MailboxQuota).where(
        MailboxQuota.mailbox_id == mailbox_id, MailboxQuota.bucket == bucket, MailboxQuota.used < cap)
        .values(used=MailboxQuota.used + 1))
    return result.rowcount == 1


def _unreserve(session, mailbox_id: int, buckets: list[str]) -> None:
    session.execute(update(MailboxQuota).where(MailboxQuota.mailbox_id == mailbox_id, MailboxQuota.bucket.in_(buckets),
                                               MailboxQuota.used > 0).values(used=MailboxQuota.used - 1))


def _quota_buckets(app: App, message: Message, spec: CampaignSpec, provider_daily: int | None,
                   per_minute: int | None, now: datetime) -> list[tuple[str, int, datetime, str]]:
    """(bucket, cap, when it reopens, why) for every cap that applies to this send."""
    zone = ZoneInfo(app.settings.timezone)
    local = now.astimezone(zone)
    day = local.date().isoformat()
    tomorrow = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    buckets = []
    if spec.daily_limit:
        buckets.append((f"day:{day}:c{message.campaign_id}", spec.daily_limit, tomorrow,
                        f"the campaign's daily_limit of {spec.daily_limit} for this mailbox is reached for {day}"))
    if provider_daily:
        buckets.append((f"day:{day}", provider_daily, tomorrow,
                        f"the provider's cap of {provider_daily} emails a day is reached for {day}"))
    if per_minute:
        minute = now.replace(second=0, microsecond=0)
        buckets.append((f"min:{minute:%Y-%m-%dT%H:%M}", per_minute, minute + timedelta(minutes=1),
                        f"the provider's rate of {per_minute} emails a minute is reached"))
    return buckets


# -- carrying out one message ------------------------------------------------------------------

def _draft_ref(message: Message) -> DraftRef:
    return DraftRef(draft_id=message.provider_draft_id, message_id=message.message_id,
                    provider_message_id=message.provider_message_id, provider_thread_id=message.provider_thread_id,
                    web_link=message.web_link)


def _thread_parent(session, message: Message) -> Message | None:
    """The latest earlier message of this enrollment that really went out (the one to reply to)."""
    return session.scalar(select(Message).where(
        Message.enrollment_id == message.enrollment_id, Message.position < message.position,
        Message.state == MessageState.SENT.value).order_by(Message.position.desc()).limit(1))


def _thread_chain(session, message: Message) -> tuple[str, ...]:
    return tuple(session.scalars(select(Message.message_id).where(
        Message.enrollment_id == message.enrollment_id, Message.position < message.position,
        Message.state == MessageState.SENT.value).order_by(Message.position)))


def build_email(session, app: App, message: Message, spec: CampaignSpec) -> OutgoingEmail:
    """The email for a message: threading, the quoted previous email, tracking, unsubscribe headers."""
    enrollment = message.enrollment
    contact = session.get(Contact, enrollment.contact_id)
    box = session.get(MailboxRow, message.mailbox_id)
    rep = session.get(Rep, box.owner_id)
    step = spec.step(message.position)
    rendered = RenderedEmail(message.subject or "", message.html or "", message.text or "")
    reply_to = None
    if step.thread:
        parent = _thread_parent(session, message)
        if parent is not None:
            chain = _thread_chain(session, message)
            reply_to = ThreadRef(message_id=parent.message_id, references=chain[:-1] if chain else (),
                                 provider_message_id=parent.provider_message_id,
                                 provider_thread_id=parent.provider_thread_id)
            if step.subject is None:  # "Re: <previous subject>" as it really went out (the rep may have edited it)
                previous = parent.subject or ""
                rendered = RenderedEmail(previous if previous.lower().startswith("re:") else f"Re: {previous}",
                                         rendered.html, rendered.text)
            when = (parent.sent_at or app.clock.now()).astimezone(ZoneInfo(enrollment.zone))
            rendered = quote_previous(rendered, previous=RenderedEmail(parent.subject or "", parent.html or "",
                                                                       parent.text or ""),
                                      previous_from=rep.name or box.address,
                                      previous_date=when.strftime("%a, %d %b %Y at %H:%M"))
    html, headers = rendered.html, {}
    if message.action == StepAction.AUTO.value:
        keys = app.settings.secret_keys
        base = app.settings.public_url.rstrip("/")
        if spec.track_clicks and message.links:
            index = {url: i for i, url in enumerate(message.links)}
            html = rewrite_links(html, lambda url: f"{base}/t/c/{sign_token(keys[0], 'c', message.id, index[url])}"
                                 if url in index else None)
        if spec.track_opens:
            html = add_open_pixel(html, f"{base}/t/o/{sign_token(keys[0], 'o', message.id)}")
        unsubscribe = f"{base}/u/{sign_token(keys[0], 'u', message.id)}"
        headers = {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or None
    return OutgoingEmail(
        message_id=message.message_id, from_address=box.address,
        from_name=check_display_name("from name", rep.name) if rep.name else None,
        to_address=message.to_address, to_name=check_display_name("to name", name) if name else None,
        subject=rendered.subject, html_body=html, text_body=rendered.text, reply_to=reply_to, headers=headers)


def process(app: App, message_id: int, worker: str) -> PassReport:
    """Carry out one claimed message. Never raises for a provider problem: it records it."""
    report = PassReport()
    now = app.clock.now()
    with app.db.session() as session:
        message = session.get(Message, message_id)
        if message is None or message.lease_owner != worker or message.state != MessageState.SCHEDULED.value:
            return report
        enrollment = message.enrollment
        campaign = session.get(Campaign, message.campaign_id)
        contact = session.get(Contact, enrollment.contact_id)
        box = session.get(MailboxRow, message.mailbox_id)
        live = _live_exclusion(enrollment, campaign, contact)
        if live:
            state, reason = live
            if state is not None:
                end_enrollment(session, enrollment, state, reason, now)
            if message.state == MessageState.SCHEDULED.value:
                message.state = MessageState.CANCELLED.value
            record(session, EventKind.EXCLUDED, now, f"{contact.email}: not sent: {reason}", level="warning",
                   campaign_id=campaign.id, enrollment_id=enrollment.id, message_id=message.id,
                   contact_id=contact.id, data={"cause": reason})
            release(session, message)
            return report
        spec = read_spec(session, campaign)
        mailbox = app.mailbox(box)
        buckets = []
        if message.action == StepAction.AUTO.value:
            for bucket, cap, reopens, why in _quota_buckets(app, message, spec, mailbox.limits.daily,
                                                            mailbox.limits.per_minute, now):
                if not _reserve(session, app, box.id, bucket, cap):
                    _unreserve(session, box.id, [b for b, *_ in buckets])
                    _defer(session, app, message, spec, enrollment, contact, reopens, why, now)
                    report.deferred += 1
                    return report
                buckets.append((bucket, cap, reopens, why))
        try:
            email = build_email(session, app, message, spec)
        except HeaderInjection as refused:
            message.state, message.error = MessageState.FAILED.value, str(refused)
            record(session, EventKind.FAILED, now, f"step {message.position} to {contact.email}: {refused}",
                   level="error", campaign_id=campaign.id, enrollment_id=enrollment.id, message_id=message.id)
            release(session, message)
            report.failed += 1
            return report
        bucket_names = [b for b, *_ in buckets]
        ids = (campaign.id, enrollment.id, contact.id, box.id)
    if message.action == StepAction.TASK.value:
        return _draft_task(app, message_id, email, worker, ids)
    return _send_auto(app, message_id, email, worker, ids, bucket_names)


def _live_exclusion(enrollment: Enrollment, campaign: Campaign, contact: Contact):
    """A reason this message must not go out now, though it was prepared, else None."""
    if campaign.state == CampaignState.STOPPED.value:
        return None, "the campaign was stopped"
    if enrollment.state != EnrollmentState.ACTIVE.value:
        return None, f"the sequence ended ({enrollment.state})"
    if contact.opted_out_at is not None:
        return EnrollmentState.UNSUBSCRIBED, "opted_out"
    if contact.bounced_at is not None:
        return EnrollmentState.BOUNCED, "bounced"
    return None


def _defer(session, app, message: Message, spec: CampaignSpec, enrollment, contact, reopens: datetime, why: str,
           now: datetime) -> None:
    from core.schedule import next_open_slot

    zone = ZoneInfo(enrollment.zone)
    at, moves = (next_open_slot(reopens, zone, spec.send_window, contact.country)
                 if spec.send_window else (reopens, ()))
    message.due_at = at
    message.due_reasons = list(message.due_reasons or []) + [f"deferred: {why}; goes at {at.isoformat()}", *moves]
    release(session, message)
    record(session, EventKind.DEFERRED, now, f"step {message.position} to {contact.email} deferred to "
           f"{at.isoformat()}: {why}", level="warning", campaign_id=message.campaign_id,
           enrollment_id=enrollment.id, message_id=message.id, data={"due_at": at, "why": why})


def _draft_task(app: App, message_id: int, email: OutgoingEmail, worker: str, ids) -> PassReport:
    report = PassReport()
    campaign_id, enrollment_id, contact_id, mailbox_id = ids
    with app.db.session() as session:
        box = session.get(MailboxRow, mailbox_id)
    mailbox = app.mailbox(box)
    try:
        draft = mailbox.create_draft(email)
    except MailboxError as problem:
        return _provider_problem(app, message_id, problem, mailbox_id, report)
    now = app.clock.now()
    with app.db.session() as session:
        message = session.get(Message, message_id)
        message.state = MessageState.DRAFTED.value
        message.provider_draft_id, message.provider_message_id = draft.draft_id, draft.provider_message_id
        message.provider_thread_id, message.web_link = draft.provider_thread_id, draft.web_link
        message.updated_at = now
        release(session, message)
        task = Task(message_id=message.id, rep_id=box.owner_id, state=TaskState.OPEN.value, created_at=now)
        session.add(task)
        session.flush()
        record(session, EventKind.TASK_CREATED, now, f"task {task.id}: draft to {email.to_address} ready in "
               f"{box.address}", campaign_id=campaign_id, enrollment_id=enrollment_id, message_id=message.id,
               contact_id=contact_id, mailbox_id=mailbox_id, data={"task_id": task.id, "web_link": draft.web_link})
    report.drafted += 1
    return report


def _send_auto(app: App, message_id: int, email: OutgoingEmail, worker: str, ids, buckets: list[str]) -> PassReport:
    report = PassReport()
    campaign_id, enrollment_id, contact_id, mailbox_id = ids
    with app.db.session() as session:
        box = session.get(MailboxRow, mailbox_id)
        message = session.get(Message, message_id)
        existing = _draft_ref(message) if message.provider_draft_id else None
    mailbox = app.mailbox(box)
    if existing is None:
        try:
            draft = mailbox.create_draft(email)
        except MailboxError as problem:
            with app.db.session() as session:
                _unreserve(session, mailbox_id, buckets)
            return _provider_problem(app, message_id, problem, mailbox_id, report)
        with app.db.session() as session:  # the recorded intent
            message = session.get(Message, message_id)
            message.state = MessageState.SENDING.value
            message.provider_draft_id, message.provider_message_id = draft.draft_id, draft.provider_message_id
            message.provider_thread_id, message.web_link = draft.provider_thread_id, draft.web_link
            message.attempts += 1
            message.lease_until = app.clock.now() + LEASE
            message.updated_at = app.clock.now()
    else:
        draft = existing
        with app.db.session() as session:
            message = session.get(Message, message_id)
            message.state, message.attempts = MessageState.SENDING.value, message.attempts + 1
    try:
        sent = mailbox.send_draft(draft)
    except (SendInDoubt, DraftNotFound) as doubt:
        return _resolve(app, message_id, mailbox, draft, str(doubt), report)
    except MailboxError as problem:
        with app.db.session() as session:
            _unreserve(session, mailbox_id, buckets)
        return _provider_problem(app, message_id, problem, mailbox_id, report)
    with app.db.session() as session:
        _mark_sent(session, app, session.get(Message, message_id), sent, app.clock.now())
    report.sent += 1
    return report


def _mark_sent(session, app: App, message: Message, sent: SentRef, now: datetime, detail: str = "") -> None:
    message.state, message.sent_at = MessageState.SENT.value, sent.sent_at or now
    message.provider_message_id = sent.provider_message_id or message.provider_message_id
    message.provider_thread_id = sent.provider_thread_id or message.provider_thread_id
    message.updated_at = now
    release(session, message)
    enrollment = message.enrollment
    record(session, EventKind.SENT, now, detail or f"step {message.position} sent to {message.to_address}",
           campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
           contact_id=enrollment.contact_id, mailbox_id=message.mailbox_id)
    move_on(session, app, enrollment, message.position, message.sent_at)


def _resolve(app: App, message_id: int, mailbox, draft: DraftRef, why: str, report: PassReport) -> PassReport:
    """An interrupted send: ask the provider, and only mark what it says."""
    try:
        status = mailbox.check_sent(draft.message_id, draft)
    except MailboxError as problem:
        status = None
        why = f"{why}; checking failed: {problem.reason}"
    now = app.clock.now()
    with app.db.session() as session:
        message = session.get(Message, message_id)
        if status is not None and status.status is SendCheck.SENT:
            _mark_sent(session, app, message, status.sent or SentRef(draft.message_id), now,
                       f"step {message.position} to {message.to_address}: sent (confirmed after: {why})")
            report.sent += 1
            report.reconciled += 1
        elif status is not None and status.status is SendCheck.NOT_SENT:
            message.state, message.due_at = MessageState.SCHEDULED.value, now + RETRY_BASE
            release(session, message)
            record(session, EventKind.RECONCILED, now, f"step {message.position}: not sent ({why}); will retry",
                   level="warning", campaign_id=message.campaign_id, message_id=message.id)
            report.reconciled += 1
        else:
            message.state, message.error = MessageState.IN_DOUBT.value, why
            release(session, message)
            record(session, EventKind.IN_DOUBT, now, f"step {message.position} to {message.to_address}: cannot "
                   f"tell whether it was sent ({why}); a person must decide", level="error",
                   campaign_id=message.campaign_id, message_id=message.id)
            report.in_doubt += 1
    return report


def _provider_problem(app: App, message_id: int, problem: MailboxError, mailbox_id: int,
                      report: PassReport) -> PassReport:
    now = app.clock.now()
    with app.db.session() as session:
        message = session.get(Message, message_id)
        release(session, message)
        if message.state == MessageState.SENDING.value:
            message.state = MessageState.SCHEDULED.value  # the draft exists; it is sent on the next try
        if isinstance(problem, Disconnected):
            box = session.get(MailboxRow, mailbox_id)
            mark_disconnected(session, box, problem.reason, now)
            report.deferred += 1
        elif isinstance(problem, TransientError):
            wait = timedelta(seconds=problem.retry_after) if problem.retry_after else RETRY_BASE * (
                2 ** min(message.attempts, 6)) * (0.5 + random.random())
            message.due_at = now + wait
            record(session, EventKind.DEFERRED, now, f"step {message.position}: {problem.reason}; retry at "
                   f"{message.due_at.isoformat()}", level="warning", campaign_id=message.campaign_id,
                   message_id=message.id)
            report.deferred += 1
        else:  # PermanentError and anything else the provider refused for good
            message.state, message.error = MessageState.FAILED.value, problem.reason
            enrollment = message.enrollment
            end_enrollment(session, enrollment, EnrollmentState.FAILED, f"provider refused: {problem.reason}", now)
            record(session, EventKind.FAILED, now, f"step {message.position} to {message.to_address}: "
                   f"{problem.reason}", level="error", campaign_id=message.campaign_id, message_id=message.id,
                   enrollment_id=enrollment.id, contact_id=enrollment.contact_id)
            report.failed += 1
    return report


# -- reconciliation of interrupted sends -------------------------------------------------------

def reconcile_expired(app: App, worker: str) -> PassReport:
    """Messages left in `sending` by a worker whose lease ran out: ask the provider first."""
    report = PassReport()
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        query = (select(Message.id).where(Message.state == MessageState.SENDING.value,
                                          or_(Message.lease_until.is_(None), Message.lease_until < now)).limit(100))
        if not app.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if ids:
            session.execute(update(Message).where(Message.id.in_(ids)).values(lease_owner=worker,
                                                                               lease_until=now + LEASE))
    for message_id in ids:
        with app.db.session() as session:
            message = session.get(Message, message_id)
            box = session.get(MailboxRow, message.mailbox_id)
            draft = _draft_ref(message)
        _resolve(app, message_id, app.mailbox(box), draft, "the worker sending it stopped", report)
    return report


def finish_campaigns(app: App) -> list[str]:
    """Sending campaigns whose every launched enrollment has ended are finished."""
    from sqlalchemy import exists

    now = app.clock.now()
    finished = []
    with app.db.session() as session:
        for campaign in session.scalars(select(Campaign).where(Campaign.state == CampaignState.SENDING.value)):
            pending = session.scalar(select(exists().where(
                Enrollment.campaign_id == campaign.id, Enrollment.state == EnrollmentState.ACTIVE.value)))
            if not pending:
                campaign.state = CampaignState.FINISHED.value
                record(session, EventKind.CAMPAIGN_STATE, now, "finished: every sequence has ended",
                       campaign_id=campaign.id)
                finished.append(campaign.name)
    return finished


def dispatch_due(app: App, worker: str | None = None, batch: int = 100) -> PassReport:
    """Claim and carry out everything due now, batch after batch."""
    worker = worker or worker_identity()
    report = PassReport()
    seen: set[int] = set()
    while True:
        ids = [i for i in claim_due(app, worker, batch) if i not in seen]
        if not ids:
            return report
        seen.update(ids)
        for message_id in ids:
            report.add(process(app, message_id, worker))
