"""Contract harness for Outlook: the real msal and our Graph client against a fake Microsoft
identity platform (HTTPS, test CA) and a fake Graph (HTTP), both on 127.0.0.1, set up by
`tests.support.outlook.OutlookWorld` (which tests/outlook builds on too).
"""
from __future__ import annotations

import contextlib

from core.mailbox import DraftRef, SentRef
from tests.support.outlook import OutlookWorld

from .harness import ProviderRecord

RECORD_FOLDERS = {"drafts": "drafts", "sent": "sentitems", "inbox": "inbox"}


class OutlookHarness:
    def __init__(self, world: OutlookWorld):
        self.world = world
        self.address = world.address
        self.graph = world.graph
        world.connect()
        self.mailbox = world.mailbox()

    def records(self, folder: str) -> list[ProviderRecord]:
        return [
            ProviderRecord(folder, m.internet_message_id, tuple(a for _, a in m.to), m.subject, m.text,
                           m.in_reply_to, tuple(m.references), m.conversation_id, dict(m.headers))
            for m in self.graph.messages(self.address, RECORD_FOLDERS[folder])
        ]

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        self.graph.user_sends_draft(self.address, draft.draft_id, new_subject=new_subject)

    def contact_replies(self, to: DraftRef | SentRef, *, from_address: str, body: str,
                        headers: dict[str, str] | None = None, subject: str | None = None) -> None:
        parent = self.graph.message(self.address, to.provider_message_id)
        self.graph.deliver(self.address, from_address=from_address, subject=subject or f"RE: {parent.subject}",
                           body_text=body, in_reply_to_id=parent.id, headers=headers)

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        self.graph.bounce(self.address, sent.provider_message_id, recipient=recipient)

    def lose_next_send_response(self) -> None:
        self.graph.lose_next_send_response()


@contextlib.contextmanager
def make_harness(tmp_path):
    world = OutlookWorld(tmp_path)
    try:
        yield OutlookHarness(world)
    finally:
        world.close()
