"""A received or sent RFC 5322 message as an `ObservedMessage`: what Maildir reports for a file,
and what tests make of the mail corpus. Gmail and Outlook build theirs from the provider's own
fields, with the same readers."""
from __future__ import annotations

from datetime import datetime
from email.message import Message
from typing import Any

from core.email.bounces import read_bounce, returned_message
from core.email.message_id import first_message_id
from core.email.read import addresses, header_ids, header_text, message_date, observed_headers, text_snippet, thread_root
from core.mailbox import Folder, ObservedMessage

__all__ = ["observe_message"]


def observe_message(message: Message, folder: Folder, provider_message_id: str, *,
                    received_at: datetime | None = None, provider_thread_id: str | None = None,
                    raw: Any = None) -> ObservedMessage:
    """`message` as an observation. The thread id defaults to the thread root (first of
    References, else In-Reply-To, else its own Message-ID; for a delivery report, the root of
    the returned email); `received_at` defaults to its Date. Inbox messages that are delivery
    reports carry their reading in `bounce`."""
    bounce = read_bounce(message) if folder is Folder.INBOX else None
    if provider_thread_id is None:
        returned = returned_message(message) if bounce else None
        provider_thread_id = thread_root(returned if returned is not None else message)
    return ObservedMessage(
        folder=folder,
        provider_message_id=provider_message_id,
        message_id=first_message_id(header_text(message, "Message-ID")),
        provider_thread_id=provider_thread_id,
        in_reply_to=first_message_id(header_text(message, "In-Reply-To")),
        references=header_ids(message, "References"),
        from_address=next(iter(addresses(message, "From")), None),
        to_addresses=addresses(message, "To"),
        subject=header_text(message, "Subject") or "",
        received_at=message_date(message) or received_at,
        snippet=text_snippet(message),
        headers=observed_headers(message),
        bounce=bounce,
        bounced_message_id=bounce.message_id if bounce else None,
        bounced_recipient=bounce.recipient if bounce else None,
        bounce_reason=bounce.reason if bounce else None,
        raw=raw,
    )
