"""Campaign status and logs: one reading of the store for the CLI, Slack and the web app alike.

The delivery KPIs follow their one definition, `core.kpis.DeliveryKpis` (per step: opens and
clicks as % of that step's delivered messages, one per contact); tasks_open / tasks_done count
tasks. Opens and clicks are read from the events the tracking server writes (within a second of
a hit).

The statements are SQLAlchemy Core over `store.tables`: they run on a Core connection
(`Database.reading`, what `cadence status` uses, without loading the ORM) or inside an ORM session
(the web app and Slack) alike, and a campaign is an ORM Campaign or a `campaigns` row alike.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from cadence.services.errors import UserError
from cadence.services.reads.backlog import held_back_of
from core.kpis import DeliveryKpis, pct
from core.vocabulary import CampaignState, EventKind, MessageState, StepAction, TaskState
from store.campaigns import campaign_row, find_campaign, find_campaign_id
from store.counts import campaign_counts
from store.tables import campaigns, messages
from store.tables import steps as steps_table

if TYPE_CHECKING:
    from cadence.app import App
    from store.models import Campaign

PER_STEP_EVENTS = (EventKind.OPENED, EventKind.CLICKED, EventKind.REPLIED, EventKind.BOUNCED)
UNIQUE_EVENTS = (*PER_STEP_EVENTS, EventKind.UNSUBSCRIBED, EventKind.SOFT_BOUNCED)


def campaign_or_error(session, name: str) -> Campaign:
    """The ORM Campaign named `name` (inside `session`, to change it); UserError suggesting close
    names otherwise."""
    campaign = find_campaign(session, name)
    if campaign is None:
        _no_campaign(session, name)
    return campaign


def campaign_row_or_error(connection, name: str) -> Any:
    """The `campaigns` row named `name` (on a Core connection or a session); UserError suggesting
    close names otherwise."""
    campaign_id = find_campaign_id(connection, name)
    if campaign_id is None:
        _no_campaign(connection, name)
    return campaign_row(connection, campaign_id)


def _no_campaign(session, name: str) -> None:
    close = get_close_matches(name, session.scalars(select(campaigns.c.name)).all(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UserError(f"no campaign named {name!r}{hint}")


def campaign_status(app: App, name: str) -> dict:
    """The `cadence status CAMPAIGN [--json]` document (see `full_status`); UserError naming the
    campaign when there is none by that name."""
    with app.db.reading() as connection:
        return full_status(app, connection, campaign_row_or_error(connection, name))


def campaign_status_by_id(app: App, campaign_id: int, *, held_back: bool = False) -> dict | None:
    """The status document of campaign `campaign_id` (`status_of`; with `held_back`, `full_status`,
    the document `cadence status` prints), or None when there is none. The web dashboard and Slack
    refresh it often: what holds a campaign back reads its deferred messages, so only on request.
    Check visibility first (`reads.people.visible_campaign`)."""
    with app.db.reading() as connection:
        campaign = campaign_row(connection, campaign_id)
        if campaign is None:
            return None
        return full_status(app, connection, campaign) if held_back else status_of(connection, campaign)


def full_status(app: App, session, campaign) -> dict:
    """`status_of`, with what holds the campaign back now (`reads.backlog.held_back_of`, days in
    CADENCE_TIMEZONE): `delivery.deferred_by_cause` {cause: n} and `backlog` [{"mailbox", "pending",
    "per_day", "sending_days", "clears_on"}]."""
    document = status_of(session, campaign)
    held = held_back_of(session, campaign, app.clock.now(), ZoneInfo(app.settings.timezone))
    document["delivery"]["deferred_by_cause"] = held["deferred_by_cause"]
    document["backlog"] = held["backlog"]
    return document


def delivery_kpis(session, campaign) -> DeliveryKpis:
    """The campaign's delivery KPIs (`core.kpis.DeliveryKpis`)."""
    return _counts(session, campaign)[0]


def status_of(session, campaign) -> dict:
    """The status document of one campaign inside an open session:

    {"campaign": name, "state": state,
     "preparation": {"targeted", "to_deliver", "to_exclude", "exclusions": {cause: n}, "errors",
                     "messages", "current": bool, "stale": bool (not current, and no preparation
                     running), "progress_pct": float | None},
     "delivery": {DeliveryKpis.as_dict() keys, "tasks_open", "tasks_done", "deferred", "in_doubt"},
     "steps": [{"position", "sent", "delivered", "delivered_pct", "opens", "opens_pct", "clicks",
                "clicks_pct", "replies", "bounces", "tasks_open"}, …],
     "next_due": "YYYY-MM-DDTHH:MM:SSZ" | None (a scheduled campaign: its start),
     "send_at": a scheduled campaign's start | None}

    Read from the campaign's counters (`store.counts`) and one index lookup for the next due
    time: it never scans the campaign."""
    kpis, rest = _counts(session, campaign)
    return _document(campaign, kpis, rest)


