"""Writes on a mailbox's own row that several layers share."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.orm import Session

from core.vocabulary import EventKind, MailboxHealth
from store.events import record
from store.models import MailboxRow


def mark_disconnected(session: Session, mailbox: MailboxRow, reason: str, at: datetime) -> bool:
    """Mark a mailbox disconnected (an error event says why); True when it was connected until now."""
    if mailbox.health == MailboxHealth.DISCONNECTED.value:
        return False
    mailbox.health, mailbox.health_reason = MailboxHealth.DISCONNECTED.value, reason
    record(session, EventKind.MAILBOX_DISCONNECTED, at, f"{mailbox.address}: {reason}",
           level="error", mailbox_id=mailbox.id)
    return True


UNUSABLE = (MailboxHealth.MISCONFIGURED.value, MailboxHealth.ERROR.value)


def usable_now(now: datetime):
    """SQL condition: mailboxes a worker may use now — connected, or misconfigured / in error with
    their back-off over (`health_retry_at`); a disconnected one waits for a person to sign in again."""
    return or_(MailboxRow.health == MailboxHealth.CONNECTED.value,
               MailboxRow.health.in_(UNUSABLE) & or_(MailboxRow.health_retry_at.is_(None),
                                                     MailboxRow.health_retry_at <= now))
