"""Real `cadence worker` processes on one PostgreSQL schema, sending through the fake Gmail, killed.

`Cluster` sets a campaign up through the real CLI (Gmail mailboxes added with
`--provider gmail --refresh-token-file`), starts worker processes (`python -m cadence.cli
worker`) that reach PostgreSQL through a `TcpProxy` (so the database can "restart" under them),
kills them with SIGKILL at random moments, injects provider faults (429 with Retry-After, 5xx,
answers lost after the send), and finally judges from the fake's own records (`RecordingGmail`)
whether every due message went out exactly once and whether any mailbox limit was passed.

Used by tests/worker/test_chaos.py (a short run in CI) and bench/soak.py (>= 1,000 kills).
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.fakes.gmail_server import FakeGmail
from tests.support.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
REP = "rita@acme.example"


class RecordingGmail(FakeGmail):
    """The fake Gmail plus what a limit check needs: when each send really happened, per account,
    and how many API requests of an account were under way at once (each takes `latency` seconds)."""

    def __init__(self, *, latency: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.latency = latency
        self._http.handle_error = _quiet_about_killed_clients
        self.sends: list[tuple[str, float, str | None]] = []  # (address, time, Message-ID)
        self.peak: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._flight_lock = threading.Lock()

    def _api(self, handler, request, method):  # noqa: D401 - the fake's own dispatch
        account, _ = self._authenticate(request)
        address = account.address.lower()
        with self._flight_lock:
            self._in_flight[address] += 1
            self.peak[address] = max(self.peak[address], self._in_flight[address])
        try:
            if self.latency:
                time.sleep(self.latency)
            return super()._api(handler, request, method)
        finally:
            with self._flight_lock:
                self._in_flight[address] -= 1

    def _run(self, account, request, method):
        with self.lock:
            before = len(self.outbox)
            result = super()._run(account, request, method)
            for sent in self.outbox[before:]:
                self.sends.append((sent.address.lower(), time.time(), sent.message_id))
            return result


def _quiet_about_killed_clients(request, client_address) -> None:
    """A worker killed in the middle of a request resets its connection: not worth a traceback."""
    error = sys.exc_info()[1]
    if not isinstance(error, (ConnectionError, TimeoutError)):
        import traceback

        traceback.print_exc()


@dataclass(frozen=True)
class Box:
    """A mailbox of the run and the operator's own caps on it (None: not capped)."""

    address: str
    contacts: int
    daily: int | None = None
    per_minute: int | None = None
    concurrency: int | None = None


@dataclass
class Verdict:
    kills: int = 0
    delivered: int = 0  # distinct messages of ours that went out
    duplicates: int = 0  # extra sends of a message that had already gone out
    lost: int = 0  # messages that should have gone out and did not
    strangers: int = 0  # sends the store knows nothing of
    in_doubt: int = 0
    deferred: int = 0  # held back by a cap until later, each saying so
    kills_sending: int = 0  # kills whose victim held claimed due messages (it was carrying them out)
    kills_in_intent: int = 0  # … of which at least one was in `sending` (intent recorded, provider called)
    drafted: int = 0  # task drafts in the reps' Drafts, one per drafted task message
    duplicate_drafts: int = 0  # drafts beyond one per drafted task, or left behind by a sent message
    lost_drafts: int = 0  # drafted task messages whose draft is not in Drafts
    violations: list[str] = field(default_factory=list)
    draft_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.strangers or self.in_doubt or self.violations
                    or self.duplicate_drafts or self.lost_drafts or self.draft_problems)

    def line(self) -> str:
        return (f"kills {self.kills} (while sending {self.kills_sending}, with an intent in flight "
                f"{self.kills_in_intent}) / delivered {self.delivered} / duplicates {self.duplicates} / lost "
                f"{self.lost} / task drafts {self.drafted}, duplicate drafts {self.duplicate_drafts}, lost drafts "
                f"{self.lost_drafts} (deferred by caps {self.deferred}, in doubt {self.in_doubt}, unknown sends "
                f"{self.strangers}, limit violations {len(self.violations)})")


