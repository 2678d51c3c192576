"""Stopping a preparation at any time: `cadence stop` from another process, Ctrl-C, or the
caller's own `should_stop`. Nothing is sent, and what a stopped preparation wrote is never sendable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from tests.support.prepare import LAUNCH, REP, base, campaign, campaign_yaml, database, prepared, status, write

# Enough enrollments, prepared one per batch, that the preparation outlasts the commands the tests
# run while it is under way, even on a loaded machine: each batch is its own commit.
PEOPLE = 1500


def _big(cli, people: int = PEOPLE) -> str:
    base(cli)
    write(cli, "many.csv", "email,first_name\n" + "".join(f"p{i}@prospect.example,P{i}\n" for i in range(people)))
    cli.ok("contacts", "import", str(cli.home / "many.csv"))
    name = campaign(cli, campaign_yaml("Big"))
    cli.ok("enroll", name, "--all", "--mailbox", REP, now=LAUNCH)
    return name


def _start_preparing(cli, name: str) -> subprocess.Popen:
    """A real `cadence prepare` in another process, one enrollment per batch; returns once it is under way."""
    env = {**os.environ, "CADENCE_PREPARE_BATCH": "1", "CADENCE_NOW": LAUNCH}
    process = subprocess.Popen([sys.executable, "-m", "cadence.cli", "prepare", name], env=env, cwd=cli.home,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = status(cli, name)
        if state["state"] == "preparing" and (state["preparation"]["progress_pct"] or 0) > 0:
            assert 0 < state["preparation"]["progress_pct"] < 100
            assert 0 < state["preparation"]["targeted"] < PEOPLE  # the KPIs grow while it runs
            return process
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError("the preparation did not start")


def _planned(cli) -> int:
    with database(cli).connect() as connection:
        return connection.scalar(text("SELECT count(*) FROM messages WHERE state = 'planned'"))


def _nothing_sendable_then_prepare_again(cli, name: str, why: str) -> None:
    assert status(cli, name)["state"] == "draft"
    assert status(cli, name)["preparation"]["current"] is False
    assert 0 < _planned(cli) < 2 * PEOPLE  # rows of the unfinished preparation exist …
    refused = cli("send", name, now=LAUNCH)  # … but can never be sent
    assert refused.code == 1 and "prepare it first" in refused.err
    assert why in cli.ok("logs", name)
    cli.ok("worker", "--once", "--now", LAUNCH)
    assert not (cli.home / "maildir" / ".Sent" / "cur").exists() or not any((cli.home / "maildir" / ".Sent" / "cur").iterdir())
    again = prepared(cli, name)
    assert (again["state"], again["to_deliver"], again["messages"]) == ("prepared", PEOPLE, 2 * PEOPLE)
    assert _planned(cli) == 2 * PEOPLE  # the rewrite left no stray rows behind
    cli.ok("send", name, now=LAUNCH)


def test_cadence_stop_from_another_process_stops_the_preparation(cli):
    name = _big(cli)
    process = _start_preparing(cli, name)
    stopped = cli("stop", name)  # takes the write lock up front, so a committing preparation cannot break it
    assert stopped.code == 0 and stopped.out.strip() == f"{name}: draft", stopped.err
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "stopped" in err and "nothing was sent" in err
    _nothing_sendable_then_prepare_again(cli, name, "preparation stopped before it finished")


def test_ctrl_c_stops_the_preparation(sqlite_cli):
    cli = sqlite_cli
    name = _big(cli)
    process = _start_preparing(cli, name)
    try:
        refused = cli("prepare", name, now=LAUNCH)  # one preparation at a time
        assert refused.code == 1 and "is being prepared already" in refused.err
        enroll = cli("enroll", name, "--emails", "p1@prospect.example", "--mailbox", REP)
        assert enroll.code == 1 and "preparing" in enroll.err
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "stopped" in err
    _nothing_sendable_then_prepare_again(cli, name, "preparation stopped (interrupted)")


def test_progress_comes_batch_by_batch_and_the_caller_can_stop(sqlite_cli, monkeypatch):
    cli = sqlite_cli
    name = _big(cli, people=5)
    monkeypatch.setenv("CADENCE_PREPARE_BATCH", "2")
    from cadence.app import App
    from cadence.services.preparing import PreparationStopped, prepare

    app = App.from_settings()
    seen: list[tuple[int, int]] = []
    with pytest.raises(PreparationStopped):
        prepare(app, name, progress=lambda done, total: seen.append((done, total)), should_stop=lambda: len(seen) == 1)
    assert seen == [(2, 5)]
    assert status(cli, name)["state"] == "draft"
    seen.clear()
    result = prepare(app, name, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    assert (result.targeted, result.to_deliver, result.messages) == (5, 5, 10)
    app.db.dispose()
