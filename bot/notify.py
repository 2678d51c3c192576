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

from bot import views
from bot.slack import Messenger, is_transient, slack_error, web_client
from cadence.app import App
from cadence.services.cursors import move_event_cursor, read_event_cursor
from cadence.services.reads.events import event_ids_after, event_notice
from core.vocabulary import EventKind

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
        ids = event_ids_after(app, last, KINDS, BATCH)
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
    return read_event_cursor(app, CURSOR, app.clock.now() - FIRST_RUN_LOOKBACK)


def _move_cursor(app: App, expected: int, to: int) -> bool:
    """Compare-and-set the cursor from `expected` to `to`; False when someone else moved it."""
    return move_event_cursor(app, CURSOR, expected, to)


def notice_for(app: App, event_id: int) -> Notice:
    """The recipient and the message for one event (None when there is nothing to say any more)."""
    facts = event_notice(app, event_id)
    if facts.rep_id is None:
        return Notice(None, None)
    kind = EventKind(facts.kind)
    if kind is EventKind.TASK_CREATED:
        return Notice(facts.rep_id, views.draft_ready_message(facts.task, facts.detail), True)
    if kind is EventKind.DRAFT_STALE:
        return Notice(facts.rep_id, views.draft_stale_message(facts.contact, facts.campaign, facts.reason), True)
    if kind is EventKind.MAILBOX_DISCONNECTED:
        return Notice(facts.rep_id, views.mailbox_disconnected_message(facts.mailbox, facts.provider, facts.reason))
    if kind is EventKind.REPLIED:
        link = reply_link(facts.provider, facts.mailbox, facts.observed or None)
        return Notice(facts.rep_id, views.replied_message(facts.contact, facts.campaign, facts.position,
                                                          facts.snippet, link))
    return Notice(facts.rep_id, views.bounced_message(facts.contact, facts.campaign, facts.reason))


def reply_link(provider: str, address: str, observed: object) -> str | None:
    """A link that opens the reply in the rep's mail client, when the provider gives one."""
    if not isinstance(observed, dict):
        return None
    if provider == "outlook" and str(observed.get("webLink") or "").startswith("https://"):
        return observed["webLink"]
    if provider == "gmail" and observed.get("threadId"):
        return f"https://mail.google.com/mail/?authuser={quote(address)}#all/{quote(str(observed['threadId']))}"
    return None
