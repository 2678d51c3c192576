"""`cadence prepare`: target, exclusion rules and every message rendered, streamed in batches.

Contract:
- The target is every enrollment of the campaign not launched yet. Each gets its messages
  rendered (state `planned`) or is excluded with one cause; the KPIs count contacts.
- Memory stays flat with the audience: enrollments are read in id-ordered batches of `BATCH`
  with plain Core rows, and each batch is written (messages, enrollment states, exclusion events,
  progress) in one transaction with executemany. Only counters outlive a batch.
- Nothing half-stored is ever sendable: the claim clears the campaign's prepared versions, and
  only a preparation that finishes without error sets them again. A stopped, interrupted or
  failed preparation leaves the campaign `draft` or `failed`, which `send` refuses. A batch's
  transaction also checks that the campaign is still `preparing`, so `cadence stop` from another
  process takes effect at the next batch and that batch is rolled back.
- Critical errors (a template that does not compile or that fails to render for a reason other
  than the contact's data, exclusion options that make no sense, a disconnected or missing
  mailbox, no steps, nobody to deliver) fail the preparation: state `failed`, each error logged
  in one sentence, and a last log line with the error count.
- People enrolled into a campaign already running are prepared on their own
  (`prepare_enrollments`): same rules, exclusions logged, the KPIs grow with them.
- A preparation holds a lease on its campaign, like a worker's claim (CADENCE_LEASE_SECONDS,
  renewed every third of it while it runs, and by every batch). A `preparing` campaign whose lease
  ran out (its process was killed) is taken over by the next `prepare`, which says so and starts
  again from the beginning; every write of the old one is fenced by the owner token, so it cannot
  change the campaign after that.
- One contact's data hitting a render limit excludes that contact (cause `render_limit`); the
  template itself over a limit fails the preparation. The whole preparation has a time budget
  (CADENCE_PREPARE_BUDGET seconds): when it is spent the preparation fails and says so.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, func, insert, or_, select, update

from cadence.app import App
from cadence.services.errors import UserError
from cadence.services.reads.status import campaign_or_error
from cadence.services.sequences import launch_enrollments
from cadence.worker.options import LEASE
from core.campaign import CampaignSpec
from core.definition import campaign_warnings
from core.email.message_id import random_message_ids
from core.headers import HeaderInjection, check_display_name
from core.preparation import (
    AddressCheck,
    Cause,
    CompiledCampaign,
    ContactFacts,
    Rules,
    compile_campaign,
    prepare_contact,
)
from core.vocabulary import CampaignState, EnrollmentState, EventKind, MailboxHealth, MessageState
from store.bulk import among
from store.campaigns import read_spec
from store.events import record
from store.history import replied_contacts
from store.models import Campaign, Contact, Enrollment, Event, MailboxRow, Message, Rep

BATCH = 1000  # enrollments per batch (and per transaction); CADENCE_PREPARE_BATCH overrides it


def batch_size(app: App) -> int:
    """Enrollments per batch: CADENCE_PREPARE_BATCH (checked by the settings), else BATCH."""
    return app.settings.prepare_batch or BATCH
PREPARABLE = frozenset({CampaignState.DRAFT, CampaignState.PREPARED, CampaignState.FAILED, CampaignState.FINISHED})
log = logging.getLogger("cadence.prepare")
RUNNING = (CampaignState.SENDING.value, CampaignState.SCHEDULED.value, CampaignState.PAUSED.value)
KNOWN_FIELDS = ("first_name", "last_name", "company", "title", "country", "timezone")

_MESSAGES = Message.__table__
_ENROLLMENTS = Enrollment.__table__
_EVENTS = Event.__table__


@dataclass
class PreparationResult:
    campaign: str
    state: CampaignState
    targeted: int = 0
    to_deliver: int = 0
    to_exclude: int = 0
    messages: int = 0
    exclusions: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_variables: Counter = field(default_factory=Counter)  # variable → contacts excluded for it

    def add(self, other: "PreparationResult") -> None:
        """Count `other` (a batch) in."""
        self.missing_variables.update(other.missing_variables)
        self.targeted += other.targeted
        self.to_deliver += other.to_deliver
        self.to_exclude += other.to_exclude
        self.messages += other.messages
        self.exclusions.update(other.exclusions)

    def plus(self, other: "PreparationResult") -> "PreparationResult":
        total = PreparationResult(self.campaign, self.state, exclusions=Counter(self.exclusions),
                                  errors=list(self.errors), warnings=list(self.warnings),
                                  missing_variables=Counter(self.missing_variables))
        total.targeted, total.to_deliver, total.to_exclude, total.messages = (
            self.targeted, self.to_deliver, self.to_exclude, self.messages)
        total.add(other)
        return total

    def kpis(self) -> dict:
        return {"targeted": self.targeted, "to_deliver": self.to_deliver, "to_exclude": self.to_exclude,
                "messages": self.messages, "exclusions": dict(self.exclusions), "errors": len(self.errors),
                "missing_variables": dict(self.missing_variables), "warnings": list(self.warnings)}


class PreparationStopped(Exception):
    """The preparation was stopped (Ctrl-C or `cadence stop`); nothing was sent."""


class _Critical(Exception):
    """A problem that makes the whole preparation fail; str() is one sentence."""


@dataclass
class _Sender:
    address: str
    domain: str
    name: str
    new_message_id: Callable[[], str]


@dataclass
class _Context:
    """What every batch of one preparation shares."""

    campaign_id: int
    content_version: int
    compiled: CompiledCampaign
    rules: Rules
    senders: dict[int, _Sender]
    duplicates: dict[int, int]  # enrollment id → the earlier enrollment holding the same address
    strict: bool  # a render error fails the preparation (True) or excludes the contact (False)
    address_valid: AddressCheck = field(default_factory=AddressCheck)
    lease: "_Lease | None" = None  # the preparation's lease; None for people prepared on their own
    deadline: float | None = None  # time.monotonic() when the time budget is spent
    total: int = 0  # contacts targeted, for the budget's message
    timer: Callable[[], float] = time.monotonic
    replaces_planned: bool = True  # False when the campaign held no planned message as the preparation began


class _Lease:
    """A preparation's lease on its campaign: an owner token and an expiry, renewed by a heartbeat
    thread every third of the lease (and by every batch) while the preparation runs."""

    def __init__(self, app: App, campaign_id: int, owner: str, length: timedelta):
        self.app, self.campaign_id, self.owner, self.length = app, campaign_id, owner, length
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cadence-prepare-lease", daemon=True)

    def mine(self):
        """The WHERE clause of a campaign row this preparation still owns."""
        return ((Campaign.id == self.campaign_id) & (Campaign.state == CampaignState.PREPARING.value)
                & (Campaign.prepare_owner == self.owner))

    def until(self) -> datetime:
        return self.app.clock.now() + self.length

    def start(self) -> "_Lease":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.length.total_seconds() / 3):
            try:
                with self.app.db.session() as session:
                    session.execute(update(Campaign).where(self.mine()).values(prepare_lease_until=self.until())
                                    .execution_options(synchronize_session=False))
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; a lost lease fences the writes
                log.warning("renewing the preparation lease of campaign %s failed: %s", self.campaign_id,
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# -- the full preparation ------------------------------------------------------------------------

def prepare(app: App, name: str, *, progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False,
            timer: Callable[[], float] = time.monotonic) -> PreparationResult:
    """Prepare the campaign's not yet launched enrollments. Raises PreparationStopped when stopped
    (by `should_stop`, by `cadence stop` elsewhere, by another `prepare` taking over an expired
    lease) and UserError when it cannot start (another preparation holds the lease)."""
    budget = app.settings.prepare_budget_seconds
    deadline = timer() + budget
    campaign_id, campaign_name, spec, source, content_version, audience_version, lease = _claim(app, name)
    result = PreparationResult(campaign_name, CampaignState.PREPARING)
    lease.start()
    try:
        return _prepare_all(app, campaign_id, campaign_name, spec, source, content_version, audience_version, lease,
                            result, progress, should_stop, deadline, timer)
    finally:
        lease.stop()


def _prepare_all(app: App, campaign_id: int, campaign_name: str, spec: CampaignSpec, source: str | None,
                 content_version: int, audience_version: int, lease: "_Lease", result: PreparationResult,
                 progress, should_stop, deadline: float, timer: Callable[[], float]) -> PreparationResult:
    try:
        result.warnings += _warnings(app, spec, source)
        for warning in result.warnings:
            _log(app, campaign_id, EventKind.PREPARATION_WARNING, warning, "warning")
        compiled, problems = compile_campaign(spec)
        result.errors += problems
        with app.db.session(readonly=True) as session:
            senders, mailbox_errors = _senders(session, campaign_id)
            total = session.scalar(select(func.count()).select_from(Enrollment).where(
                Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None)))
        result.errors += mailbox_errors
        if compiled is not None and not result.errors:
            with app.db.session(readonly=True) as session:
                duplicates = _duplicates(session, campaign_id)
                # A first preparation has nothing to replace; the lease keeps others from planning meanwhile.
                replaces_planned = session.scalar(select(Message.id).where(
                    Message.campaign_id == campaign_id, Message.state == MessageState.PLANNED.value).limit(1)) is not None
            context = _Context(campaign_id, content_version, compiled, Rules.for_campaign(spec), senders, duplicates,
                               strict=True, lease=lease, deadline=deadline, total=total or 0, timer=timer,
                               replaces_planned=replaces_planned)
            _render_and_store(app, context, _target_batches(app, campaign_id), result, total, progress,
                              should_stop, campaign_name)
            if result.to_deliver == 0:
                result.errors.append("no contact to deliver: nobody is enrolled and not yet launched"
                                     if result.targeted == 0 else
                                     f"no contact to deliver: all {result.targeted} targeted contacts were excluded")
    except _Critical as critical:
        result.errors.append(str(critical))
    except PreparationStopped:
        _abandon(app, campaign_id, "preparation stopped before it finished; nothing was sent; prepare again "
                 "before sending", lease=lease)
        raise
    except KeyboardInterrupt:
        _abandon(app, campaign_id, "preparation stopped (interrupted) before it finished; nothing was sent; "
                 "prepare again before sending", lease=lease)
        raise
    except BaseException as exc:
        _abandon(app, campaign_id, f"preparation interrupted by an unexpected error ({type(exc).__name__}: "
                 f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); nothing was sent", level="error",
                 lease=lease)
        raise
    return _finish(app, campaign_id, result, content_version, audience_version, lease)


def _claim(app: App, name: str) -> tuple[int, str, CampaignSpec, str | None, int, int, "_Lease"]:
    """Move the campaign to `preparing` (atomically) under a new lease, and make its old preparation
    unsendable. A `preparing` campaign is taken over only when its lease has run out."""
    now = app.clock.now()
    length = timedelta(seconds=app.settings.lease_seconds or LEASE.total_seconds())
    owner = uuid.uuid4().hex
    with app.db.session(immediate=True) as session:
        campaign = campaign_or_error(session, name)
        state = CampaignState(campaign.state)
        expired = None
        if state is CampaignState.PREPARING:
            until = campaign.prepare_lease_until
            if until is not None and until > now:
                raise UserError(f"campaign {campaign.name!r} is being prepared already (its preparation renews its "
                                f"lease while it runs; this one holds until {until:%Y-%m-%d %H:%M:%S} UTC); wait "
                                f"for it, or run `cadence stop {campaign.name!r}` to stop it")
            expired = until
        elif state not in PREPARABLE:
            hint = ("; people enrolled now are prepared on their own" if state.value in RUNNING
                    else "; a stopped campaign can never be sent again")
            raise UserError(f"campaign {campaign.name!r} is {state}; only a campaign that is not sending can be "
                            f"prepared{hint}")
        unchanged = (Campaign.id == campaign.id) & (Campaign.state == state.value)
        if state is CampaignState.PREPARING:  # taking over: only while the lease is still expired
            unchanged = unchanged & or_(Campaign.prepare_lease_until.is_(None), Campaign.prepare_lease_until <= now)
        claimed = session.execute(
            update(Campaign).where(unchanged)
            .values(state=CampaignState.PREPARING.value, progress=0.0, prepared_content_version=None,
                    prepared_audience_version=None, preparation=PreparationResult(campaign.name, state).kpis(),
                    prepare_owner=owner, prepare_lease_until=now + length,
                    updated_at=now).execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            raise UserError(f"campaign {campaign.name!r} changed while starting the preparation; try again")
        if state is CampaignState.PREPARING:
            since = f"at {expired:%Y-%m-%d %H:%M:%S} UTC" if expired else "before leases were kept"
            record(session, EventKind.PREPARATION_STARTED, now, f"took over a preparation whose lease expired {since} "
                   "(its process stopped without finishing); preparing again from the start", level="warning",
                   campaign_id=campaign.id)
        record(session, EventKind.PREPARATION_STARTED, now, "preparation started", campaign_id=campaign.id)
        return (campaign.id, campaign.name, read_spec(session, campaign), campaign.source, campaign.content_version,
                campaign.audience_version, _Lease(app, campaign.id, owner, length))


def _finish(app: App, campaign_id: int, result: PreparationResult, content_version: int,
            audience_version: int, lease: "_Lease") -> PreparationResult:
    now = app.clock.now()
    failed = bool(result.errors)
    result.state = CampaignState.FAILED if failed else CampaignState.PREPARED
    with app.db.session(immediate=True) as session:
        finished = session.execute(
            update(Campaign).where(lease.mine())
            .values(state=result.state.value, progress=1.0, preparation=result.kpis(), updated_at=now,
                    prepare_owner=None, prepare_lease_until=None,
                    prepared_content_version=None if failed else content_version,
                    prepared_audience_version=None if failed else audience_version)
            .execution_options(synchronize_session=False)).rowcount
        if finished != 1:
            stopped = True
        else:
            stopped = False
            for error in result.errors:
                record(session, EventKind.PREPARATION_FAILED, now, error, level="error", campaign_id=campaign_id)
            causes = ", ".join(f"{cause} {count}" for cause, count in sorted(result.exclusions.items()))
            summary = (f"targeted {result.targeted}, to deliver {result.to_deliver}, to exclude {result.to_exclude}"
                       + (f" ({causes})" if causes else ""))
            if failed:
                detail = (f"preparation failed: {summary}; {len(result.errors)} error(s): " + " | ".join(result.errors))
            else:
                detail = f"preparation finished: {summary}; 0 errors"
            record(session, EventKind.PREPARED, now, detail, level="warning" if failed else "info",
                   campaign_id=campaign_id, data=result.kpis())
    if stopped:
        _abandon(app, campaign_id, "preparation stopped before it finished; nothing was sent; prepare again "
                 "before sending", lease=lease)
        raise PreparationStopped(f"preparation of {result.campaign!r} stopped; nothing was sent")
    return result


def _abandon(app: App, campaign_id: int, why: str, level: str = "warning", lease: "_Lease | None" = None) -> None:
    """A preparation that did not finish: the campaign goes back to draft, unsendable until prepared
    (unless another preparation took it over: then its state is that one's)."""
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        mine = lease.mine() if lease is not None else ((Campaign.id == campaign_id)
                                                       & (Campaign.state == CampaignState.PREPARING.value))
        session.execute(update(Campaign).where(mine)
                        .values(state=CampaignState.DRAFT.value, progress=None, updated_at=now, prepare_owner=None,
                                prepare_lease_until=None)
                        .execution_options(synchronize_session=False))
        record(session, EventKind.PREPARATION_FAILED, now, why, level=level, campaign_id=campaign_id)


def _log(app: App, campaign_id: int, kind: EventKind, detail: str, level: str) -> None:
    with app.db.session() as session:
        record(session, kind, app.clock.now(), detail, level=level, campaign_id=campaign_id)


def _warnings(app: App, spec: CampaignSpec, source: str | None) -> list[str]:
    """Things worth knowing that do not stop a preparation."""
    warnings = campaign_warnings(spec)
    public = urlsplit(app.settings.public_url)
    if public.scheme != "https":
        warnings.append(f"CADENCE_PUBLIC_URL is {app.settings.public_url}, not https: mail providers ignore a "
                        "one-click unsubscribe link that is not https")
    if source and Path(source).is_file():
        from cadence.services.imports import load_campaign_file

        try:
            on_disk = load_campaign_file(Path(source))
        except UserError as problem:
            warnings.append(f"the campaign file can no longer be imported ({problem}); the version imported "
                            "earlier is the one prepared")
        else:
            if on_disk != spec:
                warnings.append(f"the campaign file {source} (or a body_file of it) changed since it was imported; "
                                "the version imported earlier is the one prepared: run `cadence campaign import` "
                                "to use the change")
    return warnings


def _senders(session, campaign_id: int, enrollment_ids: list[int] | None = None) -> tuple[dict[int, _Sender], list[str]]:
    """Every sending mailbox of the target, and one sentence per mailbox that cannot send as it is."""
    target = select(Enrollment.mailbox_id).where(Enrollment.campaign_id == campaign_id)
    target = (target.where(Enrollment.id.in_(enrollment_ids)) if enrollment_ids is not None
              else target.where(Enrollment.launched_at.is_(None)))
    wanted = set(session.scalars(target.distinct()))
    rows = session.execute(select(MailboxRow.id, MailboxRow.address, MailboxRow.health, MailboxRow.health_reason,
                                  Rep.name, Rep.email).join(Rep, Rep.id == MailboxRow.owner_id)
                           .where(MailboxRow.id.in_(wanted))).all() if wanted else []
    senders, problems = {}, []
    for box_id, address, health, reason, rep_name, rep_email in rows:
        domain = address.rsplit("@", 1)[-1]
        try:
            senders[box_id] = _Sender(address, domain, rep_name or rep_email, random_message_ids(domain))
        except HeaderInjection as refused:
            problems.append(f"mailbox {address} cannot send: {refused}")
            continue
        if health != MailboxHealth.CONNECTED.value:
            problems.append(f"mailbox {address} is {health} ({reason or 'reconnect it'}); its messages "
                            "cannot be sent")
        if rep_name:
            try:
                check_display_name("from name", rep_name)
            except HeaderInjection as refused:
                problems.append(f"mailbox {address}: the sender name of {rep_email} is refused ({refused.reason})")
    missing = wanted - {row[0] for row in rows}
    if missing:
        problems.append(f"{len(missing)} mailbox(es) of enrolled people no longer exist (id "
                        f"{', '.join(map(str, sorted(missing)))}); enroll them with an existing mailbox")
    return senders, problems


def _duplicates(session, campaign_id: int, enrollment_ids: list[int] | None = None) -> dict[int, int]:
    """Enrollment id → the earliest enrollment of the campaign holding the same address.

    Addresses are compared lower-cased and trimmed. One grouped query returns only addresses
    held more than once (normally none), so memory does not grow with the audience.
    """
    address = func.lower(func.trim(Contact.email))
    held = (select(Enrollment.id, address.label("address")).join(Contact, Contact.id == Enrollment.contact_id)
            .where(Enrollment.campaign_id == campaign_id))
    if enrollment_ids is None:
        repeated = (select(address).select_from(Enrollment).join(Contact, Contact.id == Enrollment.contact_id)
                    .where(Enrollment.campaign_id == campaign_id).group_by(address).having(func.count() > 1))
        rows = session.execute(held.where(address.in_(repeated)).order_by(Enrollment.id)).all()
    else:
        wanted = select(address).select_from(Enrollment).join(Contact, Contact.id == Enrollment.contact_id).where(
            Enrollment.id.in_(enrollment_ids))
        rows = session.execute(held.where(address.in_(wanted)).order_by(Enrollment.id)).all()
    first: dict[str, int] = {}
    duplicates = {}
    for enrollment_id, key in rows:
        if key in first:
            duplicates[enrollment_id] = first[key]
        else:
            first[key] = enrollment_id
    return duplicates


_TARGET_COLUMNS = (Enrollment.id, Enrollment.mailbox_id, Contact.id, Contact.email, Contact.first_name,
                   Contact.last_name, Contact.company, Contact.title, Contact.country, Contact.timezone,
                   Contact.custom, Contact.opted_out_at.is_not(None), Contact.bounced_at.is_not(None))


def _target_batches(app: App, campaign_id: int) -> Iterator[list]:
    """The not yet launched enrollments with their contacts, a batch at a time, in id order."""
    last, size = 0, batch_size(app)
    while True:
        with app.db.session(readonly=True) as session:
            rows = session.execute(
                select(*_TARGET_COLUMNS).join(Contact, Contact.id == Enrollment.contact_id)
                .where(Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None), Enrollment.id > last)
                .order_by(Enrollment.id).limit(size)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def _render_and_store(app: App, context: _Context, batches: Iterator[list], result: PreparationResult, total: int,
                      progress, should_stop, campaign_name: str) -> None:
    """Every batch rendered here and stored by a second thread, while the next batch is rendered:
    the two took turns, and storing was about half the time of a preparation (SQLite and the
    database driver work without the GIL for much of it). One batch is stored at a time, in order;
    `progress(done, total)` counts stored batches. Whatever ends the loop (a stop, a critical
    error, an interruption), the batch being stored is waited for first, and its own error (the
    campaign no longer `preparing`) is raised when nothing else was."""
    done = 0
    storing: tuple[Future, int] | None = None  # the batch being stored, and `done` once it is

    def stored(future: Future, count: int) -> None:
        future.result()
        if progress:
            progress(count, total)

    # Leaving the executor waits for the batch being stored, whatever ended the loop.
    with ThreadPoolExecutor(1, thread_name_prefix="cadence-prepare") as writer:
        for rows in batches:
            if should_stop():
                raise PreparationStopped(f"preparation of {campaign_name!r} stopped; nothing was sent")
            rendered = _render_rows(app, context, rows, result)
            done += len(rows)
            kpis = result.plus(rendered.batch).kpis()
            if storing is not None:
                stored(*storing)
            storing = (writer.submit(_store_rendered, app, context, rendered, (done / total if total else 1.0, kpis)),
                       done)
            result.add(rendered.batch)
        if storing is not None:
            stored(*storing)


def _prepare_rows(app: App, context: _Context, rows: list, result: PreparationResult) -> None:
    """Prepare one batch of target rows and store it in one transaction (no progress written)."""
    rendered = _render_rows(app, context, rows, result)
    _store_rendered(app, context, rendered, None)
    result.add(rendered.batch)


class _Rendered(NamedTuple):
    """One batch rendered, as the rows to store: messages, exclusions, their events."""

    enrollment_ids: list[int]
    messages: list[dict]
    states: list[dict]
    events: list[dict]
    delivered: list[int]
    batch: PreparationResult


def _render_rows(app: App, context: _Context, rows: list, result: PreparationResult) -> _Rendered:
    """Apply the rules to one batch of target rows and render the messages of those delivered
    (raises _Critical: a render error in strict mode, the time budget spent)."""
    now = app.clock.now()
    campaign_id = context.campaign_id
    steps = context.compiled.spec.steps
    contact_ids = [row[2] for row in rows]
    enrollment_ids = [row[0] for row in rows]
    with app.db.session(readonly=True) as session:
        replied = replied_contacts(session, contact_ids)  # at any time, in any campaign, finished or not
        elsewhere = dict(session.execute(
            select(Enrollment.contact_id, Campaign.name).join(Campaign, Campaign.id == Enrollment.campaign_id).where(
                among(session, Enrollment.contact_id, contact_ids), Enrollment.campaign_id != campaign_id,
                Enrollment.state == EnrollmentState.ACTIVE.value, Enrollment.launched_at.is_not(None),
                Campaign.state.in_(RUNNING))).all()) if context.rules.check_active_elsewhere else {}
    # Rendering happens outside the write transaction, so SQLite's single write lock is held for the writes only.
    messages, states, events, delivered = [], [], [], []
    batch = PreparationResult(result.campaign, result.state)
    for (enrollment_id, mailbox_id, contact_id, email, first_name, last_name, company, title, country, zone,
         custom, opted_out, bounced) in rows:
        sender = context.senders.get(mailbox_id)
        variables = {name: value for name, value in zip(KNOWN_FIELDS, (first_name, last_name, company, title,
                                                                        country, zone)) if value}
        if custom:
            variables.update((k, v) for k, v in custom.items() if v not in (None, ""))
        variables["email"] = email
        if sender is not None:
            variables["sender_email"], variables["sender_name"] = sender.address, sender.name
        display_name = " ".join(p for p in (first_name, last_name) if p) or None
        facts = ContactFacts(email=email, address_valid=context.address_valid(email), variables=variables,
                             opted_out=bool(opted_out), bounced=bool(bounced), replied=contact_id in replied,
                             active_elsewhere=elsewhere.get(contact_id),
                             duplicate_of=context.duplicates.get(enrollment_id), display_name=display_name)
        if context.deadline is not None and context.timer() > context.deadline:
            budget = app.settings.prepare_budget_seconds
            raise _Critical(f"the preparation used up its time budget ({budget:g} s, CADENCE_PREPARE_BUDGET) after "
                            f"{result.targeted + batch.targeted} of {context.total} contacts and stopped; nothing "
                            "was sent; prepare again (with a larger budget if needed)")
        outcome = prepare_contact(context.compiled, facts, context.rules)
        if outcome.cause is Cause.RENDER_ERROR and context.strict:
            raise _Critical(f"{outcome.detail} (first seen for {email}); the preparation stops here")
        batch.targeted += 1
        if outcome.excluded:
            batch.to_exclude += 1
            batch.exclusions[outcome.cause.value] += 1
            if outcome.variable:
                batch.missing_variables[outcome.variable] += 1
            states.append({"eid": enrollment_id, "state": EnrollmentState.EXCLUDED.value,
                           "cause": outcome.cause.value, "version": None})
            events.append({"at": now, "kind": EventKind.EXCLUDED.value,
                           "level": "error" if outcome.cause is Cause.RENDER_ERROR else "warning",
                           "campaign_id": campaign_id, "enrollment_id": enrollment_id, "message_id": None,
                           "contact_id": contact_id, "mailbox_id": None,
                           "detail": f"{email}: excluded ({outcome.cause.value}): {outcome.detail}",
                           "data": {"cause": outcome.cause.value, **({"variable": outcome.variable}
                                                                     if outcome.variable else {})},
                           "dedup_key": None})
            continue
        batch.to_deliver += 1
        delivered.append(enrollment_id)
        for step, prepared in zip(steps, outcome.steps):
            batch.messages += 1
            messages.append({
                "enrollment_id": enrollment_id, "campaign_id": campaign_id, "mailbox_id": mailbox_id,
                "position": step.position, "action": step.action.value, "state": MessageState.PLANNED.value,
                "message_id": sender.new_message_id(), "to_address": email,
                "subject": prepared.subject, "html": prepared.html, "text": prepared.text,
                "links": list(prepared.links), "attempts": 0, "updated_at": now,
            })
    return _Rendered(enrollment_ids, messages, states, events, delivered, batch)


def _store_rendered(app: App, context: _Context, rendered: _Rendered, progressed: tuple[float, dict] | None) -> None:
    """Store one rendered batch in one transaction; `progressed` (fraction done, the KPIs so far)
    is written with it, once the campaign is checked to be still `preparing` under this lease
    (PreparationStopped otherwise)."""
    campaign_id = context.campaign_id
    enrollment_ids, messages, states, events, delivered = (rendered.enrollment_ids, rendered.messages,
                                                           rendered.states, rendered.events, rendered.delivered)
    with app.db.session(immediate=True) as session:
        if progressed is not None:
            fraction, kpis = progressed
            mine = context.lease.mine() if context.lease is not None else (
                (Campaign.id == campaign_id) & (Campaign.state == CampaignState.PREPARING.value))
            extend = {"prepare_lease_until": context.lease.until()} if context.lease is not None else {}
            still_preparing = session.execute(
                update(Campaign).where(mine)
                .values(progress=fraction, preparation=kpis, **extend)
                .execution_options(synchronize_session=False)).rowcount
            if still_preparing != 1:
                raise PreparationStopped(f"preparation of {rendered.batch.campaign!r} stopped; nothing was sent")
        # Looked up by enrollment only: a condition on state would lead SQLite to scan every planned message.
        planned = [message_id for message_id, state in session.execute(
            select(Message.id, Message.state).where(among(session, Message.enrollment_id, enrollment_ids)))
            if state == MessageState.PLANNED.value] if context.replaces_planned else []
        if planned:
            session.execute(delete(_MESSAGES).where(among(session, _MESSAGES.c.id, planned)))
        if delivered:  # one statement for the many; one row at a time only for the few excluded
            session.execute(update(_ENROLLMENTS).where(among(session, _ENROLLMENTS.c.id, delivered))
                            .values(state=EnrollmentState.ACTIVE.value, excluded_cause=None,
                                    prepared_version=context.content_version))
        if states:
            session.execute(update(_ENROLLMENTS).where(_ENROLLMENTS.c.id == bindparam("eid"))
                            .values(state=bindparam("state"), excluded_cause=bindparam("cause"),
                                    prepared_version=bindparam("version")), states)
        if messages:
            session.execute(insert(_MESSAGES), messages)
        if events:
            session.execute(insert(_EVENTS), events)


# -- people enrolled into a running campaign -----------------------------------------------------

def prepare_enrollments(app: App, name: str, enrollment_ids: list[int], *, launch: bool) -> PreparationResult:
    """Prepare people added to a campaign that is already running, on their own; launch them if asked.

    Same rules as `prepare`; a render error excludes the contact (logged as an error) instead of
    failing a campaign that is sending. The campaign's preparation KPIs grow with them.
    """
    with app.db.session(readonly=True) as session:
        campaign = campaign_or_error(session, name)
        campaign_id, campaign_name = campaign.id, campaign.name
        content_version = campaign.content_version
        spec = read_spec(session, campaign)
        result = PreparationResult(campaign_name, CampaignState(campaign.state))
        senders, problems = _senders(session, campaign_id, enrollment_ids)
    compiled, compile_problems = compile_campaign(spec)
    problems += compile_problems
    if compiled is None:
        with app.db.session() as session:
            for problem in problems:
                record(session, EventKind.PREPARATION_FAILED, app.clock.now(), f"people enrolled now cannot be "
                       f"prepared: {problem}", level="error", campaign_id=campaign_id)
        result.errors += problems
        return result
    for problem in problems:  # a disconnected mailbox: its messages wait until it is reconnected
        _log(app, campaign_id, EventKind.PREPARATION_FAILED, problem, "warning")
        result.warnings.append(problem)
    with app.db.session(readonly=True) as session:
        duplicates = _duplicates(session, campaign_id, enrollment_ids)
    context = _Context(campaign_id, content_version, compiled, Rules.for_campaign(spec), senders, duplicates,
                       strict=False)
    size = batch_size(app)
    for start in range(0, len(enrollment_ids), size):
        chunk = enrollment_ids[start:start + size]
        with app.db.session(readonly=True) as session:
            rows = session.execute(select(*_TARGET_COLUMNS).join(Contact, Contact.id == Enrollment.contact_id).where(
                Enrollment.id.in_(chunk), Enrollment.campaign_id == campaign_id, Enrollment.launched_at.is_(None))
                .order_by(Enrollment.id)).all()
        if rows:
            _prepare_rows(app, context, rows, result)
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        campaign = session.get(Campaign, campaign_id)
        kpis = dict(campaign.preparation or {})
        for key in ("targeted", "to_deliver", "to_exclude", "messages"):
            kpis[key] = kpis.get(key, 0) + getattr(result, key)
        kpis["exclusions"] = dict(Counter(kpis.get("exclusions") or {}) + result.exclusions)
        campaign.preparation = kpis
        if campaign.prepared_content_version == campaign.content_version:
            campaign.prepared_audience_version = campaign.audience_version
        record(session, EventKind.PREPARED, now, f"{result.targeted} enrolled while {campaign.state} prepared on "
               f"their own: to deliver {result.to_deliver}, to exclude {result.to_exclude}",
               campaign_id=campaign_id, data=result.kpis())
    if launch:
        launch_enrollments(app, campaign_id, enrollment_ids)
    return result


def preparation_is_current(campaign: Campaign) -> bool:
    """True when the campaign's latest finished preparation matches its content and audience."""
    return (campaign.prepared_content_version == campaign.content_version
            and campaign.prepared_audience_version == campaign.audience_version)


__all__ = ["BATCH", "PreparationResult", "PreparationStopped", "prepare", "prepare_enrollments",
           "preparation_is_current"]
