"""A whole campaign walked through its days with the real CLI and a real Maildir, on both databases."""
from __future__ import annotations

import json
import mailbox as stdlib_mailbox
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

from connectors.maildir import MaildirPeople
from tests.support.maildir import by_recipient, read_folder

CAMPAIGN = """\
name: Flow
timezone: America/New_York
send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:30"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}, see <a href='https://example.org/x'>this</a>.</p>"
  - day: 3
    action: task
    send: at_time
    time: "10:00"
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }}, an idea for {{ company }}."
  - day: 5
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{ first_name }}."
"""
CONTACTS = """\
email,first_name,company,timezone,country
ny@prospect.example,Nora,NYCo,America/New_York,US
ldn@prospect.example,Leo,LondonCo,Europe/London,GB
tyo@prospect.example,Taro,TokyoCo,Asia/Tokyo,JP
"""
REP = "rita@acme.example"


def setup_campaign(cli) -> Path:
    maildir = cli.home / "maildir"
    (cli.home / "flow.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "contacts.csv").write_text(CONTACTS, encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Rep")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(maildir))
    cli.ok("campaign", "import", str(cli.home / "flow.yml"))
    cli.ok("contacts", "import", str(cli.home / "contacts.csv"))
    return maildir


def test_a_campaign_runs_through_its_days(cli):
    maildir = setup_campaign(cli)
    launch = "2026-11-30T05:00:00Z"  # Monday: 00:00 New York, 05:00 London, 14:00 Tokyo
    cli.ok("enroll", "Flow", "--all", "--mailbox", REP, now=launch)
    prepared = json.loads(cli.ok("prepare", "Flow", "--json", now=launch))
    assert (prepared["targeted"], prepared["to_deliver"], prepared["to_exclude"]) == (3, 3, 0)
    cli.ok("send", "Flow", now=launch)

    cli.ok("worker", "--once", "--now", launch)  # Tokyo: 09:30 already past at launch → now
    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert list(sent) == ["tyo@prospect.example"]

    cli.ok("worker", "--once", "--now", "2026-11-30T14:30:00Z")  # 09:30 in London and New York
    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert set(sent) == {"ny@prospect.example", "ldn@prospect.example", "tyo@prospect.example"}
    first = sent["ny@prospect.example"][0]
    assert first["Subject"] == "Hello Nora"
    assert first["List-Unsubscribe"].startswith("<https://cadence.test/u/")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = first.get_body(("html",)).get_content()
    assert "https://cadence.test/t/c/" in html and "https://cadence.test/t/o/" in html
    assert "example.org/x" not in html  # the link is rewritten, the target stays on our side
    plain = first.get_body(("plain",)).get_content()
    assert "https://example.org/x" in plain  # text part: no tracking
    assert "Unsubscribe: " + first["List-Unsubscribe"].strip("<>") in plain  # a visible link too

    status = json.loads(cli.ok("status", "Flow", "--json", now="2026-11-30T15:00:00Z"))
    assert status["state"] == "sending" and status["delivery"]["sent"] == 3
    assert status["steps"][0]["sent"] == 3

    # Day 3 at 10:00 local: tasks become drafts in the rep's mailbox.
    cli.ok("worker", "--once", "--now", "2026-12-02T15:05:00Z")
    drafts = by_recipient(read_folder(maildir, ".Drafts"))
    assert set(drafts) == {"ny@prospect.example", "ldn@prospect.example", "tyo@prospect.example"}
    assert drafts["ny@prospect.example"][0]["Subject"] == "Idea for NYCo"
    open_tasks = json.loads(cli.ok("tasks", "--rep", REP, "--json"))
    assert {t["contact"] for t in open_tasks} == set(drafts) and all(t["draft_link"] for t in open_tasks)

    people = MaildirPeople(maildir, clock_now=lambda: datetime(2026, 12, 2, 15, 30, tzinfo=timezone.utc))
    tasks = {t["contact"]: t for t in open_tasks}
    ny_draft = drafts["ny@prospect.example"][0]
    ldn_first = sent["ldn@prospect.example"][0]
    # New York: the rep sends the draft from their mail client. London: the prospect replies
    # before the rep acts. Tokyo: the rep skips the task.
    people.rep_sends_draft(_key_of(maildir / ".Drafts", ny_draft["Message-ID"]))
    people.contact_replies(ldn_first["Message-ID"], from_address="ldn@prospect.example", body="Yes, call me.")
    assert "skipped" in cli.ok("task", "skip", str(tasks["tyo@prospect.example"]["id"]), now="2026-12-02T16:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-02T16:00:00Z")

    status = json.loads(cli.ok("status", "Flow", "--json", now="2026-12-02T16:00:00Z"))
    assert status["delivery"]["replies"] == 1
    assert status["delivery"]["tasks_done"] == 1 and status["delivery"]["tasks_open"] == 0
    logs = cli.ok("logs", "Flow")
    assert "draft_stale" in logs and "task_done" in logs and "replied" in logs

    # Day 5: New York's step 3 goes out at the time the rep sent step 2, threaded to it.
    cli.ok("worker", "--once", "--now", "2026-12-04T23:00:00Z")
    sent = by_recipient(read_folder(maildir, ".Sent"))
    assert len(sent["ldn@prospect.example"]) == 1  # replied: nothing more
    ny = sorted(sent["ny@prospect.example"], key=lambda m: m["Date"].datetime)
    assert [m["Subject"] for m in ny] == ["Hello Nora", "Idea for NYCo", "Re: Idea for NYCo"]
    follow_up = ny[2]
    assert follow_up["In-Reply-To"] == ny[1]["Message-ID"]
    # Step 2 began its own thread (its own subject, not threaded): References name it alone (RFC 5322 3.6.4).
    assert follow_up["References"].split() == [ny[1]["Message-ID"]]
    body = follow_up.get_body(("plain",)).get_content()
    assert "Bumping this, Nora." in body and "> Hi Nora, an idea for NYCo." in body
    # Tokyo skipped step 2 at 01:00 Thursday local time: step 3 is two days later, Saturday,
    # outside the window, so it goes Monday 08:00 Tokyo, replying to step 1, which really went out.
    assert len(sent["tyo@prospect.example"]) == 1
    status = json.loads(cli.ok("status", "Flow", "--json", now="2026-12-05T00:00:00Z"))
    assert status["state"] == "sending" and status["next_due"] == "2026-12-06T23:00:00Z"
    cli.ok("worker", "--once", "--now", "2026-12-06T23:00:00Z")
    tyo = sorted(by_recipient(read_folder(maildir, ".Sent"))["tyo@prospect.example"], key=lambda m: m["Date"].datetime)
    assert len(tyo) == 2 and tyo[1]["In-Reply-To"] == tyo[0]["Message-ID"]
    assert tyo[1]["Subject"] == "Re: Hello Taro"  # the subject of the conversation it joins
    assert json.loads(cli.ok("status", "Flow", "--json", now="2026-12-07T00:00:00Z"))["state"] == "finished"


