"""Carrying out due work: launching campaigns, claiming due messages, sending each exactly once.

How an automatic email goes out, with any number of workers sharing one database
(docs/workers.md tells the operator's side):

1. *Claim*: a batch of due messages is leased to one claim token, `SELECT … FOR UPDATE SKIP
   LOCKED` on PostgreSQL, one writer (`BEGIN IMMEDIATE`) on SQLite. A `LeaseKeeper` heartbeat
   extends the lease while the worker lives; a dead worker's claims come back when it runs out.
2. *Intent*: one transaction reserves the mailbox's limits (daily caps, the per-minute window)
   and moves the message to `sending`, our Message-ID being its identity at the provider. Only
   then is the provider called. A message deferred by a limit says why and until when.
3. *Draft*: the provider's draft id is stored, by the claim's holder only, before `send_draft`.
   Every later attempt sends that same draft, so the provider itself refuses a second send.
4. *Send*, then *finish*: outcomes are written by the claim's holder only (the token fences
   a worker that lost its lease); anything else is left to reconciliation.

A message in `sending` whose lease ran out is reconciled before anything else is sent: the
provider is asked (`check_sent`, by draft and Message-ID, or by Message-ID alone when the worker
died before it stored the draft id). Only NOT_SENT is sent again; UNKNOWN becomes `in_doubt`, an
error in `cadence logs` and a count in `cadence status`, for a person to decide, never resent.

Concurrent requests per mailbox are bounded through leased rows of `mailbox_slots`, held
around every provider call (sends, drafts, checks, sync), so N workers together never exceed
the mailbox's concurrency.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, insert, or_, select, update
from sqlalchemy.exc import DBAPIError

from cadence.app import App
from cadence.services.directory import mark_disconnected
from cadence.services.errors import UserError
from cadence.services.events import record
from core.campaign import CampaignSpec
from core.headers import HeaderInjection, check_display_name
from core.mailbox import (
    Disconnected,
    DraftNotFound,
    DraftRef,
    MailboxError,
    OutgoingEmail,
    RateLimited,
    SendCheck,
    SendInDoubt,
    SendStatus,
    SentRef,
    ThreadRef,
    TransientError,
)
from core.render import RenderedEmail, quote_previous
from core.schedule import EnrollmentTiming, ScheduleError, due_time, next_open_slot
from core.tracking import add_open_pixel, add_unsubscribe_footer, rewrite_links, sign_token
from core.vocabulary import (
    CampaignState,
    EnrollmentState,
    EventKind,
    MailboxHealth,
    MessageState,
    StepAction,
    TaskState,
)
from store.campaigns import read_spec
from store.models import (
    Campaign,
    Contact,
    Enrollment,
    Event,
    MailboxQuota,
    MailboxRow,
    MailboxSend,
    MailboxSlot,
    Message,
    Rep,
    Task,
    WorkerRow,
)

log = logging.getLogger("cadence.delivery")

LEASE = timedelta(seconds=60)
RETRY_BASE = timedelta(minutes=1)
RATE_WINDOW = timedelta(minutes=1)
LANE_CHUNK = 25  # a mailbox's messages of a claim go draft -> recorded -> sent this many at a time
SOON = timedelta(seconds=2)  # a message given back unsent (no free slot, stopping) is tried again after this
PENDING = (MessageState.PLANNED.value, MessageState.SCHEDULED.value)
T = TypeVar("T")


def worker_identity() -> str:
    """host:pid:random, unique per process and readable in `lease_owner` and `workers`."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class DispatchOptions:
    """How a worker claims and sends. `from_env` reads the operator's settings (docs/workers.md)."""

    lease: timedelta = LEASE
    batch: int = 200  # messages per claim
    threads: int = 8  # mailboxes one worker serves at the same time
    slot_wait: float = 5.0  # seconds to wait for a free concurrency slot before giving a message back
    retry_base: timedelta = RETRY_BASE  # first wait after a provider error (doubling, with jitter)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "DispatchOptions":
        env = os.environ if environ is None else environ
        return cls(lease=timedelta(seconds=_positive(env, "CADENCE_LEASE_SECONDS", LEASE.total_seconds())),
                   batch=int(_positive(env, "CADENCE_CLAIM_BATCH", 200, integer=True)),
                   threads=int(_positive(env, "CADENCE_SEND_THREADS", 8, integer=True)),
                   slot_wait=_positive(env, "CADENCE_SLOT_WAIT", 5.0),
                   retry_base=timedelta(seconds=_positive(env, "CADENCE_RETRY_BASE_SECONDS",
                                                          RETRY_BASE.total_seconds())))


