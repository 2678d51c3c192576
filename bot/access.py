"""Who is who, and who may touch what.

A Slack user is a rep when `Rep.slack_id` is theirs, or when the email of their Slack profile
(users.info, which shows it with the users:read.email scope) is a rep's email; that link is then
stored on the rep. Reps see and act on their own tasks and campaigns, managers on those of the reps
whose `manager_id` is theirs (and their own), admins on all. A campaign belongs to the reps who own
the mailboxes its people are enrolled with. Every check reads the database at the time of the
action; nothing in a Slack payload is trusted beyond "which object is asked about".
"""
from __future__ import annotations

import difflib
import logging
import threading
import time
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.tasks import TaskView
from core.vocabulary import CampaignState, TaskState
from store.models import Campaign, Contact, Enrollment, MailboxRow, Message, Rep, Task

log = logging.getLogger("cadence.slack.access")

ACTIVE_FIRST = {CampaignState.SENDING.value: 0, CampaignState.SCHEDULED.value: 1, CampaignState.PAUSED.value: 2,
                CampaignState.PREPARING.value: 3, CampaignState.PREPARED.value: 4, CampaignState.FAILED.value: 5,
                CampaignState.DRAFT.value: 6, CampaignState.FINISHED.value: 7, CampaignState.STOPPED.value: 8}


@dataclass(frozen=True)
class Viewer:
    """The rep behind a Slack user, with the reps whose work they may see and act on."""

    slack_id: str
    rep_id: int
    email: str
    name: str | None
    role: str
    timezone: str | None
    team_ids: frozenset[int] | None  # None: everyone (admin)
    has_reports: bool

    @property
    def is_admin(self) -> bool:
        return self.team_ids is None

    @property
    def gets_digest(self) -> bool:
        return self.role in ("manager", "admin") or self.has_reports

    def may_act_for(self, rep_id: int | None) -> bool:
        return rep_id is not None and (self.team_ids is None or rep_id in self.team_ids)

    def may_see_campaign(self, owners: frozenset[int]) -> bool:
        return self.team_ids is None or bool(owners & self.team_ids)

    def may_control_campaign(self, owners: frozenset[int]) -> bool:
        """Pause/resume touches everyone enrolled: only when every sending mailbox is the viewer's team's."""
        return self.team_ids is None or (bool(owners) and owners <= self.team_ids)


def viewer_of(session, rep: Rep, slack_id: str) -> Viewer:
    reports = set(session.scalars(select(Rep.id).where(Rep.manager_id == rep.id)))
    team = None if rep.role == "admin" else frozenset({rep.id, *reports})
    return Viewer(slack_id, rep.id, rep.email, rep.name, rep.role, rep.timezone, team, bool(reports))


def refuse(viewer: Viewer | None, slack_user: str, what: str, target: str) -> None:
    """Log a refused action (who, what, on which object) for the operator."""
    who = viewer.email if viewer else "unknown user"
    log.warning("refused: Slack user %s (%s) may not %s %s", slack_user, who, what, target)


