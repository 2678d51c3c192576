"""Contract harness for the in-memory mailbox."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone

from connectors.memory import MemoryMailbox, MemoryServer, StoredMessage
from core.mailbox import DraftRef, SentRef

from .harness import ProviderRecord


class MemoryHarness:
    def __init__(self, address: str = "rep@example.com"):
        self.address = address
        self.server = MemoryServer()
        self.mailbox = MemoryMailbox(address, self.server)

    def records(self, folder: str) -> list[ProviderRecord]:
        return [
            ProviderRecord(m.folder, m.message_id, m.to_addresses, m.subject, m.text_body,
                           m.in_reply_to, m.references, m.thread_id, dict(m.headers))
            for m in self.server.messages(self.address, folder)
        ]

    def _stored(self, ref: DraftRef | SentRef) -> StoredMessage:
        for m in self.server.box(self.address).values():
            if m.message_id == ref.message_id:
                return m
        raise AssertionError(f"no message {ref.message_id}")

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        stored = self.server.box(self.address)[draft.draft_id]
        stored.folder = "sent"
        stored.received_at = datetime.now(timezone.utc)
        if new_subject is not None:
            stored.subject = new_subject
        self.server.put(self.address, stored)

    def contact_replies(self, to, *, from_address, body, headers=None, subject=None) -> None:
        parent = self._stored(to)
        self.server.put(self.address, StoredMessage(
            key=self.server.new_key("m"), folder="inbox",
            message_id=f"<{self.server.new_key('r')}@prospect.example>", thread_id=parent.thread_id,
            from_address=from_address, to_addresses=(self.address,),
            subject=subject or f"Re: {parent.subject}", text_body=body,
            in_reply_to=parent.message_id, references=parent.references + (parent.message_id,),
            headers=dict(headers or {}), received_at=datetime.now(timezone.utc)))

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        parent = self._stored(sent)
        self.server.put(self.address, StoredMessage(
            key=self.server.new_key("m"), folder="inbox",
            message_id=f"<{self.server.new_key('b')}@mailer-daemon.example>", thread_id=parent.thread_id,
            from_address="mailer-daemon@example.com", to_addresses=(self.address,),
            subject="Delivery Status Notification (Failure)", text_body="550 5.1.1 user unknown",
            headers={"content-type": "multipart/report; report-type=delivery-status"},
            bounced_message_id=parent.message_id, bounced_recipient=recipient,
            bounce_reason="550 5.1.1 user unknown", received_at=datetime.now(timezone.utc)))

    def lose_next_send_response(self) -> None:
        self.server.lose_next_send.add(self.address.lower())


@contextlib.contextmanager
def make_harness(tmp_path):
    yield MemoryHarness()
