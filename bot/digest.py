"""Manager KPI digests: per rep and per campaign, as a CLI table, Block Kit and a PNG chart.

The figures are those of the emails sent during the week before the digest (from the team's
mailboxes), with what happened to them up to now: sent, delivered % (sent minus bounces), opens %
and clicks % (of delivered emails), replies, bounces; plus the tasks still open a day after they
became due ("overdue"). A manager's team is the reps whose `manager_id` is theirs, and themselves;
an admin's digest covers everyone.

Schedule: `Rep.digest_schedule` ("mon 08:00" when unset; "daily 08:00", "weekdays 09:00",
"mon,thu 08:30", "off") in the manager's time zone (`Rep.timezone`, else CADENCE_TIMEZONE).
A digest is due when the latest scheduled time is after `Rep.last_digest_at` (or after the rep
was created) and less than a day ago (one missed while no worker ran is not sent days late). It
is claimed with a compare-and-set on `last_digest_at` before posting, so two processes never
both send it.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from slack_sdk import WebClient
from sqlalchemy import distinct, func, or_, select, update

from bot import views
from bot.slack import Messenger, is_transient, slack_error, web_client
from cadence.app import App
from cadence.services.errors import UserError
from core.vocabulary import EventKind, MessageState, TaskState
from store.models import Campaign, Event, MailboxRow, Message, Rep, Task

log = logging.getLogger("cadence.slack.digest")

DEFAULT_SCHEDULE = "mon 08:00"
PERIOD = timedelta(days=7)
OVERDUE_AFTER = timedelta(days=1)
CATCH_UP = timedelta(days=1)  # a digest missed (no worker running) is still sent this long after its time
MAX_ROWS = 20
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COUNTED = (EventKind.OPENED, EventKind.CLICKED, EventKind.REPLIED, EventKind.BOUNCED)


# -- the figures -------------------------------------------------------------------------------

def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


@dataclass(frozen=True)
class Kpis:
    sent: int = 0
    opens: int = 0
    clicks: int = 0
    replies: int = 0
    bounces: int = 0
    overdue_tasks: int = 0

    @property
    def delivered(self) -> int:
        return max(self.sent - self.bounces, 0)

    @property
    def delivered_pct(self) -> float:
        return _pct(self.delivered, self.sent)

    @property
    def opens_pct(self) -> float:
        return _pct(self.opens, self.delivered)

    @property
    def clicks_pct(self) -> float:
        return _pct(self.clicks, self.delivered)

    @property
    def empty(self) -> bool:
        return not (self.sent or self.overdue_tasks or self.replies or self.bounces)

    def __add__(self, other: "Kpis") -> "Kpis":
        return Kpis(*(getattr(self, n) + getattr(other, n)
                      for n in ("sent", "opens", "clicks", "replies", "bounces", "overdue_tasks")))


@dataclass(frozen=True)
class DigestRow:
    label: str
    kpis: Kpis


@dataclass(frozen=True)
class Digest:
    manager_id: int
    manager: str  # email
    manager_name: str
    start: datetime
    end: datetime
    zone: str
    reps: tuple[DigestRow, ...]
    campaigns: tuple[DigestRow, ...]
    total: Kpis = field(default_factory=Kpis)


def _zone(name: str | None, fallback: str) -> ZoneInfo:
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
    """The digest of `manager_email`'s team for the week ending at `end` (default: now)."""
    with app.db.session() as session:
        manager = session.scalar(select(Rep).where(Rep.email == manager_email.strip().lower()))
        if manager is None:
            raise UserError(f"--manager: no rep with email {manager_email}")
        return _build(session, app, manager, end or app.clock.now())


def build_digest_for(app: App, manager_id: int, *, end: datetime | None = None) -> Digest:
    with app.db.session() as session:
        return _build(session, app, session.get(Rep, manager_id), end or app.clock.now())


def _build(session, app: App, manager: Rep, end: datetime) -> Digest:
    team = _team(session, manager)
    team_ids = [r.id for r in team]
    start = end - PERIOD
    cohort = (Message.state == MessageState.SENT.value, Message.sent_at >= start, Message.sent_at < end,
              MailboxRow.owner_id.in_(team_ids))
    figures: dict[tuple[int, int], dict[str, int]] = {}

    def add(rep_id: int, campaign_id: int, name: str, count: int) -> None:
        cell = figures.setdefault((rep_id, campaign_id), {})
        cell[name] = cell.get(name, 0) + count

    for rep_id, campaign_id, count in session.execute(
            select(MailboxRow.owner_id, Message.campaign_id, func.count()).select_from(Message)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id).where(*cohort)
            .group_by(MailboxRow.owner_id, Message.campaign_id)):
        add(rep_id, campaign_id, "sent", count)
    names = {EventKind.OPENED.value: "opens", EventKind.CLICKED.value: "clicks", EventKind.REPLIED.value: "replies",
             EventKind.BOUNCED.value: "bounces"}
    for rep_id, campaign_id, kind, count in session.execute(
            select(MailboxRow.owner_id, Message.campaign_id, Event.kind, func.count(distinct(Event.message_id)))
            .select_from(Event).join(Message, Message.id == Event.message_id)
            .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
            .where(*cohort, Event.kind.in_([k.value for k in COUNTED]))
            .group_by(MailboxRow.owner_id, Message.campaign_id, Event.kind)):
        add(rep_id, campaign_id, names[kind], count)
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
    zone = _zone(manager.timezone, app.settings.timezone)
    return Digest(manager.id, manager.email, manager.name or manager.email, start, end, zone.key,
                  rep_rows, campaign_rows, total)