def _key_of(folder: Path, message_id: str) -> str:
    box = stdlib_mailbox.Maildir(folder, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    for key in box.keys():
        if parser.parsebytes(box.get_bytes(key), headersonly=True)["Message-ID"] == message_id:
            return key
    raise AssertionError(f"no {message_id} in {folder}")


def test_enrolling_without_a_send_time_is_refused_when_the_first_step_asks_for_one(sqlite_cli):
    cli = sqlite_cli
    setup_campaign(cli)
    (cli.home / "choose.yml").write_text(CAMPAIGN.replace("name: Flow", "name: Choose").replace(
        "    send: at_time\n    time: \"09:30\"", "    send: choose_at_launch", 1), encoding="utf-8")
    cli.ok("campaign", "import", str(cli.home / "choose.yml"))
    result = cli("enroll", "Choose", "--all", "--mailbox", REP)
    assert result.code == 1 and "--send-at" in result.err
    cli.ok("enroll", "Choose", "--all", "--mailbox", REP, "--send-at", "2026-12-01 11:15", now="2026-11-30T05:00:00Z")
    cli.ok("prepare", "Choose", now="2026-11-30T05:00:00Z")
    cli.ok("send", "Choose", now="2026-11-30T05:00:00Z")
    status = json.loads(cli.ok("status", "Choose", "--json", now="2026-11-30T05:00:00Z"))
    assert status["next_due"] == "2026-12-01T02:15:00Z"  # 11:15 in Tokyo comes first
