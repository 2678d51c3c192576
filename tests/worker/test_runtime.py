"""The runtime: loop settings, a graceful stop that finishes or gives back in-flight work, and
`cadence worker` as a real process on SQLite (one process for a small team) stopped by SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from cadence.worker.runtime import Intervals, Runtime
from cadence.worker.options import DispatchOptions
from cadence.services.errors import UserError
from core.vocabulary import MessageState
from store.db import Database
from store.models import Message, WorkerRow

ADDRESS = "a@acme.example"


def test_loop_intervals_and_dispatch_settings_come_from_the_environment():
    intervals = Intervals.from_env({"CADENCE_DISPATCH_INTERVAL": "0.2", "CADENCE_KPI_INTERVAL": "30",
                                    "CADENCE_DIGEST_INTERVAL": "600"})
    assert (intervals.dispatch, intervals.kpis, intervals.digests, intervals.sync) == (0.2, 30.0, 600.0, 60.0)
    options = DispatchOptions.from_env({"CADENCE_LEASE_SECONDS": "90", "CADENCE_CLAIM_BATCH": "250"})
    assert options.lease == timedelta(seconds=90) and options.batch == 250
    with pytest.raises(UserError, match="CADENCE_SYNC_INTERVAL: 'soon' is not a number"):
        Intervals.from_env({"CADENCE_SYNC_INTERVAL": "soon"})
    with pytest.raises(UserError, match="CADENCE_CLAIM_BATCH: must be greater than 0"):
        DispatchOptions.from_env({"CADENCE_CLAIM_BATCH": "0"})
    with pytest.raises(UserError, match="CADENCE_CLAIM_BATCH: '2.5' is not a whole number"):
        DispatchOptions.from_env({"CADENCE_CLAIM_BATCH": "2.5"})


def test_a_graceful_stop_finishes_the_send_under_way_and_gives_back_the_rest(world):
    app = world.app()
    world.campaign(app, contacts=6)
    held = threading.Event()
    world.provider.gates[("send_draft", ADDRESS)] = held
    worker = world.app()
    runtime = Runtime(worker, BackgroundScheduler(timezone="UTC"), intervals=Intervals(dispatch=0.1),
                      options=DispatchOptions(lease=timedelta(seconds=30), threads=1), worker="graceful")
    runtime.start()
    deadline = time.monotonic() + 120  # returns as soon as the send is under way
    while world.provider.calls[("send_draft", ADDRESS)] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    threading.Timer(0.3, held.set).start()  # the provider answers a moment after SIGTERM
    assert runtime.shutdown(wait=True, grace=60)  # True: everything under way finished within the grace
    messages = world.messages(app)
    assert len(world.provider.sent(ADDRESS)) == 1
    assert sum(m.state == MessageState.SENT.value for m in messages) == 1
    given_back = [m for m in messages if m.state == MessageState.SCHEDULED.value]
    assert len(given_back) == 5 and all(m.claim_token is None and m.lease_until is None for m in given_back)
    assert all(m.provider_draft_id for m in given_back)  # their drafts are the ones sent next time
    with app.db.session() as session:
        assert session.get(WorkerRow, "graceful").stopped_at is not None


def test_cadence_worker_on_sqlite_sends_and_leaves_on_sigterm(tmp_path, sqlite_cli):
    cli = sqlite_cli
    maildir = cli.home / "maildir"
    (cli.home / "c.yml").write_text(
        "name: Small\ntimezone: UTC\nsteps:\n  - day: 1\n    action: auto\n    send: at_time\n    time: \"00:00\"\n"
        "    subject: \"Hi {{ first_name }}\"\n    body: \"<p>Hi {{ first_name }}.</p>\"\n", encoding="utf-8")
    (cli.home / "c.csv").write_text("email,first_name\n" + "".join(f"p{i}@prospect.example,P{i}\n" for i in range(5)),
                                    encoding="utf-8")
    cli.ok("rep", "add", "--email", "rita@acme.example")
    cli.ok("mailbox", "add", "--provider", "maildir", "--address", ADDRESS, "--owner", "rita@acme.example",
           "--path", str(maildir))
    cli.ok("campaign", "import", str(cli.home / "c.yml"))
    cli.ok("contacts", "import", str(cli.home / "c.csv"))
    cli.ok("enroll", "Small", "--all", "--mailbox", ADDRESS)
    cli.ok("prepare", "Small")
    cli.ok("send", "Small")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update({"CADENCE_HOME": str(cli.home), "CADENCE_DATABASE_URL": cli.database_url,
                "CADENCE_DISPATCH_INTERVAL": "0.2", "CADENCE_SYNC_INTERVAL": "1"})
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cadence.cli", "worker"], cwd=cli.home, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    db = Database(cli.database_url)
    try:
        deadline = time.monotonic() + 120
        sent = 0
        while time.monotonic() < deadline and sent < 5:
            time.sleep(0.2)
            with db.session() as session:
                sent = session.scalar(select(func.count()).select_from(Message).where(
                    Message.state == MessageState.SENT.value))
        assert sent == 5, log.read_text()
        assert len(os.listdir(maildir / ".Sent" / "cur")) + len(os.listdir(maildir / ".Sent" / "new")) == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()  # left by itself, not killed
        assert "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        db.dispose()
