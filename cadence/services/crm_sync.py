"""The CRM lane: Cadence events → an outbox → Salesforce Tasks, each exactly once.

1. Feed: events of the kinds the CRM cares about (task created, done or skipped; sent; replied;
   bounced; unsubscribed) become outbox rows, keyed so that one Cadence fact is one row: the
   task's Task is `task:<message>`, its completion (whether seen as "task done" or as "sent")
   `close:<message>`, an automatic email `email:<message>`, a reply `reply:<event>` …
2. Match: the person's Contact, else unconverted Lead, by email (or the Salesforce id an import
   kept); the owner is the rep's active User by email, else the connecting user. A person with
   neither is `unmatched` and nothing is created for them.
3. Write: the intent (`sending`, with who, owner, subject and date fixed) is committed before
   each sObject Collections call (≤ 200 records). A call whose answer is lost leaves its rows
   `sending`; the next pass looks for each in Salesforce by standard fields (WhoId, Subject,
   OwnerId, ActivityDate, not a Task another row already owns) and adopts it, or creates it again.
   Closing a task's Task is an update, safe to repeat.

One worker at a time holds the connection's lease; the lane never touches the send path, so a
slow or absent CRM never delays sending. API limits: on REQUEST_LIMIT_EXCEEDED the lane waits
THROTTLE_ON_LIMIT; as Sforce-Limit-Info nears the limit it writes one batch a pass, then waits.
"""
from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select, update

from cadence.app import App
from cadence.services.crm import CONNECTED, PROVIDER, find_connection, mark_disconnected, note_usage, org_for
from core.vocabulary import EventKind
from crm import records
from crm.errors import ApiLimit, CrmError, Disconnected, Refused, Transient
from crm.records import Activity
from crm.records import COLLECTION_LIMIT
from store.models import Contact, CrmConnection, CrmOutbox, Event, MailboxRow, Message, Rep

if TYPE_CHECKING:  # simple-salesforce is imported only once a pass has an org to talk to
    from crm.salesforce import SalesforceOrg

log = logging.getLogger("cadence.crm")

KINDS = (EventKind.TASK_CREATED, EventKind.TASK_DONE, EventKind.TASK_SKIPPED, EventKind.DRAFT_STALE,
         EventKind.SENT, EventKind.REPLIED, EventKind.BOUNCED, EventKind.UNSUBSCRIBED)
LOOKBACK = 500  # event ids re-read behind the cursor: transactions commit out of id order
FEED_BATCH = 1000
LEASE = timedelta(minutes=15)
THROTTLE_ON_LIMIT = timedelta(minutes=15)
SLOW_SHARE, STOP_SHARE = 0.8, 0.95  # of the org's 24-hour API limit
SLOW_WAIT = timedelta(minutes=5)
QUERY_CHUNK = 100  # addresses or ids per SOQL IN list
RETRYABLE = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
PENDING, SENDING, DONE, UNMATCHED, FAILED = "pending", "sending", "done", "unmatched", "failed"


@dataclass
class CrmReport:
    """What one pass of the lane did (counts of outbox rows)."""

    queued: int = 0
    created: int = 0
    closed: int = 0
    adopted: int = 0  # found already written after a lost answer
    unmatched: int = 0
    failed: int = 0
    waiting: str | None = None  # why the pass stopped early (disconnected, throttled, no answer …)

    def busy(self) -> bool:
        return bool(self.queued or self.created or self.closed or self.adopted or self.unmatched or self.failed)


def max_batches() -> int:
    return max(1, int(os.environ.get("CADENCE_CRM_BATCHES", "20") or 20))


# -- 1. feed -----------------------------------------------------------------------------------

def _zone(app: App, rep: Rep | None) -> ZoneInfo:
    for name in ((rep.timezone if rep else None), app.settings.timezone, "UTC"):
        try:
            if name:
                return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _day(app: App, at: datetime, rep: Rep | None) -> str:
    return at.astimezone(_zone(app, rep)).date().isoformat()


