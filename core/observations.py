"""What an observed message means for a campaign: a rep sent a task's draft, a reply, an
out-of-office, a bounce, or nothing we track. Pure: the caller supplies lookups into the store.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from core.mailbox import Folder, ObservedMessage
from core.vocabulary import MessageState


@dataclass(frozen=True)
class Tracked:
    """A message of ours, as far as classification needs to know it."""

    key: int  # messages.id
    state: MessageState
    contact_email: str
    message_id: str
    provider_message_id: str | None
    provider_thread_id: str | None


class Lookup(Protocol):
    """Finds our messages in one mailbox."""

    def by_message_ids(self, message_ids: list[str]) -> list[Tracked]: ...
    def by_provider_id(self, provider_message_id: str) -> Tracked | None: ...
    def by_thread(self, provider_thread_id: str) -> list[Tracked]: ...


class Meaning(StrEnum):
    DRAFT_SENT = "draft_sent"  # the rep sent a task's draft from their own client
    OUR_SEND = "our_send"  # an automatic send of ours showing up in Sent
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    UNRELATED = "unrelated"


@dataclass(frozen=True)
class Classified:
    meaning: Meaning
    message: Tracked | None = None
    why: str = ""


AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?(reply|response)|auto:|out of (the )?office|ooo\b|"
    r"abwesenheitsnotiz|réponse automatique|respuesta automática|risposta automatica|"
    r"autosvar|automatisch antwoord|afwezig|absence)",
    re.IGNORECASE,
)
DSN_SENDER = re.compile(r"^(mailer-daemon|postmaster|microsoftexchange[0-9a-f]*)@", re.IGNORECASE)


def is_auto_reply(observed: ObservedMessage) -> str | None:
    """The reason an inbound message is automatic (RFC 3834 and common practice), else None."""
    headers = observed.headers
    auto_submitted = headers.get("auto-submitted", "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("x-autoreply", "x-autorespond"):
        if name in headers:
            return f"{name} header"
    if headers.get("precedence", "").strip().lower() in {"auto_reply", "bulk", "junk"}:
        return f"Precedence: {headers['precedence']}"
    if AUTO_SUBJECT.search(observed.subject or ""):
        return f"subject {observed.subject!r}"
    return None


def is_delivery_report(observed: ObservedMessage) -> bool:
    content_type = observed.headers.get("content-type", "").lower()
    return (observed.bounced_message_id is not None
            or ("multipart/report" in content_type and "delivery-status" in content_type)
            or bool(observed.from_address and DSN_SENDER.match(observed.from_address)))


def classify(observed: ObservedMessage, lookup: Lookup, own_address: str) -> Classified:
    if observed.folder is Folder.SENT:
        return _classify_sent(observed, lookup)
    if is_delivery_report(observed):
        return _classify_bounce(observed, lookup)
    return _classify_inbound(observed, lookup, own_address)


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


def _classify_bounce(observed: ObservedMessage, lookup: Lookup) -> Classified:
    ids = list(observed.bounce.message_ids) if observed.bounce is not None else \
        [i for i in (observed.bounced_message_id,) if i]
    if not ids:
        # A delay notice, or a report the connector could not read: never end a sequence on a guess.
        return Classified(Meaning.UNRELATED, None, "a delivery report naming no failed message")
    matches = lookup.by_message_ids(ids)
    if not matches:
        return Classified(Meaning.UNRELATED, None, "a delivery report for a message we do not track")
    tracked = matches[0]
    recipient = (observed.bounced_recipient or "").lower()
    if recipient and recipient != tracked.contact_email:
        return Classified(Meaning.UNRELATED, tracked, f"a delivery report for {recipient}, not our contact")
    return Classified(Meaning.BOUNCE, tracked, observed.bounce_reason or "delivery failed")


def _classify_inbound(observed: ObservedMessage, lookup: Lookup, own_address: str) -> Classified:
    sender = (observed.from_address or "").lower()
    if not sender or sender == own_address.lower():
        return Classified(Meaning.UNRELATED, None, "a message from ourselves")
    ids = [i for i in (observed.in_reply_to, *reversed(observed.references)) if i]
    matches = lookup.by_message_ids(ids) if ids else []
    if not matches and observed.provider_thread_id:
        matches = lookup.by_thread(observed.provider_thread_id)
    matches = [t for t in matches if t.contact_email == sender] or [
        t for t in matches if observed.in_reply_to == t.message_id]
    if not matches:
        return Classified(Meaning.UNRELATED, None, "not a message from a contact in a tracked thread")
    tracked = matches[0]
    auto = is_auto_reply(observed)
    if auto:
        return Classified(Meaning.AUTO_REPLY, tracked, f"automatic reply ({auto})")
    return Classified(Meaning.REPLY, tracked, f"reply from {sender}")
