"""Mailbox health: what makes a mailbox unusable, said once, tried again with back-off, said once
again when it works. States: `connected`, `disconnected` (the provider refused its credentials; a
person must sign in again), `misconfigured` (this installation cannot use it: a missing client
setting, undecryptable credentials, an unusable Maildir path), `error` (it failed unexpectedly).
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from cadence.app import App, MailboxUnusable
from core.vocabulary import EventKind, MailboxHealth
from store.events import record
from store.mailboxes import UNUSABLE
from store.models import MailboxRow

log = logging.getLogger("cadence.mailboxes")

FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)


def retry_after(failures: int) -> timedelta:
    """Back-off after `failures` failures in a row (≥ 1): 30 s, 1 min, 2 min … at most an hour."""
    return min(FIRST_RETRY * (2 ** max(0, min(failures, 20) - 1)), LONGEST_RETRY)


def judge(exc: BaseException) -> tuple[str, str]:
    """(health, reason) for what went wrong using a mailbox."""
    if isinstance(exc, MailboxUnusable):
        return MailboxHealth.MISCONFIGURED.value, exc.reason
    text = " ".join(str(exc).split()) or type(exc).__name__
    return MailboxHealth.ERROR.value, f"{type(exc).__name__}: {text}"[:500]


def mark_unusable(app: App, mailbox_id: int, exc: BaseException) -> None:
    """Record that the mailbox cannot be used now; one log line (and event) when its health or reason
    changes, none while it stays the same; the next try waits `retry_after(failures)`."""
    health, reason = judge(exc)
    now = app.clock.now()
    with app.db.session(immediate=True) as session:
        box = session.get(MailboxRow, mailbox_id)
        if box is None or box.health == MailboxHealth.DISCONNECTED.value:
            return
        changed = (box.health, box.health_reason) != (health, reason)
        box.health_failures = (box.health_failures or 0) + 1
        wait = retry_after(box.health_failures)
        box.health, box.health_reason, box.health_retry_at = health, reason, now + wait
        address = box.address
        if changed:
            record(session, EventKind.MAILBOX_UNUSABLE, now, f"{address} is {health}: {reason}", level="error",
                   mailbox_id=mailbox_id)
    if changed:
        log.warning("mailbox %s cannot be used (%s): %s; trying again in %s", address, health, reason,
                    _span(wait))
    forget(app, mailbox_id)


def mark_usable(app: App, mailbox_id: int) -> None:
    """A mailbox that was misconfigured or in error worked: back to `connected`, said once."""
    with app.db.session(immediate=True) as session:
        box = session.get(MailboxRow, mailbox_id)
        if box is None or box.health not in UNUSABLE:
            if box is not None and box.health_failures:
                box.health_failures, box.health_retry_at = 0, None
            return
        was = box.health
        box.health, box.health_reason, box.health_failures, box.health_retry_at = (
            MailboxHealth.CONNECTED.value, None, 0, None)
        address = box.address
        record(session, EventKind.MAILBOX_RECOVERED, app.clock.now(), f"{address} works again (was {was})",
               level="info", mailbox_id=mailbox_id)
    log.info("mailbox %s works again (was %s)", address, was)


def forget(app: App, mailbox_id: int) -> None:
    app.forget_mailbox(mailbox_id)


_said: dict[tuple[int, str], bool] = {}
_said_lock = threading.Lock()


def say_once(address: str, mailbox_id: int, exc: BaseException) -> None:
    """One log line per process for a mailbox that a dispatch step cannot use (the sync loop records
    its health); the same trouble again is not logged again."""
    health, reason = judge(exc)
    with _said_lock:
        if _said.get((mailbox_id, reason)):
            return
        _said[(mailbox_id, reason)] = True
    log.warning("mailbox %s cannot be used by this worker (%s): %s", address, health, reason)


def _span(wait: timedelta) -> str:
    seconds = int(wait.total_seconds())
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
