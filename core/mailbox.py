"""The `Mailbox` contract: what every provider (maildir, memory, Gmail, Outlook) does for Cadence.

Connectors translate only: an `OutgoingEmail` becomes the provider's payload, and whatever the
provider reports becomes an `ObservedMessage` (raw payload kept). Deciding what an observation
means (a reply, a bounce, a rep sending a task's draft) happens in `core.observations`.

Sending is split in two so that every automatic send has a recorded intent: the caller stores
the `DraftRef` returned by `create_draft` before it calls `send_draft`. A draft made but never
recorded (a crash in between) is found again by its Message-ID with `find_drafts`. After a crash or an
interrupted call, `check_sent` answers "did this go out?" from the provider's own records, and
only a message known not to be sent is ever sent again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Collection, Mapping, Protocol, runtime_checkable

from core.addresses import comparable_address
from core.email.bounces import Bounce


@dataclass(frozen=True)
class ThreadRef:
    """Where a threaded email belongs: the previous email of the conversation."""

    message_id: str  # RFC 5322 Message-ID of the previous email, with angle brackets
    references: tuple[str, ...] = ()  # the previous email's own References chain
    provider_message_id: str | None = None  # Gmail message id / Graph immutable id / maildir key
    provider_thread_id: str | None = None  # Gmail threadId / Graph conversationId


@dataclass(frozen=True)
class OutgoingEmail:
    """A fully rendered email. Every email Cadence creates has its own `message_id`."""

    message_id: str
    from_address: str
    to_address: str
    subject: str
    html_body: str
    text_body: str
    from_name: str | None = None
    to_name: str | None = None
    reply_to: ThreadRef | None = None  # set for threaded steps
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe

    @property
    def references(self) -> tuple[str, ...]:
        """The References chain a threaded email carries: the parent's chain plus the parent."""
        if self.reply_to is None:
            return ()
        chain = tuple(r for r in self.reply_to.references if r != self.reply_to.message_id)
        return chain + (self.reply_to.message_id,)


@dataclass(frozen=True)
class DraftRef:
    """A draft stored in the provider. `draft_id` is the idempotency key of a send."""

    draft_id: str
    message_id: str  # our RFC Message-ID
    provider_message_id: str | None = None
    provider_thread_id: str | None = None
    web_link: str | None = None  # opens the draft in Gmail / Outlook / a mail client


@dataclass(frozen=True)
class SentRef:
    """An email the provider has sent."""

    message_id: str
    provider_message_id: str | None = None
    provider_thread_id: str | None = None
    sent_at: datetime | None = None


class SendCheck(StrEnum):
    SENT = "sent"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SendStatus:
    """The answer of `Mailbox.check_sent`."""

    status: SendCheck
    sent: SentRef | None = None
    detail: str = ""


class Folder(StrEnum):
    SENT = "sent"
    INBOX = "inbox"


@dataclass(frozen=True)
class ObservedMessage:
    """A message the provider reports as new in Sent or in the Inbox, translated to our terms."""

    folder: Folder
    provider_message_id: str
    message_id: str | None = None
    provider_thread_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    from_address: str | None = None
    to_addresses: tuple[str, ...] = ()
    subject: str = ""
    received_at: datetime | None = None
    snippet: str = ""
    # Headers that tell automatic mail apart, lower-case names: auto-submitted, x-autoreply,
    # x-autorespond, precedence, content-type (multipart/report marks a delivery report).
    headers: Mapping[str, str] = field(default_factory=dict)
    # For a delivery-status notification: the Message-ID of the email that bounced, the
    # recipient and the reason, when the connector could read them.
    bounced_message_id: str | None = None
    bounced_recipient: str | None = None
    bounce_reason: str | None = None
    bounce: Bounce | None = None  # the whole reading of a delivery report (core.email.bounces)
    raw: Any = None  # the provider's own payload, kept for the event log

    def __post_init__(self) -> None:
        # Addresses in the stored form (core.addresses): an IDNA domain finds its Unicode contact.
        object.__setattr__(self, "from_address", comparable_address(self.from_address))
        object.__setattr__(self, "to_addresses", tuple(comparable_address(a) or a for a in self.to_addresses))
        object.__setattr__(self, "bounced_recipient", comparable_address(self.bounced_recipient))


@dataclass(frozen=True)
class PollResult:
    observations: tuple[ObservedMessage, ...]
    cursor: str  # opaque; pass back to the next `poll`
    resynced: bool = False  # the old cursor had expired and a full resync was done


@dataclass(frozen=True)
class ProviderLimits:
    """The provider's own limits for one mailbox; campaign limits may be lower."""

    daily: int | None = None
    per_minute: int | None = None
    concurrency: int | None = None


class MailboxError(Exception):
    """Base of every error a connector raises; `reason` is one clear sentence."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientError(MailboxError):
    """Try again later (5xx, timeout, rate limit). `retry_after` is in seconds when known."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The provider said 429 / rateLimitExceeded."""


class PermanentError(MailboxError):
    """The provider refused this message for good (bad recipient, too large)."""


class Disconnected(MailboxError):
    """The credentials no longer work (revoked, expired, needs consent); a person must reconnect."""


class SendInDoubt(MailboxError):
    """A send was interrupted: it may or may not have gone out. Resolve with `check_sent`."""


class DraftNotFound(MailboxError):
    """The draft no longer exists (sent or deleted by the user)."""


@runtime_checkable
class Mailbox(Protocol):
    """One sending mailbox of a rep. Implementations: maildir, memory, gmail, outlook."""

    address: str
    limits: ProviderLimits

    def create_draft(self, email: OutgoingEmail) -> DraftRef:
        """Store `email` as a draft (threaded under `email.reply_to` when set) and return it."""

    def update_draft(self, draft: DraftRef, *, subject: str, html_body: str, text_body: str) -> DraftRef:
        """Replace subject and body of a draft that is still a draft; `DraftNotFound` otherwise."""

    def delete_draft(self, draft: DraftRef) -> None:
        """Remove a draft; a draft already gone is not an error."""

    def find_drafts(self, message_id: str) -> list[DraftRef]:
        """Every draft still in Drafts whose RFC 5322 Message-ID is `message_id` (angle brackets
        or not), in the provider's order; empty when there is none. Reads only.

        This finds a draft whose creation was never recorded (the worker was killed between
        `create_draft` and storing its id), so a retry reuses it instead of making another.
        """

    def send_draft(self, draft: DraftRef) -> SentRef:
        """Send the draft as it is now. Never retried at transport level.

        Raises `DraftNotFound` when the draft is gone (maybe already sent: ask `check_sent`),
        `SendInDoubt` when the outcome is unknown, `PermanentError`, `TransientError`, `Disconnected`.
        """

    def check_sent(self, message_id: str, draft: DraftRef | None) -> SendStatus:
        """Did the email with our `message_id` (from `draft`, when known) go out? Reads only."""

    def poll(self, cursor: str | None, tracked_threads: Collection[str] = ()) -> PollResult:
        """New messages in Sent and Inbox since `cursor`.

        With `cursor=None` the connector returns no observations and a cursor for "now".
        When the provider says the cursor expired, it resyncs the `tracked_threads` (provider
        thread ids) and sets `resynced`; observations may then repeat ones seen before.
        """
