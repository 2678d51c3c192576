"""Direct messages to reps about what happened: replies, bounces, drafts ready, stale drafts,
disconnected mailboxes. Read from the event log after the cursor `slack_notify`.

At most once, even with several processes running the loop: before an event is posted, the
cursor is moved past it with a compare-and-set UPDATE, so only one notifier owns it. When Slack
says "later" (rate limit, 5xx, network, a broken token) the cursor is moved back and the run stops;
the event is tried again on the next run. When a recipient cannot be reached (no Slack account,
channel not found …) the event is dropped with a log line. A crash between claim and post loses
that one message rather than sending it twice.

The first run starts after the events older than a day, so installing the bot does not replay
history into everyone's DMs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from slack_sdk import WebClient
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot import views
from bot.access import task_detail
from bot.slack import Messenger, is_transient, slack_error, web_client
from cadence.app import App
from core.vocabulary import EventKind, MailboxHealth, TaskState
from store.models import Campaign, Contact, Cursor, Enrollment, Event, MailboxRow, Message, Task

log = logging.getLogger("cadence.slack.notify")

CURSOR = "slack_notify"
KINDS = (EventKind.REPLIED, EventKind.BOUNCED, EventKind.TASK_CREATED, EventKind.DRAFT_STALE,
         EventKind.MAILBOX_DISCONNECTED)
FIRST_RUN_LOOKBACK = timedelta(days=1)
BATCH = 200
MAX_BATCHES = 10


@dataclass(frozen=True)
class Notice:
    """Who gets which message for one event; `rep_id` None means nobody to tell."""

    rep_id: int | None
    message: dict | None
    refresh_home: bool = False


def send_notifications(app: App, client: WebClient | None = None) -> int:
    """Post the DMs for new events; returns how many were posted. 0 when Slack is not configured."""
    if client is None:
        if not app.settings.slack_bot_token:
            return 0
        client = web_client(app.settings)
    messenger = Messenger(app, client)
    posted, homes = 0, set()
    last = _read_cursor(app)
    for _ in range(MAX_BATCHES):
        with app.db.session() as session:
            ids = list(session.scalars(select(Event.id).where(Event.id > last, Event.kind.in_([k.value for k in KINDS]))
                                       .order_by(Event.id).limit(BATCH)))
        if not ids:
            break
        for event_id in ids:
            if not _move_cursor(app, last, event_id):
                log.info("another notifier is working; this run stops")
                return posted + _refresh(app, client, homes)
            try:
                notice = notice_for(app, event_id)
                if notice.rep_id is not None and notice.message is not None:
                    slack_id = messenger.slack_id_of(notice.rep_id)
                    if slack_id is None:
                        log.info("event %s: rep %s has no Slack account; not notified", event_id, notice.rep_id)
                    else:
                        messenger.post(slack_id, notice.message)
                        posted += 1
                        if notice.refresh_home:
                            homes.add(notice.rep_id)
            except Exception as error:
                if is_transient(error):
                    _move_cursor(app, event_id, last)  # give it back: tried again on the next run
                    log.warning("Slack is not taking messages now (%s); notifications resume next run",
                                slack_error(error))
                    return posted + _refresh(app, client, homes)
                log.warning("event %s: notification dropped: %s", event_id, slack_error(error))
            last = event_id
    _refresh(app, client, homes)
    return posted


def _refresh(app: App, client: WebClient, rep_ids: set[int]) -> int:
    """Republish the App Home of reps whose task queue changed; returns 0 (not a notification)."""
    if rep_ids:
        from bot.app import Bot

        bot = Bot(app, client)
        for rep_id in rep_ids:
            bot.refresh_home_of_rep(rep_id)
    return 0


def _read_cursor(app: App) -> int:
    with app.db.session() as session:
        row = session.get(Cursor, CURSOR)
        if row is not None:
            return int(row.value)
    start = app.clock.now() - FIRST_RUN_LOOKBACK
    with app.db.session() as session:
        first = session.scalar(select(func.max(Event.id)).where(Event.at < start)) or 0
    try:
        with app.db.session() as session:
            session.add(Cursor(name=CURSOR, value=str(first), updated_at=app.clock.now()))
    except IntegrityError:  # another notifier created it at the same moment
        with app.db.session() as session:
            return int(session.get(Cursor, CURSOR).value)
    return first


def _move_cursor(app: App, expected: int, to: int) -> bool:
    """Compare-and-set the cursor from `expected` to `to`; False when someone else moved it."""
    with app.db.session() as session:
        result = session.execute(update(Cursor).where(Cursor.name == CURSOR, Cursor.value == str(expected))
                                 .values(value=str(to), updated_at=app.clock.now()))
        return result.rowcount == 1


def notice_for(app: App, event_id: int) -> Notice:
    """The recipient and the message for one event (None when there is nothing to say any more)."""
    with app.db.session() as session:
        event = session.get(Event, event_id)
        kind = EventKind(event.kind)
        message = session.get(Message, event.message_id) if event.message_id else None
        campaign = session.get(Campaign, event.campaign_id) if event.campaign_id else None
        campaign_name = campaign.name if campaign else "a campaign"
        data = event.data if isinstance(event.data, dict) else {}
        if kind in (EventKind.TASK_CREATED, EventKind.DRAFT_STALE):
            task = session.scalar(select(Task).where(Task.message_id == event.message_id)) if message else None
            if task is None:
                return Notice(None, None)
            if kind is EventKind.TASK_CREATED:
                if task.state != TaskState.OPEN.value:
                    return Notice(None, None)  # already sent, skipped or stale: nothing to do any more
                task_id, rep_id = task.id, task.rep_id
            else:
                enrollment = session.get(Enrollment, message.enrollment_id)
                reason = (enrollment.end_reason if enrollment else None) or "the sequence ended"
                return Notice(task.rep_id, views.draft_stale_message(message.to_address, campaign_name, reason), True)
        elif kind is EventKind.MAILBOX_DISCONNECTED:
            box = session.get(MailboxRow, event.mailbox_id) if event.mailbox_id else None
            if box is None or box.health != MailboxHealth.DISCONNECTED.value:
                return Notice(None, None)  # reconnected since
            return Notice(box.owner_id, views.mailbox_disconnected_message(
                box.address, box.provider, box.health_reason or event.detail))
        else:
            box_id = event.mailbox_id or (message.mailbox_id if message else None)
            box = session.get(MailboxRow, box_id) if box_id else None
            if box is None:
                return Notice(None, None)
            if kind is EventKind.REPLIED:
                contact = session.get(Contact, event.contact_id) if event.contact_id else None
                name = (" ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email
                        if contact else (message.to_address if message else "A prospect"))
                who = f"{name} ({contact.company})" if contact and contact.company else name
                link = reply_link(box.provider, box.address, data.get("observed"))
                return Notice(box.owner_id, views.replied_message(
                    who, campaign_name, message.position if message else None, str(data.get("snippet") or ""), link))
            reason = str(data.get("why") or event.detail)
            address = message.to_address if message else event.detail
            return Notice(box.owner_id, views.bounced_message(address, campaign_name, reason))
    detail = task_detail(app, task_id)
    if detail is None or detail.view.state != TaskState.OPEN.value:
        return Notice(None, None)
    return Notice(rep_id, views.draft_ready_message(detail.view, event.detail), True)


def reply_link(provider: str, address: str, observed: object) -> str | None:
    """A link that opens the reply in the rep's mail client, when the provider gives one."""
    if not isinstance(observed, dict):
        return None
    if provider == "outlook" and str(observed.get("webLink") or "").startswith("https://"):
        return observed["webLink"]
    if provider == "gmail" and observed.get("threadId"):
        return f"https://mail.google.com/mail/?authuser={quote(address)}#all/{quote(str(observed['threadId']))}"
    return None
