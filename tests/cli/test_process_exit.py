"""`cadence` as the operator runs it: one process per command, which skips the collector's last
sweep at exit (gc.freeze) and closes its databases when the command ends. Whatever a command wrote
is committed before its process ends, and Python's development mode finds no file or connection
left open (ResourceWarning) on the way."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _cadence(cli, *args: str) -> subprocess.CompletedProcess:
    """`python -X dev -m cadence.cli ARGS` in its own process, in the CLI's home and environment."""
    env = {**os.environ, "CADENCE_HOME": str(cli.home), "CADENCE_DATABASE_URL": cli.database_url,
           "CADENCE_PUBLIC_URL": "https://cadence.test", "CADENCE_NOW": "2026-11-30T08:00:00Z"}
    return subprocess.run([sys.executable, "-X", "dev", "-m", "cadence.cli", *args], env=env, cwd=cli.home,
                          capture_output=True, text=True, timeout=120)


def test_each_command_commits_before_its_process_ends_and_leaves_nothing_open(cli):
    (cli.home / "campaign.yml").write_text(
        "name: Exit\ntimezone: Europe/Paris\nsteps:\n  - day: 1\n    action: auto\n    send: at_time\n"
        "    time: \"09:00\"\n    subject: Hi {{ first_name }}\n    body: Hello {{ first_name }}\n", encoding="utf-8")
    (cli.home / "people.csv").write_text(
        "email,first_name,timezone\nana@prospect.example,Ana,Asia/Tokyo\nbo@prospect.example,Bo,\n", encoding="utf-8")
    steps = [("init",), ("rep", "add", "--email", "rita@acme.example"),
             ("mailbox", "add", "--provider", "maildir", "--address", "rita@acme.example", "--owner",
              "rita@acme.example", "--path", str(cli.home / "maildir")),
             ("campaign", "import", "campaign.yml"), ("contacts", "import", "people.csv"),
             ("enroll", "Exit", "--contacts", "people.csv", "--mailbox", "rita@acme.example"), ("prepare", "Exit")]
    for args in steps:
        done = _cadence(cli, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "Warning:" not in done.stderr.replace("warning: CADENCE", ""), (args, done.stderr)
    status = _cadence(cli, "status", "Exit", "--json")
    assert status.returncode == 0 and "Warning" not in status.stderr, status.stderr
    document = json.loads(status.stdout)
    assert (document["state"], document["preparation"]["targeted"], document["preparation"]["to_deliver"]) \
        == ("prepared", 2, 2)
