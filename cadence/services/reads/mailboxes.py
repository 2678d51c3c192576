"""The mailbox list (`cadence mailbox list`, the web app): one read for every interface."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from cadence.app import App
from core.vocabulary import MessageState
from store.models import MailboxRow, Message, Rep


def list_mailboxes(app: App, *, owner_ids: list[int] | None = None) -> list[dict]:
    """Every mailbox (only those of reps `owner_ids` when given), by address:

    [{"address", "provider", "owner": email, "health": connected | disconnected | misconfigured | error,
      "reason": str | None (why it is not connected), "retry_at": ISO 8601 | None (next try of an unusable one),
      "sent_today": emails sent since midnight in CADENCE_TIMEZONE, "last_synced_at": ISO 8601 | None}, …]
    """
    zone = ZoneInfo(app.settings.timezone)
    since = datetime.combine(app.clock.now().astimezone(zone).date(), time.min, tzinfo=zone)
    with app.db.session(readonly=True) as session:
        sent = dict(session.execute(
            select(Message.mailbox_id, func.count()).where(
                Message.state == MessageState.SENT.value, Message.sent_at >= since).group_by(Message.mailbox_id)).all())
        query = select(MailboxRow, Rep).join(Rep, Rep.id == MailboxRow.owner_id).order_by(MailboxRow.address)
        if owner_ids is not None:
            query = query.where(MailboxRow.owner_id.in_(owner_ids))
        return [{"address": m.address, "provider": m.provider, "owner": r.email, "health": m.health,
                 "reason": m.health_reason, "sent_today": sent.get(m.id, 0),
                 "retry_at": m.health_retry_at.isoformat() if m.health_retry_at and m.health_reason else None,
                 "last_synced_at": m.last_synced_at.isoformat() if m.last_synced_at else None}
                for m, r in session.execute(query).all()]