# -- rendering ---------------------------------------------------------------------------------

def _line(kpis: Kpis) -> str:
    return (f"sent {kpis.sent} \u00b7 delivered {kpis.delivered_pct:.1f} % \u00b7 opens {kpis.opens_pct:.1f} % "
            f"\u00b7 clicks {kpis.clicks_pct:.1f} % \u00b7 replies {kpis.replies} \u00b7 "
            f"overdue tasks {kpis.overdue_tasks} \u00b7 bounces {kpis.bounces}")


def _period(digest: Digest) -> str:
    zone = ZoneInfo(digest.zone)
    return (f"{digest.start.astimezone(zone):%a %d %b %H:%M} \u2013 {digest.end.astimezone(zone):%a %d %b %H:%M} "
            f"({digest.zone})")


def render_digest_blocks(digest: Digest) -> dict:
    """The digest as a Slack message ({"text", "blocks"})."""
    blocks = [views.header(f"Weekly digest \u00b7 {views.cut(digest.manager_name, 100)}"),
              views.context(f"Emails sent {_period(digest)}, and what became of them since."),
              views.section(f"*Team*: {_line(digest.total)}"), views.divider(), views.section("*Per rep*")]
    for row in digest.reps[:MAX_ROWS]:
        blocks.append(views.section(f"*{views.esc(row.label)}*\n{_line(row.kpis)}"))
    if len(digest.reps) > MAX_ROWS:
        blocks.append(views.context(f"and {len(digest.reps) - MAX_ROWS} more reps (`cadence digest` shows all)"))
    blocks += [views.divider(), views.section("*Per campaign*")]
    if not digest.campaigns:
        blocks.append(views.context("No email went out from the team's mailboxes in this period."))
    for row in digest.campaigns[:MAX_ROWS]:
        blocks.append(views.section(f"*{views.esc(row.label)}*\n{_line(row.kpis)}"))
    if len(digest.campaigns) > MAX_ROWS:
        blocks.append(views.context(f"and {len(digest.campaigns) - MAX_ROWS} more campaigns"))
    text = f"Weekly digest for {digest.manager_name}: {_line(digest.total)}"
    return views.message(text, blocks)


