"""Contract harness for the Maildir mailbox: the people around it act by writing real files.

The rep's mail client, a contact's reply and a bounce are `MaildirPeople` writing into the tree;
`records` reads the tree back with the stdlib `mailbox.Maildir` and `email` parsers, not with
the connector. `lose_next_send_response` is a subclass whose next `send_draft` really moves the
draft into `.Sent` and then raises `SendInDoubt`, as if the process died right after the move.
"""
from __future__ import annotations

import contextlib
import mailbox
from email import message_from_bytes, policy

from core.email import read
from core.email.message_id import first_message_id, message_ids
from connectors.maildir import MaildirMailbox, MaildirPeople
from core.mailbox import DraftRef, SendInDoubt, SentRef

from .harness import ProviderRecord

_FOLDERS = {"drafts": "Drafts", "sent": "Sent", "inbox": None}


class _MailboxLosingResponses(MaildirMailbox):
    """A `MaildirMailbox` whose next send completes on disk but whose answer is lost."""

    lose_next = False

    def send_draft(self, draft: DraftRef) -> SentRef:
        sent = super().send_draft(draft)  # the move into .Sent really happens
        if self.lose_next:
            self.lose_next = False
            raise SendInDoubt(f"the process stopped after moving {draft.draft_id} into Sent")
        return sent


class MaildirHarness:
    def __init__(self, root, address: str = "rep@example.com"):
        self.address = address
        self.root = root
        self.mailbox = _MailboxLosingResponses(address, root)
        self.people = MaildirPeople(root)

    def records(self, folder: str) -> list[ProviderRecord]:
        inbox = mailbox.Maildir(self.root, create=False)
        box = inbox if _FOLDERS[folder] is None else inbox.get_folder(_FOLDERS[folder])
        parsed = [message_from_bytes(box.get_bytes(key), policy=policy.default) for key in box.keys()]
        records = []
        for message in sorted(parsed, key=lambda m: (read.message_date(m), str(m["Message-ID"]))):
            body = message.get_body(preferencelist=("plain",))
            records.append(ProviderRecord(
                folder=folder,
                message_id=first_message_id(str(message["Message-ID"] or "")),
                to_addresses=read.addresses(message, "To"),
                subject=str(message["Subject"] or ""),
                body_text=body.get_content() if body is not None else "",
                in_reply_to=first_message_id(str(message["In-Reply-To"] or "")),
                references=message_ids(str(message["References"] or "")),
                thread_id=read.thread_root(message),
                headers={name: str(value) for name, value in message.items()},
            ))
        return records

    def user_sends_draft(self, draft: DraftRef, *, new_subject: str | None = None) -> None:
        self.people.rep_sends_draft(draft.draft_id, new_subject=new_subject)

    def contact_replies(self, to, *, from_address, body, headers=None, subject=None) -> None:
        self.people.contact_replies(to.message_id, from_address=from_address, body=body,
                                    headers=headers, subject=subject)

    def bounce(self, sent: SentRef, *, recipient: str) -> None:
        self.people.bounce(sent.message_id, recipient=recipient)

    def lose_next_send_response(self) -> None:
        self.mailbox.lose_next = True


@contextlib.contextmanager
def make_harness(tmp_path):
    yield MaildirHarness(tmp_path / "Maildir")
