"""Contract harness for Gmail: the real Gmail client against the fake Gmail server over HTTP."""
from __future__ import annotations

import contextlib

from connectors.gmail import GmailMailbox
from core.mailbox import DraftRef, SentRef
from tests.fakes.gmail_server import FakeAccount, FakeGmail

from .harness import ProviderRecord


class GmailHarness:
    def __init__(self, server: FakeGmail, account: FakeAccount, mailbox: GmailMailbox):
        self.server, self.account, self.mailbox = server, account, mailbox
        self.address = account.address

    def records(self, folder: str) -> list[ProviderRecord]:
        return [
            ProviderRecord(folder, m.message_id, m.to_addresses, m.subject, m.text_body, m.in_reply_to,
                           m.references, m.thread_id, m.headers)
            for m in self.account.folder(folder)
        ]

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        self.account.user_sends_draft(draft.draft_id, new_subject=new_subject)

    def contact_replies(self, to: DraftRef | SentRef, *, from_address: str, body: str,
                        headers: dict[str, str] | None = None, subject: str | None = None) -> None:
        parent = self.account.message_by_message_id(to.message_id)
        if parent is None:
            raise AssertionError(f"no message {to.message_id} in the fake Gmail")
        self.account.deliver(from_address=from_address, subject=subject or f"Re: {parent.subject}", body=body,
                             thread_id=parent.thread_id, in_reply_to=parent.message_id,
                             references=parent.references + (parent.message_id,), headers=headers)

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        self.account.bounce(sent.message_id, recipient)

    def lose_next_send_response(self) -> None:
        self.server.lose_next_response("drafts.send")


@contextlib.contextmanager
def make_harness(tmp_path):
    with FakeGmail() as server:
        account = server.add_account("rep@example.com")
        mailbox = GmailMailbox(account.address, refresh_token=account.refresh_token, client_id=server.client_id,
                               client_secret=server.client_secret, api_url=server.api_url,
                               token_url=server.token_url)
        try:
            yield GmailHarness(server, account, mailbox)
        finally:
            mailbox.close()
