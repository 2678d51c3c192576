"""How a claimed message ends (pure decisions): outcome kinds, backoff, the judgement of a
provider's answer, and whether a prepared message may still go out.

The worker calls the provider; what its answer means for the message is decided here, with the
instant and the jitter given (no clock, no randomness of its own).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.mailbox import (
    Disconnected,
    DraftRef,
    MailboxError,
    OutgoingEmail,
    RateLimited,
    SendCheck,
    SendStatus,
    SentRef,
    TransientError,
)
from core.vocabulary import CampaignState, DeferralCause, EnrollmentState

SENT, DRAFTED, RETRY, WAIT, FAILED, IN_DOUBT, CHECK_LATER, RELEASE, LOST = (
    "sent", "drafted", "retry", "wait", "failed", "in_doubt", "check_later", "release", "lost")
# Outcomes known not to have sent the message: its daily reservations are given back.
NOT_SENT = (RETRY, WAIT, FAILED, RELEASE)
MAX_DOUBLINGS = 6
RETRY_BASE = timedelta(minutes=1)  # the first wait after a provider error, unless the operator sets another


@dataclass(frozen=True)
class Outcome:
    """How one claimed message ended in this worker.

    sent / drafted: done. retry: not sent, try again at `at`. wait: not sent, the mailbox is
    disconnected. failed: refused for good. in_doubt: a person decides. check_later: stays
    `sending`, asked again from `at`. release: never handed to the provider, due again from `at`.
    lost: this worker no longer holds the claim; nothing is written.
    """

    kind: str
    detail: str = ""
    at: datetime | None = None
    sent: SentRef | None = None
    reconciled: bool = False  # decided by asking the provider after an interrupted send
    late: bool = False  # decided for another worker's attempt, whose lease ran out
    cause: DeferralCause = DeferralCause.PROVIDER_RETRY  # of a retry or a wait: why it did not go now


@dataclass
class Work:
    """One claimed message on its way through the provider calls of a batch."""

    message_id: int
    mailbox_id: int
    action: str
    position: int
    to_address: str
    rfc_message_id: str
    attempts: int
    email: OutgoingEmail | None = None
    draft: DraftRef | None = None
    new_draft: bool = False  # a draft id this pass must record (made now, or found by Message-ID)
    made_draft: bool = False  # this pass made that draft itself (create_draft), not found it
    outcome: Outcome | None = None
    # An earlier attempt recorded its intent but no draft id: it may have made a draft before it
    # died, which is looked up by Message-ID (Mailbox.find_drafts) and reused, not made again.
    may_have_draft: bool = False


@dataclass
class PassReport:
    """What one pass of due work did, in counts (and the names of the campaigns it finished)."""

    launched: int = 0
    sent: int = 0
    drafted: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    reconciled: int = 0
    observations: int = 0
    replies: int = 0
    bounces: int = 0
    tasks_done: int = 0
    finished: list[str] = field(default_factory=list)

    COUNTS = ("launched", "sent", "drafted", "deferred", "failed", "in_doubt", "reconciled", "observations",
              "replies", "bounces", "tasks_done")

    def add(self, other: "PassReport") -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.finished += other.finished

    def busy(self) -> bool:
        return any((self.launched, self.sent, self.drafted, self.deferred, self.failed, self.in_doubt,
                    self.reconciled, self.observations, self.finished))

    def describe(self) -> str:
        """`sent 3, deferred 1, finished q4` (the counts that are not zero)."""
        parts = [f"{name} {getattr(self, name)}" for name in self.COUNTS if getattr(self, name)]
        if self.finished:
            parts.append(f"finished {', '.join(self.finished)}")
        return ", ".join(parts)


def backoff(base: timedelta, attempts: int, now: datetime, jitter: float) -> datetime:
    """When to try again after `attempts` failed attempts: `base` doubled per attempt (at most
    2**6 times), times a jitter factor of 0.5 + `jitter` (`jitter` in [0, 1))."""
    return now + base * (2 ** min(max(attempts - 1, 0), MAX_DOUBLINGS)) * (0.5 + jitter)


@dataclass(frozen=True)
class ProblemVerdict:
    """What a provider error means: the message's outcome, and for its mailbox whether the rest of
    the batch waits (`blocks`) and whether it is disconnected (the reason)."""

    outcome: Outcome
    blocks: bool = False
    disconnected: str | None = None


def judge_problem(problem: MailboxError, now: datetime, backoff_at: datetime) -> ProblemVerdict:
    """A provider refused a draft or a send with `problem`.

    Disconnected: wait for a person to reconnect (the mailbox's other messages wait too).
    TransientError: retry after the provider's Retry-After, else at `backoff_at`; a rate limit or
    a Retry-After holds the mailbox's other messages too. Anything else: failed for good.
    """
    if isinstance(problem, Disconnected):
        return ProblemVerdict(Outcome(WAIT, detail=problem.reason, cause=DeferralCause.MAILBOX_DISCONNECTED),
                              blocks=True, disconnected=problem.reason)
    if isinstance(problem, TransientError):
        at = now + timedelta(seconds=problem.retry_after) if problem.retry_after else backoff_at
        cause = DeferralCause.PROVIDER_RATE_LIMITED if isinstance(problem, RateLimited) else DeferralCause.PROVIDER_RETRY
        outcome = Outcome(RETRY, detail=problem.reason, at=at, cause=cause)
        return ProblemVerdict(outcome, blocks=bool(problem.retry_after) or isinstance(problem, RateLimited))
    return ProblemVerdict(Outcome(FAILED, detail=problem.reason))


MAX_CRASH_ATTEMPTS = 5  # an unexplained failure is retried this many times, then the message fails
# Errors that say the email itself is wrong (an address or header the connector cannot encode, a
# bad value): the same data gives the same error, so retrying cannot help.
INPUT_ERRORS = (ValueError, TypeError, LookupError, UnicodeError)


def judge_crash(error: Exception, *, attempts: int, doing: str, backoff_at: datetime) -> Outcome:
    """A connector raised `error` (not a provider answer) while `doing` (e.g. "creating the
    draft"), on the message's `attempts`-th attempt (from 1).

    An input error (`INPUT_ERRORS`) fails the message at once with its cause; anything else is
    retried at `backoff_at` until `MAX_CRASH_ATTEMPTS`, then fails naming the attempts.
    """
    cause = f"{type(error).__name__}: {error}"
    if isinstance(error, INPUT_ERRORS):
        return Outcome(FAILED, detail=f"{doing} failed and retrying cannot help (the email as built is refused: {cause})")
    if attempts >= MAX_CRASH_ATTEMPTS:
        return Outcome(FAILED, detail=f"{doing} failed {attempts} times; giving up ({cause})")
    return Outcome(RETRY, detail=f"{doing} failed: {cause}", at=backoff_at)


def judge_check(status: SendStatus, *, rfc_message_id: str, position: int, to_address: str, why: str,
                now: datetime, backoff_at: datetime, reconciling: bool) -> Outcome:
    """The provider's answer to `check_sent` after an interrupted send decides, and only it.

    SENT: sent (reconciled). NOT_SENT: due again, at once after another worker's lapsed attempt
    (`reconciling`), else at `backoff_at`. UNKNOWN: in doubt, for a person to decide.
    """
    if status.status is SendCheck.SENT:
        return Outcome(SENT, sent=status.sent or SentRef(rfc_message_id), reconciled=True,
                       detail=f"step {position} to {to_address}: sent (confirmed after: {why})")
    if status.status is SendCheck.NOT_SENT:
        # After another worker's lapsed attempt, its send attempt keeps counting in the rate window:
        # that worker might still be alive and about to send the same draft.
        return Outcome(RETRY, reconciled=True, late=reconciling, at=now if reconciling else backoff_at,
                       detail=f"not sent ({why}; {status.detail}); it will be sent again")
    return Outcome(IN_DOUBT, detail=f"{why}; {status.detail}" if status.detail else why)


def live_exclusion(campaign_state: str, enrollment_state: str, opted_out: bool, bounced: bool,
                   replied: bool = False) -> tuple[EnrollmentState | None, str] | None:
    """A reason a prepared message must not go out now, else None: (the state its sequence ends
    in, or None when it ended already, and the reason). `opted_out`, `bounced`, `replied`: the
    contact did so at any time, in any campaign (checked again at the moment of sending)."""
    if campaign_state == CampaignState.STOPPED.value:
        return None, "the campaign was stopped"
    if enrollment_state != EnrollmentState.ACTIVE.value:
        return None, f"the sequence ended ({enrollment_state})"
    if opted_out:
        return EnrollmentState.UNSUBSCRIBED, "opted_out"
    if bounced:
        return EnrollmentState.BOUNCED, "bounced"
    if replied:
        return EnrollmentState.REPLIED, "replied"
    return None


def capped_reasons(reasons: list[str], keep: int = 12) -> list[str]:
    """The first reasons (how the due time was computed) and the latest moves, `keep` at most."""
    return reasons if len(reasons) <= keep else reasons[:4] + reasons[-(keep - 4):]
