"""Opens, clicks and unsubscribes, reached through signed tracking tokens."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cadence.app import App
from core.tracking import TrackingToken, trackable_url, verify_token
from core.vocabulary import EnrollmentState, EventKind, MessageState
from store.bulk import IN_LIST, among
from store.events import record
from store.models import Campaign, Contact, Enrollment, Event, Message
from store.queue.claims import end_enrollment


@dataclass(frozen=True)
class Hit:
    message_id: int
    campaign_id: int
    contact_id: int
    destination: str | None = None
    enrollment_id: int | None = None


@dataclass(frozen=True)
class SentFacts:
    """What a hit on a sent message records; these never change once the message went out."""

    campaign_id: int
    enrollment_id: int
    contact_id: int
    links: tuple[str, ...]


def sent_message_facts(app: App, message_id: int) -> SentFacts | None:
    """The facts of a sent message; None when it is unknown or was not sent."""
    return sent_messages_facts(app, [message_id]).get(message_id)


def sent_messages_facts(app: App, message_ids: list[int]) -> dict[int, SentFacts]:
    """The facts of those of `message_ids` that were sent, by message id (one query per
    `store.bulk.IN_LIST` ids); unknown or unsent ones are left out. Raises what the database raises."""
    found: dict[int, SentFacts] = {}
    wanted = sorted(set(message_ids))
    with app.db.session(readonly=True) as session:
        for start in range(0, len(wanted), IN_LIST):
            for row in session.execute(
                    select(Message.id, Message.campaign_id, Message.enrollment_id, Enrollment.contact_id,
                           Message.links)
                    .join(Enrollment, Enrollment.id == Message.enrollment_id)
                    .where(among(session, Message.id, wanted[start:start + IN_LIST]),
                           Message.state == MessageState.SENT.value)):
                found[row.id] = SentFacts(row.campaign_id, row.enrollment_id, row.contact_id, tuple(row.links or ()))
    return found


def resolve(app: App, token: str, kind: str) -> tuple[TrackingToken, Hit] | None:
    """The message (and link) a token names, or None for a tampered, foreign or unknown token.

    A click resolves only to an absolute http(s) link stored at render time (no open redirect).
    The HTTP server's tracking routes do the same with a cache in front (`hit_of` on facts from
    `cadence.tracking_http.FactsLoader`).
    """
    parsed = verify_token(app.settings.secret_keys, token)
    if parsed is None or parsed.kind != kind:
        return None
    return hit_of(parsed, sent_message_facts(app, parsed.message_id))


def hit_of(parsed: TrackingToken, facts: SentFacts | None) -> tuple[TrackingToken, Hit] | None:
    """The hit a verified token (`core.tracking.verify_token`) makes on its sent message's facts;
    None when the message was not sent, or, for a click, when its link index is not one of the
    message's links or the link is not an absolute http(s) URL (no open redirect). No I/O."""
    if facts is None:
        return None
    kind = parsed.kind
    destination = None
    if kind == "c":
        if parsed.link_id is None or not 0 <= parsed.link_id < len(facts.links):
            return None
        destination = trackable_url(facts.links[parsed.link_id])
        if destination is None or destination != facts.links[parsed.link_id]:
            return None
    return parsed, Hit(parsed.message_id, facts.campaign_id, facts.contact_id, destination, facts.enrollment_id)


HIT_KINDS = (EventKind.OPENED.value, EventKind.CLICKED.value)
HIT_WRITE_TIMEOUT_MS = 15_000  # PostgreSQL's statement_timeout for one batch of hits


def hit_row(kind: EventKind, hit: Hit, at: datetime, link: int | None = None) -> dict:
    """The event row of one open (`link` None) or click, keyed so that repeats within the same
    minute (UTC) land on one row: one open per message, one click per link of a message."""
    minute = at.astimezone(timezone.utc).strftime("%Y%m%d%H%M")
    if kind is EventKind.OPENED:
        key, detail, data = f"hit:o:{hit.message_id}:{minute}", "opened", None
    else:
        key, detail, data = (f"hit:c:{hit.message_id}:{link}:{minute}", f"clicked {hit.destination}",
                             {"url": hit.destination, "link": link})
    return {"at": at, "kind": kind.value, "level": "info", "campaign_id": hit.campaign_id,
            "message_id": hit.message_id, "contact_id": hit.contact_id, "detail": detail, "data": data,
            "enrollment_id": hit.enrollment_id, "mailbox_id": None, "dedup_key": key, "hits": 1}


def store_hits(app: App, rows: list[dict]) -> int:
    """Write open/click rows (from `hit_row`): at most one row per key, the repeats added to its
    `hits`, in one statement (INSERT … ON CONFLICT (dedup_key) DO UPDATE, SQLite ≥ 3.24 and
    PostgreSQL). Returns the number of hits written. Raises what the database raises."""
    merged: dict[str, dict] = {}
    for row in rows:
        found = merged.get(row["dedup_key"])
        if found is None:
            merged[row["dedup_key"]] = dict(row)
        else:
            found["hits"] += row["hits"]
    if not merged:
        return 0
    table = Event.__table__
    upsert = (sqlite_insert if app.db.is_sqlite else postgresql_insert)(table)
    upsert = upsert.on_conflict_do_update(index_elements=[table.c.dedup_key],
                                          set_={"hits": table.c.hits + upsert.excluded.hits})
    with app.db.session() as session:
        if not app.db.is_sqlite:  # a write held up by locks fails instead of hanging the writer's stop
            session.execute(text(f"SET LOCAL statement_timeout = {HIT_WRITE_TIMEOUT_MS}"))
        session.execute(upsert, list(merged.values()))
    return sum(row["hits"] for row in merged.values())


def record_open(app: App, hit: Hit) -> None:
    store_hits(app, [hit_row(EventKind.OPENED, hit, app.clock.now())])


def record_click(app: App, hit: Hit, link: int | None = None) -> None:
    store_hits(app, [hit_row(EventKind.CLICKED, hit, app.clock.now(), link)])


def unsubscribe(app: App, contact_id: int, *, via_message: int | None = None, campaign_id: int | None = None) -> bool:
    """Opt the contact out of every campaign at once. Returns False when they already were.

    The `unsubscribed` event (the KPI) goes to the campaign whose email carried the link; every
    other campaign whose sequence this ends logs why it ended. Pending messages are cancelled and
    open tasks go stale, so nothing more is sent to them.
    """
    now = app.clock.now()
    with app.db.session() as session:
        contact = session.get(Contact, contact_id)
        if contact is None:
            return False
        first_time = contact.opted_out_at is None
        contact.opted_out_at = contact.opted_out_at or now
        via = session.scalar(select(Campaign.name).where(Campaign.id == campaign_id)) if campaign_id else None
        active = session.scalars(select(Enrollment).where(Enrollment.contact_id == contact_id,
                                                          Enrollment.state == EnrollmentState.ACTIVE.value)).all()
        for enrollment in active:
            end_enrollment(session, enrollment, EnrollmentState.UNSUBSCRIBED, "the contact unsubscribed", now)
            if enrollment.campaign_id != campaign_id:
                record(session, EventKind.FINISHED, now, f"sequence ended: {contact.email} unsubscribed"
                       + (f" through an email of campaign {via!r}" if via else ""), campaign_id=enrollment.campaign_id,
                       enrollment_id=enrollment.id, contact_id=contact_id)
        if first_time:
            record(session, EventKind.UNSUBSCRIBED, now, f"{contact.email} unsubscribed from every campaign",
                   campaign_id=campaign_id, message_id=via_message, contact_id=contact_id)
        return first_time