class Directory:
    """Slack user id → Viewer. Profile emails are cached (default 10 min); reps and teams never are."""

    def __init__(self, app: App, client: WebClient, ttl_seconds: float = 600.0):
        self.app, self.client, self.ttl = app, client, ttl_seconds
        self._emails: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def viewer(self, slack_user_id: str) -> Viewer | None:
        """The rep for this Slack user, or None for someone Cadence does not know."""
        if not slack_user_id:
            return None
        with self.app.db.session() as session:
            rep = session.scalar(select(Rep).where(Rep.slack_id == slack_user_id))
            if rep is not None:
                return viewer_of(session, rep, slack_user_id)
        email = self._email_of(slack_user_id)
        if not email:
            return None
        with self.app.db.session() as session:
            rep = session.scalar(select(Rep).where(Rep.email == email.strip().lower()))
            if rep is None:
                return None
            if rep.slack_id and rep.slack_id != slack_user_id:
                # the operator tied this rep to another Slack account: the email alone does not win
                log.warning("Slack user %s has the email of %s, who is linked to %s; not matched",
                            slack_user_id, rep.email, rep.slack_id)
                return None
            if not rep.slack_id:
                rep.slack_id = slack_user_id
            return viewer_of(session, rep, slack_user_id)

    def _email_of(self, slack_user_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._emails.get(slack_user_id)
            if cached is not None and cached[1] > now:
                return cached[0]
        try:
            info = self.client.users_info(user=slack_user_id)
            user = info["user"]
            email = None if user.get("is_bot") or user.get("deleted") else (user.get("profile") or {}).get("email")
        except SlackApiError as error:
            log.warning("users.info for %s failed: %s", slack_user_id, error.response.get("error"))
            return None
        with self._lock:
            if len(self._emails) > 10_000:
                self._emails.clear()
            self._emails[slack_user_id] = (email, now + self.ttl)
        return email


class CampaignOwners:
    """The reps owning the mailboxes a campaign sends from, cached per campaign `audience_version`
    (bumped by every enrollment change), so a 100k-people campaign is scanned once per change."""

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


def visible_campaigns(session, viewer: Viewer, owners: CampaignOwners) -> list[Campaign]:
    """Campaigns the viewer may see: sending ones first, then by name."""
    campaigns = [c for c in session.scalars(select(Campaign)) if viewer.may_see_campaign(owners.of(session, c))]
    return sorted(campaigns, key=lambda c: (ACTIVE_FIRST.get(c.state, 9), c.name.casefold()))


def find_campaign(session, viewer: Viewer, owners: CampaignOwners, text: str) -> Campaign:
    """The visible campaign `text` names: case-insensitively, or by a unique prefix.

    UserError otherwise, suggesting the closest visible names. A campaign the viewer may not see
    is reported exactly as a missing one, so names do not leak.
    """
    wanted = " ".join(text.strip().strip("\"'“”‘’").split())
    if not wanted:
        raise UserError("name a campaign, e.g. `/cadence status Q4 outbound`")
    campaigns = visible_campaigns(session, viewer, owners)
    folded = wanted.casefold()
    exact = [c for c in campaigns if c.name.casefold() == folded]
    if exact:
        return exact[0]
    prefixed = [c for c in campaigns if c.name.casefold().startswith(folded)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        names = ", ".join(f"`{c.name}`" for c in prefixed[:5])
        raise UserError(f"\u201c{wanted}\u201d matches several campaigns: {names}. Which one?")
    by_folded = {c.name.casefold(): c.name for c in campaigns}
    close = difflib.get_close_matches(folded, list(by_folded), n=3, cutoff=0.5)
    hidden = session.scalar(select(Campaign.id).where(func.lower(Campaign.name) == folded))
    if hidden is not None:
        refuse(viewer, viewer.slack_id, "see campaign", repr(wanted))
    if close:
        return_names = ", ".join(f"`{by_folded[n]}`" for n in close)
        raise UserError(f"No campaign named \u201c{wanted}\u201d. Did you mean {return_names}?")
    raise UserError(f"No campaign named \u201c{wanted}\u201d among yours. `/cadence status` lists them.")


def campaign_for_control(session, viewer: Viewer, owners: CampaignOwners, text: str, verb: str) -> Campaign:
    campaign = find_campaign(session, viewer, owners, text)
    if not viewer.may_control_campaign(owners.of(session, campaign)):
        refuse(viewer, viewer.slack_id, verb, f"campaign {campaign.name!r}")
        scope = "your own" if viewer.role == "rep" and not viewer.has_reports else "your team's"
        raise UserError(f"You may not {verb} \u201c{campaign.name}\u201d: it also sends from mailboxes "
                        f"that are not {scope}. Ask its owner or an admin.")
    return campaign


@dataclass(frozen=True)
class TaskDetail:
    """One task as the bot shows it, with the full draft body for the edit modal."""

    view: TaskView
    rep_id: int
    body: str


def task_detail(app: App, task_id: int) -> TaskDetail | None:
    with app.db.session() as session:
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
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email
        text = message.text or ""
        view = TaskView(task.id, task.state, owner.email, campaign.name, message.position, contact.email, name,
                        contact.company, message.subject or "", " ".join(text.split())[:160], task.created_at,
                        message.due_at, message.web_link, box.address)
        return TaskDetail(view, task.rep_id, text)


def count_open_tasks(app: App, rep_ids: list[int] | None) -> int:
    with app.db.session() as session:
        query = select(func.count()).select_from(Task).where(Task.state == TaskState.OPEN.value)
        if rep_ids is not None:
            query = query.where(Task.rep_id.in_(rep_ids))
        return session.scalar(query) or 0


def parse_id(value: object) -> int | None:
    """An object id from a payload: a positive integer, or None."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 18 else None