def _outbox_row(session, app: App, event: Event, now: datetime) -> CrmOutbox | None:
    message = session.get(Message, event.message_id) if event.message_id else None
    box = session.get(MailboxRow, message.mailbox_id) if message else None
    contact_id = event.contact_id or (message.enrollment.contact_id if message else None)
    contact = session.get(Contact, contact_id) if contact_id else None
    rep = session.get(Rep, box.owner_id) if box else (session.get(Rep, contact.owner_id) if contact and
                                                      contact.owner_id else None)
    email = contact.email if contact else (message.to_address if message else None)
    if email is None:
        return None
    kind = EventKind(event.kind)
    subject, text, at = (message.subject if message else None), (message.text if message else None), event.at
    if kind is EventKind.TASK_CREATED and message:
        key, what, at = f"task:{message.id}", "task", message.due_at or event.at
    elif kind in (EventKind.TASK_DONE, EventKind.TASK_SKIPPED, EventKind.DRAFT_STALE) and message:
        key, what = f"close:{message.id}", "task_done" if kind is EventKind.TASK_DONE else "task_skipped"
        if kind is EventKind.TASK_SKIPPED:
            text = "Skipped in Cadence: the rep did not send this email." + (f"\n\n{text}" if text else "")
        elif kind is EventKind.DRAFT_STALE:  # the sequence ended first (a reply, an opt-out, a stop)
            text = f"Closed in Cadence, not sent: {event.detail}" + (f"\n\n{text}" if text else "")
    elif kind is EventKind.SENT and message:
        key, what = (f"close:{message.id}", "task_done") if message.action == "task" else (f"email:{message.id}",
                                                                                           "email")
    elif kind is EventKind.REPLIED:
        data = event.data or {}
        key, what = f"reply:{event.id}", "reply"
        subject = data.get("subject") or subject
        text = data.get("snippet") or event.detail
    elif kind is EventKind.BOUNCED:
        key, what, text = f"bounce:{event.id}", "bounce", event.detail
    elif kind is EventKind.UNSUBSCRIBED:
        key, what, text = f"unsubscribe:{event.id}", "unsubscribe", event.detail
    else:
        return None
    return CrmOutbox(key=key, kind=what, event_id=event.id, message_id=message.id if message else None,
                     contact_id=contact_id, rep_id=rep.id if rep else None, email=email,
                     subject=records.subject_for(what, subject, email), description=text,
                     activity_date=_day(app, at, rep), state=PENDING, attempts=0, created_at=now, updated_at=now)


def feed(app: App) -> int:
    """Copy new events into the outbox (idempotent); returns how many rows were added."""
    added = 0
    while True:
        now = app.clock.now()
        with app.db.session(immediate=True) as session:
            connection = find_connection(session)
            if connection is None:
                return added
            start = max(connection.since_event_id, connection.event_cursor - LOOKBACK)
            events = session.scalars(select(Event).where(Event.id > start, Event.kind.in_([k.value for k in KINDS]))
                                     .order_by(Event.id).limit(FEED_BATCH)).all()
            rows = [row for row in (_outbox_row(session, app, e, now) for e in events) if row is not None]
            known = set(session.scalars(select(CrmOutbox.key).where(CrmOutbox.key.in_([r.key for r in rows])))) \
                if rows else set()
            for row in rows:
                if row.key not in known:
                    known.add(row.key)
                    session.add(row)
                    added += 1
            if events:
                connection.event_cursor = max(connection.event_cursor, events[-1].id)
            if len(events) < FEED_BATCH:
                return added


# -- 2. match ----------------------------------------------------------------------------------

def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _match(app: App, org: SalesforceOrg, connection: CrmConnection, rows: list[CrmOutbox]) -> None:
    """Fill in who (Contact, else Lead) and owner (the rep's User, else the connecting user)."""
    need = [r for r in rows if not r.who_id]
    if need:
        with app.db.session() as session:
            kept = dict(session.execute(select(Contact.id, Contact.salesforce_id).where(
                Contact.id.in_({r.contact_id for r in need if r.contact_id}),
                Contact.salesforce_id.is_not(None))).all())
        found: dict[str, str] = {}
        emails = sorted({r.email.lower() for r in need if not kept.get(r.contact_id)})
        for sobject in ("Contact", "Lead"):
            missing = [e for e in emails if e not in found]
            for chunk in _chunks(missing, QUERY_CHUNK):
                for email, record_id in records.by_email(org.query(records.people_soql(sobject, chunk))).items():
                    found.setdefault(email, record_id)
        for row in need:
            row.who_id = kept.get(row.contact_id) or found.get(row.email.lower())
    owners = {}
    with app.db.session() as session:
        rep_emails = dict(session.execute(select(Rep.id, Rep.email).where(
            Rep.id.in_({r.rep_id for r in rows if r.rep_id and not r.owner_ref}))).all())
    for chunk in _chunks(sorted({e.lower() for e in rep_emails.values()}), QUERY_CHUNK):
        owners.update(records.by_email(org.query(records.users_soql(chunk))))
    for row in rows:
        if not row.owner_ref:
            row.owner_ref = owners.get((rep_emails.get(row.rep_id) or "").lower()) or connection.user_id


