"""The live feed of the web app: what happened in a person's campaigns, newest first."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from cadence.app import App
from cadence.services.reads.people import Viewer, visible_campaigns
from core.vocabulary import EventKind
from store.models import Campaign, Contact, Event

FEED_KINDS = (EventKind.REPLIED, EventKind.OPENED, EventKind.CLICKED, EventKind.BOUNCED, EventKind.UNSUBSCRIBED,
              EventKind.TASK_CREATED, EventKind.TASK_DONE, EventKind.TASK_SKIPPED, EventKind.DRAFT_STALE)


@dataclass(frozen=True)
class FeedItem:
    """One event of the feed: `kind` an EventKind value, `contact` the address (when one is known),
    `at` aware UTC, `detail` the event's one-line description."""

    id: int
    at: datetime
    kind: str
    contact: str | None
    campaign_id: int
    campaign: str
    detail: str


def feed(app: App, viewer: Viewer, *, after_id: int = 0, limit: int = 50) -> list[FeedItem]:
    """Replies, opens, clicks, bounces, unsubscribes and task changes (created, sent, skipped, gone
    stale) of the campaigns the viewer may see, newest first; only events after `after_id` when given."""
    visible = [c.id for c in visible_campaigns(app, viewer)]
    if not visible:
        return []
    with app.db.session(readonly=True) as session:
        query = (select(Event, Contact.email, Campaign.name)
                 .outerjoin(Contact, Contact.id == Event.contact_id)
                 .join(Campaign, Campaign.id == Event.campaign_id)
                 .where(Event.campaign_id.in_(visible), Event.kind.in_([k.value for k in FEED_KINDS]),
                        Event.id > after_id)
                 .order_by(Event.id.desc()).limit(limit))
        return [FeedItem(e.id, e.at, e.kind, email, e.campaign_id, name, e.detail)
                for e, email, name in session.execute(query)]
