"""The people around a Maildir mailbox, acting on its files the way their own programs do.

Used by the contract harness and by `cadence demo`: the rep sends a draft from a mail client
(a new file in `.Sent` under a new key, same Message-ID, the draft removed), a contact's mail
server delivers a reply into INBOX `new/`, a remote MTA delivers a delivery-status notification
(multipart/report, RFC 3464) for a message that bounced. Deliveries go through the stdlib
`mailbox.Maildir`, as any delivery agent would write them.
"""
from __future__ import annotations

import mailbox as stdlib_mailbox
import os
import re
import uuid
from datetime import datetime, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Callable

from core.email.message_id import first_message_id
from core.email.read import header_ids, header_text
from core.headers import check_header_value
from connectors.maildir import layout

_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


class MaildirPeople:
    """Plays the rep's mail client, a contact's mail server and a bouncing MTA on `root`."""

    def __init__(self, root: Path | str, *, clock_now: Callable[[], datetime] | None = None):
        self.root = Path(root).expanduser().resolve()
        self._now = clock_now or (lambda: datetime.now(timezone.utc))
        layout.ensure_tree(self.root)

    def find(self, message_id: str) -> tuple[Path, EmailMessage]:
        """The file and message with `message_id` in Sent, Drafts or INBOX; `LookupError` if none."""
        for folder in (self.root / layout.SENT, self.root / layout.DRAFTS, self.root):
            for path in layout.message_files(folder).values():
                message = layout.read_message(path)
                if first_message_id(header_text(message, "Message-ID")) == message_id:
                    return path, message
        raise LookupError(f"no message {message_id} in {self.root}")

    def rep_sends_draft(self, draft_id: str, *, new_subject: str | None = None) -> str:
        """The rep presses Send in their client, maybe after editing the subject: the sent copy
        is a new file in `.Sent` (new key, same Message-ID, Date = now) and the draft is removed.
        Returns the new key."""
        drafts = self.root / layout.DRAFTS
        path = layout.find_file(drafts, draft_id)
        if path is None:
            raise LookupError(f"no draft {draft_id} in {drafts}")
        message = layout.read_message(path)
        if new_subject is not None:
            check_header_value("Subject", new_subject)
            message.replace_header("Subject", new_subject)
        message.replace_header("Date", format_datetime(self._now()))
        key, _ = layout.write_message(self.root / layout.SENT, layout.to_bytes(message), flags="S")
        os.unlink(path)
        return key

    def contact_replies(self, message_id: str, *, from_address: str, body: str, from_name: str | None = None,
                        subject: str | None = None, headers: dict[str, str] | None = None) -> str:
        """A reply to `message_id` from `from_address` arrives in INBOX `new/`, threaded with
        In-Reply-To and References; `headers` adds e.g. Auto-Submitted. Returns its key."""
        _, parent = self.find(message_id)
        reply = EmailMessage(policy=policy.default)
        reply["From"] = Address(display_name=from_name or "", addr_spec=from_address)
        reply["To"] = str(parent["From"])
        reply["Subject"] = subject if subject is not None else _reply_subject(header_text(parent, "Subject") or "")
        reply["Date"] = format_datetime(self._now())
        reply["Message-ID"] = make_msgid(domain=from_address.rpartition("@")[2] or "example.invalid")
        chain = header_ids(parent, "References") + (message_id,)
        reply["In-Reply-To"] = message_id
        reply["References"] = " ".join(chain)
        for name, value in (headers or {}).items():
            check_header_value(name, value)
            reply[name] = value
        reply.set_content(body)
        return self.deliver(layout.to_bytes(reply))

    def bounce(self, message_id: str, *, recipient: str,
               diagnostic: str = "550 5.1.1 Recipient address rejected: User unknown",
               reporting_mta: str = "mx.prospect.example") -> str:
        """A remote MTA returns `message_id` as undeliverable to `recipient`: a Postfix-style
        multipart/report (text, message/delivery-status, text/rfc822-headers of the original)
        arrives in INBOX `new/`. Returns its key."""
        for name, value in (("recipient", recipient), ("diagnostic", diagnostic), ("reporting_mta", reporting_mta)):
            check_header_value(name, value)
        path, parent = self.find(message_id)
        original_headers = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
        status = _ENHANCED_STATUS.search(diagnostic)
        report = delivery_status_notification(
            to=header_text(parent, "From") or "postmaster",
            recipient=recipient, diagnostic=diagnostic, status=status.group(1) if status else "5.0.0",
            reporting_mta=reporting_mta, original_headers=original_headers, date=self._now())
        return self.deliver(report.encode("utf-8"))

    def deliver(self, data: bytes) -> str:
        """Drop a message into INBOX `new/` as a delivery agent does; returns its key."""
        return stdlib_mailbox.Maildir(self.root, create=False).add(data)


def _reply_subject(subject: str) -> str:
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def delivery_status_notification(*, to: str, recipient: str, diagnostic: str, status: str,
                                 reporting_mta: str, original_headers: str, date: datetime) -> str:
    """The text of a failed-delivery report as Postfix writes one (RFC 3464 multipart/report)."""
    boundary = f"{uuid.uuid4().hex}/{reporting_mta}"
    stamp = format_datetime(date)
    return (
        f"Return-Path: <>\n"
        f"Date: {stamp}\n"
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)\n"
        f"Subject: Undelivered Mail Returned to Sender\n"
        f"To: {to}\n"
        f"Auto-Submitted: auto-replied\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\n"
        f"\tboundary=\"{boundary}\"\n"
        f"Message-Id: <{uuid.uuid4().hex}@{reporting_mta}>\n"
        f"\n"
        f"This is a MIME-encapsulated message.\n"
        f"\n"
        f"--{boundary}\n"
        f"Content-Description: Notification\n"
        f"Content-Type: text/plain; charset=us-ascii\n"
        f"\n"
        f"This is the mail system at host {reporting_mta}.\n"
        f"\n"
        f"I'm sorry to have to inform you that your message could not\n"
        f"be delivered to one or more recipients. It's attached below.\n"
        f"\n"
        f"<{recipient}>: host {reporting_mta} said: {diagnostic}\n"
        f"\n"
        f"--{boundary}\n"
        f"Content-Description: Delivery report\n"
        f"Content-Type: message/delivery-status\n"
        f"\n"
        f"Reporting-MTA: dns; {reporting_mta}\n"
        f"Arrival-Date: {stamp}\n"
        f"\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"Original-Recipient: rfc822;{recipient}\n"
        f"Action: failed\n"
        f"Status: {status}\n"
        f"Remote-MTA: dns; {reporting_mta}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        f"\n"
        f"--{boundary}\n"
        f"Content-Description: Undelivered Message Headers\n"
        f"Content-Type: text/rfc822-headers\n"
        f"\n"
        f"{original_headers}\n"
        f"\n"
        f"--{boundary}--\n"
    )
