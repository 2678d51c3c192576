"""Named progress markers of background loops (e.g. the last event the Slack notifier handled),
moved with compare-and-set so that only one process owns each step forward."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from cadence.app import App
from store.models import Cursor, Event


def read_event_cursor(app: App, name: str, first_after: datetime) -> int:
    """The event id cursor `name` stands at; created on first use at the last event before
    `first_after` (so a new loop does not replay older history)."""
    with app.db.session() as session:
        row = session.get(Cursor, name)
        if row is not None:
            return int(row.value)
    with app.db.session() as session:
        first = session.scalar(select(func.max(Event.id)).where(Event.at < first_after)) or 0
    try:
        with app.db.session() as session:
            session.add(Cursor(name=name, value=str(first), updated_at=app.clock.now()))
    except IntegrityError:  # another process created it at the same moment
        with app.db.session() as session:
            return int(session.get(Cursor, name).value)
    return first


def move_event_cursor(app: App, name: str, expected: int, to: int) -> bool:
    """Compare-and-set cursor `name` from `expected` to `to`; False when someone else moved it."""
    with app.db.session() as session:
        result = session.execute(update(Cursor).where(Cursor.name == name, Cursor.value == str(expected))
                                 .values(value=str(to), updated_at=app.clock.now()))
        return result.rowcount == 1
