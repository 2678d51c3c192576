"""Opens, clicks and unsubscribes, reached through signed tracking tokens."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from cadence.app import App
from cadence.services.delivery import end_enrollment
from cadence.services.events import record
from core.tracking import TrackingToken, trackable_url, verify_token
from core.vocabulary import EnrollmentState, EventKind, MessageState
from store.models import Campaign, Contact, Enrollment, Message


@dataclass(frozen=True)
class Hit:
    message_id: int
    campaign_id: int
    contact_id: int
    destination: str | None = None
    enrollment_id: int | None = None


def resolve(app: App, token: str, kind: str) -> tuple[TrackingToken, Hit] | None:
    """The message (and link) a token names, or None for a tampered, foreign or unknown token."""
    parsed = verify_token(app.settings.secret_keys, token)
    if parsed is None or parsed.kind != kind:
        return None
    with app.db.session() as session:
        row = session.execute(select(Message.id, Message.campaign_id, Enrollment.contact_id, Message.links,
                                     Message.state, Message.enrollment_id)
                              .join(Enrollment, Enrollment.id == Message.enrollment_id)
                              .where(Message.id == parsed.message_id)).first()
    if row is None or row.state != MessageState.SENT.value:
        return None
    destination = None
    if kind == "c":
        links = row.links or []
        if parsed.link_id is None or not 0 <= parsed.link_id < len(links):
            return None
        destination = trackable_url(links[parsed.link_id])
        if destination is None or destination != links[parsed.link_id]:
            return None
    return parsed, Hit(row.id, row.campaign_id, row.contact_id, destination, row.enrollment_id)


def record_open(app: App, hit: Hit) -> None:
    with app.db.session() as session:
        record(session, EventKind.OPENED, app.clock.now(), "opened", campaign_id=hit.campaign_id,
               message_id=hit.message_id, contact_id=hit.contact_id, enrollment_id=hit.enrollment_id)


def record_click(app: App, hit: Hit) -> None:
    with app.db.session() as session:
        record(session, EventKind.CLICKED, app.clock.now(), f"clicked {hit.destination}", campaign_id=hit.campaign_id,
               message_id=hit.message_id, contact_id=hit.contact_id, enrollment_id=hit.enrollment_id,
               data={"url": hit.destination})


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
