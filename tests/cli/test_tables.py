"""Human tables never cut an address, a name or a link; summaries never wrap mid-sentence
(issue 14 item 4): piped, on an 80-column terminal, and on a wide one."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REP = "rita.long-name-for-testing@acme-sales-department.example"
NAME = "Q4 outbound to the long tail of enterprise prospects in the Nordics"
CAMPAIGN = f"""\
name: {NAME}
timezone: Europe/Paris
steps:
  - day: 1
    action: task
    send: at_time
    time: "09:30"
    subject: "An idea for {{{{ company }}}} and its whole engineering organisation"
    body: "Hi {{{{ first_name }}}}"
"""
CONTACT = "someone.with.a.long.address@prospect-company-with-long-domain.example"
BOSS = "marguerite.alexandrine@acme-sales-department.example"


@pytest.fixture
def filled(sqlite_cli):
    cli = sqlite_cli
    (cli.home / "c.yml").write_text(CAMPAIGN, encoding="utf-8")
    (cli.home / "people.csv").write_text(f"email,first_name,company\n{CONTACT},Ada,Prospect\n", encoding="utf-8")
    cli.ok("init")
    cli.ok("rep", "add", "--email", REP, "--name", "Rita Representative-Longname")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", REP, "--owner", REP)
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "people.csv"))
    cli.ok("enroll", NAME, "--all", "--mailbox", REP, now="2026-11-30T07:00:00Z")
    cli.ok("prepare", NAME, now="2026-11-30T07:00:00Z")
    cli.ok("send", NAME, now="2026-11-30T07:00:00Z")
    cli.ok("worker", "--once", "--now", "2026-11-30T09:00:00Z")
    return cli


def whole(output: str, *values: str) -> None:
    for value in values:
        assert any(value in line for line in output.splitlines()), f"{value!r} cut in:\n{output}"
    assert "…" not in output and "..." not in output


def digest(cli) -> str:
    """The manager's digest, a day after the task fell due (so the campaign has a row: an overdue task)."""
    cli.ok("rep", "add", "--email", BOSS, "--name", "Marguerite-Alexandrine de la Fontaine", "--role", "manager")
    cli.ok("rep", "add", "--email", REP, "--manager", BOSS)
    return cli.ok("digest", "--manager", BOSS, now="2026-12-01T12:00:00Z")


def draft_link(cli) -> str:
    import json

    [task] = json.loads(cli.ok("tasks", "--json"))
    assert task["draft_link"]
    return task["draft_link"]


def test_piped_tables_print_whole_rows(filled):
    link = draft_link(filled)
    whole(filled.ok("campaign", "list"), NAME)
    whole(filled.ok("mailbox", "list"), REP)
    whole(filled.ok("tasks"), REP, NAME, CONTACT, link)
    whole(filled.ok("rep", "list"), REP, "Rita Representative-Longname")
    whole(digest(filled), "Rita Representative-Longname", NAME)
    status = filled.ok("status", NAME)
    delivery = [line for line in status.splitlines() if line.startswith("delivery:")]
    assert len(delivery) == 1 and delivery[0].endswith("done 0")  # one line, however long


@pytest.mark.parametrize("columns", ["80", "160", "400"])
def test_terminal_tables_keep_every_value_whole(filled, columns):
    link = draft_link(filled)
    filled.setenv("FORCE_COLOR", "1")
    filled.setenv("NO_COLOR", "1")
    filled.setenv("COLUMNS", columns)
    whole(filled.ok("campaign", "list"), NAME)
    whole(filled.ok("mailbox", "list"), REP)
    whole(filled.ok("tasks"), CONTACT, link)
    whole(digest(filled), "Rita Representative-Longname", NAME)
    lines = filled.ok("mailbox", "list").splitlines()
    assert all(len(line) <= int(columns) for line in lines if "│" in line)  # a Rich table only when it fits


def test_a_real_pipe_gets_whole_rows(filled):
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    result = subprocess.run([sys.executable, "-m", "cadence.cli", "mailbox", "list"], capture_output=True, text=True,
                            cwd=filled.home, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = [line for line in result.stdout.splitlines() if REP in line]
    assert len(rows) == 1 and "maildir" in rows[0] and "connected" in rows[0]
