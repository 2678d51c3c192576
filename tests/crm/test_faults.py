"""Salesforce faults during the sync: each Cadence event still becomes exactly one Task."""
from __future__ import annotations

import logging
from collections import Counter

from tests.support.crm import ADMIN, launch, read_folder, setup, status

STEPS = "\n".join(f"""  - day: {day}
    action: auto
    send: at_time
    time: "09:00"
    subject: "Step {day} for {{{{ first_name }}}}"
    body: "Note {day} for {{{{ first_name }}}}."
""" for day in range(1, 6))
CAMPAIGN = f"name: Faults\ntimezone: UTC\nsteps:\n{STEPS}"
CONTACTS = "email,first_name\nnora@prospect.example,Nora\ntaro@prospect.example,Taro\n"


def day(n: int, time: str = "09:00") -> str:
    return f"2026-{'11-30' if n == 1 else f'12-0{n - 1}'}T{time}:00Z"


def subjects(fake) -> Counter:
    return Counter((t["WhoId"], t["Subject"]) for t in fake.records("Task"))


def test_each_fault_leaves_exactly_one_task_per_event(cli, org, caplog):
    fake = org.fake
    nora, taro = fake.add_contact("nora@prospect.example", "Nora"), fake.add_lead("taro@prospect.example", "Taro")
    maildir = setup(cli, org, CAMPAIGN, CONTACTS)
    launch(cli, "Faults")

    # A 5xx once, before Salesforce wrote anything: the rows wait in doubt, then are written once.
    fake.fail_next(1, 503)
    cli.ok("worker", "--once", "--now", day(1))
    assert len(read_folder(maildir, ".Sent")) == 2  # sending went on
    report = status(cli, day(1, "09:01"))
    assert fake.records("Task") == [] and report["backlog"] == {"pending": 0, "in_doubt": 2, "total": 2}
    assert "503" in report["last_error"]
    cli.ok("worker", "--once", "--now", day(1, "09:05"))
    assert set(subjects(fake).values()) == {1} and len(fake.records("Task")) == 2

    # The answer is lost after Salesforce committed: found again by standard fields, not written twice.
    fake.lose_next_answer()
    cli.ok("worker", "--once", "--now", day(2))
    assert len(fake.records("Task")) == 4
    assert status(cli, day(2, "09:01"))["backlog"]["in_doubt"] == 2
    cli.ok("worker", "--once", "--now", day(2, "09:05"))
    assert len(fake.records("Task")) == 4 and set(subjects(fake).values()) == {1}
    assert status(cli, day(2, "09:06"))["backlog"]["total"] == 0

    # An expired session: a new access token, then the same call again.
    fake.expire_sessions()
    cli.ok("worker", "--once", "--now", day(3))
    assert len(fake.records("Task")) == 6

    # A revoked refresh token: one log line, the connection is disconnected, sending goes on and
    # events wait; after reconnecting they are written.
    fake.revoke_refresh_tokens()
    with caplog.at_level(logging.WARNING, logger="cadence.crm"):
        cli.ok("worker", "--once", "--now", day(4))
        cli.ok("worker", "--once", "--now", day(4, "09:10"))
    assert len([r for r in caplog.records if "Salesforce disconnected" in r.getMessage()]) == 1
    assert len(read_folder(maildir, ".Sent")) == 8
    report = status(cli, day(4, "09:11"))
    assert not report["connected"] and report["health"] == "disconnected"
    assert "invalid_grant" in report["reason"] and "needs sign-in" in report["reason"]
    assert report["backlog"]["total"] == 2 and len(fake.records("Task")) == 6
    text = cli.ok("crm", "status", now=day(4, "09:11"))
    assert "salesforce: disconnected" in text and "needs sign-in" in text
    cli.ok("crm", "connect", "salesforce", "--owner", ADMIN, "--refresh-token-file",
           org.refresh_token_file(cli, "new-token.txt"), now=day(4, "10:00"))
    cli.ok("worker", "--once", "--now", day(4, "10:00"))
    assert len(fake.records("Task")) == 8 and status(cli, day(4, "10:01"))["connected"]

    # The org's API limit: the lane waits (15 minutes), writes nothing meanwhile, then catches up.
    fake.api_limit = fake.api_used
    cli.ok("worker", "--once", "--now", day(5))
    report = status(cli, day(5, "09:01"))
    assert report["throttled_until"] == "2026-12-04T09:15:00+00:00" and report["backlog"]["total"] == 2
    assert "REQUEST_LIMIT_EXCEEDED" in report["last_error"]
    fake.api_limit = 100000
    calls = len(fake.calls)
    cli.ok("worker", "--once", "--now", day(5, "09:10"))
    assert len(fake.calls) == calls and len(fake.records("Task")) == 8  # still waiting
    cli.ok("worker", "--once", "--now", day(5, "09:16"))
    assert len(fake.records("Task")) == 10

    tasks = subjects(fake)
    assert set(tasks.values()) == {1} and len(tasks) == 10
    assert {s for (who, s) in tasks if who == nora} == {f"Email: Step {n} for Nora" for n in range(1, 6)}
    assert {s for (who, s) in tasks if who == taro} == {f"Email: Step {n} for Taro" for n in range(1, 6)}


def test_the_lane_slows_down_as_the_api_usage_nears_the_limit(cli, org):
    fake = org.fake
    fake.add_contact("nora@prospect.example", "Nora")
    fake.add_contact("taro@prospect.example", "Taro")
    setup(cli, org, CAMPAIGN, CONTACTS)
    launch(cli, "Faults")
    fake.api_limit, fake.api_used = 100, 93
    cli.ok("worker", "--once", "--now", day(1))
    report = status(cli, day(1, "09:01"))
    assert len(fake.records("Task")) == 2  # what waited is written …
    assert report["throttled_until"] == "2026-11-30T09:05:00+00:00"  # … then the lane waits
    assert report["api_usage"]["limit"] == 100 and report["api_usage"]["used"] >= 95
