"""What a signed-in person may see, read for the web app: campaigns, tasks and the live feed.

The rules are Slack's (bot/access.py): a campaign belongs to the reps owning the mailboxes its
people are enrolled with; reps see their own campaigns and tasks, managers their team's, admins
all. Something a person may not see is answered exactly like something that does not exist
(None), so names and ids do not leak.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from cadence.app import App
from cadence.services.reporting import status_of
from cadence.services.signin import Person
from cadence.services.tasks import TaskView, list_tasks
from core.vocabulary import CampaignState, EventKind
from store.models import Campaign, Contact, Enrollment, Event, MailboxRow, Message, Rep, Task

ACTIVE_FIRST = {CampaignState.SENDING.value: 0, CampaignState.SCHEDULED.value: 1, CampaignState.PAUSED.value: 2,
                CampaignState.PREPARING.value: 3, CampaignState.PREPARED.value: 4, CampaignState.FAILED.value: 5,
                CampaignState.DRAFT.value: 6, CampaignState.FINISHED.value: 7, CampaignState.STOPPED.value: 8}
FEED_KINDS = (EventKind.REPLIED, EventKind.OPENED, EventKind.CLICKED, EventKind.BOUNCED, EventKind.TASK_CREATED,
              EventKind.TASK_DONE, EventKind.TASK_SKIPPED, EventKind.DRAFT_STALE, EventKind.UNSUBSCRIBED)
STATUS_STALENESS = 1.0  # seconds a campaign's figures may be reused by live views (many viewers, one query)


class CampaignOwners:
    """The reps owning the mailboxes a campaign sends from, cached per campaign `audience_version`."""

    def __init__(self):
        self._cache: dict[int, tuple[int, frozenset[int]]] = {}
        self._lock = threading.Lock()

    def of(self, session, campaign: Campaign) -> frozenset[int]:
        with self._lock:
            cached = self._cache.get(campaign.id)
        if cached is not None and cached[0] == campaign.audience_version:
            return cached[1]
        mailboxes = select(Enrollment.mailbox_id).where(Enrollment.campaign_id == campaign.id).distinct()
        owners = frozenset(session.scalars(select(MailboxRow.owner_id).where(MailboxRow.id.in_(mailboxes)).distinct()))
        with self._lock:
            self._cache[campaign.id] = (campaign.audience_version, owners)
        return owners


@dataclass(frozen=True)
class CampaignView:
    """One campaign as a person sees it: the `cadence status --json` document and what they may do."""

    id: int
    name: str
    state: str
    status: dict
    may_control: bool
    send_at: datetime | None


class Visibility:
    """The read side of the web app; one per server (holds the owner cache and the figures cache)."""

    def __init__(self, app: App):
        self.app = app
        self.owners = CampaignOwners()
        self._figures: dict[int, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def campaigns(self, person: Person) -> list[CampaignView]:
        """The campaigns the person may see, sending ones first, then by name."""
        with self.app.db.session() as session:
            found = []
            for campaign in session.scalars(select(Campaign)):
                owners = self.owners.of(session, campaign)
                if person.may_see(owners):
                    found.append(self._view(session, campaign, owners, person))
        return sorted(found, key=lambda c: (ACTIVE_FIRST.get(c.state, 9), c.name.casefold()))

    def campaign(self, person: Person, campaign_id: int, *, fresh: bool = True) -> CampaignView | None:
        """One campaign, or None when it does not exist or the person may not see it.

        `fresh=False` (live refresh) may reuse figures up to STATUS_STALENESS seconds old."""
        with self.app.db.session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                return None
            owners = self.owners.of(session, campaign)
            if not person.may_see(owners):
                return None
            return self._view(session, campaign, owners, person, fresh=fresh)

    def campaign_state(self, campaign_id: int) -> str | None:
        """The campaign's state as stored now (no visibility check: for polling a known campaign)."""
        with self.app.db.session() as session:
            return session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))

    def _view(self, session, campaign: Campaign, owners: frozenset[int], person: Person,
              fresh: bool = True) -> CampaignView:
        status = None
        key = campaign.id
        if not fresh:
            with self._lock:
                cached = self._figures.get(key)
            if cached is not None and time.monotonic() - cached[0] < STATUS_STALENESS \
                    and cached[1]["state"] == campaign.state:
                status = cached[1]
        if status is None:
            status = status_of(session, campaign)
            with self._lock:
                if len(self._figures) > 10_000:
                    self._figures.clear()
                self._figures[key] = (time.monotonic(), status)
        return CampaignView(campaign.id, campaign.name, campaign.state, status, person.may_control(owners),
                            campaign.send_at)

    # -- tasks ---------------------------------------------------------------------------------
    def tasks(self, person: Person, limit: int = 500) -> list[TaskView]:
        """Open tasks of the person (a manager: of the team; an admin: all), overdue first, then by due time."""
        rep_ids = None if person.is_admin else sorted(person.team_ids or ())
        found = list_tasks(self.app, rep_ids=rep_ids)
        far = datetime.max.replace(tzinfo=self.app.clock.now().tzinfo)
        found.sort(key=lambda t: (t.due_at or t.created_at or far, t.id))
        return found[:limit]

    def task(self, person: Person, task_id: int) -> "TaskDetail | None":
        """One task with its full draft, or None when it does not exist or is not the person's to see."""
        with self.app.db.session() as session:
            row = session.execute(
                select(Task, Message, Contact, Campaign, Rep, MailboxRow)
                .join(Message, Message.id == Task.message_id)
                .join(Enrollment, Enrollment.id == Message.enrollment_id)
                .join(Contact, Contact.id == Enrollment.contact_id)
                .join(Campaign, Campaign.id == Message.campaign_id)
                .join(Rep, Rep.id == Task.rep_id)
                .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                .where(Task.id == task_id)).first()
            if row is None:
                return None
            task, message, contact, campaign, owner, box = row
            if not person.may_act_for(task.rep_id):
                return None
            name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email
            return TaskDetail(task.id, task.state, owner.email, campaign.id, campaign.name, message.position,
                              contact.email, name, contact.company, message.subject or "", message.text or "",
                              message.due_at, message.web_link, box.address, box.provider)

    # -- live feed -----------------------------------------------------------------------------
    def feed(self, person: Person, after_id: int = 0, limit: int = 50) -> list[dict]:
        """Replies, opens, clicks, bounces, unsubscribes and task changes of the person's campaigns,
        newest first; `after_id` returns only events recorded after that one."""
        with self.app.db.session() as session:
            visible = [c.id for c in session.scalars(select(Campaign))
                       if person.may_see(self.owners.of(session, c))]
            if not visible:
                return []
            query = (select(Event, Contact.email, Campaign.name)
                     .outerjoin(Contact, Contact.id == Event.contact_id)
                     .join(Campaign, Campaign.id == Event.campaign_id)
                     .where(Event.campaign_id.in_(visible), Event.kind.in_([k.value for k in FEED_KINDS]),
                            Event.id > after_id)
                     .order_by(Event.id.desc()).limit(limit))
            return [{"id": e.id, "at": e.at, "kind": e.kind, "contact": email, "campaign": name,
                     "campaign_id": e.campaign_id, "detail": e.detail}
                    for e, email, name in session.execute(query)]


@dataclass(frozen=True)
class TaskDetail:
    id: int
    state: str
    rep: str
    campaign_id: int
    campaign: str
    position: int
    contact: str
    contact_name: str
    company: str | None
    subject: str
    body: str
    due_at: datetime | None
    draft_link: str | None
    mailbox: str
    provider: str
