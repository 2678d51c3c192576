"""What holds a campaign's messages back and when that backlog clears (`cadence status`)."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from cadence.app import App
from cadence.services.reads.logs import deferral_cause
from cadence.services.reads.status import campaign_or_error
from core.backlog import clearing_day
from core.vocabulary import CampaignState, EventKind, MessageState, StepAction
from store.campaigns import read_spec
from store.models import Event, MailboxRow, Message


def held_back(app: App, name: str) -> dict:
    """{"send_at": ISO 8601 of a scheduled campaign's start | None,
        "deferred_by_cause": {cause: scheduled messages whose latest deferral had that cause},
        "backlog": [{"mailbox", "pending": automatic emails waiting, "per_day": the lower of the
                     campaign's daily_limit and the mailbox's own cap | None, "sending_days", "clears_on":
                     YYYY-MM-DD | None (no daily limit: as fast as the provider allows)}]}
    UserError when there is no such campaign."""
    zone = ZoneInfo(app.settings.timezone)
    now = app.clock.now()
    today = now.astimezone(zone).date()
    with app.db.session() as session:
        campaign = campaign_or_error(session, name)
        spec = read_spec(session, campaign)
        latest = (select(Event.message_id, func.max(Event.id).label("event_id"))
                  .join(Message, Message.id == Event.message_id)
                  .where(Event.campaign_id == campaign.id, Event.kind == EventKind.DEFERRED.value,
                         Message.state == MessageState.SCHEDULED.value)
                  .group_by(Event.message_id).subquery())
        causes: Counter = Counter()
        for data, in session.execute(select(Event.data).join(latest, latest.c.event_id == Event.id)):
            causes[(data or {}).get("cause") or deferral_cause((data or {}).get("why"))] += 1
        pending = session.execute(
            select(MailboxRow.address, MailboxRow.id, MailboxRow.daily_cap, func.count())
            .join(Message, Message.mailbox_id == MailboxRow.id)
            .where(Message.campaign_id == campaign.id, Message.state == MessageState.SCHEDULED.value,
                   Message.action == StepAction.AUTO.value)
            .group_by(MailboxRow.address, MailboxRow.id, MailboxRow.daily_cap).order_by(MailboxRow.address)).all()
        since = datetime.combine(today, time.min, tzinfo=zone)
        sent_today = dict(session.execute(
            select(Message.mailbox_id, func.count()).where(
                Message.campaign_id == campaign.id, Message.state == MessageState.SENT.value,
                Message.action == StepAction.AUTO.value, Message.sent_at >= since)
            .group_by(Message.mailbox_id)).all())
        send_at = campaign.send_at if campaign.state == CampaignState.SCHEDULED.value else None
    days = spec.send_window.days if spec.send_window else frozenset(range(7))
    backlog = []
    for address, mailbox_id, cap, count in pending:
        limits = [n for n in (spec.daily_limit, cap) if n]
        per_day = min(limits) if limits else None
        entry = {"mailbox": address, "pending": count, "per_day": per_day, "sending_days": None, "clears_on": None}
        if per_day:
            start = max(today, send_at.astimezone(zone).date()) if send_at else today
            used, last = clearing_day(count, per_day, start, days, sent_today=sent_today.get(mailbox_id, 0)
                                      if start == today else 0)
            entry.update(sending_days=used, clears_on=last.isoformat())
        backlog.append(entry)
    return {"send_at": send_at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ") if send_at else None,
            "deferred_by_cause": dict(causes.most_common()), "backlog": backlog}
