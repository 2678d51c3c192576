"""What an observed message means for a campaign: a rep sent a task's draft, a reply, an
automatic reply, a bounce, or nothing we track. Pure: the caller supplies lookups into the store.

Replies (`Rule` says which rule matched, and `Classified.why` says it in words):
- `thread_headers`: In-Reply-To or References carries one of our Message-IDs. From any address.
- `provider_thread`: the message is in the provider's thread of one of our emails (Gmail
  threadId, Graph conversationId, the Maildir thread root) and comes from that email's contact.
- `subject`: with no In-Reply-To and no References at all, it comes from a contact's address and
  its subject, without reply prefixes in any common language (`core.email.replies`), equals the
  subject of an email we sent that contact in the last 30 days.
A matched message is an automatic reply when `core.email.replies.automatic_reply` says so.

Bounces: a delivery report read by `core.email.bounces` names our email by Message-ID (wherever
the report carries it) and its failed recipient; without any of our ids it is matched by
recipient to our latest email to that address in the last 30 days. `judge_bounce` decides what a
bounce does: hard (5.x.x but mailbox full) ends the sequence and excludes the address; soft
(4.x.x, 5.2.2) retries that email once, a day later; the third soft bounce of an address within
30 days counts as hard.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from core.email.bounces import Bounce, Severity, is_report_sender
from core.email.replies import automatic_reply, conversation_key, subject_key
from core.mailbox import Folder, ObservedMessage
from core.vocabulary import MessageState

SUBJECT_WINDOW = timedelta(days=30)  # a reply without thread headers matches our emails this recent
SOFT_RETRY_AFTER = timedelta(days=1)
SOFT_WINDOW = timedelta(days=30)
SOFT_BOUNCES_COUNTING_AS_HARD = 3


@dataclass(frozen=True)
class Tracked:
    """A message of ours, as far as classification needs to know it."""

    key: int  # messages.id
    state: MessageState
    contact_email: str
    message_id: str
    provider_message_id: str | None
    provider_thread_id: str | None
    subject: str = ""
    sent_at: datetime | None = None


class Lookup(Protocol):
    """Finds our messages in one mailbox."""

    def by_message_ids(self, message_ids: list[str]) -> list[Tracked]: ...
    def by_provider_id(self, provider_message_id: str) -> Tracked | None: ...
    def by_thread(self, provider_thread_id: str) -> list[Tracked]: ...
    def sent_to(self, address: str, since: datetime) -> list[Tracked]:
        """Our emails to `address` (lower case) that went out at or after `since`, newest first."""


class Meaning(StrEnum):
    DRAFT_SENT = "draft_sent"  # the rep sent a task's draft from their own client
    OUR_SEND = "our_send"  # an automatic send of ours showing up in Sent
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNRELATED = "unrelated"


class Rule(StrEnum):
    """Which rule tied an inbound message to one of our emails."""

    THREAD_HEADERS = "thread_headers"
    PROVIDER_THREAD = "provider_thread"
    SUBJECT = "subject"
    MESSAGE_ID = "message_id"  # a delivery report naming our Message-ID
    RECIPIENT = "recipient"  # a delivery report naming only the failed recipient


@dataclass(frozen=True)
class Classified:
    meaning: Meaning
    message: Tracked | None = None
    why: str = ""
    rule: Rule | None = None
    bounce: Bounce | None = None


def is_auto_reply(observed: ObservedMessage) -> str | None:
    """The reason an inbound message is automatic (RFC 3834 and common practice), else None."""
    return automatic_reply(observed.headers, observed.subject)


def is_delivery_report(observed: ObservedMessage) -> bool:
    """A delivery report (read or not): it is never taken for a reply."""
    headers = observed.headers
    content_type = headers.get("content-type", "").lower()
    return (observed.bounce is not None or observed.bounced_message_id is not None
            or ("multipart/report" in content_type and "delivery-status" in content_type)
            or "x-failed-recipients" in headers or "x-ms-exchange-message-is-ndr" in headers
            or is_report_sender(observed.from_address))


def classify(observed: ObservedMessage, lookup: Lookup, own_address: str, now: datetime | None = None) -> Classified:
    """What `observed` means. `now` bounds the subject and recipient rules when the message has
    no `received_at`; without either those rules are not used."""
    if observed.folder is Folder.SENT:
        return _classify_sent(observed, lookup)
    at = observed.received_at or now
    if is_delivery_report(observed):
        return _classify_bounce(observed, lookup, at)
    return _classify_inbound(observed, lookup, own_address, at)


def _classify_sent(observed: ObservedMessage, lookup: Lookup) -> Classified:
    candidates: list[Tracked] = []
    by_id = lookup.by_provider_id(observed.provider_message_id)
    if by_id:
        candidates.append(by_id)
    if observed.message_id:
        candidates += lookup.by_message_ids([observed.message_id])
    if not candidates and observed.provider_thread_id:
        # A rep's client may give the sent draft a new Message-ID; the thread still ties it to us.
        recipients = {a.lower() for a in observed.to_addresses}
        candidates = [t for t in lookup.by_thread(observed.provider_thread_id)
                      if t.state is MessageState.DRAFTED and t.contact_email in recipients]
    for tracked in candidates:
        if tracked.state is MessageState.DRAFTED:
            return Classified(Meaning.DRAFT_SENT, tracked, "the task's draft now appears in Sent")
    if candidates:
        return Classified(Meaning.OUR_SEND, candidates[0], "an email we sent")
    return Classified(Meaning.UNRELATED, None, "a sent message we do not track")


def _classify_bounce(observed: ObservedMessage, lookup: Lookup, at: datetime | None) -> Classified:
    bounce = observed.bounce
    if bounce is None and observed.bounced_message_id is not None:  # a connector without the full reading
        bounce = Bounce(observed.bounced_recipient, (observed.bounced_message_id,), None,
                        observed.bounce_reason, Severity.HARD, "report")
    if bounce is None:
        # A delay notice, or a report that could not be read: never end a sequence on a guess.
        return Classified(Meaning.UNRELATED, None, "a delivery report naming no failed message")
    recipient = (bounce.recipient or "").lower()
    matches = lookup.by_message_ids(list(bounce.message_ids)) if bounce.message_ids else []
    if matches:
        mine = [t for t in matches if not recipient or t.contact_email == recipient]
        if not mine:
            return Classified(Meaning.UNRELATED, matches[0], f"a delivery report for {recipient}, not our contact")
        return Classified(Meaning.BOUNCE, mine[0], f"{bounce.cause} (the report names our email "
                          f"{mine[0].message_id})", Rule.MESSAGE_ID, bounce)
    if recipient and at is not None:
        sent = lookup.sent_to(recipient, at - SUBJECT_WINDOW)
        if sent:
            return Classified(Meaning.BOUNCE, sent[0], f"{bounce.cause} (the report names no email of ours; "
                              f"{recipient} is the failed recipient of our latest email to them)", Rule.RECIPIENT, bounce)
    return Classified(Meaning.UNRELATED, None, "a delivery report for a message we do not track")


def _classify_inbound(observed: ObservedMessage, lookup: Lookup, own_address: str, at: datetime | None) -> Classified:
    sender = (observed.from_address or "").lower()
    if not sender or sender == own_address.lower():
        return Classified(Meaning.UNRELATED, None, "a message from ourselves")
    tracked, rule, how = _match(observed, lookup, sender, at)
    if tracked is None:
        return Classified(Meaning.UNRELATED, None, "not a message from a contact in a tracked thread")
    auto = is_auto_reply(observed)
    if auto:
        return Classified(Meaning.AUTO_REPLY, tracked, f"automatic reply ({auto}); {how}", rule)
    return Classified(Meaning.REPLY, tracked, f"reply from {sender}: {how}", rule)


def _match(observed: ObservedMessage, lookup: Lookup, sender: str,
           at: datetime | None) -> tuple[Tracked | None, Rule | None, str]:
    ids = [i for i in dict.fromkeys((observed.in_reply_to, *reversed(observed.references))) if i]
    if ids:
        matches = lookup.by_message_ids(ids)
        if matches:
            # Our contact's own answer first; anyone answering with our ids still counts.
            tracked = next((t for t in matches if t.contact_email == sender), matches[0])
            header = "In-Reply-To" if tracked.message_id == observed.in_reply_to else "References"
            return tracked, Rule.THREAD_HEADERS, f"its {header} names our email {tracked.message_id}"
    if observed.provider_thread_id:
        in_thread = [t for t in lookup.by_thread(observed.provider_thread_id) if t.contact_email == sender]
        if in_thread:
            return in_thread[0], Rule.PROVIDER_THREAD, "it is in the provider's thread of our email " \
                f"{in_thread[0].message_id}"
    if not ids and at is not None:
        key = conversation_key(observed.subject)
        if key:
            for tracked in lookup.sent_to(sender, at - SUBJECT_WINDOW):
                if subject_key(tracked.subject) == key:
                    return tracked, Rule.SUBJECT, ("it has no thread headers and its subject "
                                                   f"{observed.subject!r} answers our email {tracked.message_id}")
    return None, None, ""


@dataclass(frozen=True)
class BounceVerdict:
    """What a bounce does: `hard` ends the sequence and excludes the address everywhere; else
    the bounced email is sent again at `retry_at`. `cause` says why, in one line."""

    hard: bool
    retry_at: datetime | None
    cause: str


def judge_bounce(bounce: Bounce | None, at: datetime, earlier_soft: int) -> BounceVerdict:
    """Hard or soft, for a bounce observed `at`; `earlier_soft` counts this address's soft
    bounces within SOFT_WINDOW before it. A report with no reading counts as hard."""
    if bounce is None or bounce.severity is Severity.HARD:
        return BounceVerdict(True, None, bounce.cause if bounce else "hard bounce")
    if earlier_soft + 1 >= SOFT_BOUNCES_COUNTING_AS_HARD:
        return BounceVerdict(True, None, f"{bounce.cause}; soft bounce number {earlier_soft + 1} within "
                             f"{SOFT_WINDOW.days} days counts as hard")
    retry_at = at + SOFT_RETRY_AFTER
    return BounceVerdict(False, retry_at, f"{bounce.cause}; sent again once, at {retry_at:%Y-%m-%d %H:%M} UTC")
