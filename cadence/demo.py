"""`cadence demo`: a whole campaign, offline, on the embedded defaults (SQLite + Maildir).

The clock is a `FixedClock` walked hour by hour through the campaign's days; the people around
the rep's mailbox (prospects replying, a bouncing server, the rep sending drafts from a mail
client) act on the Maildir files as their own programs would.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from cadence.app import App
from cadence.services import audience, campaigns, directory, engagement, imports, preparing, reporting, tasks
from cadence.worker.passes import run_pass
from cadence.settings import Settings
from connectors.maildir import MaildirPeople
from core.clock import FixedClock
from core.tracking import sign_token
from core.vocabulary import MessageState
from store.models import Contact, Event, Message

START = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)  # a Monday, 00:00 in New York
DAYS = 8
REP = "rita@acme.example"


def _data(name: str) -> Path:
    return Path(str(resources.files("cadence") / "demo_data" / name))


def run_demo(console: Console, home: Path | None = None) -> None:
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="cadence-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(CADENCE_HOME=str(home), CADENCE_DATABASE_URL=f"sqlite:///{home / 'cadence.db'}",
                        CADENCE_TIMEZONE="America/New_York")
    clock = FixedClock(START)
    app = App.from_settings(settings, clock=clock)
    maildir = home / "maildir" / REP
    people = MaildirPeople(maildir, clock_now=clock.now)
    say = console.print

    say(f"[bold]Cadence demo[/bold] in {home} (SQLite + Maildir, clock starts {START:%a %Y-%m-%d %H:%M} UTC)")
    directory.add_rep(app, email="maria@acme.example", name="Maria Manager", role="manager",
                      timezone="America/New_York")
    directory.add_rep(app, email=REP, name="Rita Rep", manager="maria@acme.example", timezone="America/New_York")
    directory.add_mailbox(app, provider="maildir", address=REP, owner=REP, path=str(maildir))
    name, _ = imports.import_campaign(app, _data("campaign.yml"))
    report = imports.import_contacts(app, _data("contacts.csv"))
    say(f"campaign [bold]{name}[/bold]: day 1 auto at 09:30, day 3 task at 10:00, day 5 auto same time as "
        f"previous, threaded; contacts imported {report.imported}")
    with app.db.session() as session:
        olive = session.scalar(select(Contact.id).where(Contact.email == "optout@former.example"))
    engagement.unsubscribe(app, olive)  # an earlier unsubscribe, so preparation excludes her
    audience.enroll(app, name, mailbox=REP, everyone=True)
    result = preparing.prepare(app, name)
    kpis = result.kpis()
    say(f"prepared: targeted {kpis['targeted']}, to deliver {kpis['to_deliver']}, to exclude {kpis['to_exclude']} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kpis['exclusions'].items()))}), {kpis['messages']} messages "
        f"rendered, {kpis['errors']} error(s)")
    campaigns.send_campaign(app, name)
    say("sending started\n")

    scripted = _script(app, people, name)
    day_events: Counter = Counter()
    last_event = _last_event_id(app)
    current_day = clock.now().date()
    for hour in range(DAYS * 24 + 1):
        now = START + timedelta(hours=hour)
        clock.set(now)
        if now.date() != current_day:
            _print_day(say, current_day, day_events)
            day_events, current_day = Counter(), now.date()
        for action in scripted.pop(now, []):
            say(f"  [dim]{now:%a %H:%M} UTC[/dim] {action()}")
        run_pass(app, worker="demo")
        last_event = _collect(app, last_event, day_events, say)
    _print_day(say, current_day, day_events)
    _print_kpis(say, reporting.campaign_status(app, name))
    say(f"\nThe rep's mailbox is a Maildir at [bold]{maildir}[/bold] (Sent in .Sent, drafts in .Drafts, "
        "replies in new/).\nOpen it with e.g. `mutt -f` or Thunderbird, or inspect it with "
        f"`CADENCE_HOME={home} cadence status '{name}'` and `cadence logs '{name}'`.")


def _script(app: App, people: MaildirPeople, campaign: str) -> dict[datetime, list]:
    """What the world does, by hour: replies, an out-of-office, a bounce, the rep working tasks."""

    def sent_to(email: str, position: int = 1) -> Message:
        with app.db.session() as session:
            return session.scalar(select(Message).where(Message.to_address == email, Message.position == position))

    def reply(email: str, body: str):
        def act():
            people.contact_replies(sent_to(email).message_id, from_address=email, body=body)
            return f"{email} replies: “{body}”"
        return act

    def out_of_office(email: str):
        def act():
            people.contact_replies(sent_to(email).message_id, from_address=email, body="I am away until Monday.",
                                   subject="Automatic reply: away", headers={"Auto-Submitted": "auto-replied"})
            return f"{email} sends an out-of-office auto-reply"
        return act

    def bounce(email: str):
        def act():
            people.bounce(sent_to(email).message_id, recipient=email, diagnostic="550 5.1.1 mailbox unavailable")
            return f"the mail server for {email} bounces the first email"
        return act

    def engage():
        opened = clicked = 0
        keys = app.settings.secret_keys
        with app.db.session() as session:
            first_emails = session.scalars(select(Message).where(
                Message.position == 1, Message.state == MessageState.SENT.value).order_by(Message.id)).all()
        for index, message in enumerate(first_emails):
            if index % 3 == 2:
                continue
            found = engagement.resolve(app, sign_token(keys[0], "o", message.id), "o")
            if found:
                engagement.record_open(app, found[1])
                opened += 1
            if index % 4 == 0 and message.links:
                found = engagement.resolve(app, sign_token(keys[0], "c", message.id, 0), "c")
                if found:
                    engagement.record_click(app, found[1], found[0].link_id)
                    clicked += 1
        return f"prospects open {opened} first emails and {clicked} click the overview link"

    def work_tasks(edit_first: bool):
        def act():
            open_tasks = tasks.list_tasks(app, rep=REP)
            done: Counter = Counter()
            for index, task in enumerate(open_tasks):
                if task.contact == "linus@kernel.example":
                    tasks.skip_task(app, task.id)
                    done[f"skips task {task.id} ({task.contact})"] += 1
                elif task.contact == "guido@python.example":
                    tasks.send_task(app, task.id)
                    done[f"sends task {task.id} with `cadence task send`"] += 1
                else:
                    with app.db.session() as session:
                        draft_id = session.scalar(select(Message.provider_draft_id).where(
                            Message.to_address == task.contact, Message.position == task.position))
                    people.rep_sends_draft(draft_id, new_subject=f"{task.subject} (quick idea)"
                                           if edit_first and index == 0 else None)
                    done["sends drafts from her mail client"] += 1
            summary = "; ".join(f"{what} ×{n}" if n > 1 else what for what, n in done.items())
            return "Rita " + (summary or "has no open task")
        return act

    def at(day: int, hour_utc: int) -> datetime:
        return START + timedelta(days=day - 1, hours=hour_utc - START.hour)

    return {
        at(1, 20): [engage],
        at(2, 14): [reply("grace@cobol.example", "Sounds interesting, can we talk Thursday?"),
                    out_of_office("alan@bletchley.example"), bounce("dennis@c.example")],
        at(2, 21): [reply("yukihiro@ruby.example", "Not for us right now, thanks.")],
        at(3, 17): [work_tasks(edit_first=True)],
        at(4, 16): [work_tasks(edit_first=False)],
    }


def _last_event_id(app: App) -> int:
    with app.db.session() as session:
        return session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0


NOTABLE = {"replied", "auto_replied", "bounced", "draft_stale", "task_done", "task_skipped", "deferred", "failed",
           "in_doubt", "campaign_state", "unsubscribed"}


def _collect(app: App, since: int, counts: Counter, say) -> int:
    with app.db.session() as session:
        events = session.execute(select(Event.id, Event.kind, Event.detail).where(Event.id > since)
                                 .order_by(Event.id)).all()
    for event_id, kind, detail in events:
        counts[kind] += 1
        if kind in NOTABLE:
            say(f"    [cyan]{kind}[/cyan] {detail}", markup=True, highlight=False)
        since = event_id
    return since


def _print_day(say, day, counts: Counter) -> None:
    shown = {k: v for k, v in counts.items() if k in ("sent", "task_created", "task_done", "task_skipped", "replied",
                                                       "bounced", "opened", "clicked", "finished")}
    summary = ", ".join(f"{k} {v}" for k, v in sorted(shown.items())) or "nothing due"
    say(f"[bold]{day:%a %Y-%m-%d}[/bold]: {summary}")


def _print_kpis(say, status: dict) -> None:
    d = status["delivery"]
    say(f"\n[bold]{status['campaign']}[/bold] is {status['state']}")
    table = Table("KPI", "value")
    for label, value in (("sent", d["sent"]), ("delivered", f"{d['delivered']} ({d['delivered_pct']}%)"),
                         ("opens", f"{d['opens']} ({d['opens_pct']}%)"), ("clicks", f"{d['clicks']} ({d['clicks_pct']}%)"),
                         ("replies", d["replies"]), ("bounces", d["bounces"]), ("unsubscribes", d["unsubscribes"]),
                         ("tasks open / done", f"{d['tasks_open']} / {d['tasks_done']}")):
        table.add_row(label, str(value))
    say(table)
    steps = Table("step", "sent", "delivered", "opens", "clicks", "replies", "open tasks")
    for s in status["steps"]:
        steps.add_row(*(str(s[k]) for k in ("position", "sent", "delivered", "opens", "clicks", "replies", "tasks_open")))
    say(steps)
