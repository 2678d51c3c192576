"""The tables the read side queries with SQLAlchemy Core alone: campaigns, steps, messages, events,
mailboxes and the campaign counters, with the schema's one MetaData and `UTCDateTime`.

`store.models` maps its ORM classes onto these same Table objects (`__table__`), so each table is
described once; `cadence status` reads them without loading the ORM (SQLAlchemy's ORM and the
mapping of every model cost more CPU than the status query itself). The schema is created and
upgraded only by the Alembic migrations.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


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


def _id() -> Column:
    return Column("id", Integer, primary_key=True)


mailboxes = Table(
    "mailboxes", metadata,
    _id(),
    Column("provider", String(16), nullable=False),
    Column("address", String(320), nullable=False, unique=True),
    Column("owner_id", ForeignKey("reps.id"), nullable=False),
    Column("health", String(16), nullable=False, default="connected"),
    Column("health_reason", Text),
    Column("credentials", LargeBinary),  # Fernet token
    Column("path", Text),
    Column("sync_cursor", Text),
    Column("last_synced_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    # The operator's own limits for this mailbox, applied on top of the provider's (the lower wins).
    Column("daily_cap", Integer),
    Column("per_minute_cap", Integer),
    Column("concurrency_cap", Integer),
    # Which worker syncs this mailbox now (one at a time), until when.
    Column("sync_owner", String(64)),
    Column("sync_until", UTCDateTime),
    # An unusable mailbox (misconfigured, error) is tried again at `health_retry_at`, with back-off.
    Column("health_failures", Integer, nullable=False, default=0, server_default="0"),
    Column("health_retry_at", UTCDateTime),
)

campaigns = Table(
    "campaigns", metadata,
    _id(),
    Column("name", String(200), nullable=False, unique=True),
    Column("state", String(16), nullable=False, default="draft"),
    Column("options", JSON, nullable=False),  # campaign-level options; steps live in `steps`
    Column("source", Text),  # the YAML file it came from
    Column("content_version", Integer, nullable=False, default=1),  # bumped by every change
    Column("audience_version", Integer, nullable=False, default=0),  # bumped by every enrollment change
    Column("prepared_content_version", Integer),
    Column("prepared_audience_version", Integer),
    Column("preparation", JSON),  # KPIs of the latest preparation
    Column("progress", Float),  # 0..1 while preparing
    Column("send_at", UTCDateTime),  # scheduled start
    Column("started_at", UTCDateTime),
    Column("stopped_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The running preparation's lease (like a worker's claim): its owner token and until when it
    # holds; a `preparing` campaign whose lease ran out is taken over by the next `prepare`.
    Column("prepare_owner", String(32)),
    Column("prepare_lease_until", UTCDateTime),
)

steps = Table(
    "steps", metadata,
    _id(),
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("send", String(20), nullable=False),
    Column("time", String(5)),  # HH:MM for at_time
    Column("thread", Boolean, nullable=False, default=False),
    Column("subject", Text),
    Column("body", Text, nullable=False),
    UniqueConstraint("campaign_id", "position"),
)

messages = Table(
    "messages", metadata,
    _id(),
    Column("enrollment_id", ForeignKey("enrollments.id"), nullable=False),
    Column("campaign_id", ForeignKey("campaigns.id"), nullable=False, index=True),
    Column("mailbox_id", ForeignKey("mailboxes.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("due_at", UTCDateTime),
    Column("due_reasons", JSON),
    Column("message_id", String(255), nullable=False, unique=True),  # our RFC 5322 Message-ID
    Column("to_address", String(320), nullable=False),
    Column("subject", Text),
    Column("html", Text),
    Column("text", Text),
    Column("links", JSON),  # tracked link targets, index = link id
    Column("provider_draft_id", String(255)),
    Column("provider_message_id", String(255), index=True),
    Column("provider_thread_id", String(255), index=True),
    Column("web_link", Text),
    Column("sent_at", UTCDateTime),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    # Fencing token of the current claim: only its holder may move the message on.
    Column("claim_token", String(64), index=True),
    # Daily quota buckets the current send attempt holds (given back when it is known not sent).
    Column("quota_buckets", JSON),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("enrollment_id", "position"),
    Index("ix_messages_due", "state", "due_at"),
    # `status` counts a campaign's messages by state and step from this index alone.
    Index("ix_messages_campaign_state", "campaign_id", "state", "enrollment_id", "position"),
    # `status`'s next due time of a campaign without reading its scheduled messages.
    Index("ix_messages_campaign_due", "campaign_id", "state", "due_at"),
)

events = Table(
    "events", metadata,
    _id(),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("level", String(8), nullable=False, default="info"),  # info | warning | error
    Column("campaign_id", ForeignKey("campaigns.id")),
    Column("enrollment_id", ForeignKey("enrollments.id")),
    Column("message_id", ForeignKey("messages.id"), index=True),
    Column("contact_id", ForeignKey("contacts.id")),
    Column("mailbox_id", ForeignKey("mailboxes.id")),
    Column("detail", Text, nullable=False, default=""),
    Column("data", JSON),  # raw provider payload, causes …
    Column("dedup_key", String(255), unique=True),
    # Requests this row stands for: tracking stores one open per message and one click per link
    # per minute, and counts the repeats here.
    Column("hits", Integer, nullable=False, default=1, server_default="1"),
    # Covers the recount of a campaign's engagement per kind and step without touching the table.
    Index("ix_events_campaign_kind", "campaign_id", "kind", "enrollment_id", "message_id", "contact_id"),
    # Also `ix_events_replied_contact` (contact_id WHERE kind = 'replied', migration 0005): who ever
    # replied, in any campaign, finished or not (exclusions), without a scan. Not declared here:
    # its dialect options would load both SQL dialects in every command.
)

# A campaign's figures, kept by database triggers in the transaction of every change they count
# (migrations 0010_campaign_counts and 0012_campaign_day_counts, whose "day:<kind>" rows have the
# UTC day as `position`; see `store.counts`): the sum of `n` over the slots of
# (campaign_id, position, name) is the figure. Never written by application code.
campaign_counts = Table(
    "campaign_counts", metadata,
    Column("campaign_id", Integer, primary_key=True),
    Column("position", Integer, primary_key=True),  # 0: the whole campaign
    Column("name", String(32), primary_key=True),
    Column("slot", Integer, primary_key=True, default=0),
    Column("n", BigInteger, nullable=False, default=0),
)
