"""The full recount of a campaign's figures: the scanning queries `cadence status` ran before the
counters of migration 0010_campaign_counts (and independent of them), for tests that check the
counters equal a recount."""
from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import distinct, func, select

from core.vocabulary import EventKind, MessageState, StepAction, TaskState
from store.models import Event, Message, Step, Task

PER_STEP_EVENTS = (EventKind.OPENED, EventKind.CLICKED, EventKind.REPLIED, EventKind.BOUNCED)
UNIQUE_EVENTS = (*PER_STEP_EVENTS, EventKind.UNSUBSCRIBED, EventKind.SOFT_BOUNCED)
CHARTED = [k.value for k in (EventKind.SENT, EventKind.OPENED, EventKind.CLICKED, EventKind.REPLIED)]


def recount(session, cid: int) -> dict:
    """{"sent_by_step", "in_doubt", "per_step": {kind: {position: n}}, "unique": {kind: n},
    "delivered_contacts", "tasks": {state: n}, "tasks_by_step", "deferred", "by_state": {(position, state): n},
    "days": {UTC day: {charted kind: n}}}
    read by scanning the campaign's rows."""
    sent_state = MessageState.SENT.value
    positions = set(session.scalars(select(Step.position).where(Step.campaign_id == cid)))
    sent_by_step = dict(session.execute(
        select(Message.position, func.count()).where(Message.campaign_id == cid, Message.state == sent_state)
        .group_by(Message.position)).all())
    positions.update(sent_by_step)
    in_doubt = session.scalar(select(func.count()).select_from(Message).where(
        Message.campaign_id == cid, Message.state == MessageState.IN_DOUBT.value)) or 0
    # Engagement per step. One message per contact and step, so distinct messages are distinct
    # contacts. The message is found through its enrollment (events carry both ids): the unique
    # (enrollment, position) index then holds the position, and no message body is read.
    engaged = (select(Event.kind, Event.enrollment_id, Event.message_id).distinct()
               .where(Event.campaign_id == cid, Event.kind.in_([k.value for k in PER_STEP_EVENTS]),
                      Event.message_id.is_not(None)).subquery())
    per_step: dict[str, dict[int, int]] = defaultdict(dict)
    for kind, position, count in session.execute(
            select(engaged.c.kind, Message.position, func.count())
            .join(Message, (Message.enrollment_id == engaged.c.enrollment_id)
                  & ((Message.id + 0) == engaged.c.message_id))  # + 0: look it up by enrollment, not by id
            .group_by(engaged.c.kind, Message.position)):
        per_step[kind][position] = count
    unique = dict(session.execute(
        select(Event.kind, func.count(distinct(Event.contact_id))).where(
            Event.campaign_id == cid, Event.kind.in_([k.value for k in UNIQUE_EVENTS]))
        .group_by(Event.kind)).all())
    bounced_by_step = per_step[EventKind.BOUNCED.value]
    # Contacts with at least one delivered message (one enrollment is one contact of the campaign).
    delivered_query = select(func.count(distinct(Message.enrollment_id))).where(
        Message.campaign_id == cid, Message.state == sent_state)
    if bounced_by_step:
        delivered_query = delivered_query.where(Message.id.not_in(select(Event.message_id).where(
            Event.campaign_id == cid, Event.kind == EventKind.BOUNCED.value, Event.message_id.is_not(None))))
    delivered_contacts = (session.scalar(delivered_query) or 0) if sent_by_step else 0
    # Tasks exist for the task steps only: open ones have a drafted message, done ones a sent one.
    tasks: dict[str, int] = defaultdict(int)
    tasks_by_step: dict[int, int] = defaultdict(int)
    task_steps = list(session.scalars(select(Step.position).where(Step.campaign_id == cid,
                                                                  Step.action == StepAction.TASK.value)))
    if task_steps:
        for position, state, count in session.execute(
                select(Message.position, Task.state, func.count()).join(Task, Task.message_id == Message.id)
                .where(Message.campaign_id == cid, Message.position.in_(task_steps))
                .group_by(Message.position, Task.state)):
            tasks[state] += count
            if state == TaskState.OPEN.value:
                tasks_by_step[position] += count
    next_due = session.scalar(select(func.min(Message.due_at)).where(
        Message.campaign_id == cid, Message.state == MessageState.SCHEDULED.value))
    deferred = session.scalar(select(func.count(distinct(Message.id))).join(Event, Event.message_id == Message.id).where(
        Event.campaign_id == cid, Event.kind == EventKind.DEFERRED.value,
        Message.state == MessageState.SCHEDULED.value)) or 0

    by_state = {(p, s): n for p, s, n in session.execute(
        select(Message.position, Message.state, func.count()).where(Message.campaign_id == cid)
        .group_by(Message.position, Message.state))}
    # The chart's events per UTC day, grouped by the date of `at` (stored as naive UTC).
    days: dict = defaultdict(dict)
    for when, kind, count in session.execute(
            select(func.date(Event.at), Event.kind, func.count()).where(
                Event.campaign_id == cid, Event.kind.in_(CHARTED)).group_by(func.date(Event.at), Event.kind)):
        days[when if isinstance(when, date) else date.fromisoformat(str(when)[:10])][kind] = count
    return {"sent_by_step": sent_by_step, "in_doubt": in_doubt, "days": dict(days),
            "per_step": {k: dict(v) for k, v in per_step.items() if v}, "unique": unique,
            "delivered_contacts": delivered_contacts, "tasks": dict(tasks), "tasks_by_step": dict(tasks_by_step),
            "deferred": deferred, "by_state": by_state, "next_due": next_due}


