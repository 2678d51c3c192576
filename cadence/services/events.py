"""Recording events, the one log every view (CLI, Slack, KPIs) reads."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.vocabulary import EventKind
from store.models import Event


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
                  mailbox_id=mailbox_id, data=_json_safe(data), dedup_key=dedup_key)
    session.add(event)
    return event


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
