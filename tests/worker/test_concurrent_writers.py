"""Concurrent writers wait instead of failing (on SQLite every write transaction begins IMMEDIATE
with a busy timeout): one-click unsubscribes posted eight at a time over HTTP while a worker
sends every one answer 200 and is recorded; two `cadence rep add` at once both succeed."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cadence.worker.passes import dispatch_due
from core.tracking import sign_token
from core.vocabulary import EventKind, MessageState
from store.models import Campaign, Contact, Event, Message, Rep
from tests.support.counts import assert_counters_match
from tests.support.http import serving

PEOPLE = 240  # they unsubscribe
BUSY = 600  # the campaign being sent meanwhile (the same people and more)


def test_unsubscribes_posted_eight_at_a_time_while_sending_are_all_answered_and_recorded(world):
    app = world.app()
    world.campaign(app, contacts=PEOPLE, name="First")
    assert dispatch_due(app, keeper=world.keeper(app, "first", threads=1)).sent == PEOPLE
    world.campaign(app, contacts=BUSY, name="Busy")
    with app.db.session() as session:
        first = session.scalar(select(Campaign.id).where(Campaign.name == "First"))
        links = [f"/u/{sign_token(app.settings.secret_keys[0], 'u', message_id)}" for message_id in session.scalars(
            select(Message.id).where(Message.campaign_id == first, Message.state == MessageState.SENT.value))]
    assert len(links) == PEOPLE

    sender_app = world.app()  # the worker: its own engine, as in its own process
    world.provider.latency = 0.005
    sending = threading.Event()
    sent: list[int] = []

    def send() -> None:
        sending.set()
        while True:
            report = dispatch_due(sender_app, keeper=world.keeper(sender_app, "sender", batch=5, threads=2))
            sent.append(report.sent)
            if report.sent == 0 and report.deferred == 0:
                return

    sender = threading.Thread(target=send)
    with serving(world.app()) as base:
        sender.start()
        sending.wait(10)
        with httpx.Client(base_url=base, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda link: client.post(link).status_code, links))
            still_sending = sender.is_alive()
        sender.join(120)
    assert statuses == [200] * PEOPLE, {code: statuses.count(code) for code in set(statuses)}
    assert still_sending and sum(sent) > 0  # the posts really raced the sends
    with app.db.session() as session:
        opted_out = session.scalar(select(func.count()).select_from(Contact).where(Contact.opted_out_at.is_not(None)))
        recorded = session.scalar(select(func.count()).select_from(Event).where(
            Event.kind == EventKind.UNSUBSCRIBED.value, Event.campaign_id == first))
        waiting = session.scalar(select(func.count()).select_from(Message).join(
            Contact, Contact.email == Message.to_address).where(
            Contact.opted_out_at.is_not(None), Message.state == MessageState.SCHEDULED.value))
    assert (opted_out, recorded) == (PEOPLE, PEOPLE)
    assert waiting == 0  # nothing more is queued for anyone who opted out
    # The campaign counters, changed by those racing transactions, equal a full recount.
    assert assert_counters_match(app) == 2


def _opened_by(pid: int, path: Path) -> bool:
    """True when process `pid` has `path` open (Linux /proc)."""
    try:
        return any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path.resolve())
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see the database opened")
def test_two_rep_adds_at_once_both_succeed_while_another_writer_holds_the_lock(tmp_path, sqlite_cli):
    cli = sqlite_cli
    cli.ok("init")
    db_file = Path(cli.database_url.removeprefix("sqlite:///"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.update({"CADENCE_HOME": str(cli.home), "CADENCE_DATABASE_URL": cli.database_url})
    import sqlite3

    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer (a worker, say) holds the write lock meanwhile
    procs = [subprocess.Popen([sys.executable, "-m", "cadence.cli", "rep", "add", "--email", f"rep{n}@acme.example"],
                              cwd=cli.home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2)]
    try:
        deadline = time.monotonic() + 120
        while not all(_opened_by(p.pid, db_file) or p.poll() is not None for p in procs):
            assert time.monotonic() < deadline, "the commands never opened the database"
            time.sleep(0.05)
        time.sleep(1.0)  # both are past start-up and wait for the lock now
        holder.execute("COMMIT")
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        holder.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outcomes
    from store.db import Database

    db = Database(cli.database_url)
    try:
        with db.session(readonly=True) as session:
            assert set(session.scalars(select(Rep.email))) == {"rep1@acme.example", "rep2@acme.example"}
    finally:
        db.dispose()
