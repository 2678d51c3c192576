"""Recording events, the one log every view (CLI, Slack, KPIs) reads."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from core.vocabulary import EventKind
from store.bulk import IN_LIST, among, insert_rows
from store.models import Enrollment, Event, UTCDateTime


def record(session: Session, kind: EventKind, at: datetime, detail: str = "", *, level: str = "info",
           campaign_id: int | None = None, enrollment_id: int | None = None, message_id: int | None = None,
           contact_id: int | None = None, mailbox_id: int | None = None, data: dict | None = None,
           dedup_key: str | None = None) -> Event | None:
    """Add an event; with a `dedup_key` already recorded, nothing is added and None returned."""
    if dedup_key is not None:
        session.flush()
        if session.scalar(select(Event.id).where(Event.dedup_key == dedup_key)) is not None:
            return None
    event = Event(kind=kind.value, at=at, detail=detail, level=level, campaign_id=campaign_id,
                  enrollment_id=enrollment_id, message_id=message_id, contact_id=contact_id,
                  mailbox_id=mailbox_id, data=json_safe(data), dedup_key=dedup_key)
    session.add(event)
    return event


def event_row(kind: EventKind, at: datetime, detail: str, *, level: str = "info", campaign_id: int | None = None,
              enrollment_id: int | None = None, message_id: int | None = None, contact_id: int | None = None,
              mailbox_id: int | None = None, data: dict | None = None) -> dict:
    """An event row for `add_events`: what `record` adds, for many at once (no dedup key)."""
    return {"kind": kind.value, "at": at, "detail": detail, "level": level, "campaign_id": campaign_id,
            "enrollment_id": enrollment_id, "message_id": message_id, "contact_id": contact_id,
            "mailbox_id": mailbox_id, "data": json_safe(data), "dedup_key": None}


def add_events(session: Session, events: list[dict]) -> None:
    """Insert `event_row`s without ORM bookkeeping per row (an enrollment of 100k people writes
    100k events): one statement on PostgreSQL, a Core executemany on SQLite (store.bulk.insert_rows).
    Pending ORM changes are flushed first, as the ORM's own bulk insert would, so the rows they add
    exist for the events' foreign keys."""
    if events:
        session.flush()
        insert_rows(session, Event, events)


def add_enrollment_events(session: Session, kind: EventKind, at: datetime, detail: str,
                          enrollment_ids: list[int], *, level: str = "info") -> None:
    """One `kind` event per enrollment of `enrollment_ids` (its campaign and contact read from its
    row), in id order: the rows `add_events` of one `event_row` each would write (no data, no
    dedup key), made by the database with INSERT … SELECT, without a Python round per event."""
    events, enrollments = Event.__table__, Enrollment.__table__
    columns = ["kind", "at", "detail", "level", "campaign_id", "enrollment_id", "contact_id", "data"]
    for start in range(0, len(enrollment_ids), IN_LIST):
        # `data` as the ORM and `add_events` store a missing value: JSON null, not SQL NULL
        rows = (select(literal(kind.value), literal(at, UTCDateTime()), literal(detail), literal(level),
                       enrollments.c.campaign_id, enrollments.c.id, enrollments.c.contact_id,
                       literal(None, events.c.data.type))
                .where(among(session, enrollments.c.id, enrollment_ids[start:start + IN_LIST])).order_by(enrollments.c.id))
        session.execute(insert(events).from_select(columns, rows))


def json_safe(value: Any) -> Any:
    """`value` with datetimes as ISO 8601 strings and anything unknown as its str(), for JSON columns."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
