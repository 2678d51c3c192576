"""Logs and status at scale (issue 14 item 6): filters, collapsed repeats, lines naming the contact,
deferred messages by cause and when the backlog clears, a scheduled start, prepare's exclusions
with the missing variables and its warnings."""
from __future__ import annotations

import json
import sqlite3

REP = "rita@acme.example"
CAMPAIGN = """\
name: Scale
timezone: UTC
daily_limit: 2
send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hi {{ first_name }}"
    body: "<p>An idea for {{ company }}.</p>"
"""
PEOPLE = ["ada", "bob", "cy", "dee", "eve", "fay"]
MONDAY = "2026-11-30T07:00:00Z"


def setup(cli, *, public_url: str | None = None) -> None:
    if public_url:
        cli.setenv("CADENCE_PUBLIC_URL", public_url)
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    rows = "".join(f"{p}@prospect.example,{p.title()},{p.title()}Co\n" for p in PEOPLE)
    (cli.home / "p.csv").write_text("email,first_name,company\n" + rows + "nocompany@prospect.example,Nic,\n",
                                    encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP)
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "p.csv"))
    cli.ok("enroll", "Scale", "--all", "--mailbox", REP, now=MONDAY)


def test_prepare_names_missing_variables_and_says_its_warnings(sqlite_cli):
    setup(sqlite_cli, public_url="http://cadence.example")
    result = sqlite_cli("prepare", "Scale", now=MONDAY)
    assert result.code == 0 and "Traceback" not in result.err
    assert "missing_variable: 1 (company 1)" in result.out
    assert "warning: CADENCE_PUBLIC_URL is http://cadence.example, not https" in result.err
    prepared = json.loads(sqlite_cli.ok("prepare", "Scale", "--json", now=MONDAY))
    assert prepared["missing_variables"] == {"company": 1}
    logs = sqlite_cli.ok("logs", "Scale")
    assert "preparation_warning" in logs
    assert not any("preparation_started" in line and "CADENCE_PUBLIC_URL" in line for line in logs.splitlines())


def test_deferred_messages_by_cause_backlog_and_readable_logs(sqlite_cli):
    setup(sqlite_cli)
    sqlite_cli.ok("prepare", "Scale", now=MONDAY)
    sqlite_cli.ok("send", "Scale", now=MONDAY)
    sqlite_cli.ok("worker", "--once", "--now", "2026-11-30T09:00:00Z")

    status = json.loads(sqlite_cli.ok("status", "Scale", "--json", now="2026-11-30T09:05:00Z"))
    assert status["delivery"]["sent"] == 2 and status["delivery"]["deferred"] == 4
    # the --json document carries what the text says: deferred by cause and when the backlog clears
    assert status["delivery"]["deferred_by_cause"] == {"daily_limit": 4}
    assert status["backlog"] == [{"mailbox": REP, "pending": 4, "per_day": 2, "sending_days": 2,
                                  "clears_on": "2026-12-02"}]
    assert status["preparation"]["stale"] is False and status["send_at"] is None
    text = sqlite_cli.ok("status", "Scale", now="2026-11-30T09:05:00Z")
    assert "held back: deferred 4 (daily_limit 4)" in text
    assert f"backlog: 4 automatic email(s) from {REP} at 2 a day clear in 2 sending days, on 2026-12-02" in text

    lines = sqlite_cli.ok("logs", "Scale").splitlines()
    deferred = [line for line in lines if " deferred " in line]
    assert len(deferred) == 1 and "(and 3 more alike until" in deferred[0]
    assert " [daily_limit] " in deferred[0]  # the stored cause code, on the line
    with sqlite3.connect(sqlite_cli.home / "cadence.db") as db:  # each deferral stores its cause code
        stored = [json.loads(data) for data, in db.execute("SELECT data FROM events WHERE kind = 'deferred'")]
    assert len(stored) == 4 and all(data["cause"] == "daily_limit" for data in stored)
    scheduled = [line for line in lines if " scheduled " in line]
    assert scheduled and all("@prospect.example" in line for line in scheduled)  # every line names its contact
    every = sqlite_cli.ok("logs", "Scale", "--every").splitlines()
    assert len([line for line in every if " deferred " in line]) == 4

    only = sqlite_cli.ok("logs", "Scale", "--cause", "daily_limit", "--every").splitlines()
    typo = sqlite_cli("logs", "Scale", "--cause", "dailylimit")
    assert typo.code == 0 and typo.out.splitlines() == ["0 line(s), 0 error(s)"]
    assert typo.err.strip() == "note: no line has the cause 'dailylimit'; causes in this log: daily_limit, missing_variable"
    assert len(only) == 5 and all(" deferred " in line for line in only[:-1]) and only[-1] == "4 line(s), 0 error(s)"
    summary = json.loads(sqlite_cli.ok("logs", "Scale", "--summary", "--json"))
    counts = {(r["kind"], r["cause"]): r["count"] for r in summary}
    assert counts[("deferred", "daily_limit")] == 4 and counts[("excluded", "missing_variable")] == 1
    assert counts[("enrolled", None)] == 7
    table = sqlite_cli.ok("logs", "Scale", "--summary")
    assert any(line.split()[:4] == ["4", "warning", "deferred", "daily_limit"] for line in table.splitlines())

    mine = sqlite_cli.ok("logs", "Scale", "--contact", "ADA@prospect.example").splitlines()
    assert mine[:-1] and all("ada@prospect.example" in line for line in mine[:-1])
    assert sqlite_cli.ok("logs", "Scale", "--since", "2026-12-01").splitlines() == ["0 line(s), 0 error(s)"]
    garbled = sqlite_cli("logs", "Scale", "--since", "garbage")
    assert garbled.code == 1 and garbled.err.strip() == (
        "error: --since: 'garbage' is not an ISO date-time such as 2026-11-23T09:30 or 2026-11-23T14:30:00Z")
    ghost = sqlite_cli("logs", "Scale", "--contact", "ghost@prospect.example")
    assert ghost.code == 1 and ghost.err.strip() == "error: --contact: ghost@prospect.example is not enrolled in 'Scale'"


