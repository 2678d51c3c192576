"""SQLAlchemy 2 models. The schema is created and upgraded only by the Alembic migrations.

The tables the read side queries with Core alone are described in `store.tables` and mapped here
by `__table__` (their `Mapped` annotations are for typing); the others are declared here.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from store import tables
from store.tables import UTCDateTime


class Base(DeclarativeBase):
    metadata = tables.metadata


class Rep(Base):
    __tablename__ = "reps"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    slack_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    role: Mapped[str] = mapped_column(String(16), default="rep")
    timezone: Mapped[str | None] = mapped_column(String(64))
    digest_schedule: Mapped[str | None] = mapped_column(String(64))  # e.g. "mon 08:00"
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    manager: Mapped["Rep | None"] = relationship(remote_side="Rep.id")


class MailboxRow(Base):
    __table__ = tables.mailboxes
    id: Mapped[int]
    provider: Mapped[str]
    address: Mapped[str]
    owner_id: Mapped[int]
    health: Mapped[str]
    health_reason: Mapped[str | None]
    credentials: Mapped[bytes | None]
    path: Mapped[str | None]
    sync_cursor: Mapped[str | None]
    last_synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    daily_cap: Mapped[int | None]
    per_minute_cap: Mapped[int | None]
    concurrency_cap: Mapped[int | None]
    sync_owner: Mapped[str | None]
    sync_until: Mapped[datetime | None]
    health_failures: Mapped[int]
    health_retry_at: Mapped[datetime | None]

    owner: Mapped[Rep] = relationship()


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200), index=True)  # the launch form lists companies
    title: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    custom: Mapped[dict] = mapped_column(JSON, default=dict)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The Salesforce Contact (003…) or Lead (00Q…) this person was imported from.
    salesforce_id: Mapped[str | None] = mapped_column(String(18))


class Campaign(Base):
    __table__ = tables.campaigns
    id: Mapped[int]
    name: Mapped[str]
    state: Mapped[str]
    options: Mapped[dict]
    source: Mapped[str | None]
    content_version: Mapped[int]
    audience_version: Mapped[int]
    prepared_content_version: Mapped[int | None]
    prepared_audience_version: Mapped[int | None]
    preparation: Mapped[dict | None]
    progress: Mapped[float | None]
    send_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    prepare_owner: Mapped[str | None]
    prepare_lease_until: Mapped[datetime | None]


class Step(Base):
    __table__ = tables.steps
    id: Mapped[int]
    campaign_id: Mapped[int]
    position: Mapped[int]
    day: Mapped[int]
    action: Mapped[str]
    send: Mapped[str]
    time: Mapped[str | None]
    thread: Mapped[bool]
    subject: Mapped[str | None]
    body: Mapped[str]


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (UniqueConstraint("campaign_id", "contact_id"),
                      Index("ix_enrollments_launch", "campaign_id", "launched_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    zone: Mapped[str] = mapped_column(String(64))
    send_at_local: Mapped[str | None] = mapped_column(String(16))  # 'YYYY-MM-DD HH:MM' chosen at launch
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when sending started for them
    prepared_version: Mapped[int | None] = mapped_column(Integer)  # campaign content_version rendered
    excluded_cause: Mapped[str | None] = mapped_column(String(40))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)

    contact: Mapped[Contact] = relationship()
    mailbox: Mapped[MailboxRow] = relationship()
    campaign: Mapped[Campaign] = relationship()


class Message(Base):
    """One step of one enrollment: an automatic email or a task's draft."""

    __table__ = tables.messages
    id: Mapped[int]
    enrollment_id: Mapped[int]
    campaign_id: Mapped[int]
    mailbox_id: Mapped[int]
    position: Mapped[int]
    action: Mapped[str]
    state: Mapped[str]
    due_at: Mapped[datetime | None]
    due_reasons: Mapped[list | None]
    message_id: Mapped[str]
    to_address: Mapped[str]
    subject: Mapped[str | None]
    html: Mapped[str | None]
    text: Mapped[str | None]
    links: Mapped[list | None]
    provider_draft_id: Mapped[str | None]
    provider_message_id: Mapped[str | None]
    provider_thread_id: Mapped[str | None]
    web_link: Mapped[str | None]
    sent_at: Mapped[datetime | None]
    error: Mapped[str | None]
    attempts: Mapped[int]
    lease_owner: Mapped[str | None]
    lease_until: Mapped[datetime | None]
    claim_token: Mapped[str | None]
    quota_buckets: Mapped[list | None]
    updated_at: Mapped[datetime]

    enrollment: Mapped[Enrollment] = relationship()


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The rep scheduled the draft to be sent by the worker at this time (the web app's Schedule).
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    message: Mapped[Message] = relationship()
    rep: Mapped[Rep] = relationship()


class Event(Base):
    """Everything that happened, in the shared vocabulary (core.vocabulary.EventKind)."""

    __table__ = tables.events
    id: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str]
    level: Mapped[str]
    campaign_id: Mapped[int | None]
    enrollment_id: Mapped[int | None]
    message_id: Mapped[int | None]
    contact_id: Mapped[int | None]
    mailbox_id: Mapped[int | None]
    detail: Mapped[str]
    data: Mapped[dict | None]
    dedup_key: Mapped[str | None]
    hits: Mapped[int]


