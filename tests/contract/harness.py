"""What the contract suite needs from each provider's test world, besides the `Mailbox` itself.

A harness plays the people and servers around a mailbox: the rep who presses Send in their
own client, a contact who replies, a mail server that bounces. Each provider's harness does this
through its own real protocol (files in a Maildir, HTTP calls to a fake Gmail or Graph server).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from core.mailbox import DraftRef, Mailbox, SentRef


@dataclass(frozen=True)
class ProviderRecord:
    """One message as the provider's own records show it (not as the connector reports it)."""

    folder: str  # "drafts", "sent" or "inbox"
    message_id: str | None
    to_addresses: tuple[str, ...]
    subject: str
    body_text: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    thread_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Harness(Protocol):
    mailbox: Mailbox
    address: str

    def records(self, folder: str) -> list[ProviderRecord]:
        """The provider's own list of messages in drafts / sent / inbox."""

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        """The rep sends the draft from their own mail client, maybe editing the subject first."""

    def contact_replies(self, to: DraftRef | SentRef, *, from_address: str, body: str,
                        headers: dict[str, str] | None = None, subject: str | None = None) -> None:
        """A message from `from_address` arrives in the inbox, in the thread of `to`."""

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        """A delivery-status notification for `sent` arrives in the inbox."""

    def lose_next_send_response(self) -> None:
        """The next send goes out, but its response never reaches the connector."""
