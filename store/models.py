"""SQLAlchemy 2 models. The schema is created and upgraded only by the Alembic migrations."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


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
    __tablename__ = "mailboxes"
    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("reps.id"))
    health: Mapped[str] = mapped_column(String(16), default="connected")
    health_reason: Mapped[str | None] = mapped_column(Text)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)  # Fernet token
    path: Mapped[str | None] = mapped_column(Text)
    sync_cursor: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The operator's own limits for this mailbox, applied on top of the provider's (the lower wins).
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    per_minute_cap: Mapped[int | None] = mapped_column(Integer)
    concurrency_cap: Mapped[int | None] = mapped_column(Integer)
    # Which worker syncs this mailbox now (one at a time), until when.
    sync_owner: Mapped[str | None] = mapped_column(String(64))
    sync_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    owner: Mapped[Rep] = relationship()
    # An unusable mailbox (misconfigured, error) is tried again at `health_retry_at`, with back-off.
    health_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    health_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
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
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="draft")
    options: Mapped[dict] = mapped_column(JSON)  # campaign-level options; steps live in `steps`
    source: Mapped[str | None] = mapped_column(Text)  # the YAML file it came from
    content_version: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every change
    audience_version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every enrollment change
    prepared_content_version: Mapped[int | None] = mapped_column(Integer)
    prepared_audience_version: Mapped[int | None] = mapped_column(Integer)
    preparation: Mapped[dict | None] = mapped_column(JSON)  # KPIs of the latest preparation
    progress: Mapped[float | None] = mapped_column()  # 0..1 while preparing
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # scheduled start
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The running preparation's lease (like a worker's claim): its owner token and until when it
    # holds; a `preparing` campaign whose lease ran out is taken over by the next `prepare`.
    prepare_owner: Mapped[str | None] = mapped_column(String(32))
    prepare_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Step(Base):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("campaign_id", "position"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    day: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))
    send: Mapped[str] = mapped_column(String(20))
    time: Mapped[str | None] = mapped_column(String(5))  # HH:MM for at_time
    thread: Mapped[bool] = mapped_column(Boolean, default=False)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)


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

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "position"),
        Index("ix_messages_due", "state", "due_at"),
        # `status` counts a campaign's messages by state and step from this index alone.
        Index("ix_messages_campaign_state", "campaign_id", "state", "enrollment_id", "position"),
        # `status`'s next due time of a campaign without reading its scheduled messages.
        Index("ix_messages_campaign_due", "campaign_id", "state", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_reasons: Mapped[list | None] = mapped_column(JSON)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)  # our RFC 5322 Message-ID
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    links: Mapped[list | None] = mapped_column(JSON)  # tracked link targets, index = link id
    provider_draft_id: Mapped[str | None] = mapped_column(String(255))
    provider_message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    provider_thread_id: Mapped[str | None] = mapped_column(String(255), index=True)
    web_link: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Fencing token of the current claim: only its holder may move the message on.
    claim_token: Mapped[str | None] = mapped_column(String(64), index=True)
    # Daily quota buckets the current send attempt holds (given back when it is known not sent).
    quota_buckets: Mapped[list | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

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

    __tablename__ = "events"
    # Covers the recount of a campaign's engagement per kind and step without touching the table.
    __table_args__ = (Index("ix_events_campaign_kind", "campaign_id", "kind", "enrollment_id", "message_id",
                            "contact_id"),)
    # Also `ix_events_replied_contact` (contact_id WHERE kind = 'replied', migration 0005): who ever
    # replied, in any campaign, finished or not (exclusions), without a scan. Not declared here:
    # its dialect options would load both SQL dialects in every command.
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(8), default="info")  # info | warning | error
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id"))
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict | None] = mapped_column(JSON)  # raw provider payload, causes …
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Requests this row stands for: tracking stores one open per message and one click per link
    # per minute, and counts the repeats here.
    hits: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class CampaignCount(Base):
    """A campaign's figures, kept by database triggers in the transaction of every change they
    count (migration 0010_campaign_counts; see `store.counts`): the sum of `n` over the slots of
    (campaign_id, position, name) is the figure. Never written by application code."""

    __tablename__ = "campaign_counts"
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0: the whole campaign
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


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