class CampaignCount(Base):
    """A campaign's figures (`store.tables.campaign_counts`), kept by database triggers; never
    written by application code."""

    __table__ = tables.campaign_counts
    campaign_id: Mapped[int]
    position: Mapped[int]
    name: Mapped[str]
    slot: Mapped[int]
    n: Mapped[int]


class CountMark(Base):
    """What the counters counted once (a message's first open, a contact's first click …) and
    each enrollment's delivered messages; kept by the same triggers as `CampaignCount`."""

    __tablename__ = "count_marks"
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    ref: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=1)


class MailboxQuota(Base):
    """Sends counted per mailbox and bucket ("day:2026-11-23", "day:2026-11-23:c7", "min:…").

    Reserved with a conditional UPDATE before the provider is called, so any number of workers
    together never exceed a cap.
    """

    __tablename__ = "mailbox_quota"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(40), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class MailboxSend(Base):
    """One automatic send attempt of a mailbox with a per-minute rate, for the sliding window.

    `finished_at` is set once the outcome is known (sent, not sent, in doubt); until then the
    attempt counts as just now, so a window never lets more sends through than the rate.
    """

    __tablename__ = "mailbox_sends"
    __table_args__ = (Index("ix_mailbox_sends_window", "mailbox_id", "finished_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MailboxSlot(Base):
    """One of a mailbox's concurrent-request slots; a provider call holds one (leased) while it runs."""

    __tablename__ = "mailbox_slots"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerRow(Base):
    """A worker process (`cadence worker` or `cadence serve`) and its last heartbeat."""

    __tablename__ = "workers"
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)


class Cursor(Base):
    """Named progress markers of background loops (e.g. the last event a notifier handled)."""

    __tablename__ = "cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UsedToken(Base):
    """Single-use signed links already used (mailbox connect links …), by the SHA-256 hex digest
    of their signed payload; kept until the link would have expired anyway."""

    __tablename__ = "used_tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class WebLink(Base):
    """A one-time sign-in link to the web app (`cadence web link`); only its SHA-256 is stored."""

    __tablename__ = "web_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser; the cookie holds the token, the table its SHA-256 (sign-out ends it)."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int] = mapped_column(ForeignKey("reps.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CrmConnection(Base):
    """The team's CRM org (one per provider): encrypted refresh token, health and sync progress."""

    __tablename__ = "crm_connections"
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), unique=True)  # "salesforce"
    owner_id: Mapped[int] = mapped_column(ForeignKey("reps.id"))  # who connected it in Cadence
    health: Mapped[str] = mapped_column(String(16), default="connected")
    health_reason: Mapped[str | None] = mapped_column(Text)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet token: {"refresh_token": …}
    instance_url: Mapped[str | None] = mapped_column(Text)  # from the token response
    user_id: Mapped[str | None] = mapped_column(String(18))  # the connecting Salesforce User
    org_id: Mapped[str | None] = mapped_column(String(18))
    since_event_id: Mapped[int] = mapped_column(Integer, default=0)  # events after this one are synced
    event_cursor: Mapped[int] = mapped_column(Integer, default=0)  # events up to here are in the outbox
    throttle_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # API limit: wait until then
    api_used: Mapped[int | None] = mapped_column(Integer)  # Sforce-Limit-Info api-usage=used/max
    api_max: Mapped[int | None] = mapped_column(Integer)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sync_owner: Mapped[str | None] = mapped_column(String(80))  # the worker syncing now, until when
    sync_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CrmOutbox(Base):
    """One Cadence event to be written to the CRM as one record, exactly once.

    `state`: pending → sending (intent recorded before the call) → done (`record_id` known);
    or unmatched (no Contact or Lead for `email`) or failed (refused for good).
    """

    __tablename__ = "crm_outbox"
    __table_args__ = (Index("ix_crm_outbox_state", "state", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)  # e.g. "task:42", "email:42", "reply:981"
    kind: Mapped[str] = mapped_column(String(16))  # task | task_done | task_skipped | email | reply | bounce | unsubscribe
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id"))
    email: Mapped[str] = mapped_column(String(320))  # the person (Contact / Lead) it is about
    subject: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    activity_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD
    state: Mapped[str] = mapped_column(String(16), default="pending")
    record_id: Mapped[str | None] = mapped_column(String(18), index=True)  # the Salesforce Task Id
    who_id: Mapped[str | None] = mapped_column(String(18))
    owner_ref: Mapped[str | None] = mapped_column(String(18))  # the Salesforce User owning the Task
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    intent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