def render_chart_png(digest: Digest) -> bytes:
    """Delivered, opens and clicks % per rep as a grouped bar chart (matplotlib, Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(digest.reps[:MAX_ROWS]) or [DigestRow("(no reps)", Kpis())]
    labels = [f"{views.cut(r.label, 24)}\n{r.kpis.sent} sent, {r.kpis.replies} replies" for r in rows]
    series = (("Delivered %", [r.kpis.delivered_pct for r in rows]), ("Opens %", [r.kpis.opens_pct for r in rows]),
              ("Clicks %", [r.kpis.clicks_pct for r in rows]))
    figure = Figure(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        axes.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=name)
    axes.set_xticks(range(len(rows)), labels, fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% of emails")
    axes.set_title(f"{digest.manager_name}'s team \u00b7 {_period(digest)}", fontsize=9)
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def print_digest(digest: Digest, console) -> None:
    from rich.table import Table

    console.print(f"Weekly digest for {digest.manager_name} <{digest.manager}>: emails sent {_period(digest)}",
                  markup=False, highlight=False)
    for title, rows in (("rep", digest.reps), ("campaign", digest.campaigns)):
        table = Table(title=f"per {title}")
        for column in (title, "sent", "delivered %", "opens %", "clicks %", "replies", "overdue tasks", "bounces"):
            table.add_column(column, justify="left" if column == title else "right")
        for row in rows:
            k = row.kpis
            table.add_row(row.label, str(k.sent), f"{k.delivered_pct:.1f}", f"{k.opens_pct:.1f}", f"{k.clicks_pct:.1f}",
                          str(k.replies), str(k.overdue_tasks), str(k.bounces))
        if title == "rep":
            k = digest.total
            table.add_row("team", str(k.sent), f"{k.delivered_pct:.1f}", f"{k.opens_pct:.1f}", f"{k.clicks_pct:.1f}",
                          str(k.replies), str(k.overdue_tasks), str(k.bounces), style="bold")
        console.print(table)


# -- delivery ----------------------------------------------------------------------------------

def post_digest(app: App, messenger: Messenger, manager_id: int, slack_id: str, digest: Digest | None = None) -> str:
    """DM the digest and its chart to `slack_id`; returns the message ts."""
    digest = digest or build_digest_for(app, manager_id)
    ts = messenger.post(slack_id, render_digest_blocks(digest))
    messenger.upload_png(slack_id, render_chart_png(digest), filename=f"digest-{digest.end:%Y-%m-%d}.png",
                         title=f"Weekly digest {digest.end:%Y-%m-%d}")
    return ts


def run_digest_command(app: App, manager: str, post: bool = False, console=None) -> Digest:
    """`cadence digest --manager E [--post]`: print the tables; with `post`, DM the digest in Slack."""
    from rich.console import Console

    console = console or Console()
    digest = build_digest(app, manager)
    print_digest(digest, console)
    if post:
        messenger = Messenger(app, web_client(app.settings))
        try:
            slack_id = messenger.slack_id_of(digest.manager_id)
            if slack_id is None:
                raise UserError(f"--post: {digest.manager} has no Slack account (link it with `cadence rep add "
                                f"--email {digest.manager} --slack-id U…`)")
            post_digest(app, messenger, digest.manager_id, slack_id, digest)
        except UserError:
            raise
        except Exception as error:
            raise UserError(f"--post: Slack refused the digest: {slack_error(error)}") from None
        console.print(f"posted to Slack for {digest.manager}", markup=False, highlight=False)
    return digest


# -- schedule ----------------------------------------------------------------------------------

SCHEDULE = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*$")


def parse_schedule(text: str | None) -> tuple[frozenset[int], time] | None:
    """("mon 08:00" → ({0}, 08:00)); None for "off". ValueError naming the field when malformed."""
    raw = (text or DEFAULT_SCHEDULE).strip().lower()
    if raw in ("off", "none", "never"):
        return None
    match = SCHEDULE.match(raw)
    problem = (f"digest_schedule: {text!r} is not like \"mon 08:00\", \"mon,thu 08:30\", \"weekdays 09:00\", "
               "\"daily 08:00\" or \"off\"")
    if not match:
        raise ValueError(problem)
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise ValueError(problem)
    days: set[int] = set()
    for part in match["days"].split(","):
        if part == "daily":
            days.update(range(7))
        elif part == "weekdays":
            days.update(range(5))
        elif "-" in part:
            first, _, last = part.partition("-")
            if first not in DAYS or last not in DAYS:
                raise ValueError(problem)
            a, b = DAYS.index(first), DAYS.index(last)
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif part in DAYS:
            days.add(DAYS.index(part))
        else:
            raise ValueError(problem)
    return frozenset(days), time(hour, minute)


def latest_occurrence(schedule: str | None, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The latest scheduled instant at or before `now` (UTC), or None when the schedule is off."""
    parsed = parse_schedule(schedule)
    if parsed is None:
        return None
    days, at = parsed
    today: date = now.astimezone(zone).date()
    for back in range(8):
        day = today - timedelta(days=back)
        if day.weekday() not in days:
            continue
        candidate = datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)
        if candidate <= now:
            return candidate
    return None


def send_due_digests(app: App, client: WebClient | None = None) -> int:
    """Post every digest whose scheduled time has come; returns how many were posted."""
    if client is None:
        if not app.settings.slack_bot_token:
            return 0
        client = web_client(app.settings)
    messenger = Messenger(app, client)
    now = app.clock.now()
    with app.db.session() as session:
        managers = session.execute(
            select(Rep.id, Rep.email, Rep.timezone, Rep.digest_schedule, Rep.last_digest_at, Rep.created_at)
            .where(or_(Rep.role == "manager", Rep.id.in_(select(Rep.manager_id).where(Rep.manager_id.is_not(None)))))
            .order_by(Rep.id)).all()
    posted = 0
    for rep_id, email, zone_name, schedule, last, created in managers:
        try:
            due = latest_occurrence(schedule, _zone(zone_name, app.settings.timezone), now)
        except ValueError as problem:
            log.error("%s: %s; no digest until it is fixed", email, problem)
            continue
        if due is None or due <= (last or created) or now - due > CATCH_UP:
            continue
        if not _claim(app, rep_id, last, now):
            continue  # another process took it
        try:
            slack_id = messenger.slack_id_of(rep_id)
            if slack_id is None:
                log.info("%s has no Slack account; this week's digest is skipped", email)
                continue
            post_digest(app, messenger, rep_id, slack_id)
            posted += 1
        except Exception as error:
            if is_transient(error):
                _claim(app, rep_id, now, last)  # give it back for the next run
                log.warning("digest for %s not posted (%s); tried again next run", email, slack_error(error))
            else:
                log.error("digest for %s dropped: %s", email, slack_error(error))
    return posted


def _claim(app: App, rep_id: int, expected: datetime | None, to: datetime | None) -> bool:
    condition = Rep.last_digest_at.is_(None) if expected is None else Rep.last_digest_at == expected
    with app.db.session() as session:
        result = session.execute(update(Rep).where(Rep.id == rep_id, condition).values(last_digest_at=to))
        return result.rowcount == 1
