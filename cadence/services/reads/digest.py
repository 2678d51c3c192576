"""The figures of a manager's KPI digest, per rep and per campaign (rendered by `bot.digest`).

The figures are those of the emails sent during the week before the digest (from the team's
mailboxes), with what happened to them up to now, counted by the one KPI definition
(`core.kpis.DeliveryKpis`: opens and clicks are unique contacts as % of delivered contacts), plus
the tasks still open a day after they became due ("overdue"). A manager's team is the reps whose
`manager_id` is theirs, and themselves; an admin's digest covers everyone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import distinct, exists, func, select

from cadence.app import App
from cadence.services.errors import UserError
from core.addresses import stored_address
from core.kpis import DeliveryKpis
from core.vocabulary import EventKind, MessageState, TaskState
from store.models import Campaign, Event, MailboxRow, Message, Rep, Task

PERIOD = timedelta(days=7)
OVERDUE_AFTER = timedelta(days=1)
# event kind → the KPI counting the unique contacts (enrollments) it happened to
UNIQUE_KINDS = {EventKind.OPENED.value: "opens", EventKind.CLICKED.value: "clicks",
                EventKind.REPLIED.value: "replies", EventKind.UNSUBSCRIBED.value: "unsubscribes"}


@dataclass(frozen=True)
class Kpis(DeliveryKpis):
    """The delivery KPIs (`core.kpis.DeliveryKpis`) and the tasks overdue by more than a day."""

    overdue_tasks: int = 0

    @property
    def empty(self) -> bool:
        return not (self.sent or self.overdue_tasks or self.replies or self.bounces)


@dataclass(frozen=True)
class DigestRow:
    label: str  # a rep's name (else email) or a campaign's name
    kpis: Kpis


@dataclass(frozen=True)
class Digest:
    """A manager's digest: the week [start, end) (aware UTC), shown in time zone `zone` (IANA
    name); rows per rep (every report, others only with figures) and per campaign (most sent
    first); `total` is the team's (the sum of the rep rows)."""

    manager_id: int
    manager: str  # email
    manager_name: str
    start: datetime
    end: datetime
    zone: str
    reps: tuple[DigestRow, ...]
    campaigns: tuple[DigestRow, ...]
    total: Kpis = field(default_factory=Kpis)


def zone_of(name: str | None, fallback: str) -> ZoneInfo:
    """The first valid zone of `name`, `fallback` (CADENCE_TIMEZONE), UTC."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _team(session, manager: Rep) -> list[Rep]:
    if manager.role == "admin":
        return list(session.scalars(select(Rep).order_by(Rep.name, Rep.email)))
    reports = list(session.scalars(select(Rep).where(Rep.manager_id == manager.id).order_by(Rep.name, Rep.email)))
    if not reports and manager.role != "manager":
        raise UserError(f"--manager: {manager.email} has no reps reporting to them (set `--manager "
                        f"{manager.email}` on their reps, or make them a manager)")
    return [manager, *reports]


def build_digest(app: App, manager_email: str, *, end: datetime | None = None) -> Digest:
    """The digest of `manager_email`'s team for the week ending at `end` (default: now).
    UserError when there is no such rep, or they are a plain rep without reports."""
    with app.db.session(readonly=True) as session:
        manager = session.scalar(select(Rep).where(Rep.email == stored_address(manager_email)))
        if manager is None:
            raise UserError(f"--manager: no rep with email {manager_email}")
        return _build(session, app, manager, end or app.clock.now())


def build_digest_for(app: App, manager_id: int, *, end: datetime | None = None) -> Digest:
    """As `build_digest`, for the rep with id `manager_id`."""
    with app.db.session(readonly=True) as session:
        manager = session.get(Rep, manager_id)
        if manager is None:
            raise UserError(f"no rep with id {manager_id}")
        return _build(session, app, manager, end or app.clock.now())


def _build(session, app: App, manager: Rep, end: datetime) -> Digest:
    team = _team(session, manager)
    team_ids = [r.id for r in team]
    start = end - PERIOD
    cohort = (Message.state == MessageState.SENT.value, Message.sent_at >= start, Message.sent_at < end,
              MailboxRow.owner_id.in_(team_ids))
    key = (MailboxRow.owner_id, Message.campaign_id)
    figures: dict[tuple[int, int], dict[str, int]] = {}

    def add(rep_id: int, campaign_id: int, name: str, count: int) -> None:
        cell = figures.setdefault((rep_id, campaign_id), {})
        cell[name] = cell.get(name, 0) + count

    bounced = exists().where(Event.message_id == Message.id, Event.kind == EventKind.BOUNCED.value)
    for rep_id, campaign_id, sent, bounces, delivered_contacts in session.execute(
            select(*key, func.count(), func.count(Message.id).filter(bounced),
                   func.count(distinct(Message.enrollment_id)).filter(~bounced))
            .select_from(Message).join(MailboxRow, MailboxRow.id == Message.mailbox_id).where(*cohort)
            .group_by(*key)):
        add(rep_id, campaign_id, "sent", sent)
        add(rep_id, campaign_id, "bounces", bounces)
        add(rep_id, campaign_id, "delivered_contacts", delivered_contacts)
    for rep_id, campaign_id, kind, contacts in session.execute(
            select(*key, Event.kind, func.count(distinct(Message.enrollment_id)))
            .select_from(Event).join(Message, Message.id == Event.message_id)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
            .where(*cohort, Event.kind.in_(list(UNIQUE_KINDS)))
            .group_by(*key, Event.kind)):
        add(rep_id, campaign_id, UNIQUE_KINDS[kind], contacts)
    for rep_id, campaign_id, count in session.execute(
            select(Task.rep_id, Message.campaign_id, func.count()).select_from(Task)
            .join(Message, Message.id == Task.message_id)
            .where(Task.state == TaskState.OPEN.value, Task.rep_id.in_(team_ids),
                   Message.due_at < end - OVERDUE_AFTER)
            .group_by(Task.rep_id, Message.campaign_id)):
        add(rep_id, campaign_id, "overdue_tasks", count)

    per_rep: dict[int, Kpis] = {}
    per_campaign: dict[int, Kpis] = {}
    for (rep_id, campaign_id), cell in figures.items():
        kpis = Kpis(**cell)
        per_rep[rep_id] = per_rep.get(rep_id, Kpis()) + kpis
        per_campaign[campaign_id] = per_campaign.get(campaign_id, Kpis()) + kpis
    campaign_names = dict(session.execute(select(Campaign.id, Campaign.name).where(
        Campaign.id.in_(list(per_campaign)))).all()) if per_campaign else {}

    def shown(rep: Rep) -> bool:  # a manager always sees each report; others only with figures
        return rep.id in per_rep or (manager.role != "admin" and rep.id != manager.id)

    rep_rows = tuple(DigestRow(r.name or r.email, per_rep.get(r.id, Kpis())) for r in team if shown(r))
    campaign_rows = tuple(sorted((DigestRow(campaign_names[c], k) for c, k in per_campaign.items()),
                                 key=lambda row: (-row.kpis.sent, row.label.casefold())))
    total = sum((row.kpis for row in rep_rows), Kpis())
    zone = zone_of(manager.timezone, app.settings.timezone)
    return Digest(manager.id, manager.email, manager.name or manager.email, start, end, zone.key,
                  rep_rows, campaign_rows, total)
