"""Helpers shared by the Outlook tests."""
from __future__ import annotations

import uuid

from core.mailbox import OutgoingEmail, ThreadRef

CONTACT = "ada@prospect.example"


def new_email(address: str, subject: str = "Quick question", body: str = "Hi Ada, one question.",
              reply_to: ThreadRef | None = None, headers: dict[str, str] | None = None,
              to: str = CONTACT) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<{uuid.uuid4().hex}@cadence.test>", from_address=address, from_name="Rita Rep",
        to_address=to, to_name="Ada Lovelace", subject=subject, html_body=f"<p>{body}</p>",
        text_body=body, reply_to=reply_to,
        headers={"List-Unsubscribe": "<https://cadence.test/u/abc>"} if headers is None else headers)
