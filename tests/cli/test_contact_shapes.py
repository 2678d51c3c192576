"""Issue 13 shapes through the real CLI: Excel's cp1252 files, legacy zone names, regions."""
from __future__ import annotations

import json

import pytest


def test_a_cp1252_file_is_refused_by_line_and_column_then_read_with_encoding(sqlite_cli):
    sqlite_cli.ok("init")
    path = sqlite_cli.home / "excel.csv"
    path.write_bytes("email;first_name;country\nanna@example.com;Anna;DE-BY\nrene@example.com;René;FR\n".encode("cp1252"))
    refused = sqlite_cli("contacts", "import", str(path))
    assert refused.code != 0 and "Traceback" not in refused.err
    assert f"{path}, line 3, column 21: byte 0xe9 is not UTF-8" in refused.err
    assert "--encoding cp1252" in refused.err
    out = sqlite_cli.ok("contacts", "import", str(path), "--encoding", "cp1252")
    assert "imported 2" in out and "rejected 0" in out


def test_legacy_zone_names_are_stored_canonical_and_used(sqlite_cli):
    sqlite_cli.ok("init")
    path = sqlite_cli.home / "people.csv"
    path.write_text("email,timezone\nanna@example.com,US/Eastern\nbo@example.com,Asia/Calcutta\n", encoding="utf-8")
    assert "imported 2" in sqlite_cli.ok("contacts", "import", str(path))
    campaign = sqlite_cli.home / "c.yml"
    campaign.write_text("name: Zones\ntimezone: US/Pacific\nsteps:\n  - day: 1\n    action: auto\n"
                        "    send: at_time\n    time: '09:00'\n    subject: Hi\n    body: Hello\n", encoding="utf-8")
    assert "Zones" in sqlite_cli.ok("campaign", "import", str(campaign))
    sqlite_cli.ok("rep", "add", "--email", "rita@acme.example")
    sqlite_cli.ok("mailbox", "add", "--provider", "maildir", "--address", "rita@acme.example",
                  "--owner", "rita@acme.example", "--path", str(sqlite_cli.home / "Maildir"))
    sqlite_cli.ok("enroll", "Zones", "--all", "--mailbox", "rita@acme.example", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("prepare", "Zones", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("send", "Zones", now="2026-11-23T06:00:00Z")
    sqlite_cli.ok("worker", "--once", now="2026-11-23T06:00:00Z")
    lines = sqlite_cli.ok("logs", "Zones", now="2026-11-23T06:00:00Z")
    assert "09:00 America/New_York" in lines and "09:00 Asia/Kolkata" in lines, lines
    status = json.loads(sqlite_cli.ok("status", "Zones", "--json", now="2026-11-23T06:00:00Z"))
    # Bo's 09:00 in Kolkata had passed (sent in the pass); Anna's is 09:00 in New York = 14:00Z.
    assert status["delivery"]["sent"] == 1
    assert status["next_due"] == "2026-11-23T14:00:00Z"


def _campaign(cli, name: str, first: str) -> None:
    path = cli.home / f"{name}.yml"
    path.write_text(f"name: {name}\ntimezone: America/New_York\nsteps:\n  - day: 1\n    action: auto\n{first}"
                    "    subject: Hi\n    body: Hello\n  - day: 3\n    action: auto\n    send: same_as_previous\n"
                    "    thread: true\n    body: Bump\n", encoding="utf-8")
    cli.ok("campaign", "import", str(path))
    cli.ok("rep", "add", "--email", "rita@acme.example")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", "rita@acme.example",
           "--owner", "rita@acme.example", "--path", str(cli.home / "Maildir"))


def test_a_zone_corrected_after_enrolling_moves_the_steps_not_yet_due(sqlite_cli):
    cli = sqlite_cli
    cli.ok("init")
    people = cli.home / "people.csv"
    people.write_text("email,first_name\nanna@example.com,Anna\n", encoding="utf-8")
    cli.ok("contacts", "import", str(people))
    _campaign(cli, "Zones", "    send: at_time\n    time: '09:00'\n")
    now = "2026-11-23T06:00:00Z"
    cli.ok("enroll", "Zones", "--all", "--mailbox", "rita@acme.example", now=now)
    cli.ok("prepare", "Zones", now=now)
    cli.ok("send", "Zones", now=now)
    assert json.loads(cli.ok("status", "Zones", "--json", now=now))["next_due"] == "2026-11-23T14:00:00Z"
    # The operator learns Anna is in Paris and imports the corrected row.
    people.write_text("email,first_name,timezone\nanna@example.com,Anna,Europe/Paris\n", encoding="utf-8")
    assert "updated 1" in cli.ok("contacts", "import", str(people), now="2026-11-23T06:30:00Z")
    status = json.loads(cli.ok("status", "Zones", "--json", now="2026-11-23T06:30:00Z"))
    assert status["next_due"] == "2026-11-23T08:00:00Z"  # 09:00 in Paris
    cli.ok("worker", "--once", now="2026-11-23T08:00:00Z")
    # Step 2 (day 3, same time as step 1) follows Paris too: 09:00 Paris on the 25th.
    status = json.loads(cli.ok("status", "Zones", "--json", now="2026-11-23T08:00:00Z"))
    assert status["delivery"]["sent"] == 1 and status["next_due"] == "2026-11-25T08:00:00Z"


@pytest.mark.parametrize("send_at, due, note", [
    ("2026-03-08 02:30", "2026-03-08T07:00:00Z", "02:30 does not exist in America/New_York"),  # spring-forward gap
    ("2026-03-08 09:00", "2026-03-08T13:00:00Z", None),                                       # after the change
    ("2026-11-01 01:30", "2026-11-01T05:30:00Z", None),                                       # fall back: first 01:30
])
def test_send_at_in_a_clock_change_follows_the_at_time_rule(sqlite_cli, send_at, due, note):
    cli = sqlite_cli
    cli.ok("init")
    people = cli.home / "people.csv"
    people.write_text("email,timezone\nanna@example.com,America/New_York\n", encoding="utf-8")
    cli.ok("contacts", "import", str(people))
    _campaign(cli, "Gap", "    send: choose_at_launch\n")
    now = "2026-03-01T12:00:00Z"
    cli.ok("enroll", "Gap", "--all", "--mailbox", "rita@acme.example", "--send-at", send_at, now=now)
    cli.ok("prepare", "Gap", now=now)
    cli.ok("send", "Gap", now=now)
    assert json.loads(cli.ok("status", "Gap", "--json", now=now))["next_due"] == due
    lines = cli.ok("logs", "Gap", now=now)
    assert f"{send_at[-5:]} America/New_York chosen at launch" in " ".join(lines.split()), lines
    if note:
        assert note in lines.replace("\n", " ")


@pytest.mark.parametrize("subject, warned", [
    ("Another idea", True),                 # its own subject: Gmail shows a new conversation
    ("Re: Quick question", False),          # the conversation's own subject
    ("RE:  quick   QUESTION", False),
    (None, False),                          # no subject: "Re: <previous>" is used
])
def test_a_threaded_step_with_its_own_subject_is_warned_at_import_and_prepare(sqlite_cli, subject, warned):
    cli = sqlite_cli
    cli.ok("init")
    own = f'    subject: "{subject}"\n' if subject else ""
    path = cli.home / "t.yml"
    path.write_text("name: Thread\nsteps:\n  - day: 1\n    action: auto\n    send: at_time\n    time: '09:00'\n"
                    "    subject: Quick question\n    body: Hello\n  - day: 3\n    action: auto\n"
                    f"    send: same_as_previous\n    thread: true\n{own}    body: Bump\n", encoding="utf-8")
    result = cli("campaign", "import", str(path))
    assert result.code == 0 and result.out.strip() == "Thread"
    assert ("threaded but has its own subject" in result.err) is warned, result.err
    if warned:
        assert f"warning: {path}: steps[2] (day 3)" in result.err and "Gmail" in result.err
    people = cli.home / "p.csv"
    people.write_text("email\nanna@example.com\n", encoding="utf-8")
    cli.ok("contacts", "import", str(people))
    cli.ok("rep", "add", "--email", "rita@acme.example")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", "rita@acme.example",
           "--owner", "rita@acme.example", "--path", str(cli.home / "Maildir"))
    cli.ok("enroll", "Thread", "--all", "--mailbox", "rita@acme.example", now="2026-11-23T06:00:00Z")
    cli.ok("prepare", "Thread", now="2026-11-23T06:00:00Z")
    lines = " ".join(cli.ok("logs", "Thread", now="2026-11-23T06:00:00Z").split())
    assert ("threaded but has its own subject" in lines) is warned, lines
