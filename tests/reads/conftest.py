"""A small world for the read side, built through the real CLI on SQLite and PostgreSQL.

Mia manages Rita and Bob; Otto is on his own; Ada is an admin. Rita's mailbox sends "Flow" (Nora,
Leo, Taro), Otto's sends "Otto Outreach" (Ana); "Shared" sends from both (Sam from Rita's, Sue
from Otto's). Step 1 is automatic, step 2 a task on day 2. After the first two days: Nora opened
and clicked her first email, Leo replied, Taro's bounced; every task is open.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.services import engagement
from cadence.settings import Settings
from connectors.maildir import MaildirPeople
from connectors.maildir import layout
from core.clock import FixedClock
from store.models import Message

LAUNCH = "2026-11-30T05:00:00Z"  # Monday 00:00 in New York
FIRST_STEP = "2026-11-30T14:35:00Z"  # 09:35 New York: step 1 went out
TASKS = "2026-12-01T15:05:00Z"  # day 2, 10:05 New York: every task is drafted
SYNCED = "2026-12-01T16:00:00Z"
NOW = datetime(2026, 12, 1, 16, 30, tzinfo=timezone.utc)
WEEK_END = datetime(2026, 12, 3, 0, 0, tzinfo=timezone.utc)

CAMPAIGN = """\
name: {name}
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, see <a href='https://example.org/x'>this</a>.</p>"
  - day: 2
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{{{ company }}}}"
    body: "Hi {{{{ first_name }}}}, an idea for {{{{ company }}}}.\\n\\nWould Tuesday work?"
"""
CONTACTS = """\
email,first_name,last_name,company,timezone
ny@prospect.example,Nora,North,NYCo,America/New_York
ldn@prospect.example,Leo,,LondonCo,America/New_York
tyo@prospect.example,Taro,,TokyoCo,America/New_York
ana@other.example,Ana,,AnaCorp,America/New_York
sam@shared.example,Sam,,SamCo,America/New_York
sue@shared.example,Sue,,SueCo,America/New_York
"""
REPS = (("mia@acme.example", "Mia Manager", ("--role", "manager", "--timezone", "Europe/Paris")),
        ("rita@acme.example", "Rita Rep", ("--manager", "mia@acme.example")),
        ("bob@acme.example", "Bob Builder", ("--manager", "mia@acme.example")),
        ("otto@acme.example", "Otto Other", ()),
        ("ada@acme.example", "Ada Admin", ("--role", "admin")))
PIXEL = re.compile(r'https://cadence\.test/t/o/([A-Za-z0-9_\-]+)')
CLICK = re.compile(r'https://cadence\.test/t/c/([A-Za-z0-9_\-]+)')


@dataclass
class World:
    home: Path
    app: App
    run: object  # run(*args, now=None) -> stdout of `cadence ARGS`

    def maildir(self, rep: str) -> Path:
        return self.home / f"maildir-{rep}"


def sent_email(world: World, rep: str, to: str):
    for path in layout.message_files(world.maildir(rep) / layout.SENT).values():
        message = layout.read_message(path)
        if to in str(message["To"]):
            return message
    raise LookupError(to)


@pytest.fixture
def world(cli) -> World:
    home, run = cli.home, cli.ok
    for name in ("Flow", "Otto Outreach", "Shared"):
        (home / f"{name}.yml").write_text(CAMPAIGN.format(name=name), encoding="utf-8")
    (home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    cli.setenv("CADENCE_PUBLIC_URL", "https://cadence.test")
    run("init", now=LAUNCH)
    for email, name, options in REPS:
        run("rep", "add", "--email", email, "--name", name, *options, now=LAUNCH)
    for rep in ("rita", "otto"):
        run("mailbox", "add", "--provider", "maildir", "--address", f"{rep}@acme.example", "--owner",
            f"{rep}@acme.example", "--path", str(home / f"maildir-{rep}"), now=LAUNCH)
    for name in ("Flow", "Otto Outreach", "Shared"):
        run("campaign", "import", str(home / f"{name}.yml"), now=LAUNCH)
    run("contacts", "import", str(home / "contacts.csv"), now=LAUNCH)
    run("enroll", "Flow", "--emails", "ny@prospect.example,ldn@prospect.example,tyo@prospect.example",
        "--mailbox", "rita@acme.example", now=LAUNCH)
    run("enroll", "Otto Outreach", "--emails", "ana@other.example", "--mailbox", "otto@acme.example", now=LAUNCH)
    run("enroll", "Shared", "--emails", "sam@shared.example", "--mailbox", "rita@acme.example", now=LAUNCH)
    run("enroll", "Shared", "--emails", "sue@shared.example", "--mailbox", "otto@acme.example", now=LAUNCH)
    for name in ("Flow", "Otto Outreach", "Shared"):
        run("prepare", name, now=LAUNCH)
        run("send", name, now=LAUNCH)
    run("worker", "--once", "--now", LAUNCH)
    run("worker", "--once", "--now", FIRST_STEP)
    run("worker", "--once", "--now", TASKS)

    settings = Settings(CADENCE_HOME=str(home), CADENCE_DATABASE_URL=cli.database_url,
                        CADENCE_PUBLIC_URL="https://cadence.test")
    app = App.from_settings(settings, clock=FixedClock(NOW), upgrade=False)
    world = World(home, app, run)
    # Nora opens her first email and clicks its link (what the tracking server records)
    html = sent_email(world, "rita", "ny@prospect.example").get_body(("html",)).get_content()
    _, opened = engagement.resolve(app, PIXEL.search(html).group(1), "o")
    engagement.record_open(app, opened)
    engagement.record_open(app, opened)  # twice: still one contact
    _, clicked = engagement.resolve(app, CLICK.search(html).group(1), "c")
    engagement.record_click(app, clicked)
    # Leo replies, Taro's email bounces; the worker reads both from Rita's mailbox
    with app.db.session() as session:
        first = dict(session.execute(select(Message.to_address, Message.message_id)
                                     .where(Message.position == 1)).all())
    people = MaildirPeople(world.maildir("rita"))
    people.contact_replies(first["ldn@prospect.example"], from_address="ldn@prospect.example", body="Interested!")
    people.bounce(first["tyo@prospect.example"], recipient="tyo@prospect.example")
    run("worker", "--once", "--now", SYNCED)
    yield world
    app.db.dispose()
