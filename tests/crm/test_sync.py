"""CRM sync end to end: the real CLI on a Maildir mailbox, a fake Salesforce org over HTTPS."""
from __future__ import annotations

import json
import mailbox as stdlib_mailbox
from datetime import datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

from connectors.maildir import MaildirPeople
from tests.support.crm import REP, launch, read_folder, setup, status


def key_of(folder: Path, message_id: str) -> str:
    box = stdlib_mailbox.Maildir(folder, factory=None, create=False)
    parser = BytesParser(policy=policy.default)
    for key in box.keys():
        if parser.parsebytes(box.get_bytes(key), headersonly=True)["Message-ID"] == message_id:
            return key
    raise AssertionError(f"no {message_id} in {folder}")


def test_tasks_sends_replies_and_unmatched_people_become_salesforce_tasks(cli, org):
    fake = org.fake
    nora = fake.add_contact("Nora@Prospect.example", "Nora", "North", account="NYCo")
    leo = fake.add_contact("leo@prospect.example", "Leo", "Lane", account="LondonCo")
    taro = fake.add_lead("taro@prospect.example", "Taro", "Tanaka", company="TokyoCo")
    fake.add_lead("leo@prospect.example", "Leo", "Lead")  # a Contact wins over a Lead
    bea = fake.add_contact("bea@prospect.example", "Bea", "Bounce", account="BCo")
    maildir = setup(cli, org)
    launch(cli)

    # Day 1, 09:00: the automatic step goes out to all five; four have a Contact or Lead.
    cli.ok("worker", "--once", "--now", "2026-11-30T09:00:00Z")
    assert len(read_folder(maildir, ".Sent")) == 5
    for who, name in ((nora, "Nora"), (leo, "Leo"), (taro, "Taro"), (bea, "Bea")):
        [task] = fake.tasks_for(who)
        assert task["Subject"] == f"Email: Hello {name}" and task["Status"] == "Completed"
        assert task["OwnerId"] == org.rep_user and task["TaskSubtype"] == "Email"
        assert task["ActivityDate"] == "2026-11-30"
        assert task["Description"].startswith(f"Hi {name}, a question for") and "<p>" not in task["Description"]
    assert len(fake.records("Task")) == 4  # nothing for the unmatched person
    assert len(fake.records("Contact")) == 3 and len(fake.records("Lead")) == 2  # nothing created either
    report = status(cli, "2026-11-30T09:01:00Z")
    assert report["connected"] and report["health"] == "connected"
    assert report["unmatched"] == [{"email": "nobody@prospect.example", "events": 1}]
    assert report["backlog"]["total"] == 0 and report["written"] == 4
    text = cli.ok("crm", "status", now="2026-11-30T09:01:00Z")
    assert "salesforce: connected" in text and "nobody@prospect.example" in text and "waiting to sync: 0" in text

    # Bea's address bounces. Day 2, 10:00: the task step becomes drafts and open Tasks.
    bounced = {str(m["To"].addresses[0].addr_spec): m for m in read_folder(maildir, ".Sent")}["bea@prospect.example"]
    MaildirPeople(maildir, clock_now=lambda: datetime(2026, 11, 30, 9, 30, tzinfo=timezone.utc)).bounce(
        bounced["Message-ID"], recipient="bea@prospect.example")
    cli.ok("worker", "--once", "--now", "2026-12-01T10:00:00Z")
    bea_tasks = {t["Subject"]: t for t in fake.tasks_for(bea)}
    assert set(bea_tasks) == {"Email: Hello Bea", "Bounced: Hello Bea"}  # and no task: the sequence ended
    assert bea_tasks["Bounced: Hello Bea"]["Status"] == "Completed" and "550" in bea_tasks["Bounced: Hello Bea"][
        "Description"]
    for who, company in ((nora, "NYCo"), (leo, "LondonCo"), (taro, "TokyoCo")):
        open_task = [t for t in fake.tasks_for(who) if t["Status"] == "Not Started"]
        assert [(t["Subject"], t["ActivityDate"], t["TaskSubtype"], t["OwnerId"]) for t in open_task] == [
            (f"Email: Idea for {company}", "2026-12-01", "Email", org.rep_user)]
    tasks = {t["contact"]: t for t in json.loads(cli.ok("tasks", "--rep", REP, "--json"))}

    # Nora: the rep sends the draft. Leo replies to step 1 first. Taro: the rep skips the task.
    people = MaildirPeople(maildir, clock_now=lambda: datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc))
    drafts = {str(m["To"].addresses[0].addr_spec): m for m in read_folder(maildir, ".Drafts")}
    people.rep_sends_draft(key_of(maildir / ".Drafts", drafts["nora@prospect.example"]["Message-ID"]))
    sent = {str(m["To"].addresses[0].addr_spec): m for m in read_folder(maildir, ".Sent")}
    people.contact_replies(sent["leo@prospect.example"]["Message-ID"], from_address="leo@prospect.example",
                           body="Yes, call me on Friday.")
    cli.ok("task", "skip", str(tasks["taro@prospect.example"]["id"]), now="2026-12-01T11:30:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-01T12:00:00Z")

    nora_tasks = sorted(fake.tasks_for(nora), key=lambda t: t["Id"])
    assert [(t["Subject"], t["Status"]) for t in nora_tasks] == [("Email: Hello Nora", "Completed"),
                                                                  ("Email: Idea for NYCo", "Completed")]
    assert "an idea for NYCo" in nora_tasks[1]["Description"]  # the same Task, completed: no second one
    leo_tasks = {t["Subject"]: t for t in fake.tasks_for(leo)}
    assert set(leo_tasks) == {"Email: Hello Leo", "Email: Idea for LondonCo", "Reply: Hello Leo"}
    assert leo_tasks["Reply: Hello Leo"]["Status"] == "Completed"
    assert "Yes, call me on Friday." in leo_tasks["Reply: Hello Leo"]["Description"]
    assert leo_tasks["Email: Idea for LondonCo"]["Status"] == "Completed"  # closed: the sequence ended
    assert leo_tasks["Email: Idea for LondonCo"]["Description"].startswith("Closed in Cadence, not sent")
    taro_tasks = {t["Subject"]: t for t in fake.tasks_for(taro)}
    assert set(taro_tasks) == {"Email: Hello Taro", "Email: Idea for TokyoCo"}
    assert taro_tasks["Email: Idea for TokyoCo"]["Status"] == "Completed"
    assert taro_tasks["Email: Idea for TokyoCo"]["Description"].startswith("Skipped in Cadence")
    assert len(fake.records("Task")) == 9
    report = status(cli, "2026-12-01T12:01:00Z")
    assert report["backlog"]["total"] == 0 and report["unmatched"][0]["email"] == "nobody@prospect.example"
    assert report["api_usage"]["used"] > 0

    # Another pass writes nothing again.
    cli.ok("worker", "--once", "--now", "2026-12-01T12:30:00Z")
    assert len(fake.records("Task")) == 9
