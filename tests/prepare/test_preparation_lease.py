"""A SIGKILLed `cadence prepare` no longer leaves its campaign `preparing` for ever (issue #12 item 7).

A preparation holds a lease on its campaign like a worker's claim (CADENCE_LEASE_SECONDS), renewed
while it runs. While the lease holds, another `prepare` is refused; once it has run out (the
process was killed), the next `prepare` takes the campaign over, says so, and prepares it whole.
Real subprocesses, real SIGKILL, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

from sqlalchemy import text

from tests.support.prepare import LAUNCH, REP, base, campaign, contacts, database, prepared

PEOPLE = 400
SLOW = """\
name: Lease
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hello {{ first_name }}"
    body: "<p>Hi {{ first_name }}{% for i in range(30000) %}{% endfor %}</p>"
  - day: 2
    action: auto
    send: same_as_previous
    thread: true
    body: "Bumping this, {{ first_name }}."
"""


def _ready(cli) -> str:
    base(cli)
    contacts(cli, [f"p{n}@prospect.example,P{n},Co{n}" for n in range(PEOPLE)])
    name = campaign(cli, SLOW)
    cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    return name


def _start_prepare(cli, lease: float) -> subprocess.Popen:
    env = {**os.environ, "CADENCE_LEASE_SECONDS": str(lease), "CADENCE_PREPARE_BATCH": "5"}
    env.pop("CADENCE_NOW", None)
    return subprocess.Popen([sys.executable, "-m", "cadence.cli", "prepare", "Lease"], cwd=cli.home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _campaign_row(cli):
    engine = database(cli)
    try:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT state, progress, prepare_lease_until FROM campaigns WHERE name = 'Lease'")).one()
    finally:
        engine.dispose()


def _wait_until_preparing(cli, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while True:
        row = _campaign_row(cli)
        if row.state == "preparing" and (row.progress or 0) > 0:
            return
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the preparation did not start"
        time.sleep(0.05)


def _as_utc(value) -> datetime:
    value = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def test_a_sigkilled_prepare_is_taken_over_once_its_lease_has_expired(cli):
    name = _ready(cli)
    process = _start_prepare(cli, lease=4)
    _wait_until_preparing(cli, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert _campaign_row(cli).state == "preparing"  # what was left for ever before

    early = cli("prepare", name)  # the lease still holds: refused, nothing changed
    assert early.code == 1 and "is being prepared already" in early.err and "holds until" in early.err
    assert "prepare it first" in cli("send", name).err

    until = _as_utc(_campaign_row(cli).prepare_lease_until)
    time.sleep(max(0.0, (until - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    result = prepared(cli, name, now=None)
    assert result["state"] == "prepared" and result["errors"] == 0
    assert (result["targeted"], result["to_deliver"], result["to_exclude"]) == (PEOPLE, PEOPLE, 0)
    assert "took over a preparation whose lease expired" in cli.ok("logs", name)
    engine = database(cli)
    with engine.connect() as connection:
        per_step = connection.execute(text(
            "SELECT count(*), count(DISTINCT enrollment_id * 10 + position) FROM messages")).one()
        lease = connection.execute(text("SELECT prepare_owner, prepare_lease_until FROM campaigns")).one()
    engine.dispose()
    assert tuple(per_step) == (PEOPLE * 2, PEOPLE * 2)  # every message once, none left by the killed run
    assert tuple(lease) == (None, None)
    cli.ok("send", name, now=LAUNCH)


def test_a_running_preparation_keeps_its_lease_and_is_not_taken_over(cli):
    name = _ready(cli)
    process = _start_prepare(cli, lease=1.5)
    _wait_until_preparing(cli, process)
    time.sleep(2.5)  # longer than the lease: only its renewal keeps it
    if process.poll() is None:
        second = cli("prepare", name)
        assert second.code == 1 and "is being prepared already" in second.err, second
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    assert _campaign_row(cli).state == "prepared"
    assert "took over" not in cli.ok("logs", name)
