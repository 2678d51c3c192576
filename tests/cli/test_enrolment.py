"""Enrolling and unenrolling through the CLI (issue 14 item 8)."""
from __future__ import annotations

import json
import mailbox as stdlib_mailbox

REP = "rita@acme.example"
CAMPAIGN = """\
name: Enrol
timezone: UTC
steps:
  - day: 1
    action: task
    send: at_time
    time: "09:00"
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name }}"
  - day: 3
    action: auto
    send: at_time
    time: "09:00"
    subject: "Following up, {{ first_name }}"
    body: "<p>Any thoughts about {{ company }}?</p>"
"""
MONDAY = "2026-11-30T07:00:00Z"


def setup(cli):
    maildir = cli.home / "box"
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "p.csv").write_text("email,first_name,company\nada@p.example,Ada,AdaCo\nbob@p.example,Bob,BobCo\n"
                                    "cy@p.example,Cy,CyCo\nlate@p.example,Late,\n", encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP)
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP, "--path", str(maildir))
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "p.csv"))
    return maildir


def drafts(maildir) -> list[str]:
    return recipients(maildir, ".Drafts")


def recipients(maildir, folder: str) -> list[str]:
    from email.utils import parseaddr

    box = stdlib_mailbox.Maildir(maildir / folder, factory=None, create=False)
    return sorted(parseaddr(str(box[key]["To"]))[1] for key in box.keys())


def test_unenroll_ends_sequences_and_withdraws_open_drafts(sqlite_cli):
    cli = sqlite_cli
    maildir = setup(cli)
    cli.ok("enroll", "Enrol", "--emails", "ada@p.example,bob@p.example,cy@p.example", "--mailbox", REP, now=MONDAY)
    cli.ok("prepare", "Enrol", now=MONDAY)
    cli.ok("send", "Enrol", now=MONDAY)
    cli.ok("worker", "--once", "--now", "2026-11-30T09:00:00Z")
    assert drafts(maildir) == ["ada@p.example", "bob@p.example", "cy@p.example"]

    said = cli.ok("unenroll", "Enrol", "--emails", "ADA@p.example,ghost@p.example", now="2026-11-30T10:00:00Z")
    assert said.strip() == "Enrol: unenrolled 1, drafts withdrawn 1, not enrolled 1 (ghost@p.example)"
    assert drafts(maildir) == ["bob@p.example", "cy@p.example"]
    assert {t["contact"] for t in json.loads(cli.ok("tasks", "--json"))} == {"bob@p.example", "cy@p.example"}
    (cli.home / "out.csv").write_text("email\ncy@p.example\nada@p.example\n", encoding="utf-8")
    again = cli.ok("unenroll", "Enrol", "--contacts", str(cli.home / "out.csv"), now="2026-11-30T10:05:00Z")
    assert again.strip() == "Enrol: unenrolled 1, drafts withdrawn 1, already ended 1 (ada@p.example (unenrolled))"

    [bob_task] = json.loads(cli.ok("tasks", "--json"))
    cli.ok("task", "skip", str(bob_task["id"]), now="2026-11-30T11:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-12-02T09:00:00Z")  # day 3: only Bob's follow-up goes
    assert recipients(maildir, ".Sent") == ["bob@p.example"]
    explained = json.loads(cli.ok("explain", "Enrol", "--contact", "ada@p.example", "--json"))
    assert explained["sequence"] == "unenrolled" and [s["state"] for s in explained["steps"]] == ["cancelled"] * 2
    assert "unenrolled" in cli.ok("logs", "Enrol", "--contact", "ada@p.example")
    bad = cli("unenroll", "Enrol")
    assert bad.code == 1 and bad.err.strip() == "error: give exactly one of --emails A,B or --contacts FILE"


def test_unenrolling_before_launch_takes_them_out_and_asks_for_a_new_preparation(sqlite_cli):
    cli = sqlite_cli
    setup(cli)
    cli.ok("enroll", "Enrol", "--emails", "ada@p.example,bob@p.example", "--mailbox", REP, now=MONDAY)
    cli.ok("prepare", "Enrol", now=MONDAY)
    assert cli.ok("unenroll", "Enrol", "--emails", "bob@p.example", now=MONDAY).startswith("Enrol: unenrolled 1")
    refused = cli("send", "Enrol", now=MONDAY)
    assert refused.code == 1 and "prepare" in refused.err
    prepared = json.loads(cli.ok("prepare", "Enrol", "--json", now=MONDAY))
    assert prepared["targeted"] == 1
    cli.ok("enroll", "Enrol", "--emails", "bob@p.example", "--mailbox", REP, now=MONDAY)  # may come back


def test_enroll_reports_who_was_enrolled_already_and_refuses_a_past_send_time(sqlite_cli):
    cli = sqlite_cli
    setup(cli)
    cli.ok("enroll", "Enrol", "--emails", "ada@p.example", "--mailbox", REP, now=MONDAY)
    said = cli.ok("enroll", "Enrol", "--emails", "ada@p.example,bob@p.example", "--mailbox", REP, now=MONDAY)
    assert said.strip() == "Enrol: enrolled 1, already enrolled 1 (ada@p.example)"
    past = cli("enroll", "Enrol", "--emails", "cy@p.example", "--mailbox", REP, "--send-at", "2026-11-01 09:00",
               now=MONDAY)
    assert past.code == 1 and "Traceback" not in past.err
    assert past.err.strip() == ("error: --send-at: 2026-11-01 09:00 has already passed for everyone being enrolled "
                                "(in their own time zones); choose a later time")
    assert "cy@p.example" not in cli.ok("logs", "Enrol")


def test_enrolling_into_a_running_campaign_reports_exclusions_by_cause(sqlite_cli):
    cli = sqlite_cli
    setup(cli)
    cli.ok("enroll", "Enrol", "--emails", "ada@p.example", "--mailbox", REP, now=MONDAY)
    cli.ok("prepare", "Enrol", now=MONDAY)
    cli.ok("send", "Enrol", now=MONDAY)
    said = cli.ok("enroll", "Enrol", "--emails", "late@p.example,bob@p.example", "--mailbox", REP,
                  now="2026-11-30T08:00:00Z").splitlines()
    assert said == ["Enrol: enrolled 2, already enrolled 0",
                    "  prepared at once: to deliver 1, to exclude 1 (missing_variable 1)"]


def test_enrolled_events_store_no_data_as_json_null_like_every_other_event(cli):
    """`enrolled` events are written by INSERT … SELECT (issue 17); their empty `data` must be what
    the ORM and store.bulk write for it (JSON null), not SQL NULL. On SQLite and PostgreSQL."""
    from sqlalchemy import text

    from tests.support.prepare import database

    setup(cli)
    cli.ok("enroll", "Enrol", "--contacts", str(cli.home / "p.csv"), "--mailbox", REP, now=MONDAY)
    cli.ok("prepare", "Enrol", now=MONDAY)
    engine = database(cli)
    with engine.connect() as connection:
        counts = dict(connection.execute(text(
            "SELECT kind, count(*) FROM events WHERE data IS NULL GROUP BY kind")).all())
        enrolled = connection.execute(text("SELECT count(*) FROM events WHERE kind = 'enrolled'")).scalar()
    engine.dispose()
    assert enrolled == 4 and counts == {}
