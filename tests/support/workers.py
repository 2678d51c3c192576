"""The worker tests' world (tests/worker builds its fixtures on it): a campaign on memory mailboxes,
and several in-process "workers" (each its own App and engine)
sharing one database, one clock and one memory provider, for the claim / lease / limit tests."""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from cadence.app import App
from cadence.services import audience, campaigns, directory, imports, preparing
from cadence.settings import Settings
from cadence.worker.leases import LeaseKeeper
from cadence.worker.options import DispatchOptions
from connectors.memory import MemoryMailbox, MemoryServer
from core.clock import FixedClock
from store.models import Message

START = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)  # a Monday
REP = "rita@acme.example"
OPTIONS = DispatchOptions(lease=timedelta(seconds=30), batch=10, threads=4, slot_wait=2.0,
                          retry_base=timedelta(seconds=10))


class WorkerKilled(BaseException):
    """Stands for SIGKILL inside one process: nothing of ours catches it, so whatever was not
    committed yet is lost exactly as when the process dies."""


@dataclass
class Provider:
    """The provider's side, shared by every worker: messages, faults, and what it saw at once."""

    server: MemoryServer = field(default_factory=MemoryServer)
    latency: float = 0.0
    # (method, address) -> list of actions run in order on the next calls: "kill-before", "kill-after",
    # or an exception instance to raise (after performing the call when wrapped in `After`).
    faults: dict[tuple[str, str], list] = field(default_factory=dict)
    gates: dict[tuple[str, str], threading.Event] = field(default_factory=dict)  # hold calls until set
    calls: Counter = field(default_factory=Counter)
    history: list = field(default_factory=list)  # (method, address) in the order the calls came
    peak: Counter = field(default_factory=Counter)
    _busy: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _atomic: threading.Lock = field(default_factory=threading.Lock)  # a draft is sent at most once, as by Gmail

    def sent(self, address: str) -> list:
        return self.server.messages(address, "sent")

    def drafts(self, address: str) -> list:
        return self.server.messages(address, "drafts")

    def fail(self, method: str, address: str, *actions) -> None:
        self.faults.setdefault((method, address), []).extend(actions)

    def delete_drafts(self, address: str) -> None:
        box = self.server.box(address)
        for draft in self.drafts(address):
            box.pop(draft.key, None)


@dataclass(frozen=True)
class After:
    """Raise `error` after the call has taken effect (the answer is lost)."""

    error: BaseException


@dataclass(frozen=True)
class Before:
    """Something happens at the provider just before the call (a rep deletes a draft …)."""

    happen: Callable[[], None]


class ProviderMailbox(MemoryMailbox):
    """The memory mailbox as a remote provider: it counts requests under way per address,
    takes `latency` per call, and plays the scripted faults."""

    def __init__(self, address: str, provider: Provider):
        super().__init__(address, provider.server)
        self.provider = provider

    def _call(self, method: str, perform: Callable):
        p, key = self.provider, (method, self.address)
        with p._lock:
            p.calls[key] += 1
            p.history.append(key)
            p._busy[self.address] += 1
            p.peak[self.address] = max(p.peak[self.address], p._busy[self.address])
            action = p.faults[key].pop(0) if p.faults.get(key) else None
        try:
            if key in p.gates:
                p.gates[key].wait(10)
            if p.latency:
                time.sleep(p.latency)
            if action == "kill-before":
                raise WorkerKilled(method)
            if isinstance(action, BaseException):
                raise action
            if isinstance(action, Before):
                action.happen()
            result = perform()
            if action == "kill-after":
                raise WorkerKilled(method)
            if isinstance(action, After):
                raise action.error
            return result
        finally:
            with p._lock:
                p._busy[self.address] -= 1

    def create_draft(self, email):
        return self._call("create_draft", lambda: super(ProviderMailbox, self).create_draft(email))

    def send_draft(self, draft):
        def send():
            with self.provider._atomic:
                return super(ProviderMailbox, self).send_draft(draft)

        return self._call("send_draft", send)

    def check_sent(self, message_id, draft):
        return self._call("check_sent", lambda: super(ProviderMailbox, self).check_sent(message_id, draft))

    def find_drafts(self, message_id):
        return self._call("find_drafts", lambda: super(ProviderMailbox, self).find_drafts(message_id))

    def delete_draft(self, draft):
        return self._call("delete_draft", lambda: super(ProviderMailbox, self).delete_draft(draft))

    def poll(self, cursor, tracked_threads=()):
        return self._call("poll", lambda: super(ProviderMailbox, self).poll(cursor, tracked_threads))


ONE_STEP = """\
name: Launch
timezone: UTC
{limit}steps:
  - day: 1
    action: auto
    send: at_time
    time: "00:00"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, <a href='https://example.org/x'>one question</a>.</p>"
"""


@dataclass
class World:
    home: Path
    url: str
    clock: FixedClock
    provider: Provider
    apps: list[App] = field(default_factory=list)

    def settings(self) -> Settings:
        return Settings(**{"CADENCE_HOME": str(self.home), "CADENCE_DATABASE_URL": self.url,
                           "CADENCE_SECRET_KEY": "x7cUa5bXg2oPJz7rB7k1mJp7x1nQ6WqvJ9m8L3xZ0aA=",
                           "CADENCE_PUBLIC_URL": "https://cadence.test", "CADENCE_TIMEZONE": "UTC"})

    def app(self) -> App:
        """One more worker: its own engine and connector cache, the shared clock and provider."""
        app = App(settings=self.settings(), db=database(self.url), clock=self.clock)
        app.mailbox_factories["memory"] = lambda a, row: ProviderMailbox(row.address, self.provider)
        self.apps.append(app)
        return app

    def keeper(self, app: App, name: str, **options) -> LeaseKeeper:
        fields = {**OPTIONS.__dict__, **options}
        return LeaseKeeper(app, name, DispatchOptions(**fields))

    def messages(self, app: App) -> list[Message]:
        with app.db.session() as session:
            return list(session.scalars(select(Message).order_by(Message.id)))

    def campaign(self, app: App, *, contacts: int, mailboxes: tuple[str, ...] = ("a@acme.example",),
                 daily_limit: int | None = None, name: str = "Launch", action: str = "auto") -> None:
        """A one-step campaign sending now; `action: task` makes its step a rep's draft."""
        directory.add_rep(app, email=REP, name="Rita Rep")
        for address in mailboxes:
            directory.add_mailbox(app, provider="memory", address=address, owner=REP)
        yml = self.home / f"{name}.yml"
        yml.write_text(ONE_STEP.replace("Launch", name).replace("action: auto", f"action: {action}").format(
            limit=f"daily_limit: {daily_limit}\n" if daily_limit else ""), encoding="utf-8")
        csv = self.home / f"{name}.csv"
        rows = ["email,first_name"] + [f"p{i}@prospect.example,P{i}" for i in range(contacts)]
        csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
        imports.import_campaign(app, yml)
        imports.import_contacts(app, csv)
        per_box = (contacts + len(mailboxes) - 1) // len(mailboxes)
        for n, address in enumerate(mailboxes):
            emails = [f"p{i}@prospect.example" for i in range(n * per_box, min(contacts, (n + 1) * per_box))]
            audience.enroll(app, name, mailbox=address, emails=emails)
        result = preparing.prepare(app, name)
        assert not result.errors, result.errors
        campaigns.send_campaign(app, name)


def database(url: str):
    from store.db import Database

    return Database(url)