def _activity(row: CrmOutbox) -> Activity:
    return Activity(row.kind, row.who_id or "", row.owner_ref or "", row.subject, row.activity_date, row.description)


# -- 3. write ----------------------------------------------------------------------------------

class _Pass:
    def __init__(self, app: App, connection: CrmConnection, org: SalesforceOrg, report: CrmReport):
        self.app, self.connection, self.org, self.report = app, connection, org, report

    def _save(self, rows: list[CrmOutbox], **values) -> None:
        now = self.app.clock.now()
        with self.app.db.session(immediate=True) as session:
            for row in rows:
                stored = session.get(CrmOutbox, row.id)
                for name in ("who_id", "owner_ref", "state", "record_id", "error", "attempts", "intent_at"):
                    setattr(stored, name, values.get(name, getattr(row, name)))
                    setattr(row, name, getattr(stored, name))
                stored.updated_at = now

    def resolve_in_doubt(self) -> None:
        """Rows left `sending` by a lost answer: adopt the Task already made, else create again."""
        with self.app.db.session() as session:
            rows = session.scalars(select(CrmOutbox).where(CrmOutbox.state == SENDING).order_by(CrmOutbox.id)).all()
        for chunk in _chunks(rows, QUERY_CHUNK):
            found = list(self.org.query(records.find_tasks_soql({r.who_id for r in chunk},
                                                                {r.subject for r in chunk})))
            with self.app.db.session() as session:
                taken = set(session.scalars(select(CrmOutbox.record_id).where(
                    CrmOutbox.record_id.in_([t["Id"] for t in found])))) if found else set()
            for row in chunk:
                match = next((t for t in found if t["Id"] not in taken and records.same_task(t, _activity(row))), None)
                if match is not None:
                    taken.add(match["Id"])
                    self._save([row], state=DONE, record_id=match["Id"], error=None)
                    self.report.adopted += 1
                else:
                    self._save([row], state=PENDING)

    def _next(self) -> tuple[list[CrmOutbox], list[tuple[CrmOutbox, CrmOutbox]]]:
        """The next pending rows: (Tasks to create, (close row, its task row) updates)."""
        creates: list[CrmOutbox] = []
        updates: list[tuple[CrmOutbox, CrmOutbox]] = []
        with self.app.db.session() as session:
            after = 0
            while len(creates) < COLLECTION_LIMIT and len(updates) < COLLECTION_LIMIT:
                rows = session.scalars(select(CrmOutbox).where(CrmOutbox.state == PENDING, CrmOutbox.id > after)
                                       .order_by(CrmOutbox.id).limit(COLLECTION_LIMIT)).all()
                if not rows:
                    break
                after = rows[-1].id
                tasks = {t.message_id: t for t in session.scalars(select(CrmOutbox).where(
                    CrmOutbox.key.in_([f"task:{r.message_id}" for r in rows if r.kind in records.CLOSE_KINDS])))}
                for row in rows:
                    if row.kind not in records.CLOSE_KINDS:
                        creates.append(row)
                        continue
                    task = tasks.get(row.message_id)
                    if task is None or task.state == FAILED:
                        creates.append(row)  # no open Task to close: write the completed email itself
                    elif task.state == DONE:
                        updates.append((row, task))
                    elif task.state == UNMATCHED:
                        self._save([row], state=UNMATCHED, error=task.error)
                        self.report.unmatched += 1
                    # pending / sending: the Task comes first; this row waits for it
        return creates[:COLLECTION_LIMIT], updates[:COLLECTION_LIMIT]

    def write_batch(self) -> bool:
        """One collection call of creates and one of updates; False when nothing was left."""
        creates, updates = self._next()
        if not creates and not updates:
            return False
        if creates:
            self._match(creates)
            creates = [r for r in creates if r.who_id]
        if creates:
            self._create(creates)
        if updates:
            self._close(updates)
        return True

    def _match(self, rows: list[CrmOutbox]) -> None:
        _match(self.app, self.org, self.connection, rows)
        for row in rows:
            if row.who_id:
                self._save([row])
            else:
                self._save([row], state=UNMATCHED, error="no Contact or Lead with this email address")
                self.report.unmatched += 1

    def _create(self, rows: list[CrmOutbox]) -> None:
        now = self.app.clock.now()
        for row in rows:
            self._save([row], state=SENDING, intent_at=now, attempts=row.attempts + 1)
        try:
            saved = self.org.create([records.task_to_create(_activity(r)) for r in rows])
        except (ApiLimit, Refused):  # refused as a whole: nothing was written
            self._save(rows, state=PENDING)
            raise
        for row, result in zip(rows, saved):
            if result.ok:
                self._save([row], state=DONE, record_id=result.id, error=None)
                self.report.created += 1
            else:
                self._refused(row, result)

    def _refused(self, row: CrmOutbox, result) -> None:
        error = f"{result.error_code}: {result.message}"
        retry = result.error_code in RETRYABLE and row.attempts < 5
        self._save([row], state=PENDING if retry else FAILED, error=error)
        if not retry:
            self.report.failed += 1
            log.warning("Salesforce refused the Task %r for %s: %s", row.subject, row.email, error)

    def _close(self, pairs: list[tuple[CrmOutbox, CrmOutbox]]) -> None:
        for row, _task in pairs:
            self._save([row], attempts=row.attempts + 1)
        saved = self.org.update([records.task_to_close(task.record_id, _activity(row)) for row, task in pairs])
        for (row, task), result in zip(pairs, saved):
            if result.ok:
                self._save([row], state=DONE, record_id=task.record_id, who_id=task.who_id,
                           owner_ref=task.owner_ref, error=None)
                self.report.closed += 1
            else:
                self._refused(row, result)


