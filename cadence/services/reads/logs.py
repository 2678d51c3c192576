"""A campaign's log as an operator reads it at scale: filtered by level, cause, contact and time,
every line naming its contact, repeats collapsed, or a summary by event and cause."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.backlog import event_cause
from cadence.services.reads.status import campaign_or_error
from core.addresses import stored_address
from store.models import Contact, Enrollment, Event

@dataclass
class LogLine:
    at: datetime
    level: str
    kind: str
    contact: str | None
    detail: str
    cause: str | None
    repeats: int = 0  # lines alike folded into this one
    until: datetime | None = None  # the time of the last of them

    def as_dict(self) -> dict:
        return {"at": _iso(self.at), "level": self.level, "kind": self.kind, "contact": self.contact,
                "detail": self.detail, "cause": self.cause, "repeats": self.repeats,
                "until": _iso(self.until) if self.until else None}


def read_log(app: App, name: str, *, errors_only: bool = False, cause: str | None = None,
             contact: str | None = None, since: datetime | None = None) -> list[LogLine]:
    """The campaign's events in order. `contact` is an email address (UserError when that person is
    not in the campaign); `cause` matches an exclusion's or a deferral's cause; `since` is inclusive."""
    with app.db.session(readonly=True) as session:
        campaign = campaign_or_error(session, name)
        person = func.coalesce(Event.contact_id, Enrollment.contact_id)
        query = (select(Event, Contact.email)
                 .outerjoin(Enrollment, Enrollment.id == Event.enrollment_id)
                 .outerjoin(Contact, Contact.id == person)
                 .where(Event.campaign_id == campaign.id).order_by(Event.at, Event.id))
        if errors_only:
            query = query.where(Event.level == "error")
        if since is not None:
            query = query.where(Event.at >= since)
        if contact is not None:
            address = stored_address(contact)
            contact_id = session.scalar(select(Contact.id).join(Enrollment, Enrollment.contact_id == Contact.id)
                                        .where(func.lower(Contact.email) == address,
                                               Enrollment.campaign_id == campaign.id).limit(1))
            if contact_id is None:
                raise UserError(f"--contact: {contact.strip()} is not enrolled in {campaign.name!r}")
            query = query.where(person == contact_id)
        lines = [LogLine(e.at, e.level, e.kind, email, e.detail, _cause(e)) for e, email in session.execute(query)]
    if cause is not None:
        lines = [line for line in lines if line.cause == cause.strip()]
    return lines


def _cause(event: Event) -> str | None:
    return event_cause(event.kind, event.data)


def collapse(lines: list[LogLine]) -> list[LogLine]:
    """Consecutive lines saying the same thing (same level, event and cause, same text but for the
    person's address, times and numbers) fold into the first one (`repeats`, `until`)."""
    folded: list[LogLine] = []
    for line in lines:
        last = folded[-1] if folded else None
        if last is not None and (last.level, last.kind, last.cause) == (line.level, line.kind, line.cause) and \
                _shape(last) == _shape(line):
            last.repeats += 1
            last.until = line.at
            continue
        folded.append(LogLine(line.at, line.level, line.kind, line.contact, line.detail, line.cause))
    return folded


def _shape(line: LogLine) -> str:
    text = line.detail.replace(line.contact, "") if line.contact else line.detail
    return re.sub(r"\d+", "#", text)


def summarize(lines: list[LogLine]) -> list[dict]:
    """Counts by level, event and cause, most frequent first, with the first and last time seen."""
    counts: Counter = Counter()
    first: dict = {}
    last: dict = {}
    for line in lines:
        key = (line.level, line.kind, line.cause)
        counts[key] += 1
        first.setdefault(key, line.at)
        last[key] = line.at
    return [{"level": k[0], "kind": k[1], "cause": k[2], "count": n, "first": _iso(first[k]), "last": _iso(last[k])}
            for k, n in sorted(counts.items(), key=lambda item: (-item[1], item[0][1], item[0][2] or ""))]


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.isoformat().replace("+00:00", "Z")