def counted_and_recounted(session, cid: int) -> tuple[dict, dict]:
    """The campaign's figures as its counters hold them and as a full recount finds them, in one
    shape: {"msg": {(position, state): n}, "sent_by_step", "in_doubt", "per_step", "unique",
    "delivered_contacts", "tasks", "tasks_by_step", "deferred", "days"} (zeros left out)."""
    from store.counts import campaign_counts, day_counts

    def clean(value):
        if isinstance(value, dict):
            cleaned = {k: clean(v) for k, v in value.items()}
            return {k: v for k, v in cleaned.items() if v}
        return value

    full = recount(session, cid)
    counts = campaign_counts(session, cid)
    task_steps = set(session.scalars(select(Step.position).where(Step.campaign_id == cid,
                                                                 Step.action == StepAction.TASK.value)))
    tasks: dict[str, int] = defaultdict(int)
    for name, by_position in counts.items():
        if name.startswith("task:"):
            tasks[name[5:]] += sum(n for p, n in by_position.items() if p in task_steps)
    counted = {
        "msg": {(p, name[4:]): n for name, by_position in counts.items() if name.startswith("msg:")
                for p, n in by_position.items()},
        "sent_by_step": counts.get("msg:sent", {}), "in_doubt": sum(counts.get("msg:in_doubt", {}).values()),
        "per_step": {k.value: counts.get(f"ev:{k.value}", {}) for k in PER_STEP_EVENTS},
        "unique": {k.value: counts.get(f"who:{k.value}", {}).get(0, 0) for k in UNIQUE_EVENTS},
        "delivered_contacts": counts.get("delivered", {}).get(0, 0) if counts.get("msg:sent") else 0,
        "tasks": dict(tasks),
        "tasks_by_step": {p: n for p, n in counts.get("task:open", {}).items() if p in task_steps},
        "deferred": counts.get("deferred", {}).get(0, 0), "days": day_counts(session, cid)}
    recounted = {"msg": full["by_state"], **{k: full[k] for k in counted if k != "msg"}}
    return clean(counted), clean(recounted)


def assert_counters_match(app, campaign_names=None) -> int:
    """Assert every campaign's (or the named ones') counters equal a full recount; returns how many
    campaigns were checked."""
    from store.models import Campaign

    with app.db.session(readonly=True) as session:
        query = select(Campaign.id, Campaign.name)
        if campaign_names:
            query = query.where(Campaign.name.in_(campaign_names))
        checked = 0
        for cid, name in session.execute(query).all():
            counted, recounted = counted_and_recounted(session, cid)
            assert counted == recounted, f"campaign {name!r}: counters {counted} != recount {recounted}"
            checked += 1
    return checked