def _counts(session, campaign) -> tuple[DeliveryKpis, dict]:
    # The campaign's counters (store.counts), kept in the transaction of every change they count:
    # a few dozen rows, whatever the size of the campaign.
    cid = campaign.id
    counts = campaign_counts(session, cid)
    step = steps_table.c
    steps_of = dict(session.execute(select(step.position, step.action).where(step.campaign_id == cid)).all())
    sent_by_step = counts.get(f"msg:{MessageState.SENT.value}", {})
    positions = set(steps_of) | set(sent_by_step)
    in_doubt = sum(counts.get(f"msg:{MessageState.IN_DOUBT.value}", {}).values())
    per_step = {kind.value: counts.get(f"ev:{kind.value}", {}) for kind in PER_STEP_EVENTS}
    unique = {kind.value: counts.get(f"who:{kind.value}", {}).get(0, 0) for kind in UNIQUE_EVENTS}
    bounced_by_step = per_step[EventKind.BOUNCED.value]
    delivered_contacts = counts.get("delivered", {}).get(0, 0) if sent_by_step else 0
    # Tasks exist for the task steps only: open ones have a drafted message, done ones a sent one.
    task_steps = {p for p, action in steps_of.items() if action == StepAction.TASK.value}
    tasks: dict[str, int] = defaultdict(int)
    for name, by_position in counts.items():
        if name.startswith("task:"):
            tasks[name[5:]] += sum(n for p, n in by_position.items() if p in task_steps)
    tasks_by_step = {p: n for p, n in counts.get(f"task:{TaskState.OPEN.value}", {}).items() if p in task_steps}
    next_due = session.scalar(select(func.min(messages.c.due_at)).where(
        messages.c.campaign_id == cid, messages.c.state == MessageState.SCHEDULED.value))
    deferred = counts.get("deferred", {}).get(0, 0)

    kpis = DeliveryKpis(
        sent=sum(sent_by_step.values()), bounces=sum(bounced_by_step.values()),
        delivered_contacts=delivered_contacts, opens=unique.get(EventKind.OPENED.value, 0),
        clicks=unique.get(EventKind.CLICKED.value, 0), replies=unique.get(EventKind.REPLIED.value, 0),
        unsubscribes=unique.get(EventKind.UNSUBSCRIBED.value, 0))
    steps = []
    for position in sorted(positions):
        step_sent = sent_by_step.get(position, 0)
        step_delivered = max(step_sent - bounced_by_step.get(position, 0), 0)
        step_opens = per_step[EventKind.OPENED.value].get(position, 0)
        step_clicks = per_step[EventKind.CLICKED.value].get(position, 0)
        steps.append({"position": position, "sent": step_sent, "delivered": step_delivered,
                      "delivered_pct": pct(step_delivered, step_sent),
                      "opens": step_opens, "opens_pct": pct(step_opens, step_delivered),
                      "clicks": step_clicks, "clicks_pct": pct(step_clicks, step_delivered),
                      "replies": per_step[EventKind.REPLIED.value].get(position, 0),
                      "bounces": bounced_by_step.get(position, 0), "tasks_open": tasks_by_step.get(position, 0)})
    rest = {"tasks_open": tasks.get(TaskState.OPEN.value, 0), "tasks_done": tasks.get(TaskState.DONE.value, 0),
            "deferred": deferred, "in_doubt": in_doubt, "steps": steps, "next_due": next_due,
            "soft_bounces": unique.get(EventKind.SOFT_BOUNCED.value, 0)}
    return kpis, rest


def _document(campaign, kpis: DeliveryKpis, rest: dict) -> dict:
    prep = dict(campaign.preparation or {})
    current = (campaign.prepared_content_version == campaign.content_version
               and campaign.prepared_audience_version == campaign.audience_version)
    send_at = campaign.send_at if campaign.state == CampaignState.SCHEDULED.value else None
    preparation = {
        "targeted": prep.get("targeted", 0), "to_deliver": prep.get("to_deliver", 0),
        "to_exclude": prep.get("to_exclude", 0), "exclusions": prep.get("exclusions", {}),
        "errors": prep.get("errors", 0), "messages": prep.get("messages", 0),
        "current": current, "stale": not current and campaign.state != CampaignState.PREPARING.value,
        "progress_pct": round(100 * campaign.progress, 1) if campaign.progress is not None else None,
    }
    return {
        "campaign": campaign.name,
        "state": campaign.state,
        "preparation": preparation,
        "delivery": {**kpis.as_dict(), "tasks_open": rest["tasks_open"], "tasks_done": rest["tasks_done"],
                     "deferred": rest["deferred"], "in_doubt": rest["in_doubt"],
                     # contacts whose email bounced softly (mailbox full, 4.x.x) and goes again; not in `bounces`
                     "soft_bounces": rest["soft_bounces"]},
        "steps": rest["steps"],
        "next_due": (_iso(rest["next_due"] or send_at) if campaign.state != CampaignState.STOPPED.value
                     else None),
        "send_at": _iso(send_at),
    }


def _iso(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


def list_campaigns(app: App) -> list[dict]:
    """The status document (see `status_of`) of every campaign, by name."""
    with app.db.reading() as connection:
        return [status_of(connection, c) for c in connection.execute(select(campaigns).order_by(campaigns.c.name))]


def campaign_logs(app: App, name: str, *, errors_only: bool = False) -> list[dict]:
    """Every event of the campaign in order, exclusions with cause and contact:
    [{"at": ISO 8601 UTC, "level": info|warning|error, "kind", "contact": email | None, "detail",
      "cause": exclusion cause | None}, …]; UserError when there is no such campaign."""
    from store.models import Contact, Event

    with app.db.session(readonly=True) as session:
        campaign = campaign_or_error(session, name)
        query = (select(Event, Contact.email).outerjoin(Contact, Contact.id == Event.contact_id)
                 .where(Event.campaign_id == campaign.id).order_by(Event.at, Event.id))
        if errors_only:
            query = query.where(Event.level == "error")
        return [{"at": _iso(e.at), "level": e.level, "kind": e.kind, "contact": email, "detail": e.detail,
                 "cause": (e.data or {}).get("cause") if isinstance(e.data, dict) else None}
                for e, email in session.execute(query)]

