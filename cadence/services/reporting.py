"""KPIs, status and logs: one reading of the store for the CLI, Slack and digests alike."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import distinct, func, select

from cadence.app import App
from core.vocabulary import CampaignState, EventKind, MessageState, TaskState
from store.models import Campaign, Contact, Event, Message, Task

PER_STEP_EVENTS = (EventKind.OPENED, EventKind.CLICKED, EventKind.REPLIED, EventKind.BOUNCED)


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def campaign_status(app: App, name: str) -> dict:
    """The `cadence status --json` document of the interface page."""
    from cadence.services.audience import campaign_or_error

    with app.db.session() as session:
        campaign = campaign_or_error(session, name)
        return status_of(session, campaign)


def status_of(session, campaign: Campaign) -> dict:
    cid = campaign.id
    sent_by_step = dict(session.execute(
        select(Message.position, func.count()).where(Message.campaign_id == cid, Message.state == MessageState.SENT.value)
        .group_by(Message.position)).all())
    # unique contacts per event kind and step (opens, clicks: once per contact)
    per_step: dict[str, dict[int, int]] = defaultdict(dict)
    for kind, position, count in session.execute(
            select(Event.kind, Message.position, func.count(distinct(Event.contact_id)))
            .join(Message, Message.id == Event.message_id)
            .where(Event.campaign_id == cid, Event.kind.in_([k.value for k in PER_STEP_EVENTS]))
            .group_by(Event.kind, Message.position)):
        per_step[kind][position] = count
    unique = dict(session.execute(
        select(Event.kind, func.count(distinct(Event.contact_id))).where(
            Event.campaign_id == cid, Event.kind.in_([k.value for k in (*PER_STEP_EVENTS, EventKind.UNSUBSCRIBED)]))
        .group_by(Event.kind)).all())
    tasks = dict(session.execute(
        select(Task.state, func.count()).join(Message, Message.id == Task.message_id)
        .where(Message.campaign_id == cid).group_by(Task.state)).all())
    tasks_by_step = dict(session.execute(
        select(Message.position, func.count()).join(Task, Task.message_id == Message.id)
        .where(Message.campaign_id == cid, Task.state == TaskState.OPEN.value).group_by(Message.position)).all())
    next_due = session.scalar(select(func.min(Message.due_at)).where(
        Message.campaign_id == cid, Message.state == MessageState.SCHEDULED.value))
    deferred = session.scalar(select(func.count(distinct(Message.id))).join(Event, Event.message_id == Message.id).where(
        Message.campaign_id == cid, Message.state == MessageState.SCHEDULED.value,
        Event.kind == EventKind.DEFERRED.value))
    in_doubt = session.scalar(select(func.count()).select_from(Message).where(
        Message.campaign_id == cid, Message.state == MessageState.IN_DOUBT.value))
    positions = [p for (p,) in session.execute(
        select(func.distinct(Message.position)).where(Message.campaign_id == cid).order_by(Message.position))]
    from store.models import Step

    positions = sorted(set(positions) | set(session.scalars(select(Step.position).where(Step.campaign_id == cid))))
    sent = sum(sent_by_step.values())
    bounces = unique.get(EventKind.BOUNCED.value, 0)
    delivered = max(sent - bounces, 0)
    opens, clicks = unique.get(EventKind.OPENED.value, 0), unique.get(EventKind.CLICKED.value, 0)
    prep = dict(campaign.preparation or {})
    preparation = {
        "targeted": prep.get("targeted", 0), "to_deliver": prep.get("to_deliver", 0),
        "to_exclude": prep.get("to_exclude", 0), "exclusions": prep.get("exclusions", {}),
        "errors": prep.get("errors", 0), "messages": prep.get("messages", 0),
        "current": (campaign.prepared_content_version == campaign.content_version
                    and campaign.prepared_audience_version == campaign.audience_version),
        "progress_pct": round(100 * (campaign.progress or 0.0), 1) if campaign.progress is not None else None,
    }
    steps = []
    for position in positions:
        step_sent = sent_by_step.get(position, 0)
        step_bounces = per_step[EventKind.BOUNCED.value].get(position, 0)
        steps.append({"position": position, "sent": step_sent, "delivered": max(step_sent - step_bounces, 0),
                      "opens": per_step[EventKind.OPENED.value].get(position, 0),
                      "clicks": per_step[EventKind.CLICKED.value].get(position, 0),
                      "replies": per_step[EventKind.REPLIED.value].get(position, 0),
                      "bounces": step_bounces, "tasks_open": tasks_by_step.get(position, 0)})
    return {
        "campaign": campaign.name,
        "state": campaign.state,
        "preparation": preparation,
        "delivery": {
            "sent": sent, "delivered": delivered, "delivered_pct": _pct(delivered, sent),
            "opens": opens, "opens_pct": _pct(opens, delivered), "clicks": clicks, "clicks_pct": _pct(clicks, delivered),
            "replies": unique.get(EventKind.REPLIED.value, 0), "bounces": bounces,
            "unsubscribes": unique.get(EventKind.UNSUBSCRIBED.value, 0),
            "tasks_open": tasks.get(TaskState.OPEN.value, 0), "tasks_done": tasks.get(TaskState.DONE.value, 0),
            "deferred": deferred or 0, "in_doubt": in_doubt or 0,
        },
        "steps": steps,
        "next_due": _iso(next_due) if campaign.state not in (CampaignState.STOPPED.value,) else None,
    }


def _iso(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


def list_campaigns(app: App) -> list[dict]:
    with app.db.session() as session:
        return [status_of(session, c) for c in session.scalars(select(Campaign).order_by(Campaign.name))]


def campaign_logs(app: App, name: str, *, errors_only: bool = False) -> list[dict]:
    """Every event of the campaign in order, exclusions with cause and contact."""
    from cadence.services.audience import campaign_or_error

    with app.db.session() as session:
        campaign = campaign_or_error(session, name)
        query = (select(Event, Contact.email).outerjoin(Contact, Contact.id == Event.contact_id)
                 .where(Event.campaign_id == campaign.id).order_by(Event.at, Event.id))
        if errors_only:
            query = query.where(Event.level == "error")
        return [{"at": _iso(e.at), "level": e.level, "kind": e.kind, "contact": email, "detail": e.detail,
                 "cause": (e.data or {}).get("cause") if isinstance(e.data, dict) else None}
                for e, email in session.execute(query)]
