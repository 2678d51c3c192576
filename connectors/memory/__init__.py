"""An in-memory `Mailbox`: the reference implementation of the contract, for tests, benchmarks
and dry runs. State lives in a `MemoryServer` so several mailboxes (and several `Mailbox`
objects for one address) can share it, the way several clients share one Gmail account.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Collection

from core.email.compose import check_outgoing
from core.mailbox import (
    DraftNotFound,
    DraftRef,
    Folder,
    ObservedMessage,
    OutgoingEmail,
    PollResult,
    ProviderLimits,
    SendCheck,
    SendInDoubt,
    SendStatus,
    SentRef,
)


@dataclass
class StoredMessage:
    """One message in the memory server; `folder` is drafts, sent or inbox."""

    key: str
    folder: str
    message_id: str
    thread_id: str
    from_address: str
    to_addresses: tuple[str, ...]
    subject: str
    html_body: str = ""
    text_body: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    received_at: datetime | None = None
    bounced_message_id: str | None = None
    bounced_recipient: str | None = None
    bounce_reason: str | None = None
    seq: int = 0


class MemoryServer:
    """Every mailbox's messages plus a change log, shared by the `MemoryMailbox` objects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.boxes: dict[str, dict[str, StoredMessage]] = {}
        self.lose_next_send: set[str] = set()  # addresses whose next send goes out but errs

    def new_key(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def box(self, address: str) -> dict[str, StoredMessage]:
        return self.boxes.setdefault(address.lower(), {})

    def put(self, address: str, message: StoredMessage) -> StoredMessage:
        with self._lock:
            message.seq = next(self._seq)
            self.box(address)[message.key] = message
        return message

    def last_seq(self) -> int:
        with self._lock:
            return max((m.seq for b in self.boxes.values() for m in b.values()), default=0)

    def messages(self, address: str, folder: str) -> list[StoredMessage]:
        with self._lock:
            return sorted((m for m in self.box(address).values() if m.folder == folder), key=lambda m: m.seq)


class MemoryMailbox:
    """`Mailbox` over a `MemoryServer`. Sends never fail unless a fault is injected."""

    limits = ProviderLimits()

    def __init__(self, address: str, server: MemoryServer | None = None):
        self.address = address
        self.server = server or MemoryServer()

    def _thread_for(self, email: OutgoingEmail) -> str:
        if email.reply_to and email.reply_to.provider_thread_id:
            return email.reply_to.provider_thread_id
        return self.server.new_key("t")

    def create_draft(self, email: OutgoingEmail) -> DraftRef:
        check_outgoing(email)  # the same header rule as every other provider
        message = StoredMessage(
            key=self.server.new_key("m"),
            folder="drafts",
            message_id=email.message_id,
            thread_id=self._thread_for(email),
            from_address=email.from_address,
            to_addresses=(email.to_address,),
            subject=email.subject,
            html_body=email.html_body,
            text_body=email.text_body,
            in_reply_to=email.reply_to.message_id if email.reply_to else None,
            references=email.references,
            headers=dict(email.headers),
        )
        self.server.put(self.address, message)
        return DraftRef(
            draft_id=message.key,
            message_id=email.message_id,
            provider_message_id=message.key,
            provider_thread_id=message.thread_id,
            web_link=f"memory://{self.address}/drafts/{message.key}",
        )

    def _draft(self, draft: DraftRef) -> StoredMessage:
        stored = self.server.box(self.address).get(draft.draft_id)
        if stored is None or stored.folder != "drafts":
            raise DraftNotFound(f"draft {draft.draft_id} is not in the drafts of {self.address}")
        return stored

    def update_draft(self, draft: DraftRef, *, subject: str, html_body: str, text_body: str) -> DraftRef:
        stored = self._draft(draft)
        stored.subject, stored.html_body, stored.text_body = subject, html_body, text_body
        self.server.put(self.address, stored)
        return draft

    def delete_draft(self, draft: DraftRef) -> None:
        box = self.server.box(self.address)
        stored = box.get(draft.draft_id)
        if stored is not None and stored.folder == "drafts":
            del box[draft.draft_id]

    def find_drafts(self, message_id: str) -> list[DraftRef]:
        wanted = message_id.strip().strip("<>")
        return [DraftRef(draft_id=m.key, message_id=m.message_id, provider_message_id=m.key,
                         provider_thread_id=m.thread_id, web_link=f"memory://{self.address}/drafts/{m.key}")
                for m in self.server.messages(self.address, "drafts") if m.message_id.strip("<>") == wanted]

    def send_draft(self, draft: DraftRef) -> SentRef:
        stored = self._draft(draft)
        sent = replace(stored, folder="sent", received_at=datetime.now(timezone.utc))
        self.server.put(self.address, sent)
        if self.address.lower() in self.server.lose_next_send:
            self.server.lose_next_send.discard(self.address.lower())
            raise SendInDoubt(f"the answer to sending {draft.message_id} was lost")
        return SentRef(stored.message_id, stored.key, stored.thread_id, sent.received_at)

    def check_sent(self, message_id: str, draft: DraftRef | None) -> SendStatus:
        for stored in self.server.messages(self.address, "sent"):
            if stored.message_id == message_id or (draft and stored.key == draft.draft_id):
                return SendStatus(
                    SendCheck.SENT, SentRef(stored.message_id, stored.key, stored.thread_id, stored.received_at)
                )
        if draft is not None and draft.draft_id in self.server.box(self.address):
            return SendStatus(SendCheck.NOT_SENT, detail="the draft is still a draft")
        if draft is None:
            return SendStatus(SendCheck.NOT_SENT, detail="no draft and nothing sent with that Message-ID")
        return SendStatus(SendCheck.UNKNOWN, detail="the draft is gone and nothing was sent with its Message-ID")

    def poll(self, cursor: str | None, tracked_threads: Collection[str] = ()) -> PollResult:
        if cursor is None:
            return PollResult((), str(self.server.last_seq()))
        since = int(cursor)
        observations = []
        top = since
        for folder_name, folder in (("sent", Folder.SENT), ("inbox", Folder.INBOX)):
            for stored in self.server.messages(self.address, folder_name):
                if stored.seq > since:
                    observations.append(_observe(stored, folder))
                    top = max(top, stored.seq)
        observations.sort(key=lambda o: o.raw["seq"])
        return PollResult(tuple(observations), str(max(top, since)))


def _observe(stored: StoredMessage, folder: Folder) -> ObservedMessage:
    return ObservedMessage(
        folder=folder,
        provider_message_id=stored.key,
        message_id=stored.message_id,
        provider_thread_id=stored.thread_id,
        in_reply_to=stored.in_reply_to,
        references=stored.references,
        from_address=stored.from_address,
        to_addresses=stored.to_addresses,
        subject=stored.subject,
        received_at=stored.received_at,
        snippet=(stored.text_body or "")[:200],
        headers={k.lower(): v for k, v in stored.headers.items()},
        bounced_message_id=stored.bounced_message_id,
        bounced_recipient=stored.bounced_recipient,
        bounce_reason=stored.bounce_reason,
        raw={"key": stored.key, "seq": stored.seq, "folder": stored.folder},
    )
