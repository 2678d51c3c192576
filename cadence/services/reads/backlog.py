"""What holds a campaign's messages back and when that backlog clears (part of `cadence status`)."""
from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from core.backlog import clearing_day
from core.vocabulary import CampaignState, EventKind, MessageState, StepAction
from store.campaigns import read_spec
from store.counts import campaign_counts
from store.tables import events, mailboxes, messages

# Every deferral stores its cause (core.vocabulary.DeferralCause) in its data. Deferrals recorded before
# causes were stored say why in words only: their causes are read from the words.
DEFERRAL_CAUSES = (
    ("daily_limit", re.compile(r"daily_limit")),
    ("mailbox_daily_cap", re.compile(r"cap of \d+ emails a day")),
    ("rate_limit", re.compile(r"emails a minute")),
    ("mailbox_disconnected", re.compile(r"reconnected|disconnected")),
    ("send_window", re.compile(r"send window|outside")),
)


def deferral_cause(why: str | None) -> str:
    """The cause of a deferral recorded without one, from its `why` text; `provider_retry` for a
    provider's refusal to try again."""
    for cause, pattern in DEFERRAL_CAUSES:
        if why and pattern.search(why):
            return cause
    return "provider_retry"


def event_cause(kind: str, data: object) -> str | None:
    """The cause code of an event: the stored one (exclusions, deferrals), else for a deferral
    recorded before causes were stored, the one its words say; None for other events."""
    stored = data.get("cause") if isinstance(data, dict) else None
    if stored:
        return str(stored)
    if kind == EventKind.DEFERRED.value:
        return deferral_cause(data.get("why") if isinstance(data, dict) else None)
    return None


def _utc(at: datetime | None) -> datetime | None:
    """`func.min` over a column loses its type on SQLite: a naive UTC value (or a string) comes back."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


def held_back_of(session, campaign, now: datetime, zone: ZoneInfo) -> dict:
    """What holds `campaign` back at `now` (days counted in `zone`, CADENCE_TIMEZONE):

    {"send_at": ISO 8601 UTC of a scheduled campaign's start | None,
     "deferred_by_cause": {cause: scheduled messages whose latest deferral had that cause}, most first,
     "backlog": [{"mailbox", "pending": automatic emails waiting, "per_day": the lower of the
                  campaign's daily_limit and the mailbox's own cap | None, "sending_days", "clears_on":
                  YYYY-MM-DD | None (no daily limit: as fast as the provider allows)}]}

    A backlog is counted from today, or from the campaign's start or its first pending email's due
    day when later; follow-ups due later are counted as if due then (a lower bound). `session`: an
    ORM session or a Core connection; `campaign`: an ORM Campaign or a `campaigns` row."""
    today = now.astimezone(zone).date()
    spec = read_spec(session, campaign)
    e, m, box = events.c, messages.c, mailboxes.c
    latest = (select(e.message_id, func.max(e.id).label("event_id"))
              .join(messages, m.id == e.message_id)
              .where(e.campaign_id == campaign.id, e.kind == EventKind.DEFERRED.value,
                     m.state == MessageState.SCHEDULED.value)
              .group_by(e.message_id).subquery())
    causes: Counter = Counter()
    for data, in session.execute(select(e.data).join(latest, latest.c.event_id == e.id)):
        causes[event_cause(EventKind.DEFERRED.value, data)] += 1
    # The campaign's counters say whether any automatic email waits at all; only then are the
    # waiting ones counted per mailbox, and today's sends read for the mailboxes with a daily limit.
    # (Scheduled messages exist only once a campaign is launched, when its steps can no longer change.)
    task_steps = {s.position for s in spec.steps if s.action is not StepAction.AUTO}
    scheduled = campaign_counts(session, campaign.id).get(f"msg:{MessageState.SCHEDULED.value}", {})
    pending = session.execute(
        select(box.address, box.id, box.daily_cap, func.count(), func.min(m.due_at))
        .join(messages, m.mailbox_id == box.id)
        .where(m.campaign_id == campaign.id, m.state == MessageState.SCHEDULED.value,
               m.action == StepAction.AUTO.value)
        .group_by(box.address, box.id, box.daily_cap).order_by(box.address)
    ).all() if any(n for position, n in scheduled.items() if position not in task_steps) else []
    limited = [mailbox_id for _, mailbox_id, cap, _, _ in pending if spec.daily_limit or cap]
    since = datetime.combine(today, time.min, tzinfo=zone)
    sent_today = dict(session.execute(
        select(m.mailbox_id, func.count()).where(
            m.campaign_id == campaign.id, m.state == MessageState.SENT.value,
            m.action == StepAction.AUTO.value, m.sent_at >= since, m.mailbox_id.in_(limited))
        .group_by(m.mailbox_id)).all()) if limited else {}
    send_at = campaign.send_at if campaign.state == CampaignState.SCHEDULED.value else None
    days = spec.send_window.days if spec.send_window else frozenset(range(7))
    backlog = []
    for address, mailbox_id, cap, count, first_due in pending:
        limits = [n for n in (spec.daily_limit, cap) if n]
        per_day = min(limits) if limits else None
        entry = {"mailbox": address, "pending": count, "per_day": per_day, "sending_days": None, "clears_on": None}
        if per_day:
            # nothing goes before the campaign starts nor before the first of these emails is due
            start = max([today] + [at.astimezone(zone).date() for at in (send_at, _utc(first_due)) if at])
            used, last = clearing_day(count, per_day, start, days, sent_today=sent_today.get(mailbox_id, 0)
                                      if start == today else 0)
            entry.update(sending_days=used, clears_on=last.isoformat())
        backlog.append(entry)
    return {"send_at": send_at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ") if send_at else None,
            "deferred_by_cause": dict(causes.most_common()), "backlog": backlog}
