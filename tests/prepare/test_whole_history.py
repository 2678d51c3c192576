"""Exclusions look at the whole history: a reply in any campaign, finished or not, excludes the
person from later campaigns, and is checked again at the moment of sending (through the CLI on
Maildir, on SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import datetime

from connectors.maildir import MaildirPeople
from tests.support.prepare import (
    LAUNCH,
    REP,
    base,
    campaign,
    campaign_yaml,
    contacts,
    prepared,
    recipients,
    sent_messages,
    status,
)

ONE_STEP = """\
name: {name}
timezone: America/New_York
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, one question.</p>"
"""
PEOPLE = ["ana@prospect.example,Ana,AnaCo", "ben@prospect.example,Ben,BenCo"]
HALF_PAST = "2026-11-30T14:30:00Z"
NEXT_DAY = "2026-12-01T14:00:00Z"  # Tuesday 09:00 in New York


def _people(maildir, at: str) -> MaildirPeople:
    return MaildirPeople(maildir, clock_now=lambda: datetime.fromisoformat(at.replace("Z", "+00:00")))


def _sent_to(maildir, address: str, subject_start: str = "") -> list:
    return [m for m in sent_messages(maildir)
            if str(m["To"].addresses[0].addr_spec) == address and str(m["Subject"]).startswith(subject_start)]


def test_a_reply_to_a_finished_campaign_excludes_the_person_from_later_ones(cli):
    maildir = base(cli)
    contacts(cli, PEOPLE)
    campaign(cli, ONE_STEP.format(name="Once"), name="once.yml")
    cli.ok("enroll", "Once", "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "Once")
    cli.ok("send", "Once", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert status(cli, "Once", now=LAUNCH)["state"] == "finished"  # every sequence carried out
    (first,) = _sent_to(maildir, "ana@prospect.example")
    _people(maildir, HALF_PAST).contact_replies(first["Message-ID"], from_address="ana@prospect.example",
                                                body="Yes, interested - call me Thursday.")
    cli.ok("worker", "--once", "--now", HALF_PAST)
    assert "ana@prospect.example replied" in cli.ok("logs", "Once")

    campaign(cli, campaign_yaml("Later"), name="later.yml")
    cli.ok("enroll", "Later", "--all", "--mailbox", REP, now=NEXT_DAY)
    result = prepared(cli, "Later", now=NEXT_DAY)
    assert (result["to_deliver"], result["to_exclude"], result["exclusions"]) == (1, 1, {"replied": 1}), result
    cli.ok("send", "Later", now=NEXT_DAY)
    cli.ok("worker", "--once", "--now", NEXT_DAY)
    assert [m["To"].addresses[0].addr_spec for m in sent_messages(maildir) if m["Subject"].startswith("Hello")
            and "one question" not in m.get_body(("plain",)).get_content()] == ["ben@prospect.example"]
    assert "ana@prospect.example: excluded (replied)" in cli.ok("logs", "Later")


def test_a_reply_between_prepare_and_send_of_another_campaign_stops_that_send(cli):
    maildir = base(cli)
    contacts(cli, PEOPLE)
    campaign(cli, ONE_STEP.format(name="First"), name="first.yml")
    campaign(cli, campaign_yaml("Second", exclusions="{active_elsewhere: false}"), name="second.yml")
    for name in ("First", "Second"):
        cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    prepared(cli, "First")
    cli.ok("send", "First", now=LAUNCH)
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert prepared(cli, "Second")["to_deliver"] == 2  # nobody had answered yet
    (first,) = _sent_to(maildir, "ana@prospect.example")
    _people(maildir, HALF_PAST).contact_replies(first["Message-ID"], from_address="ana@prospect.example",
                                                body="Please do not contact me again.")
    cli.ok("send", "Second", now=NEXT_DAY)
    cli.ok("worker", "--once", "--now", NEXT_DAY)  # syncs the reply, then sends what is due
    assert len(_sent_to(maildir, "ana@prospect.example")) == 1  # only First's email, before the reply
    assert len(_sent_to(maildir, "ben@prospect.example")) == 2  # First's, and Second's first step
    logs = cli.ok("logs", "Second")
    assert "ana@prospect.example: not sent: replied" in logs
    assert status(cli, "Second", now=NEXT_DAY)["delivery"]["sent"] == 1
    assert recipients(maildir).count("ana@prospect.example") == 1