def campaign_yaml(name: str, daily_limit: int | None, task_step: bool = False) -> str:
    """Two automatic steps (the second threaded), and with `task_step` a third: a rep's draft."""
    limit = f"daily_limit: {daily_limit}\n" if daily_limit else ""
    task = """\
  - day: 1
    action: task
    send: at_time
    time: "00:00"
    thread: true
    body: "<p>Calling you tomorrow, {{ first_name }}.</p>"
""" if task_step else ""
    return f"""\
name: {name}
timezone: UTC
{limit}steps:
  - day: 1
    action: auto
    send: at_time
    time: "00:00"
    subject: "Hello {{{{ first_name }}}}"
    body: "<p>Hi {{{{ first_name }}}}, one question. <a href='https://example.org/x'>More</a></p>"
  - day: 1
    action: auto
    send: at_time
    time: "00:00"
    thread: true
    body: "<p>Bumping this, {{{{ first_name }}}}.</p>"
{task}"""


class Cluster:
    """Worker processes, the fake Gmail and the database of one run. Use as a context manager."""

    def __init__(self, root: Path, database_url: str, *, workers: int = 3, latency: float = 0.01,
                 lease: float = 3.0, batch: int = 5, seed: int | None = None, task_step: bool = False):
        self.root = root
        self.task_step = task_step
        self.database_url = database_url
        self.workers = workers
        self.rng = random.Random(seed)
        self.gmail = RecordingGmail(latency=latency)
        url = make_url(database_url)
        self.proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        self.worker_url = url.set(port=self.proxy.port).render_as_string(hide_password=False)
        self.secret = Fernet.generate_key().decode()
        self.lease = lease
        self.batch = batch
        self.procs: dict[int, subprocess.Popen] = {}
        self.kills = 0
        self.settled_at: datetime | None = None  # when wait_settled last saw nothing due
        self.checked_at: datetime | None = None
        self.kills_sending = 0  # see Verdict
        self.kills_in_intent = 0
        self.restarts: Counter[str] = Counter()  # workers that exited on their own, by last words
        self.faults: Counter[str] = Counter()
        self.boxes: list[Box] = []
        self.campaigns: list[str] = []
        self.exit_times: list[float] = []
        self.daily_limits: dict[str, int] = {}  # address -> the campaign's daily_limit
        self._app = None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "Cluster":
        self.gmail.start()
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        for index in list(self.procs):
            self.kill(index, count=False)
        self.proxy.close()
        self.gmail.stop()
        if self._app is not None:
            self._app.db.dispose()

    def cli_env(self) -> dict[str, str]:
        return {"CADENCE_HOME": str(self.root / "cli"), "CADENCE_DATABASE_URL": self.database_url,
                "CADENCE_SECRET_KEY": self.secret, "CADENCE_PUBLIC_URL": "https://cadence.test",
                "CADENCE_GMAIL_API_URL": self.gmail.api_url, "CADENCE_GOOGLE_TOKEN_URL": self.gmail.token_url,
                "CADENCE_GOOGLE_CLIENT_ID": self.gmail.client_id,
                "CADENCE_GOOGLE_CLIENT_SECRET": self.gmail.client_secret, "CADENCE_TIMEZONE": "UTC"}

    def worker_env(self, index: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CADENCE_", "SLACK_"))}
        env.update(self.cli_env())
        env.update({"CADENCE_HOME": str(self.root / f"worker{index}"), "CADENCE_DATABASE_URL": self.worker_url,
                    "CADENCE_DISPATCH_INTERVAL": "0.2", "CADENCE_SYNC_INTERVAL": "2",
                    "CADENCE_RECONCILE_INTERVAL": "0.5", "CADENCE_LEASE_SECONDS": str(self.lease),
                    "CADENCE_CLAIM_BATCH": str(self.batch), "CADENCE_RETRY_BASE_SECONDS": "0.5",
                    "CADENCE_SLOT_WAIT": "1", "PYTHONUNBUFFERED": "1"})
        return env

    def cadence(self, *args: str) -> str:
        """The real CLI, in this process, with this run's settings."""
        from cadence.cli import main

        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.get(k) for k in self.cli_env()}
        os.environ.update(self.cli_env())
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(list(args))
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if code:
            raise RuntimeError(f"cadence {' '.join(args)} failed ({code}): {err.getvalue()}{out.getvalue()}")
        return out.getvalue()

    @property
    def app(self):
        if self._app is None:
            from cadence.app import App
            from cadence.settings import Settings

            settings = Settings(**{"CADENCE_HOME": str(self.root / "cli"), "CADENCE_DATABASE_URL": self.database_url,
                                   "CADENCE_SECRET_KEY": self.secret, "CADENCE_TIMEZONE": "UTC",
                                   "CADENCE_GMAIL_API_URL": self.gmail.api_url,
                                   "CADENCE_GOOGLE_TOKEN_URL": self.gmail.token_url,
                                   "CADENCE_GOOGLE_CLIENT_ID": self.gmail.client_id,
                                   "CADENCE_GOOGLE_CLIENT_SECRET": self.gmail.client_secret})
            self._app = App.from_settings(settings)
        return self._app

    # -- a campaign ------------------------------------------------------------------------------

    def add_campaign(self, name: str, boxes: list[Box], *, daily_limit: int | None = None) -> None:
        """Mailboxes (Gmail accounts at the fake), contacts, one two-step campaign, sending now."""
        from cadence.services.limits import set_mailbox_limits

        if not self.campaigns:
            self.cadence("init")
            self.cadence("rep", "add", "--email", REP, "--name", "Rita Rep")
        tag = f"c{len(self.campaigns)}"
        work = self.root / tag
        work.mkdir(parents=True, exist_ok=True)
        rows = ["email,first_name"]
        for box in boxes:
            account = self.gmail.add_account(box.address)
            token = work / f"{box.address}.token"
            token.write_text(account.refresh_token + "\n", encoding="utf-8")
            self.cadence("mailbox", "add", "--provider", "gmail", "--address", box.address, "--owner", REP,
                         "--refresh-token-file", str(token))
            set_mailbox_limits(self.app, box.address, daily=box.daily, per_minute=box.per_minute,
                               concurrency=box.concurrency)
            rows += [f"{tag}.{box.address.split('@')[0]}.{i}@prospect.example,P{i}" for i in range(box.contacts)]
        (work / "contacts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (work / "campaign.yml").write_text(campaign_yaml(name, daily_limit, self.task_step), encoding="utf-8")
        self.cadence("campaign", "import", str(work / "campaign.yml"))
        self.cadence("contacts", "import", str(work / "contacts.csv"))
        for box in boxes:
            emails = ",".join(f"{tag}.{box.address.split('@')[0]}.{i}@prospect.example" for i in range(box.contacts))
            self.cadence("enroll", name, "--emails", emails, "--mailbox", box.address)
        self.cadence("prepare", name)
        self.cadence("send", name)
        self.boxes += boxes
        self.campaigns.append(name)
        if daily_limit:
            self.daily_limits.update({box.address: daily_limit for box in boxes})

    # -- workers ----------------------------------------------------------------------------------

    def start_worker(self, index: int) -> None:
        log = open(self.root / f"worker{index}.log", "ab")
        self.procs[index] = subprocess.Popen([sys.executable, "-m", "cadence.cli", "worker"], cwd=self.root,
                                             env=self.worker_env(index), stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start(self) -> None:
        for index in range(self.workers):
            self.start_worker(index)

    def kill(self, index: int, *, count: bool = True) -> None:
        """SIGKILL worker `index`. A counted kill first freezes it (SIGSTOP) and reads what it held at
        that moment: claimed due messages (`kills_sending`), some in `sending` (`kills_in_intent`)."""
        proc = self.procs.pop(index, None)
        if proc is None:
            return
        if count:
            proc.send_signal(signal.SIGSTOP)
            claimed, in_intent = self.held_by(proc.pid)
            self.kills_sending += claimed > 0
            self.kills_in_intent += in_intent > 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills += count

    def held_by(self, pid: int) -> tuple[int, int]:
        """(messages claimed, of which in `sending`) by the worker process `pid`."""
        return self.holders().get(pid, (0, 0))

    def holders(self) -> dict[int, tuple[int, int]]:
        """Worker pid -> (messages it holds claimed now, of which in `sending`), read from the lease
        owner names (host:pid:…, cadence.worker.options.worker_identity); {} when the store cannot say."""
        from store.models import Message

        now = datetime.now(timezone.utc)
        try:
            with self.app.db.session() as session:
                rows = session.execute(select(Message.lease_owner, Message.state, func.count()).where(
                    Message.lease_owner.like(f"{socket.gethostname()[:40]}:%"), Message.claim_token.is_not(None),
                    Message.lease_until > now).group_by(Message.lease_owner, Message.state)).all()
        except Exception:  # noqa: BLE001 - a soak's own bookkeeping must not stop it
            return {}
        held: dict[int, tuple[int, int]] = {}
        for owner, state, n in rows:
            pid = owner.split(":")[1] if owner.count(":") >= 2 else ""
            if pid.isdigit():
                claimed, sending = held.get(int(pid), (0, 0))
                held[int(pid)] = (claimed + n, sending + (n if state == "sending" else 0))
        return held

    def supervise(self) -> None:
        """Start again a worker that exited on its own, as systemd's Restart=always would.

        The only expected way out is a start during a database outage (`cadence worker` cannot
        open its database, says so and exits); anything else is a violation in `verdict`.
        """
        for index, proc in list(self.procs.items()):
            if proc.poll() is not None:
                tail = (self.root / f"worker{index}.log").read_text(errors="replace").strip().splitlines()
                self.restarts[tail[-1] if tail else f"exit {proc.returncode}"] += 1
                self.start_worker(index)

    def terminate_all(self) -> list[float]:
        """SIGTERM every worker; returns how long each took to exit (seconds)."""
        self.supervise()
        time.sleep(2.0)  # a worker just started must be running its loops before it is asked to stop
        self.supervise()
        started = {}
        for index, proc in self.procs.items():
            started[index] = time.monotonic()
            proc.send_signal(signal.SIGTERM)
        times = []
        for index, proc in list(self.procs.items()):
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = "killed after 60 s"
            times.append(time.monotonic() - started[index])
            if code != 0:
                raise AssertionError(f"worker {index} exited with {code} after SIGTERM; "
                                     f"see {self.root}/worker{index}.log")
        self.procs.clear()
        self.exit_times += times
        return times

    def chaos(self, seconds: float, *, kill_gap: tuple[float, float] = (0.3, 1.5), fault_chance: float = 0.3,
              outage_every: float | None = None, outage: float = 1.0, stop_when=None,
              while_sending: bool = False) -> None:
        """Kill a random worker every `kill_gap` seconds (and start it again), with provider faults and
        database outages on the way, for `seconds` (or until `stop_when()` is true).

        `while_sending`: the victim is drawn among the workers holding claimed due messages at that
        moment, and nobody is killed while none does (a worker still starting up is left to start)
        or while nothing was sent or drafted since the previous kill (on a loaded machine kills must
        not outpace the work), so the kills land in the sending phase, between real sends."""
        end = time.monotonic() + seconds
        next_outage = time.monotonic() + outage_every if outage_every else None
        progress_at_kill = -1
        while time.monotonic() < end and not (stop_when and stop_when()):
            time.sleep(self.rng.uniform(*kill_gap))
            self.supervise()
            if while_sending:
                progress = len(self.gmail.sends) + self.gmail.call_count("drafts.create")
                if progress == progress_at_kill:
                    continue
                holders = self.holders()
                busy = [i for i, proc in self.procs.items() if proc.pid in holders]
                if not busy:
                    continue
                index = self.rng.choice(busy)
                progress_at_kill = progress
            else:
                index = self.rng.randrange(self.workers)
            self.kill(index)
            self.start_worker(index)
            if self.rng.random() < fault_chance:
                self.inject_fault()
            if next_outage is not None and time.monotonic() >= next_outage:
                self.proxy.outage(outage)
                self.faults["database outage"] += 1
                next_outage = time.monotonic() + outage_every

    def inject_fault(self) -> None:
        kind = self.rng.choice(["429", "503 send", "500 send performed", "lost answer", "503 create"])
        if kind == "429":
            self.gmail.fail_next("drafts.send", 429, retry_after=1)
        elif kind == "503 send":
            self.gmail.fail_next("drafts.send", 503)
        elif kind == "500 send performed":
            self.gmail.fail_next("drafts.send", 500, perform=True)
        elif kind == "lost answer":
            self.gmail.lose_next_response("drafts.send")
        else:
            self.gmail.fail_next("drafts.create", 503)
        self.faults[kind] += 1

    # -- judging --------------------------------------------------------------------------------

    def pending(self) -> int:
        """Messages due now or being sent: 0 once the run has settled."""
        from store.models import Campaign, Message

        now = self.checked_at = datetime.now(timezone.utc)
        with self.app.db.session() as session:
            return session.scalar(select(func.count()).select_from(Message).join(
                Campaign, Campaign.id == Message.campaign_id).where(
                Campaign.name.in_(self.campaigns),
                (Message.state == "sending") | ((Message.state == "scheduled") & (Message.due_at <= now))))

    def wait_settled(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.supervise()
            if self.pending() == 0:
                self.settled_at = self.checked_at  # what falls due later is future work, not lost work
                return True
            time.sleep(0.3)
        return False

    def verdict(self) -> Verdict:
        from store.models import Campaign, Event, MailboxRow, Message

        verdict = Verdict(kills=self.kills, kills_sending=self.kills_sending, kills_in_intent=self.kills_in_intent)
        settled_at = self.settled_at or datetime.now(timezone.utc)
        with self.app.db.session() as session:
            rows = session.execute(select(Message.id, Message.message_id, Message.state, Message.due_at,
                                          MailboxRow.address, Message.provider_draft_id)
                                   .join(Campaign, Campaign.id == Message.campaign_id)
                                   .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                                   .where(Campaign.name.in_(self.campaigns))).all()
            deferred_ids = set(session.scalars(select(Event.message_id).where(Event.kind == "deferred")))
        ours = {mid.strip(): (row_id, state, due, address) for row_id, mid, state, due, address, _ in rows}
        recorded = {mid.strip(): (row_id, state, draft_id) for row_id, mid, state, _, _, draft_id in rows}
        sent_times: dict[str, list[tuple[str, float]]] = defaultdict(list)
        addresses = {b.address.lower() for b in self.boxes}
        for address, at, message_id in self.gmail.sends:
            if address in addresses:
                sent_times[(message_id or "").strip()].append((address, at))
        for message_id, sends in sent_times.items():
            if message_id not in ours:
                verdict.strangers += len(sends)
                continue
            verdict.delivered += 1
            verdict.duplicates += len(sends) - 1
        for message_id, (row_id, state, due, address) in ours.items():
            went = message_id in sent_times
            if state == "in_doubt":
                verdict.in_doubt += 1
            if state == "sent" and not went:
                verdict.lost += 1
                verdict.violations.append(f"message {row_id} is recorded sent but never reached Gmail")
            elif went and state != "sent":
                verdict.violations.append(f"message {row_id} went out but is recorded {state}")
            elif not went and state in ("sending", "in_doubt"):
                verdict.lost += 1
            elif not went and state == "scheduled":
                if due is not None and due <= settled_at:
                    verdict.lost += 1
                elif row_id in deferred_ids:
                    verdict.deferred += 1
        self._judge_drafts(verdict, recorded)
        verdict.violations += self.limit_violations()
        # `cadence worker` cannot start while the database is away: it says so and its supervisor
        # starts it again. Once running, its loops ride out outages, so any other exit is a fault.
        verdict.violations += [f"a worker exited on its own {n} time(s): {words}" for words, n in self.restarts.items()
                               if not words.startswith("error: database error:")]
        return verdict

    def _judge_drafts(self, verdict: Verdict, ours: dict[str, tuple[int, str, str | None]]) -> None:
        """From the fake's own Drafts: exactly the draft the store recorded for a drafted task, or
        for an email not sent yet (due again later, its draft kept for that send); nothing else."""
        found: dict[str, list[str]] = defaultdict(list)  # Message-ID -> Gmail draft ids
        with self.gmail.lock:
            for address in {b.address for b in self.boxes}:
                account = self.gmail.account(address)
                for draft_id, gmail_id in account.drafts.items():
                    found[(account.messages[gmail_id].message_id or "").strip()].append(draft_id)
        for message_id, drafts in found.items():
            if message_id not in ours:
                verdict.strangers += len(drafts)
                verdict.draft_problems.append(f"{len(drafts)} draft(s) with Message-ID {message_id} the store "
                                              "knows nothing of")
                continue
            row_id, state, stored = ours[message_id]
            kept = [d for d in drafts if d == stored and state in ("drafted", "scheduled", "sending", "in_doubt")]
            verdict.drafted += bool(kept) and state == "drafted"
            if len(drafts) > len(kept):
                verdict.duplicate_drafts += len(drafts) - len(kept)
                verdict.draft_problems.append(f"message {row_id} ({state}, draft {stored}) has drafts {drafts} "
                                              "in Drafts")
        for message_id, (row_id, state, stored) in ours.items():
            if state == "drafted" and stored not in found.get(message_id, []):
                verdict.lost_drafts += 1
                verdict.draft_problems.append(f"message {row_id} is drafted but its draft {stored} is not in Drafts")

    def limit_violations(self) -> list[str]:
        problems = []
        for box in self.boxes:
            address = box.address.lower()
            times = sorted(at for a, at, _ in self.gmail.sends if a == address)
            if box.concurrency and self.gmail.peak[address] > box.concurrency:
                problems.append(f"{address}: {self.gmail.peak[address]} requests at once, limit {box.concurrency}")
            if box.per_minute:
                start = 0
                for end, at in enumerate(times):
                    while times[start] <= at - 60:
                        start += 1
                    if end - start + 1 > box.per_minute:
                        problems.append(f"{address}: {end - start + 1} sends within a minute, limit {box.per_minute}")
                        break
            caps = [x for x in (box.daily, self.daily_limits.get(box.address)) if x]
            if caps:
                day_limit = min(caps)
                per_day = Counter(datetime.fromtimestamp(at, timezone.utc).date() for at in times)
                for day, count in per_day.items():
                    if count > day_limit:
                        problems.append(f"{address}: {count} sends on {day}, limit {day_limit}")
        return problems

    def worker_logs(self) -> str:
        return "\n".join(f"--- worker{i}\n" + (self.root / f"worker{i}.log").read_text(errors="replace")[-3000:]
                         for i in range(self.workers) if (self.root / f"worker{i}.log").exists())


def pg_schema_url(dsn: str, base_url: str, name: str) -> str:
    """A fresh schema `name` and the URL that uses it (search_path)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{base_url}?options=-csearch_path%3D{name}"


def drop_schema(dsn: str, name: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