def test_a_scheduled_campaign_shows_when_it_starts(sqlite_cli):
    setup(sqlite_cli)
    sqlite_cli.ok("prepare", "Scale", now=MONDAY)
    sqlite_cli.ok("send", "Scale", "--at", "2026-12-03T08:30:00Z", now=MONDAY)
    status = json.loads(sqlite_cli.ok("status", "Scale", "--json", now=MONDAY))
    assert status["state"] == "scheduled"
    assert status["send_at"] == status["next_due"] == "2026-12-03T08:30:00Z"
    listed = sqlite_cli.ok("campaign", "list")
    assert "2026-12-03T08:30:00Z" in listed.splitlines()[1]
    text = sqlite_cli.ok("status", "Scale", now=MONDAY)
    assert text.splitlines()[0] == "Scale: scheduled   next due: 2026-12-03T08:30:00Z (sending starts)"


def test_explain_says_what_decided_each_step(sqlite_cli):
    setup(sqlite_cli)
    sqlite_cli.ok("prepare", "Scale", now=MONDAY)
    sqlite_cli.ok("send", "Scale", now=MONDAY)
    sqlite_cli.ok("worker", "--once", "--now", "2026-11-30T09:00:00Z")
    explained = {p: json.loads(sqlite_cli.ok("explain", "Scale", "--contact", f"{p}@prospect.example", "--json"))
                 for p in PEOPLE}
    sent = [p for p, e in explained.items() if e["steps"][0]["state"] == "sent"]
    held = [p for p, e in explained.items() if e["steps"][0]["state"] == "scheduled"]
    assert len(sent) == 2 and len(held) == 4
    why = explained[held[0]]["steps"][0]["why"]
    assert why[0] == "rule: day 1, automatic email, at 09:00 in the person's zone"
    assert "send window for automatic emails: mon,tue,wed,thu,fri 08:00-18:00" in why
    assert any("daily_limit of 2" in reason for reason in why)
    assert explained[held[0]]["steps"][0]["due_at"].startswith("2026-12-0")
    assert any(reason.startswith("went out at 2026-11-30T09:00") for reason in explained[sent[0]]["steps"][0]["why"])

    text = sqlite_cli.ok("explain", "Scale", "--contact", "nocompany@prospect.example")
    assert text.splitlines()[0] == f"Scale: nocompany@prospect.example (excluded), from {REP}"
    assert "step 1: excluded, due -" in text and "excluded at preparation (missing_variable)" in text
    assert "company has no value and no default" in text
    missing = sqlite_cli("explain", "Scale", "--contact", "ghost@prospect.example")
    assert missing.code == 1 and "Traceback" not in missing.err and "ghost@prospect.example" in missing.err


def test_a_backlog_clears_from_the_day_its_first_email_is_due(sqlite_cli):
    (sqlite_cli.home / "x.yml").write_text("""\
name: Xmas
timezone: America/New_York
send_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00", skip_holidays: true}
daily_limit: 1
steps:
  - day: 1
    action: auto
    send: choose_at_launch
    subject: "Hi"
    body: "<p>Hello.</p>"
""", encoding="utf-8")
    (sqlite_cli.home / "x.csv").write_text("email,country\n" + "".join(f"{p}@prospect.example,US\n" for p in PEOPLE[:3]),
                                           encoding="utf-8")
    sqlite_cli.ok("init")
    sqlite_cli.ok("rep", "add", "--email", REP)
    sqlite_cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)
    sqlite_cli.ok("campaign", "import", str(sqlite_cli.home / "x.yml"))
    sqlite_cli.ok("contacts", "import", str(sqlite_cli.home / "x.csv"))
    sqlite_cli.ok("enroll", "Xmas", "--all", "--mailbox", REP, "--send-at", "2026-12-25 09:00", now=MONDAY)
    sqlite_cli.ok("prepare", "Xmas", now=MONDAY)
    sqlite_cli.ok("send", "Xmas", now=MONDAY)
    sqlite_cli.ok("worker", "--once", "--now", "2026-12-01T12:00:00Z")  # launched; Christmas moves them to Monday
    status = json.loads(sqlite_cli.ok("status", "Xmas", "--json", now="2026-12-01T12:05:00Z"))
    assert status["next_due"] == "2026-12-28T14:00:00Z"
    # one a day from Monday 28th (not from today): the 28th, 29th and 30th
    assert status["backlog"] == [{"mailbox": REP, "pending": 3, "per_day": 1, "sending_days": 3,
                                  "clears_on": "2026-12-30"}]
    text = sqlite_cli.ok("status", "Xmas", now="2026-12-01T12:05:00Z")
    assert f"backlog: 3 automatic email(s) from {REP} at 1 a day clear in 3 sending days, on 2026-12-30" in text
