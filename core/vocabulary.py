"""The one vocabulary of states and events, shared by the CLI, Slack, the store and the KPIs."""
from __future__ import annotations

from enum import StrEnum


class CampaignState(StrEnum):
    DRAFT = "draft"
    PREPARING = "preparing"
    PREPARED = "prepared"
    FAILED = "failed"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


class StepAction(StrEnum):
    AUTO = "auto"
    TASK = "task"


class SendOption(StrEnum):
    CHOOSE_AT_LAUNCH = "choose_at_launch"
    AT_TIME = "at_time"
    SAME_AS_PREVIOUS = "same_as_previous"


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    FINISHED = "finished"  # every step carried out
    REPLIED = "replied"  # the contact answered: the sequence stopped
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    EXCLUDED = "excluded"  # refused by a preparation rule
    FAILED = "failed"  # the provider refused an email for good (bad recipient …)
    STOPPED = "stopped"  # the campaign was stopped
    UNENROLLED = "unenrolled"  # taken out of the campaign by the operator (`cadence unenroll`)


ENROLLMENT_ENDED = frozenset(set(EnrollmentState) - {EnrollmentState.ACTIVE})


class MessageState(StrEnum):
    PLANNED = "planned"  # rendered, waiting for the previous step or for the campaign to send
    SCHEDULED = "scheduled"  # due time computed, waiting
    SENDING = "sending"  # intent recorded (draft id / Message-ID stored), provider called
    SENT = "sent"
    DRAFTED = "drafted"  # a task's draft sits in the rep's mailbox
    IN_DOUBT = "in_doubt"  # the provider could not tell whether it went out; a person decides
    FAILED = "failed"  # permanent provider refusal, or a render error
    CANCELLED = "cancelled"  # sequence ended before it was due (reply, stop, opt-out)
    SKIPPED = "skipped"  # the rep skipped the task


MESSAGE_FINAL = frozenset(
    {MessageState.SENT, MessageState.FAILED, MessageState.CANCELLED, MessageState.SKIPPED}
)


class TaskState(StrEnum):
    OPEN = "open"
    DONE = "done"  # the rep sent the draft
    SKIPPED = "skipped"
    STALE = "stale"  # the sequence ended (reply, bounce, opt-out, stop) before the rep sent it


class MailboxHealth(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # the provider refused its credentials: the rep must sign in again
    MISCONFIGURED = "misconfigured"  # this installation cannot use it (a missing setting, an unusable path)
    ERROR = "error"  # it failed unexpectedly; tried again with back-off


class DeferralCause(StrEnum):
    """Why a `deferred` event moved a message later (stored as the event's `cause`)."""

    DAILY_LIMIT = "daily_limit"  # the campaign's daily_limit for that mailbox
    MAILBOX_DAILY_CAP = "mailbox_daily_cap"  # the mailbox's own cap a day (provider's or operator's)
    RATE_LIMIT = "rate_limit"  # the mailbox's sends a minute
    MAILBOX_DISCONNECTED = "mailbox_disconnected"  # waits until a person reconnects the mailbox
    PROVIDER_RATE_LIMITED = "provider_rate_limited"  # the provider said 429 / rate limit exceeded
    PROVIDER_RETRY = "provider_retry"  # a provider error worth trying again (5xx, timeout, a crash)
    SYNC_FAILED = "sync_failed"  # a mailbox's sync pass failed (no message moved)


class EventKind(StrEnum):
    ENROLLED = "enrolled"
    UNENROLLED = "unenrolled"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"  # moved later by a cap, a window or a disconnected mailbox
    EXCLUDED = "excluded"
    DRAFTED = "drafted"
    SENT = "sent"
    IN_DOUBT = "in_doubt"
    FAILED = "failed"
    TASK_CREATED = "task_created"
    TASK_DONE = "task_done"
    TASK_SKIPPED = "task_skipped"
    DRAFT_STALE = "draft_stale"  # the sequence ended before the rep sent the task's draft
    DRAFT_WITHDRAWN = "draft_withdrawn"  # that stale draft left the rep's Drafts (or was marked stale there)
    REPLIED = "replied"
    AUTO_REPLIED = "auto_replied"
    BOUNCED = "bounced"  # a hard bounce: the address is excluded everywhere
    SOFT_BOUNCED = "soft_bounced"  # mailbox full, 4.x.x: that email goes again a day later
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    MAILBOX_DISCONNECTED = "mailbox_disconnected"
    MAILBOX_UNUSABLE = "mailbox_unusable"  # misconfigured or in error (see cadence.services.health)
    MAILBOX_RECOVERED = "mailbox_recovered"
    FINISHED = "finished"
    PREPARATION_STARTED = "preparation_started"
    PREPARATION_WARNING = "preparation_warning"  # worth knowing, does not stop the preparation
    PREPARED = "prepared"
    PREPARATION_FAILED = "preparation_failed"
    CAMPAIGN_STATE = "campaign_state"  # send, pause, resume, stop, finish
    RECONCILED = "reconciled"  # an interrupted send was resolved with the provider