def _positive(env, name: str, default: float, *, integer: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise UserError(f"{name}: {raw!r} is not a {'whole ' if integer else ''}number") from None
    if value <= 0:
        raise UserError(f"{name}: must be greater than 0, got {raw!r}")
    return value


@dataclass
class PassReport:
    launched: int = 0
    sent: int = 0
    drafted: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    reconciled: int = 0
    observations: int = 0
    replies: int = 0
    bounces: int = 0
    tasks_done: int = 0
    finished: list[str] = field(default_factory=list)

    def add(self, other: "PassReport") -> None:
        for name in ("launched", "sent", "drafted", "deferred", "failed", "in_doubt", "reconciled",
                     "observations", "replies", "bounces", "tasks_done"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finished += other.finished

    def busy(self) -> bool:
        return any((self.launched, self.sent, self.drafted, self.deferred, self.failed, self.in_doubt,
                    self.reconciled, self.observations, self.finished))


# -- campaign state ----------------------------------------------------------------------------

def _campaign(session, name: str) -> Campaign:
    from cadence.services.audience import campaign_or_error

    return campaign_or_error(session, name)


def send_campaign(app: App, name: str, at: datetime | None = None) -> Campaign:
    """Start sending now or at `at`; refused unless the latest preparation is clean and current."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state in (CampaignState.SENDING, CampaignState.SCHEDULED, CampaignState.PAUSED):
            raise UserError(f"campaign {campaign.name!r} is already {state}")
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} was stopped; a stopped campaign can never be sent again")
        if state is CampaignState.FAILED:
            raise UserError(f"campaign {campaign.name!r}: the latest preparation failed; see `cadence logs "
                            f"{campaign.name!r} --errors`, fix it and prepare again")
        if state is not CampaignState.PREPARED and state is not CampaignState.FINISHED:
            raise UserError(f"campaign {campaign.name!r} is {state}; prepare it first (`cadence prepare`)")
        if (campaign.prepared_content_version != campaign.content_version
                or campaign.prepared_audience_version != campaign.audience_version):
            raise UserError(f"campaign {campaign.name!r} changed after it was prepared; prepare it again "
                            "before sending")
        campaign.send_at = at if at and at > now else now
        campaign.state = (CampaignState.SCHEDULED if at and at > now else CampaignState.SENDING).value
        record(session, EventKind.CAMPAIGN_STATE, now,
               f"send {'scheduled for ' + campaign.send_at.isoformat() if campaign.state == 'scheduled' else 'started'}",
               campaign_id=campaign.id)
        campaign_id = campaign.id
    if at is None or at <= now:
        start_due_campaigns(app, only=campaign_id)
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def pause_campaign(app: App, name: str) -> Campaign:
    return _transition(app, name, {CampaignState.SENDING, CampaignState.SCHEDULED}, CampaignState.PAUSED, "paused")


def resume_campaign(app: App, name: str) -> Campaign:
    now = app.clock.now()
    with app.db.session() as session:
        campaign = _campaign(session, name)
        target = CampaignState.SCHEDULED if campaign.send_at and campaign.send_at > now and not campaign.started_at \
            else CampaignState.SENDING
    campaign = _transition(app, name, {CampaignState.PAUSED}, target, "resumed")
    start_due_campaigns(app, only=campaign.id)
    return campaign


def stop_campaign(app: App, name: str) -> Campaign:
    """Stop for good; a preparation in progress is stopped instead (the campaign stays editable)."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state is CampaignState.PREPARING:
            campaign.state = CampaignState.DRAFT.value
            record(session, EventKind.CAMPAIGN_STATE, now, "preparation stopped by `cadence stop`",
                   level="warning", campaign_id=campaign.id)
            return campaign
        if state is CampaignState.STOPPED:
            raise UserError(f"campaign {campaign.name!r} is already stopped")
        campaign.state, campaign.stopped_at = CampaignState.STOPPED.value, now
        session.execute(update(Message).where(Message.campaign_id == campaign.id, Message.state.in_(PENDING))
                        .values(state=MessageState.CANCELLED.value, updated_at=now))
        session.execute(update(Enrollment).where(Enrollment.campaign_id == campaign.id,
                                                 Enrollment.state == EnrollmentState.ACTIVE.value)
                        .values(state=EnrollmentState.STOPPED.value, ended_at=now, end_reason="campaign stopped"))
        open_tasks = session.execute(
            select(Task, Message).join(Message, Message.id == Task.message_id)
            .where(Message.campaign_id == campaign.id, Task.state == TaskState.OPEN.value)).all()
        for task, message in open_tasks:
            task.state, task.closed_at = TaskState.SKIPPED.value, now
            message.state = MessageState.CANCELLED.value
        record(session, EventKind.CAMPAIGN_STATE, now, "stopped for good; no email of it will be sent",
               campaign_id=campaign.id)
        drafts = [(m.mailbox_id, _draft_ref(m)) for _, m in open_tasks if m.provider_draft_id]
        campaign_id = campaign.id
    for mailbox_id, draft in drafts:  # best effort: a stopped campaign's drafts leave the reps' mailboxes
        try:
            with app.db.session() as session:
                box = session.get(MailboxRow, mailbox_id)
            app.mailbox(box).delete_draft(draft)
        except MailboxError:
            pass
    with app.db.session() as session:
        return session.get(Campaign, campaign_id)


def _transition(app: App, name: str, allowed: set[CampaignState], target: CampaignState, verb: str) -> Campaign:
    with app.db.session(immediate=True) as session:
        campaign = _campaign(session, name)
        state = CampaignState(campaign.state)
        if state not in allowed:
            raise UserError(f"campaign {campaign.name!r} is {state}; it cannot be {verb}")
        campaign.state = target.value
        record(session, EventKind.CAMPAIGN_STATE, app.clock.now(), verb, campaign_id=campaign.id)
        return campaign


# -- launching and scheduling ------------------------------------------------------------------

def start_due_campaigns(app: App, only: int | None = None) -> int:
    """Scheduled campaigns whose time came start sending; sending campaigns launch new people."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        query = select(Campaign.id, Campaign.state).where(or_(
            Campaign.state == CampaignState.SENDING.value,
            (Campaign.state == CampaignState.SCHEDULED.value) & (Campaign.send_at <= now)))
        if only is not None:
            query = query.where(Campaign.id == only)
        ids = []
        for campaign_id, state in session.execute(query).all():
            if state == CampaignState.SCHEDULED.value:
                started = session.execute(update(Campaign).where(
                    Campaign.id == campaign_id, Campaign.state == CampaignState.SCHEDULED.value)
                    .values(state=CampaignState.SENDING.value))
                if started.rowcount != 1:
                    continue  # another worker started it a moment ago
                record(session, EventKind.CAMPAIGN_STATE, now, "scheduled send started", campaign_id=campaign_id)
            ids.append(campaign_id)
        if ids:
            session.execute(update(Campaign).where(Campaign.id.in_(ids), Campaign.started_at.is_(None))
                            .values(started_at=now))
    return sum(launch_enrollments(app, cid) for cid in ids)


def launch_enrollments(app: App, campaign_id: int, enrollment_ids: list[int] | None = None) -> int:
    """Give prepared, not yet launched enrollments their launch time and first due time.

    Safe with several workers: rows another worker is launching are skipped, not launched twice.
    """
    now = app.clock.now()
    launched = 0
    last = 0
    while True:
        with app.db.session(immediate=True) as session:
            query = select(Enrollment).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None),
                Enrollment.state == EnrollmentState.ACTIVE.value, Enrollment.id > last).order_by(Enrollment.id).limit(500)
            if enrollment_ids is not None:
                query = query.where(Enrollment.id.in_(enrollment_ids))
            batch = session.scalars(_skip_locked(app, query)).all()
            if not batch:
                return launched
            last = batch[-1].id
            spec = read_spec(session, session.get(Campaign, campaign_id))
            firsts = dict(session.execute(select(Message.enrollment_id, Message.id).where(
                Message.enrollment_id.in_([e.id for e in batch]), Message.position == 1,
                Message.state == MessageState.PLANNED.value)).all())
            timings = _timings(session, batch, launched_at=now)
            changes, events = [], []
            for enrollment in batch:
                if enrollment.id not in firsts:
                    continue  # not prepared (excluded or prepared before a change): left for a new preparation
                enrollment.launched_at = now
                change, event = _due_change(app, spec, enrollment, firsts[enrollment.id], 1,
                                            timings[enrollment.id], now)
                changes.append(change)
                events.append(event)
                launched += 1
            session.flush()
            if changes:
                session.execute(update(Message), changes)
            _add_events(session, events)


def _timings(session, enrollments: list[Enrollment],
             launched_at: datetime | None = None) -> dict[int, EnrollmentTiming]:
    """The schedule's view of each enrollment, read in two queries for the whole list."""
    countries = dict(session.execute(select(Contact.id, Contact.country).where(
        Contact.id.in_({e.contact_id for e in enrollments}))).all())
    done: dict[int, dict[int, datetime]] = defaultdict(dict)
    for enrollment_id, position, sent_at, updated_at in session.execute(
            select(Message.enrollment_id, Message.position, Message.sent_at, Message.updated_at).where(
                Message.enrollment_id.in_([e.id for e in enrollments]),
                Message.state.in_((MessageState.SENT.value, MessageState.SKIPPED.value)))):
        done[enrollment_id][position] = sent_at or updated_at
    timings = {}
    for enrollment in enrollments:
        zone = ZoneInfo(enrollment.zone)
        send_at = None
        if enrollment.send_at_local:
            send_at = datetime.strptime(enrollment.send_at_local, "%Y-%m-%d %H:%M").replace(tzinfo=zone)
        timings[enrollment.id] = EnrollmentTiming(
            launched_at=enrollment.launched_at or launched_at, zone=zone,
            country=countries[enrollment.contact_id], send_at=send_at, sent=done.get(enrollment.id, {}))
    return timings


def _due_change(app: App, spec: CampaignSpec, enrollment: Enrollment, message_id: int, position: int,
                timing: EnrollmentTiming, now: datetime) -> tuple[dict, dict]:
    """The message's new due time (or its failure) and the event saying so, as rows to write."""
    ids = dict(campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id, message_id=message_id)
    try:
        due = due_time(spec, position, timing, app.clock)
    except Exception as exc:  # ScheduleError, or data the schedule cannot read: this message fails, not the batch
        if not isinstance(exc, ScheduleError):
            log.exception("message %s: no due time", message_id)
        return ({"id": message_id, "state": MessageState.FAILED.value, "error": str(exc), "updated_at": now},
                _event(EventKind.FAILED, now, f"step {position}: {exc}", level="error", **ids))
    return ({"id": message_id, "state": MessageState.SCHEDULED.value, "due_at": due.at,
             "due_reasons": list(due.reasons), "updated_at": now},
            _event(EventKind.SCHEDULED, now, f"step {position} due {due.at.isoformat()}: " + "; ".join(due.reasons),
                   data={"due_at": due.at, "reasons": list(due.reasons)}, **ids))


def move_on(session, app: App, enrollment: Enrollment, after_position: int, now: datetime) -> None:
    """Step `after_position` is over (sent or skipped): schedule the next one, or finish."""
    _move_on_many(session, app, [(enrollment, after_position)], now)


def _move_on_many(session, app: App, steps: list[tuple[Enrollment, int]], now: datetime) -> None:
    """`move_on` for many enrollments at once, in a fixed number of statements."""
    steps = [(e, p) for e, p in steps if e.state == EnrollmentState.ACTIVE.value]
    if not steps:
        return
    session.flush()  # the step just carried out must count in the timings read below
    enrollment_ids = [e.id for e, _ in steps]
    positions = {(eid, pos): (mid, state) for eid, pos, mid, state in session.execute(
        select(Message.enrollment_id, Message.position, Message.id, Message.state)
        .where(Message.enrollment_id.in_(enrollment_ids)))}
    planned = [(e, p) for e, p in steps if positions.get((e.id, p + 1), (None, None))[1] == MessageState.PLANNED.value]
    timings = _timings(session, [e for e, _ in planned]) if planned else {}
    specs: dict[int, CampaignSpec] = {}
    changes, events = [], []
    for enrollment, position in steps:
        following = positions.get((enrollment.id, position + 1))
        if following is None:
            enrollment.state, enrollment.ended_at = EnrollmentState.FINISHED.value, now
            enrollment.end_reason = "every step carried out"
            events.append(_event(EventKind.FINISHED, now, "sequence finished", campaign_id=enrollment.campaign_id,
                                 enrollment_id=enrollment.id, contact_id=enrollment.contact_id))
        elif following[1] == MessageState.PLANNED.value:
            if enrollment.campaign_id not in specs:
                specs[enrollment.campaign_id] = read_spec(session, session.get(Campaign, enrollment.campaign_id))
            change, event = _due_change(app, specs[enrollment.campaign_id], enrollment, following[0], position + 1,
                                        timings[enrollment.id], now)
            changes.append(change)
            events.append(event)
        # otherwise the next step is already scheduled, sent or cancelled
    if changes:
        session.execute(update(Message), changes)
    _add_events(session, events)


def end_enrollment(session, enrollment: Enrollment, state: EnrollmentState, reason: str, now: datetime) -> list[Message]:
    """End a sequence: pending messages are cancelled, open tasks go stale. Returns stale task messages."""
    if enrollment.state != EnrollmentState.ACTIVE.value:
        return []
    enrollment.state, enrollment.ended_at, enrollment.end_reason = state.value, now, reason
    session.execute(update(Message).where(Message.enrollment_id == enrollment.id, Message.state.in_(PENDING))
                    .values(state=MessageState.CANCELLED.value, updated_at=now))
    stale = session.execute(select(Task, Message).join(Message, Message.id == Task.message_id).where(
        Message.enrollment_id == enrollment.id, Task.state == TaskState.OPEN.value)).all()
    for task, message in stale:
        task.state, task.closed_at = TaskState.STALE.value, now
        message.state = MessageState.CANCELLED.value
        record(session, EventKind.DRAFT_STALE, now, f"draft for {message.to_address} is stale: {reason}",
               level="warning", campaign_id=enrollment.campaign_id, enrollment_id=enrollment.id,
               message_id=message.id, contact_id=enrollment.contact_id)
    return [m for _, m in stale]




# -- leases ------------------------------------------------------------------------------------

class LeaseKeeper:
    """The leases one process holds, extended by a heartbeat thread while they are held.

    A token names a claim of messages, a concurrency slot or a mailbox's sync lease; the heartbeat
    extends whatever rows carry a held token, every third of the lease. `stopping` is set on
    SIGTERM: once set, no new claim is made and no provider call is started.
    With `register`, the process also keeps its row in `workers` (name, started, last heartbeat).
    """

    def __init__(self, app: App, worker: str | None = None, options: DispatchOptions | None = None, *,
                 register: bool = False, sleep: Callable[[float], None] = time.sleep):
        self.app = app
        self.worker = (worker or worker_identity())[:64]
        self.options = options or DispatchOptions.from_env()
        self.register = register
        self.sleep = sleep
        self.stopping = threading.Event()
        self._tokens: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = app.clock.now()

    @property
    def lease(self) -> timedelta:
        return self.options.lease

    def token(self) -> str:
        """A new token, held until `release`."""
        token = uuid.uuid4().hex[:24]
        self.hold(token)
        return token

    def hold(self, token: str) -> None:
        with self._lock:
            self._tokens[token] += 1

    def release(self, token: str) -> None:
        with self._lock:
            self._tokens[token] -= 1
            if self._tokens[token] <= 0:
                del self._tokens[token]

    def held(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def beat(self) -> None:
        """Extend every held lease; note this worker as alive."""
        now = self.app.clock.now()
        until = now + self.lease
        tokens = self.held()
        if not tokens and not self.register:
            return
        with self.app.db.session(immediate=True) as session:
            if tokens:
                session.execute(update(Message).where(Message.claim_token.in_(tokens)).values(lease_until=until))
                session.execute(update(MailboxSlot).where(MailboxSlot.holder.in_(tokens)).values(lease_until=until))
                session.execute(update(MailboxRow).where(MailboxRow.sync_owner.in_(tokens)).values(sync_until=until))
            if self.register:
                row = session.get(WorkerRow, self.worker)
                if row is None:
                    session.add(WorkerRow(name=self.worker, started_at=self.started_at, seen_at=now,
                                          in_flight=len(tokens)))
                else:
                    row.seen_at, row.in_flight, row.stopped_at = now, len(tokens), None

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while not self._done.wait(interval):
            try:
                self.beat()
            except Exception as exc:  # the database may be restarting: try again on the next beat
                log.warning("heartbeat failed (leases are not extended until the database answers): %s",
                            _short(exc))

    def start(self) -> "LeaseKeeper":
        if self.register:
            try:
                self.beat()
            except DBAPIError as exc:
                log.warning("could not register worker %s yet: %s", self.worker, _short(exc))
        self._thread = threading.Thread(target=self._run, name="cadence-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.register:
            try:
                with self.app.db.session(immediate=True) as session:
                    row = session.get(WorkerRow, self.worker)
                    if row is not None:
                        row.stopped_at, row.seen_at, row.in_flight = self.app.clock.now(), self.app.clock.now(), 0
            except DBAPIError as exc:
                log.warning("could not mark worker %s stopped: %s", self.worker, _short(exc))

    def __enter__(self) -> "LeaseKeeper":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def _keeper(app: App, worker: str | None, keeper: LeaseKeeper | None,
            options: DispatchOptions | None) -> Iterator[LeaseKeeper]:
    if keeper is not None:
        yield keeper
        return
    with LeaseKeeper(app, worker, options) as own:
        yield own


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _skip_locked(app: App, query, of=None):
    """PostgreSQL: rows another worker has locked are skipped. SQLite has one writer anyway.

    FOR NO KEY UPDATE: keys never change, and rows that merely reference the locked ones (events)
    can still be inserted meanwhile.
    """
    return query if app.db.is_sqlite else query.with_for_update(skip_locked=True, of=of, key_share=True)


def _locked(app: App, query, of=None):
    """PostgreSQL: lock the rows read until the transaction ends (SQLite: BEGIN IMMEDIATE did)."""
    return query if app.db.is_sqlite else query.with_for_update(of=of, key_share=True)


def _retrying(keeper: LeaseKeeper, work: Callable[[], T], what: str) -> T:
    """Run a database unit of work, trying again while the database is unreachable or deadlocked.

    Gives up after about 8 s (leases then run out and reconciliation takes over).
    """
    from sqlalchemy.exc import OperationalError

    delays = (0.2, 0.5, 1.0, 2.0, 4.0)
    for attempt in range(len(delays) + 1):
        try:
            return work()
        except OperationalError as exc:
            if attempt == len(delays):
                raise
            log.warning("%s: database error, trying again in %.1f s: %s", what, delays[attempt], _short(exc))
            keeper.sleep(delays[attempt])
    raise AssertionError("unreachable")


# -- claiming ----------------------------------------------------------------------------------

def claim_due(app: App, worker: str, limit: int = 100, keeper: LeaseKeeper | None = None) -> tuple[str, list[int]]:
    """Lease up to `limit` due messages of sending campaigns on connected mailboxes to a new token.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so workers never claim the same rows; SQLite: one writer.
    Returns (token, message ids); the token is held by `keeper` (release it when done).
    """
    now = app.clock.now()
    lease = keeper.lease if keeper else LEASE
    token = keeper.token() if keeper else uuid.uuid4().hex[:24]
    with app.db.session(immediate=True) as session:
        query = (select(Message.id).join(Campaign, Campaign.id == Message.campaign_id)
                 .join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                 .where(Message.state == MessageState.SCHEDULED.value, Message.due_at <= now,
                        Campaign.state == CampaignState.SENDING.value,
                        MailboxRow.health == MailboxHealth.CONNECTED.value,
                        or_(Message.lease_until.is_(None), Message.lease_until < now))
                 .order_by(Message.due_at, Message.id).limit(limit))
        ids = list(session.scalars(_skip_locked(app, query, of=Message)))
        if ids:
            session.execute(update(Message).where(Message.id.in_(ids))
                            .values(lease_owner=worker[:64], lease_until=now + lease, claim_token=token))
    if not ids and keeper is not None:
        keeper.release(token)
    return token, ids


def release(session, message: Message) -> None:
    """The claim on `message` ends (its holder is done with it)."""
    message.lease_owner, message.lease_until, message.claim_token = None, None, None


# -- per-mailbox limits ------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """The limits that apply to one mailbox: the provider's and the operator's, the lower of each."""

    daily: int | None = None
    per_minute: int | None = None
    concurrency: int | None = None


def _lower(*values: int | None) -> int | None:
    given = [v for v in values if v]
    return min(given) if given else None


def mailbox_limits(app: App, row: MailboxRow) -> Limits:
    provider = app.mailbox(row).limits
    return Limits(daily=_lower(provider.daily, row.daily_cap),
                  per_minute=_lower(provider.per_minute, row.per_minute_cap),
                  concurrency=_lower(provider.concurrency, row.concurrency_cap))


def set_mailbox_limits(app: App, address: str, *, daily: int | None = None, per_minute: int | None = None,
                       concurrency: int | None = None) -> MailboxRow:
    """Set the operator's own limits of a mailbox (None: only the provider's apply)."""
    for name, value in (("daily", daily), ("per_minute", per_minute), ("concurrency", concurrency)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{name}: expected a whole number of at least 1, got {value!r}")
    with app.db.session() as session:
        row = session.scalar(select(MailboxRow).where(MailboxRow.address == address.strip().lower()))
        if row is None:
            raise UserError(f"no mailbox {address}; add it with `cadence mailbox add`")
        row.daily_cap, row.per_minute_cap, row.concurrency_cap = daily, per_minute, concurrency
        return row


class _Gate:
    """Daily caps and the per-minute window of the mailboxes of one intent transaction.

    The mailbox rows are locked first, in id order, so reservations of different workers for the
    same mailbox happen one after the other and never deadlock; counts are then read, allotted in
    memory and written back before the transaction commits.
    """

    def __init__(self, session, app: App, now: datetime, wanted: dict[int, tuple[int, list[tuple], int | None]]):
        self.session, self.app, self.now = session, app, now
        self.wanted = wanted  # message id -> (mailbox id, [(bucket, cap, reopens, why)], per-minute rate)
        keys = {(mailbox_id, bucket) for mailbox_id, buckets, _ in wanted.values() for bucket, *_ in buckets}
        rate_boxes = sorted({mailbox_id for mailbox_id, _, rate in wanted.values() if rate})
        boxes = sorted({mailbox_id for mailbox_id, _ in keys} | set(rate_boxes))
        self.used: dict[tuple[int, str], int] = {}
        self.rows: dict[tuple[int, str], MailboxQuota] = {}
        self.window: dict[int, list[datetime]] = defaultdict(list)
        self.refused: Counter[int] = Counter()
        self.new_sends: list[MailboxSend] = []
        if not boxes:
            return
        if not app.db.is_sqlite:
            session.execute(select(MailboxRow.id).where(MailboxRow.id.in_(boxes)).order_by(MailboxRow.id)
                            .with_for_update(key_share=True))
        if keys:
            query = select(MailboxQuota).where(MailboxQuota.mailbox_id.in_(boxes),
                                               MailboxQuota.bucket.in_({bucket for _, bucket in keys}))
            for row in session.scalars(_locked(app, query)):
                self.rows[(row.mailbox_id, row.bucket)] = row
                self.used[(row.mailbox_id, row.bucket)] = row.used
        if rate_boxes:
            for mailbox_id, finished_at in session.execute(
                    select(MailboxSend.mailbox_id, MailboxSend.finished_at).where(
                        MailboxSend.mailbox_id.in_(rate_boxes),
                        or_(MailboxSend.finished_at.is_(None), MailboxSend.finished_at > now - RATE_WINDOW))):
                self.window[mailbox_id].append(finished_at or now)

    def take(self, message: Message) -> tuple[datetime, str] | None:
        """Reserve every limit for `message`, or say when it can go and why not now."""
        mailbox_id, buckets, rate = self.wanted.get(message.id, (message.mailbox_id, [], None))
        for bucket, cap, reopens, why in buckets:
            if self.used.get((mailbox_id, bucket), 0) >= cap:
                return reopens, why
        if rate:
            window = sorted(self.window[mailbox_id])
            if len(window) >= rate:
                k = self.refused[mailbox_id]
                self.refused[mailbox_id] += 1
                # spread a backlog over the coming minutes instead of deferring all of it by one
                at = window[k % len(window)] + RATE_WINDOW * (1 + k // len(window))
                return at, f"the mailbox's rate of {rate} emails a minute is reached"
            self.window[mailbox_id].append(self.now)
            self.new_sends.append(MailboxSend(mailbox_id=mailbox_id, message_id=message.id, started_at=self.now))
        for bucket, *_ in buckets:
            self.used[(mailbox_id, bucket)] = self.used.get((mailbox_id, bucket), 0) + 1
        message.quota_buckets = [bucket for bucket, *_ in buckets] or None
        return None

    def write(self) -> None:
        for (mailbox_id, bucket), used in self.used.items():
            row = self.rows.get((mailbox_id, bucket))
            if row is None:
                self.session.add(MailboxQuota(mailbox_id=mailbox_id, bucket=bucket, used=used))
            elif row.used != used:
                row.used = used
        self.session.add_all(self.new_sends)


def _quota_buckets(app: App, campaign_id: int, spec: CampaignSpec, daily: int | None,
                   now: datetime) -> list[tuple[str, int, datetime, str]]:
    """(bucket, cap, when it reopens, why) for every daily cap that applies to this send."""
    zone = ZoneInfo(app.settings.timezone)
    local = now.astimezone(zone)
    day = local.date().isoformat()
    tomorrow = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    buckets = []
    if spec.daily_limit:
        buckets.append((f"day:{day}:c{campaign_id}", spec.daily_limit, tomorrow,
                        f"the campaign's daily_limit of {spec.daily_limit} for this mailbox is reached for {day}"))
    if daily:
        buckets.append((f"day:{day}", daily, tomorrow,
                        f"the mailbox's cap of {daily} emails a day is reached for {day}"))
    return buckets


def _give_back(session, counts: Counter) -> None:
    """Daily reservations of sends known not to have happened are counted no more."""
    for (mailbox_id, bucket), n in sorted(counts.items()):
        session.execute(update(MailboxQuota).where(MailboxQuota.mailbox_id == mailbox_id,
                                                   MailboxQuota.bucket == bucket)
                        .values(used=case((MailboxQuota.used > n, MailboxQuota.used - n), else_=0)))


# -- concurrency slots -------------------------------------------------------------------------

_slot_rows_made: set[tuple[int, int, int]] = set()


def _ensure_slots(app: App, mailbox_id: int, capacity: int) -> None:
    key = (id(app.db), mailbox_id, capacity)
    if key in _slot_rows_made:
        return
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = sqlite_insert if app.db.is_sqlite else pg_insert
    with app.db.session(immediate=True) as session:
        session.execute(insert(MailboxSlot).values([{"mailbox_id": mailbox_id, "slot": n} for n in range(capacity)])
                        .on_conflict_do_nothing())
    _slot_rows_made.add(key)


@contextmanager
def mailbox_slot(app: App, keeper: LeaseKeeper, mailbox_id: int, capacity: int | None) -> Iterator[bool]:
    """Hold one of the mailbox's `capacity` request slots (shared by every worker) for the block.

    Yields False when no slot came free within `slot_wait` seconds (or the worker is stopping);
    with no capacity limit, yields True at once.
    """
    if not capacity:
        yield True
        return
    _ensure_slots(app, mailbox_id, capacity)
    holder = keeper.token()
    slot = None
    try:
        deadline = time.monotonic() + keeper.options.slot_wait
        pause = 0.01
        while slot is None:
            now = app.clock.now()
            with app.db.session(immediate=True) as session:
                query = (select(MailboxSlot.slot).where(
                    MailboxSlot.mailbox_id == mailbox_id, MailboxSlot.slot < capacity,
                    or_(MailboxSlot.holder.is_(None), MailboxSlot.lease_until < now))
                    .order_by(MailboxSlot.slot).limit(1))
                slot = session.scalar(_skip_locked(app, query))
                if slot is not None:
                    session.execute(update(MailboxSlot).where(MailboxSlot.mailbox_id == mailbox_id,
                                                              MailboxSlot.slot == slot)
                                    .values(holder=holder, lease_until=now + keeper.lease))
            if slot is None:
                if time.monotonic() >= deadline or keeper.stopping.is_set():
                    break
                keeper.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.2)
        yield slot is not None
    finally:
        if slot is not None:
            try:
                with app.db.session(immediate=True) as session:
                    session.execute(update(MailboxSlot).where(
                        MailboxSlot.mailbox_id == mailbox_id, MailboxSlot.slot == slot, MailboxSlot.holder == holder)
                        .values(holder=None, lease_until=None))
            except DBAPIError as exc:  # its lease runs out instead
                log.warning("could not free a request slot of mailbox %s: %s", mailbox_id, _short(exc))
        keeper.release(holder)


# -- the email of a message --------------------------------------------------------------------

def _draft_ref(message: Message) -> DraftRef:
    return DraftRef(draft_id=message.provider_draft_id, message_id=message.message_id,
                    provider_message_id=message.provider_message_id, provider_thread_id=message.provider_thread_id,
                    web_link=message.web_link)


def _sent_before(session, message: Message) -> list[Message]:
    """The earlier messages of this enrollment that really went out, by position (the last is the parent)."""
    return list(session.scalars(select(Message).where(
        Message.enrollment_id == message.enrollment_id, Message.position < message.position,
        Message.state == MessageState.SENT.value).order_by(Message.position)))


def build_email(session, app: App, message: Message, spec: CampaignSpec,
                earlier: list[Message] | None = None) -> OutgoingEmail:
    """The email for a message: threading, the quoted previous email, tracking, unsubscribe headers.

    `earlier`: the enrollment's messages that went out before this one, by position (read when None).
    """
    enrollment = message.enrollment
    contact = session.get(Contact, enrollment.contact_id)
    box = session.get(MailboxRow, message.mailbox_id)
    rep = session.get(Rep, box.owner_id)
    step = spec.step(message.position)
    rendered = RenderedEmail(message.subject or "", message.html or "", message.text or "")
    reply_to = None
    if step.thread:
        if earlier is None:
            earlier = _sent_before(session, message)
        parent = earlier[-1] if earlier else None
        if parent is not None:
            chain = tuple(m.message_id for m in earlier)
            reply_to = ThreadRef(message_id=parent.message_id, references=chain[:-1] if chain else (),
                                 provider_message_id=parent.provider_message_id,
                                 provider_thread_id=parent.provider_thread_id)
            if step.subject is None:  # "Re: <previous subject>" as it really went out (the rep may have edited it)
                previous = parent.subject or ""
                rendered = RenderedEmail(previous if previous.lower().startswith("re:") else f"Re: {previous}",
                                         rendered.html, rendered.text)
            when = (parent.sent_at or app.clock.now()).astimezone(ZoneInfo(enrollment.zone))
            rendered = quote_previous(rendered, previous=RenderedEmail(parent.subject or "", parent.html or "",
                                                                       parent.text or ""),
                                      previous_from=rep.name or box.address,
                                      previous_date=when.strftime("%a, %d %b %Y at %H:%M"))
    html, text, headers = rendered.html, rendered.text, {}
    if message.action == StepAction.AUTO.value:
        keys = app.settings.secret_keys
        base = app.settings.public_url.rstrip("/")
        if spec.track_clicks and message.links:
            index = {url: i for i, url in enumerate(message.links)}
            html = rewrite_links(html, lambda url: f"{base}/t/c/{sign_token(keys[0], 'c', message.id, index[url])}"
                                 if url in index else None)
        unsubscribe = f"{base}/u/{sign_token(keys[0], 'u', message.id)}"
        html, text = add_unsubscribe_footer(html, text, unsubscribe)
        if spec.track_opens:
            html = add_open_pixel(html, f"{base}/t/o/{sign_token(keys[0], 'o', message.id)}")
        headers = {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or None
    return OutgoingEmail(
        message_id=message.message_id, from_address=box.address,
        from_name=check_display_name("from name", rep.name) if rep.name else None,
        to_address=message.to_address, to_name=check_display_name("to name", name) if name else None,
        subject=rendered.subject, html_body=html, text_body=text, reply_to=reply_to, headers=headers)




# -- carrying out claimed messages -------------------------------------------------------------

SENT, DRAFTED, RETRY, WAIT, FAILED, IN_DOUBT, CHECK_LATER, RELEASE, LOST = (
    "sent", "drafted", "retry", "wait", "failed", "in_doubt", "check_later", "release", "lost")


@dataclass(frozen=True)
class Outcome:
    """How one claimed message ended in this worker, written by `_finish`.

    sent / drafted: done. retry: not sent, try again at `at`. wait: not sent, the mailbox is
    disconnected. failed: refused for good. in_doubt: a person decides. check_later: stays
    `sending`, asked again from `at`. release: never handed to the provider, due again from `at`.
    lost: this worker no longer holds the claim; nothing is written.
    """

    kind: str
    detail: str = ""
    at: datetime | None = None
    sent: SentRef | None = None
    reconciled: bool = False  # decided by asking the provider after an interrupted send
    late: bool = False  # decided for another worker's attempt, whose lease ran out


@dataclass
class _Work:
    message_id: int
    mailbox_id: int
    action: str
    position: int
    to_address: str
    rfc_message_id: str
    attempts: int
    email: OutgoingEmail | None = None
    draft: DraftRef | None = None
    new_draft: bool = False
    outcome: Outcome | None = None


class _NoSlot(Exception):
    """No concurrency slot of the mailbox came free in time."""


class _Lane:
    """One mailbox's provider calls in one batch: in order, each under a concurrency slot.

    After a disconnection or a rate limit, the rest of the lane is not tried (`blocked`).
    """

    def __init__(self, app: App, keeper: LeaseKeeper, row: MailboxRow, limits: Limits):
        self.app, self.keeper, self.row, self.limits = app, keeper, row, limits
        self.blocked: Outcome | None = None
        self.disconnected: str | None = None

    def call(self, fn: Callable):
        try:
            with mailbox_slot(self.app, self.keeper, self.row.id, self.limits.concurrency) as free:
                if not free:
                    raise _NoSlot()
                return fn(self.app.mailbox(self.row))
        except DBAPIError as exc:  # the slot could not be taken: the database is away
            raise _NoSlot() from exc

    def now(self) -> datetime:
        return self.app.clock.now()

    def retry_at(self, attempts: int) -> datetime:
        """Exponential backoff from the operator's retry base, with jitter."""
        base = self.keeper.options.retry_base
        return self.now() + base * (2 ** min(max(attempts - 1, 0), 6)) * (0.5 + random.random())

    def problem(self, problem: MailboxError, work: _Work) -> Outcome:
        if isinstance(problem, Disconnected):
            self.disconnected = problem.reason
            self.blocked = Outcome(WAIT, detail=problem.reason)
            return self.blocked
        if isinstance(problem, TransientError):
            at = (self.now() + timedelta(seconds=problem.retry_after) if problem.retry_after
                  else self.retry_at(work.attempts))
            outcome = Outcome(RETRY, detail=problem.reason, at=at)
            if problem.retry_after or isinstance(problem, RateLimited):
                self.blocked = outcome  # the provider asked this mailbox to slow down: the rest waits too
            return outcome
        return Outcome(FAILED, detail=problem.reason)


def _begin(app: App, keeper: LeaseKeeper, token: str, ids: list[int]):
    """The intent transaction: checks, limits, the email, and `sending` for automatic messages.

    Returns (works, mailbox rows, limits, report) for the messages that go to the provider.
    """
    report = PassReport()
    now = app.clock.now()
    works: list[_Work] = []
    with app.db.session(immediate=True) as session:
        messages = session.scalars(_locked(app, select(Message).where(
            Message.id.in_(ids), Message.claim_token == token).order_by(Message.id), of=Message)).all()
        if not messages:
            return works, {}, {}, report
        loaded = _Loaded(session, messages)
        limits: dict[int, Limits | None] = {}
        for box in loaded.mailboxes.values():
            try:
                limits[box.id] = mailbox_limits(app, box)
            except Exception as exc:  # e.g. this machine lacks the provider's client settings
                log.error("mailbox %s cannot be used by this worker: %s", box.address, exc)
                limits[box.id] = None
        wanted = {}
        for message in messages:
            limit = limits.get(message.mailbox_id)
            if message.action == StepAction.AUTO.value and message.state == MessageState.SCHEDULED.value and limit:
                campaign = loaded.campaigns[message.campaign_id]
                buckets = _quota_buckets(app, campaign.id, loaded.spec(campaign), limit.daily, now)
                if buckets or limit.per_minute:
                    wanted[message.id] = (message.mailbox_id, buckets, limit.per_minute)
        gate = _Gate(session, app, now, wanted)
        for message in messages:
            if message.state != MessageState.SCHEDULED.value:
                release(session, message)  # cancelled or moved on since it was claimed
                continue
            enrollment = loaded.enrollments[message.enrollment_id]
            campaign = loaded.campaigns[message.campaign_id]
            contact = loaded.contacts[enrollment.contact_id]
            box = loaded.mailboxes[message.mailbox_id]
            if (campaign.state != CampaignState.SENDING.value or box.health != MailboxHealth.CONNECTED.value
                    or limits.get(box.id) is None):
                if limits.get(box.id) is None:
                    message.due_at = max(message.due_at or now, now + SOON)
                release(session, message)
                continue
            live = _live_exclusion(enrollment, campaign, contact)
            if live:
                state, reason = live
                if state is not None:
                    end_enrollment(session, enrollment, state, reason, now)
                if message.state == MessageState.SCHEDULED.value:
                    message.state = MessageState.CANCELLED.value
                record(session, EventKind.EXCLUDED, now, f"{contact.email}: not sent: {reason}", level="warning",
                       campaign_id=campaign.id, enrollment_id=enrollment.id, message_id=message.id,
                       contact_id=contact.id, data={"cause": reason})
                release(session, message)
                continue
            spec = loaded.spec(campaign)
            auto = message.action == StepAction.AUTO.value
            email = None
            if not (auto and message.provider_draft_id):  # an existing draft is sent as it is
                try:
                    email = build_email(session, app, message, spec, loaded.sent_before(message, spec))
                except Exception as refused:  # a header injection, or data no email can be made of
                    if not isinstance(refused, HeaderInjection):
                        log.exception("message %s: no email could be built", message.id)
                    message.state, message.error = MessageState.FAILED.value, str(refused)
                    record(session, EventKind.FAILED, now, f"step {message.position} to {contact.email}: {refused}",
                           level="error", campaign_id=campaign.id, enrollment_id=enrollment.id,
                           message_id=message.id)
                    release(session, message)
                    report.failed += 1
                    continue
            if auto:
                refused = gate.take(message)
                if refused is not None:
                    reopens, why = refused
                    _defer(session, app, message, spec, enrollment, contact, reopens, why, now)
                    report.deferred += 1
                    continue
            works.append(_Work(message.id, message.mailbox_id, message.action, message.position, message.to_address,
                               message.message_id, message.attempts + auto, email,
                               _draft_ref(message) if message.provider_draft_id else None))
        gate.write()
        going = {action: [w.message_id for w in works if w.action == action] for action in StepAction}
        if going[StepAction.AUTO]:  # the recorded intent, one statement for the batch
            session.execute(update(Message).where(Message.id.in_(going[StepAction.AUTO])).values(
                state=MessageState.SENDING.value, attempts=Message.attempts + 1, lease_until=now + keeper.lease,
                updated_at=now).execution_options(synchronize_session=False))
        if going[StepAction.TASK]:
            session.execute(update(Message).where(Message.id.in_(going[StepAction.TASK])).values(
                lease_until=now + keeper.lease, updated_at=now).execution_options(synchronize_session=False))
    return works, loaded.mailboxes, limits, report


class _Loaded:
    """Everything the messages of one batch refer to, read in a handful of queries."""

    def __init__(self, session, messages: list[Message]):
        self.session = session
        self.enrollments = {e.id: e for e in session.scalars(select(Enrollment).where(
            Enrollment.id.in_({m.enrollment_id for m in messages})))}
        self.contacts = {c.id: c for c in session.scalars(select(Contact).where(
            Contact.id.in_({e.contact_id for e in self.enrollments.values()})))}
        self.campaigns = {c.id: c for c in session.scalars(select(Campaign).where(
            Campaign.id.in_({m.campaign_id for m in messages})))}
        self.mailboxes = {b.id: b for b in session.scalars(select(MailboxRow).where(
            MailboxRow.id.in_({m.mailbox_id for m in messages})))}
        self.reps = {r.id: r for r in session.scalars(select(Rep).where(
            Rep.id.in_({b.owner_id for b in self.mailboxes.values()})))}
        self.messages = messages
        self._specs: dict[int, CampaignSpec] = {}
        self._sent: dict[int, list[Message]] | None = None

    def spec(self, campaign: Campaign) -> CampaignSpec:
        if campaign.id not in self._specs:
            self._specs[campaign.id] = read_spec(self.session, campaign)
        return self._specs[campaign.id]

    def sent_before(self, message: Message, spec: CampaignSpec) -> list[Message]:
        if not spec.step(message.position).thread:
            return []
        if self._sent is None:
            threaded = {m.enrollment_id for m in self.messages if m.position > 1}
            self._sent = defaultdict(list)
            for sent in self.session.scalars(select(Message).where(
                    Message.enrollment_id.in_(threaded), Message.state == MessageState.SENT.value)
                    .order_by(Message.enrollment_id, Message.position)):
                self._sent[sent.enrollment_id].append(sent)
        return [m for m in self._sent.get(message.enrollment_id, []) if m.position < message.position]


def _live_exclusion(enrollment: Enrollment, campaign: Campaign, contact: Contact):
    """A reason this message must not go out now, though it was prepared, else None."""
    if campaign.state == CampaignState.STOPPED.value:
        return None, "the campaign was stopped"
    if enrollment.state != EnrollmentState.ACTIVE.value:
        return None, f"the sequence ended ({enrollment.state})"
    if contact.opted_out_at is not None:
        return EnrollmentState.UNSUBSCRIBED, "opted_out"
    if contact.bounced_at is not None:
        return EnrollmentState.BOUNCED, "bounced"
    return None


def _defer(session, app, message: Message, spec: CampaignSpec, enrollment, contact, reopens: datetime, why: str,
           now: datetime) -> None:
    """A limit holds the message back: it says so, and when it goes (`due_reasons`, a `deferred` event)."""
    zone = ZoneInfo(enrollment.zone)
    at, moves = (next_open_slot(reopens, zone, spec.send_window, contact.country)
                 if spec.send_window else (reopens, ()))
    message.due_at = at
    message.due_reasons = _capped(list(message.due_reasons or []) + [f"deferred: {why}; goes at {at.isoformat()}",
                                                                      *moves])
    message.updated_at = now
    release(session, message)
    record(session, EventKind.DEFERRED, now, f"step {message.position} to {contact.email} deferred to "
           f"{at.isoformat()}: {why}", level="warning", campaign_id=message.campaign_id,
           enrollment_id=enrollment.id, message_id=message.id, data={"due_at": at, "why": why})


def _capped(reasons: list[str], keep: int = 12) -> list[str]:
    """The first reasons (how the due time was computed) and the latest moves."""
    return reasons if len(reasons) <= keep else reasons[:4] + reasons[-(keep - 4):]


def _held(lane: _Lane, work: _Work) -> bool:
    """True (with the outcome set) when the lane may not call the provider for `work` now:
    the mailbox is blocked (rate limit, disconnected) or the worker is stopping."""
    if lane.blocked is not None:
        work.outcome = lane.blocked
        return True
    if lane.keeper.stopping.is_set():
        work.outcome = Outcome(RELEASE, at=lane.now())
        return True
    return False


def _draft_step(lane: _Lane, works: list[_Work]) -> None:
    """Create the drafts: every task's, and every automatic message's that has none yet."""
    for work in works:
        if work.outcome is not None or (work.action == StepAction.AUTO.value and work.draft is not None):
            continue
        if _held(lane, work):
            continue
        try:
            draft = lane.call(lambda box: box.create_draft(work.email))
        except _NoSlot:
            work.outcome = Outcome(RELEASE, at=lane.now() + SOON)
            continue
        except MailboxError as problem:
            work.outcome = lane.problem(problem, work)
            continue
        except Exception as exc:  # a connector bug must not stop the others
            log.exception("creating the draft of message %s failed", work.message_id)
            work.outcome = Outcome(RETRY, detail=f"creating the draft failed: {exc}", at=lane.retry_at(work.attempts))
            continue
        work.draft, work.new_draft = draft, True
        if work.action == StepAction.TASK.value:
            work.outcome = Outcome(DRAFTED)


def _send_step(lane: _Lane, works: list[_Work]) -> None:
    """Send the recorded drafts; an interrupted send is checked with the provider at once."""
    for work in works:
        if work.outcome is not None or work.action != StepAction.AUTO.value or work.draft is None:
            continue
        if _held(lane, work):
            continue
        try:
            sent = lane.call(lambda box: box.send_draft(work.draft))
        except _NoSlot:
            work.outcome = Outcome(RELEASE, at=lane.now() + SOON)
            continue
        except (SendInDoubt, DraftNotFound) as doubt:
            work.outcome = _check(lane, work, doubt.reason)
            continue
        except MailboxError as problem:
            work.outcome = lane.problem(problem, work)
            continue
        except Exception as exc:  # not a provider answer we know: it may have gone out
            log.exception("sending message %s failed unexpectedly", work.message_id)
            work.outcome = _check(lane, work, f"sending failed unexpectedly: {exc}")
            continue
        work.outcome = Outcome(SENT, sent=sent)


def _check(lane: _Lane, work: _Work, why: str, *, reconciling: bool = False) -> Outcome:
    """Ask the provider whether the message went out; only its answer decides."""
    try:
        status = lane.call(lambda box: box.check_sent(work.rfc_message_id, work.draft))
    except _NoSlot:
        return Outcome(CHECK_LATER, detail=f"{why}; no request slot of the mailbox came free to check",
                       at=lane.now() + SOON)
    except Exception as exc:
        if isinstance(exc, Disconnected):
            lane.disconnected = exc.reason
        reason = exc.reason if isinstance(exc, MailboxError) else str(exc)
        return Outcome(CHECK_LATER, detail=f"{why}; checking failed: {reason}", at=lane.retry_at(1))
    return _judged(status, work, why, lane, reconciling)


def _judged(status: SendStatus, work: _Work, why: str, lane: _Lane, reconciling: bool) -> Outcome:
    if status.status is SendCheck.SENT:
        return Outcome(SENT, sent=status.sent or SentRef(work.rfc_message_id), reconciled=True,
                       detail=f"step {work.position} to {work.to_address}: sent (confirmed after: {why})")
    if status.status is SendCheck.NOT_SENT:
        # After another worker's lapsed attempt, its send attempt keeps counting in the rate window:
        # that worker might still be alive and about to send the same draft.
        return Outcome(RETRY, reconciled=True, late=reconciling, at=lane.now() if reconciling else lane.retry_at(1),
                       detail=f"not sent ({why}; {status.detail}); it will be sent again")
    return Outcome(IN_DOUBT, detail=f"{why}; {status.detail}" if status.detail else why)


def _in_lanes(lanes: dict[int, _Lane], works: list[_Work], step: Callable[[_Lane, list[_Work]], None],
              pool: ThreadPoolExecutor | None) -> None:
    """Run `step` for each mailbox's works; mailboxes side by side when there is a pool."""
    groups: dict[int, list[_Work]] = defaultdict(list)
    for work in works:
        if work.outcome is None:
            groups[work.mailbox_id].append(work)

    def run(item: tuple[int, list[_Work]]) -> None:
        mailbox_id, items = item
        try:
            step(lanes[mailbox_id], items)
        except Exception:  # outcomes not set stay unknown: `_finish` leaves them to reconciliation
            log.exception("provider calls of mailbox %s stopped", mailbox_id)

    if pool is None or len(groups) <= 1:
        for item in groups.items():
            run(item)
    else:
        list(pool.map(run, groups.items()))


def _record_drafts(app: App, keeper: LeaseKeeper, token: str, works: list[_Work]) -> list[tuple[int, DraftRef]]:
    """Store new draft ids of automatic messages, by the claim's holder only, before any send.

    Returns the drafts to delete: made by this worker but recorded by nobody (the claim was lost).
    """
    todo = {w.message_id: w for w in works
            if w.action == StepAction.AUTO.value and w.new_draft and w.outcome is None}
    if not todo:
        return []

    def write() -> set[int]:
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            owned = session.execute(_locked(app, select(Message.id, Message.provider_draft_id).where(
                Message.id.in_(todo), Message.claim_token == token,
                Message.state == MessageState.SENDING.value).order_by(Message.id), of=Message)).all()
            changes = []
            for message_id, stored in owned:
                draft = todo[message_id].draft
                if stored not in (None, draft.draft_id):
                    continue
                changes.append({"id": message_id, "provider_draft_id": draft.draft_id,
                                "provider_message_id": draft.provider_message_id,
                                "provider_thread_id": draft.provider_thread_id, "web_link": draft.web_link,
                                "lease_until": now + keeper.lease, "updated_at": now})
            if changes:
                session.execute(update(Message), changes)
        return {change["id"] for change in changes}

    try:
        recorded = _retrying(keeper, write, "recording draft ids")
    except DBAPIError as exc:
        # Whether it committed is unknown: nothing is sent, drafts stay; reconciliation decides.
        log.error("could not record %d draft ids; they are not sent now: %s", len(todo), _short(exc))
        for work in todo.values():
            work.outcome = Outcome(LOST)
        return []
    orphans = []
    for message_id, work in todo.items():
        if message_id not in recorded:
            work.outcome = Outcome(LOST)
            orphans.append((work.mailbox_id, work.draft))
    return orphans


def _finish(app: App, keeper: LeaseKeeper, token: str, works: list[_Work],
            lanes: dict[int, _Lane] | None = None) -> PassReport:
    """Write every outcome, for the messages this claim still holds, in one transaction."""
    by_id = {w.message_id: w for w in works if not (w.outcome and w.outcome.kind == LOST)}
    if not by_id:
        return PassReport()
    disconnected = {mid: lane.disconnected for mid, lane in (lanes or {}).items() if lane.disconnected}

    windowed = any(lane.limits.per_minute for lane in (lanes or {}).values())

    def write() -> PassReport:
        report = PassReport()
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            rows = session.execute(_locked(app, select(
                Message.id, Message.enrollment_id, Message.mailbox_id, Message.campaign_id, Message.position,
                Message.to_address, Message.message_id, Message.provider_message_id, Message.provider_thread_id)
                .where(Message.id.in_(by_id), Message.claim_token == token).order_by(Message.id), of=Message)).all()
            if not rows:
                return report
            enrollments = {e.id: e for e in session.scalars(select(Enrollment).where(
                Enrollment.id.in_({r.enrollment_id for r in rows})))}
            give_back: Counter = Counter()
            finished, dropped, moves, sent_rows, events = [], [], [], [], []
            others = []
            for row in rows:
                outcome = by_id[row.id].outcome
                if outcome is not None and outcome.kind == SENT:  # the common case, written in bulk
                    sent = outcome.sent or SentRef(row.message_id)
                    enrollment = enrollments[row.enrollment_id]
                    sent_rows.append({
                        "id": row.id, "state": MessageState.SENT.value, "sent_at": sent.sent_at or now,
                        "provider_message_id": sent.provider_message_id or row.provider_message_id,
                        "provider_thread_id": sent.provider_thread_id or row.provider_thread_id,
                        "updated_at": now, "quota_buckets": None, "lease_owner": None, "lease_until": None,
                        "claim_token": None})
                    events.append(_event(EventKind.SENT, now, outcome.detail or
                                         f"step {row.position} sent to {row.to_address}",
                                         campaign_id=row.campaign_id, enrollment_id=enrollment.id, message_id=row.id,
                                         contact_id=enrollment.contact_id, mailbox_id=row.mailbox_id))
                    moves.append((enrollment, row.position))
                    finished.append(row.id)
                    report.sent += 1
                    report.reconciled += outcome.reconciled
                else:
                    others.append(row.id)
            if sent_rows:
                session.execute(update(Message), sent_rows)
            if others:
                messages = session.scalars(select(Message).where(Message.id.in_(others)).order_by(Message.id)).all()
                boxes = {b.id: b for b in session.scalars(select(MailboxRow).where(
                    MailboxRow.id.in_({m.mailbox_id for m in messages})))}
                for message in messages:
                    work = by_id[message.id]
                    outcome = work.outcome or Outcome(CHECK_LATER, at=now,
                                                      detail="the worker could not tell how the provider call ended")
                    _apply(session, app, message, work, outcome, enrollments[message.enrollment_id],
                           boxes[message.mailbox_id], now, report, give_back, moves)
                    if outcome.kind in (RETRY, WAIT, FAILED, RELEASE) and not outcome.late:
                        dropped.append(message.id)  # this worker's own attempt did not send it
                    elif outcome.kind != CHECK_LATER:
                        finished.append(message.id)
                for mailbox_id, reason in disconnected.items():
                    if mailbox_id in boxes:
                        mark_disconnected(session, boxes[mailbox_id], reason, now)
            _give_back(session, give_back)
            if windowed and finished:
                session.execute(update(MailboxSend).where(MailboxSend.message_id.in_(finished),
                                                          MailboxSend.finished_at.is_(None)).values(finished_at=now))
            if windowed and dropped:  # not sent: they do not count in the window
                session.execute(delete(MailboxSend).where(MailboxSend.message_id.in_(dropped),
                                                          MailboxSend.finished_at.is_(None)))
            _add_events(session, events)
            _move_on_many(session, app, moves, now)
        return report

    try:
        return _retrying(keeper, write, "recording send outcomes")
    except DBAPIError as exc:
        log.error("could not record the outcome of %d messages; reconciliation will settle them after "
                  "their lease: %s", len(by_id), _short(exc))
        return PassReport()


def _apply(session, app: App, message: Message, work: _Work, outcome: Outcome, enrollment: Enrollment,
           box: MailboxRow, now: datetime, report: PassReport, give_back: Counter, moves: list) -> None:
    ids = dict(campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
               contact_id=enrollment.contact_id)
    kind = outcome.kind
    held = list(message.quota_buckets or [])
    if kind in (RETRY, WAIT, FAILED, RELEASE):
        for bucket in held:
            give_back[(message.mailbox_id, bucket)] += 1
    if kind != CHECK_LATER:
        message.quota_buckets = None
    if kind == SENT:
        sent = outcome.sent or SentRef(message.message_id)
        _set_sent(message, sent, now)
        record(session, EventKind.SENT, now, outcome.detail or f"step {message.position} sent to {message.to_address}",
               mailbox_id=message.mailbox_id, **ids)
        moves.append((enrollment, message.position))
        report.sent += 1
        report.reconciled += outcome.reconciled
    elif kind == DRAFTED:
        draft = work.draft
        message.state, message.updated_at = MessageState.DRAFTED.value, now
        message.provider_draft_id, message.provider_message_id = draft.draft_id, draft.provider_message_id
        message.provider_thread_id, message.web_link = draft.provider_thread_id, draft.web_link
        release(session, message)
        task = Task(message_id=message.id, rep_id=box.owner_id, state=TaskState.OPEN.value, created_at=now)
        session.add(task)
        session.flush()
        record(session, EventKind.TASK_CREATED, now, f"task {task.id}: draft to {message.to_address} ready in "
               f"{box.address}", mailbox_id=box.id, data={"task_id": task.id, "web_link": draft.web_link}, **ids)
        report.drafted += 1
    elif kind in (RETRY, WAIT, RELEASE):
        if message.state == MessageState.SENDING.value:
            message.state = MessageState.SCHEDULED.value  # a stored draft is the one sent next time
        if kind == RETRY:
            message.due_at = outcome.at or now
            message.due_reasons = _capped(list(message.due_reasons or []) + [
                f"retry at {message.due_at.isoformat()}: {outcome.detail}"])
            record(session, EventKind.RECONCILED if outcome.reconciled else EventKind.DEFERRED, now,
                   f"step {message.position} to {message.to_address}: {outcome.detail}; "
                   f"{'goes' if outcome.reconciled else 'retry'} at {message.due_at.isoformat()}",
                   level="warning", data={"due_at": message.due_at, "why": outcome.detail}, **ids)
            if outcome.reconciled:
                report.reconciled += 1
            else:
                report.deferred += 1
        elif kind == WAIT:
            record(session, EventKind.DEFERRED, now, f"step {message.position} to {message.to_address} waits "
                   f"until {box.address} is reconnected: {outcome.detail}", level="warning",
                   data={"why": outcome.detail}, **ids)
            report.deferred += 1
        elif outcome.at is not None:
            message.due_at = max(message.due_at or outcome.at, outcome.at)
        message.updated_at = now
        release(session, message)
    elif kind == FAILED:
        message.state, message.error, message.updated_at = MessageState.FAILED.value, outcome.detail, now
        release(session, message)
        end_enrollment(session, enrollment, EnrollmentState.FAILED, f"provider refused: {outcome.detail}", now)
        record(session, EventKind.FAILED, now, f"step {message.position} to {message.to_address}: {outcome.detail}",
               level="error", **ids)
        report.failed += 1
    elif kind == IN_DOUBT:
        message.state, message.error, message.updated_at = MessageState.IN_DOUBT.value, outcome.detail, now
        release(session, message)
        record(session, EventKind.IN_DOUBT, now, f"step {message.position} to {message.to_address}: cannot tell "
               f"whether it was sent ({outcome.detail}); a person must decide, it is not sent again",
               level="error", mailbox_id=message.mailbox_id, **ids)
        log.error("message %s to %s is in doubt: %s", message.id, message.to_address, outcome.detail)
        report.in_doubt += 1
    elif kind == CHECK_LATER:
        at = outcome.at or now
        message.lease_owner, message.claim_token, message.lease_until = None, None, at
        record(session, EventKind.RECONCILED, now, f"step {message.position} to {message.to_address}: "
               f"{outcome.detail}; asked again from {at.isoformat()}", level="warning", **ids)


def _event(kind: EventKind, at: datetime, detail: str, *, level: str = "info", campaign_id: int | None = None,
           enrollment_id: int | None = None, message_id: int | None = None, contact_id: int | None = None,
           mailbox_id: int | None = None, data: dict | None = None) -> dict:
    """An event row for `_add_events`: what `record` adds, for many at once (no dedup key)."""
    from cadence.services.events import _json_safe

    return {"kind": kind.value, "at": at, "detail": detail, "level": level, "campaign_id": campaign_id,
            "enrollment_id": enrollment_id, "message_id": message_id, "contact_id": contact_id,
            "mailbox_id": mailbox_id, "data": _json_safe(data), "dedup_key": None}


def _add_events(session, events: list[dict]) -> None:
    if events:
        session.execute(insert(Event), events)


def _set_sent(message: Message, sent: SentRef, now: datetime) -> None:
    message.state, message.sent_at = MessageState.SENT.value, sent.sent_at or now
    message.provider_message_id = sent.provider_message_id or message.provider_message_id
    message.provider_thread_id = sent.provider_thread_id or message.provider_thread_id
    message.updated_at = now
    message.quota_buckets = None
    message.lease_owner, message.lease_until, message.claim_token = None, None, None


def _mark_sent(session, app: App, message: Message, sent: SentRef, now: datetime, detail: str = "") -> None:
    """One message is known to have gone out (from a send, a check or a sync): record it, move on."""
    _set_sent(message, sent, now)
    session.execute(update(MailboxSend).where(MailboxSend.message_id == message.id,
                                              MailboxSend.finished_at.is_(None)).values(finished_at=now))
    enrollment = message.enrollment
    record(session, EventKind.SENT, now, detail or f"step {message.position} sent to {message.to_address}",
           campaign_id=message.campaign_id, enrollment_id=enrollment.id, message_id=message.id,
           contact_id=enrollment.contact_id, mailbox_id=message.mailbox_id)
    move_on(session, app, enrollment, message.position, message.sent_at)


def _resolve(app: App, message_id: int, mailbox, draft: DraftRef, why: str, report: PassReport) -> PassReport:
    """An interrupted send outside a claim (a rep's task): ask the provider, and only mark what it says."""
    try:
        status = mailbox.check_sent(draft.message_id, draft)
    except MailboxError as problem:
        status = None
        why = f"{why}; checking failed: {problem.reason}"
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        message = session.get(Message, message_id)
        if status is not None and status.status is SendCheck.SENT:
            _mark_sent(session, app, message, status.sent or SentRef(draft.message_id), now,
                       f"step {message.position} to {message.to_address}: sent (confirmed after: {why})")
            report.sent += 1
            report.reconciled += 1
        elif status is not None and status.status is SendCheck.NOT_SENT:
            if message.action == StepAction.AUTO.value:
                message.state, message.due_at = MessageState.SCHEDULED.value, now + RETRY_BASE
                release(session, message)
            record(session, EventKind.RECONCILED, now, f"step {message.position}: not sent ({why})"
                   + ("; will retry" if message.action == StepAction.AUTO.value else "; the task stays open"),
                   level="warning", campaign_id=message.campaign_id, message_id=message.id)
            report.reconciled += 1
        else:
            message.state, message.error = MessageState.IN_DOUBT.value, why
            release(session, message)
            record(session, EventKind.IN_DOUBT, now, f"step {message.position} to {message.to_address}: cannot "
                   f"tell whether it was sent ({why}); a person must decide", level="error",
                   campaign_id=message.campaign_id, message_id=message.id)
            report.in_doubt += 1
    return report


# -- the passes --------------------------------------------------------------------------------

def dispatch_due(app: App, worker: str | None = None, *, keeper: LeaseKeeper | None = None,
                 options: DispatchOptions | None = None, max_batches: int = 1000) -> PassReport:
    """Reconcile interrupted sends, then claim and carry out everything due now, batch after batch."""
    with _keeper(app, worker, keeper, options) as keeper:
        report = reconcile_expired(app, keeper=keeper)
        pool = None
        try:
            for _ in range(max_batches):
                if keeper.stopping.is_set():
                    break
                token, ids = claim_due(app, keeper.worker, keeper.options.batch, keeper)
                if not ids:
                    break
                try:
                    if pool is None and keeper.options.threads > 1:
                        pool = ThreadPoolExecutor(keeper.options.threads, thread_name_prefix="cadence-mailbox")
                    report.add(_carry_out(app, keeper, token, ids, pool))
                finally:
                    keeper.release(token)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
    return report


def _carry_out(app: App, keeper: LeaseKeeper, token: str, ids: list[int],
               pool: ThreadPoolExecutor | None) -> PassReport:
    works, mailboxes, limits, report = _retrying(keeper, lambda: _begin(app, keeper, token, ids), "claiming")
    if not works:
        return report
    lanes = {mid: _Lane(app, keeper, mailboxes[mid], limits[mid]) for mid in {w.mailbox_id for w in works}}
    orphans: list[tuple[int, DraftRef]] = []
    per_mailbox: dict[int, list[_Work]] = defaultdict(list)
    for work in works:
        per_mailbox[work.mailbox_id].append(work)
    # In rounds of LANE_CHUNK messages per mailbox, so that a busy mailbox's first emails go out
    # before its last drafts are made; each round's draft ids are recorded in one transaction.
    for start in range(0, max(len(items) for items in per_mailbox.values()), LANE_CHUNK):
        chunk = [w for items in per_mailbox.values() for w in items[start:start + LANE_CHUNK]]
        _in_lanes(lanes, chunk, _draft_step, pool)
        orphans += _record_drafts(app, keeper, token, chunk)
        _in_lanes(lanes, chunk, _send_step, pool)
    report.add(_finish(app, keeper, token, works, lanes))
    for mailbox_id, draft in orphans:  # made by this worker, recorded by nobody: never to be sent
        try:
            lanes[mailbox_id].call(lambda box: box.delete_draft(draft))
        except Exception as exc:
            log.warning("could not delete unrecorded draft %s: %s", draft.draft_id, exc)
    return report


def reconcile_expired(app: App, worker: str | None = None, *, keeper: LeaseKeeper | None = None,
                      options: DispatchOptions | None = None) -> PassReport:
    """Messages left in `sending` whose lease ran out: the provider says what happened to them.

    SENT is recorded; NOT_SENT is due again at once (with its draft, when there is one); UNKNOWN is
    `in_doubt`. A check that fails is tried again later; nothing is sent here.
    """
    report = PassReport()
    with _keeper(app, worker, keeper, options) as keeper:
        while not keeper.stopping.is_set():
            token = keeper.token()
            try:
                now = app.clock.now()
                with app.db.session(immediate=True) as session:
                    query = (select(Message).join(MailboxRow, MailboxRow.id == Message.mailbox_id)
                             .where(Message.state == MessageState.SENDING.value,
                                    MailboxRow.health == MailboxHealth.CONNECTED.value,
                                    or_(Message.lease_until.is_(None), Message.lease_until < now))
                             .order_by(Message.id).limit(keeper.options.batch))
                    messages = session.scalars(_skip_locked(app, query, of=Message)).all()
                    works = []
                    for message in messages:
                        message.claim_token, message.lease_owner = token, keeper.worker
                        message.lease_until = now + keeper.lease
                        works.append(_Work(message.id, message.mailbox_id, message.action, message.position,
                                           message.to_address, message.message_id, message.attempts,
                                           draft=_draft_ref(message) if message.provider_draft_id else None))
                    rows = {b.id: b for b in session.scalars(select(MailboxRow).where(
                        MailboxRow.id.in_({m.mailbox_id for m in messages})))} if messages else {}
                if not works:
                    return report
                lanes = {}
                for mailbox_id, row in rows.items():
                    try:
                        lanes[mailbox_id] = _Lane(app, keeper, row, mailbox_limits(app, row))
                    except Exception as exc:
                        log.error("mailbox %s cannot be used by this worker: %s", row.address, exc)
                for work in works:
                    if work.mailbox_id not in lanes:
                        work.outcome = Outcome(CHECK_LATER, detail="this worker cannot reach the mailbox",
                                               at=now + SOON)

                def check(lane: _Lane, items: list[_Work]) -> None:
                    for work in items:
                        if lane.keeper.stopping.is_set():
                            work.outcome = Outcome(CHECK_LATER, detail="the worker stopped", at=lane.now())
                        else:
                            work.outcome = _check(lane, work, "the worker sending it stopped", reconciling=True)

                _in_lanes(lanes, works, check, None)
                report.add(_finish(app, keeper, token, works, lanes))
            finally:
                keeper.release(token)
    return report


def finish_campaigns(app: App) -> list[str]:
    """Sending campaigns whose every launched enrollment has ended are finished (once, by one worker)."""
    from sqlalchemy import exists

    now = app.clock.now()
    finished = []
    with app.db.session(immediate=True) as session:
        for campaign_id, name in session.execute(select(Campaign.id, Campaign.name).where(
                Campaign.state == CampaignState.SENDING.value)).all():
            active = exists().where(Enrollment.campaign_id == campaign_id,
                                    Enrollment.state == EnrollmentState.ACTIVE.value)
            done = session.execute(update(Campaign).where(
                Campaign.id == campaign_id, Campaign.state == CampaignState.SENDING.value, ~active)
                .values(state=CampaignState.FINISHED.value))
            if done.rowcount == 1:
                record(session, EventKind.CAMPAIGN_STATE, now, "finished: every sequence has ended",
                       campaign_id=campaign_id)
                finished.append(name)
    return finished


def housekeeping(app: App, now: datetime | None = None) -> None:
    """Forget counts nobody needs any more: old quota buckets and sliding-window rows."""
    now = now or app.clock.now()
    old_day = (now - timedelta(days=3)).date().isoformat()
    with app.db.session(immediate=True) as session:
        sending = select(Message.id).where(Message.state == MessageState.SENDING.value)
        session.execute(update(MailboxSend).where(MailboxSend.finished_at.is_(None), MailboxSend.message_id.not_in(
            sending), MailboxSend.started_at < now - timedelta(minutes=10)).values(finished_at=now))
        session.execute(delete(MailboxSend).where(MailboxSend.finished_at < now - timedelta(hours=1)))
        session.execute(delete(MailboxQuota).where(MailboxQuota.bucket < f"day:{old_day}"))
