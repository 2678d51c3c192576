"""The read side's `world` fixture, built on tests/support/reads.py."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from cadence.app import App
from cadence.services import engagement
from cadence.settings import Settings
from connectors.maildir import MaildirPeople
from core.clock import FixedClock
from store.models import Message
from tests.support.reads import (
    CAMPAIGN,
    CLICK,
    CONTACTS,
    FIRST_STEP,
    LAUNCH,
    NOW,
    PIXEL,
    REPS,
    SYNCED,
    TASKS,
    World,
    sent_email,
)


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
