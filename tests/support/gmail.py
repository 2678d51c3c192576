"""Shared pieces of the Gmail tests: a fake clock and email builders."""
from __future__ import annotations

import uuid

from core.mailbox import OutgoingEmail, ThreadRef

CONTACT = "ada@prospect.example"


class FakeClock:
    """Injected `sleep` / `monotonic`: sleeping advances time at once and is recorded."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def outgoing(address: str, *, subject: str = "Quick question", body: str = "Hi Ada, one question.",
             to: str = CONTACT, reply_to: ThreadRef | None = None,
             headers: dict[str, str] | None = None) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<{uuid.uuid4().hex}@cadence.test>",
        from_address=address,
        from_name="Rita Rep",
        to_address=to,
        to_name="Ada Lovelace",
        subject=subject,
        html_body=f"<p>{body}</p>",
        text_body=body,
        reply_to=reply_to,
        headers={"List-Unsubscribe": "<https://cadence.test/u/abc>"} if headers is None else headers,
    )
