"""Events as the notifications and feeds show them: what happened, to whom, and who should hear."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select

from cadence.app import App
from cadence.services.reads.tasks import TaskView, task_detail
from core.vocabulary import EventKind, MailboxHealth, TaskState
from store.models import Campaign, Contact, Enrollment, Event, MailboxRow, Message, Task


@dataclass(frozen=True)
class EventNotice:
    """What a rep should be told about one event; `rep_id` None when there is nothing to say any more
    (a task already closed, a mailbox reconnected since, no mailbox to tell …).

    Per kind (`kind` is an EventKind value):
    - replied: `contact` (name, with company), `campaign`, `position`, `snippet`, `provider`,
      `mailbox`, `observed` (the provider's payload, for a link to the reply);
    - bounced: `contact` (address), `campaign`, `reason`;
    - task_created: `task` (open), `detail`;
    - draft_stale: `contact` (address), `campaign`, `reason`;
    - mailbox_disconnected: `mailbox`, `provider`, `reason`.
    """

    event_id: int
    kind: str
    at: datetime
    rep_id: int | None = None
    contact: str = ""
    campaign: str = ""
    position: int | None = None
    snippet: str = ""
    reason: str = ""
    detail: str = ""
    mailbox: str = ""
    provider: str = ""
    observed: dict = field(default_factory=dict)
    task: TaskView | None = None


def event_ids_after(app: App, after: int, kinds: tuple[EventKind, ...], limit: int) -> list[int]:
    """Ids of the events of `kinds` after id `after`, in order, at most `limit`."""
    with app.db.session(readonly=True) as session:
        return list(session.scalars(select(Event.id).where(Event.id > after, Event.kind.in_([k.value for k in kinds]))
                                    .order_by(Event.id).limit(limit)))


def event_notice(app: App, event_id: int) -> EventNotice:
    """The EventNotice of event `event_id` (see the class for what each kind carries)."""
    task_id = None
    with app.db.session(readonly=True) as session:
        event = session.get(Event, event_id)
        kind = EventKind(event.kind)
        base = EventNotice(event_id, event.kind, event.at, detail=event.detail)
        message = session.get(Message, event.message_id) if event.message_id else None
        campaign = session.get(Campaign, event.campaign_id) if event.campaign_id else None
        campaign_name = campaign.name if campaign else "a campaign"
        data = event.data if isinstance(event.data, dict) else {}
        if kind in (EventKind.TASK_CREATED, EventKind.DRAFT_STALE):
            task = session.scalar(select(Task).where(Task.message_id == event.message_id)) if message else None
            if task is None:
                return base
            if kind is EventKind.DRAFT_STALE:
                enrollment = session.get(Enrollment, message.enrollment_id)
                reason = (enrollment.end_reason if enrollment else None) or "the sequence ended"
                return _with(base, rep_id=task.rep_id, contact=message.to_address, campaign=campaign_name,
                             reason=reason)
            if task.state != TaskState.OPEN.value:
                return base  # already sent, skipped or stale: nothing to do any more
            task_id = task.id
        elif kind is EventKind.MAILBOX_DISCONNECTED:
            box = session.get(MailboxRow, event.mailbox_id) if event.mailbox_id else None
            if box is None or box.health != MailboxHealth.DISCONNECTED.value:
                return base  # reconnected since
            return _with(base, rep_id=box.owner_id, mailbox=box.address, provider=box.provider,
                         reason=box.health_reason or event.detail)
        else:
            box_id = event.mailbox_id or (message.mailbox_id if message else None)
            box = session.get(MailboxRow, box_id) if box_id else None
            if box is None:
                return base
            if kind is EventKind.REPLIED:
                contact = session.get(Contact, event.contact_id) if event.contact_id else None
                name = (" ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email
                        if contact else (message.to_address if message else "A prospect"))
                who = f"{name} ({contact.company})" if contact and contact.company else name
                observed = data.get("observed")
                return _with(base, rep_id=box.owner_id, contact=who, campaign=campaign_name,
                             position=message.position if message else None, snippet=str(data.get("snippet") or ""),
                             mailbox=box.address, provider=box.provider,
                             observed=observed if isinstance(observed, dict) else {})
            return _with(base, rep_id=box.owner_id, contact=message.to_address if message else event.detail,
                         campaign=campaign_name, reason=str(data.get("why") or event.detail))
    detail = task_detail(app, task_id)
    if detail is None or detail.view.state != TaskState.OPEN.value:
        return base
    return _with(base, rep_id=detail.rep_id, task=detail.view)


def _with(notice: EventNotice, **changes) -> EventNotice:
    return replace(notice, **changes)