def _lease(app: App, token: str) -> CrmConnection | None:
    now = app.clock.now()
    with app.db.session() as session:  # no CRM connected: no write transaction at all
        free = session.scalar(select(CrmConnection.id).where(
            CrmConnection.provider == PROVIDER,
            or_(CrmConnection.sync_until.is_(None), CrmConnection.sync_until < now)))
    if free is None:
        return None
    with app.db.session(immediate=True) as session:
        taken = session.execute(update(CrmConnection).where(
            CrmConnection.provider == PROVIDER,
            or_(CrmConnection.sync_until.is_(None), CrmConnection.sync_until < now))
            .values(sync_owner=token, sync_until=now + LEASE)).rowcount
        if taken != 1:
            return None
        row = find_connection(session)
        session.expunge(row)
        return row


def _release(app: App, token: str, **values) -> None:
    with app.db.session(immediate=True) as session:
        session.execute(update(CrmConnection).where(CrmConnection.sync_owner == token)
                        .values(sync_owner=None, sync_until=None, **values))


def sync_crm(app: App) -> CrmReport:
    """One pass of the CRM lane: feed the outbox, then write what waits (when connected).

    Never raises for Salesforce trouble: a revoked refresh token marks the connection
    disconnected (one log line); limits and lost answers leave rows waiting for a later pass.
    """
    report = CrmReport()
    token = f"crm-{secrets.token_hex(6)}"
    connection = _lease(app, token)
    if connection is None:
        return report
    after: dict = {}
    try:
        report.queued = feed(app)
        now = app.clock.now()
        if connection.health != CONNECTED:
            report.waiting = "disconnected"
            return report
        if connection.throttle_until and connection.throttle_until > now:
            report.waiting = f"throttled until {connection.throttle_until.isoformat()}"
            return report
        org = org_for(app, connection)
        org.on_usage = lambda usage: note_usage(app, usage)
        work = _Pass(app, connection, org, report)
        work.resolve_in_doubt()
        for _ in range(max_batches()):
            if not work.write_batch():
                break
            usage = org.usage
            if usage and usage.share >= SLOW_SHARE:
                if usage.share >= STOP_SHARE:
                    after["throttle_until"] = now + SLOW_WAIT
                    log.warning("Salesforce API usage at %s/%s: the CRM lane waits until %s", usage.used,
                                usage.limit, after["throttle_until"].isoformat())
                    report.waiting = "near the API limit"
                break  # near the limit: one batch a pass
        after.update(last_synced_at=app.clock.now(), last_error=None)
    except Disconnected as problem:
        mark_disconnected(app, problem.reason)
        report.waiting = "disconnected"
    except ApiLimit as problem:
        after.update(throttle_until=app.clock.now() + THROTTLE_ON_LIMIT, last_error=problem.reason)
        log.warning("Salesforce: %s; the CRM lane waits until %s", problem.reason,
                    after["throttle_until"].isoformat())
        report.waiting = "API limit"
    except (Transient, Refused) as problem:
        after["last_error"] = problem.reason
        log.warning("Salesforce: %s; trying again on the next pass", problem.reason)
        report.waiting = problem.reason
    except CrmError as problem:
        after["last_error"] = problem.reason
        report.waiting = problem.reason
    finally:
        _release(app, token, **after)
    if report.busy():
        log.info("crm: queued %s, created %s, closed %s, adopted %s, unmatched %s, failed %s", report.queued,
                 report.created, report.closed, report.adopted, report.unmatched, report.failed)
    return report
