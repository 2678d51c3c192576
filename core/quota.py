"""Per-mailbox limits and the allotment of daily caps and the per-minute window (pure decisions).

A send is allowed when every daily bucket that applies (the campaign's `daily_limit` per
mailbox, the mailbox's own cap) has room and, with a rate, when fewer than `rate` sends started
in the last `RATE_WINDOW`. The store reads the counts and writes them back; what is decided here
takes no I/O and no clock of its own (the instant is given).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.mailbox import ProviderLimits
from core.vocabulary import DeferralCause

RATE_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one mailbox: the provider's and the operator's, the lower of each."""

    daily: int | None = None
    per_minute: int | None = None
    concurrency: int | None = None


def lower(*values: int | None) -> int | None:
    """The smallest limit given; None (no limit) when none is given (0 and None mean none)."""
    given = [v for v in values if v]
    return min(given) if given else None


def combine_limits(provider: ProviderLimits, *, daily: int | None, per_minute: int | None,
                   concurrency: int | None) -> Limits:
    """The provider's limits and the operator's caps of one mailbox, the lower of each."""
    return Limits(daily=lower(provider.daily, daily), per_minute=lower(provider.per_minute, per_minute),
                  concurrency=lower(provider.concurrency, concurrency))


@dataclass(frozen=True)
class Bucket:
    """One daily cap: its counter key, the cap, when it reopens (local midnight) and why it holds."""

    key: str
    cap: int
    reopens: datetime
    why: str

    @property
    def cause(self) -> DeferralCause:
        """The campaign's daily_limit (a key naming the campaign) or the mailbox's own cap."""
        return DeferralCause.DAILY_LIMIT if ":c" in self.key else DeferralCause.MAILBOX_DAILY_CAP


def daily_buckets(campaign_id: int, daily_limit: int | None, mailbox_daily: int | None, now: datetime,
                  zone: ZoneInfo) -> list[Bucket]:
    """Every daily cap that applies to one send at `now`, days counted in `zone`.

    Keys: `day:YYYY-MM-DD:c<campaign id>` (the campaign's daily_limit for this mailbox) and
    `day:YYYY-MM-DD` (the mailbox's cap).
    """
    local = now.astimezone(zone)
    day = local.date().isoformat()
    tomorrow = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    buckets = []
    if daily_limit:
        buckets.append(Bucket(f"day:{day}:c{campaign_id}", daily_limit, tomorrow,
                              f"the campaign's daily_limit of {daily_limit} for this mailbox is reached for {day}"))
    if mailbox_daily:
        buckets.append(Bucket(f"day:{day}", mailbox_daily, tomorrow,
                              f"the mailbox's cap of {mailbox_daily} emails a day is reached for {day}"))
    return buckets


@dataclass(frozen=True)
class Refusal:
    """A send held back by a limit: when it may go, why not now (words) and its cause (code)."""

    at: datetime
    why: str
    cause: DeferralCause = DeferralCause.RATE_LIMIT


class Allotment:
    """The counts of one intent transaction, handed out send by send.

    `used`: (mailbox id, bucket key) -> sends counted so far; `window`: mailbox id -> start times
    of the sends in the last `RATE_WINDOW` (unfinished ones count at `now`). `take` reserves or
    refuses; `used` then holds the counts to write back.
    """

    def __init__(self, now: datetime, used: dict[tuple[int, str], int] | None = None,
                 window: dict[int, list[datetime]] | None = None):
        self.now = now
        self.used: dict[tuple[int, str], int] = dict(used or {})
        self.window: dict[int, list[datetime]] = defaultdict(list, {k: list(v) for k, v in (window or {}).items()})
        self.refused: Counter[int] = Counter()

    def take(self, mailbox_id: int, buckets: list[Bucket], rate: int | None) -> Refusal | None:
        """Reserve every limit for one send of `mailbox_id`, or say when it can go and why not now.

        A full bucket refuses until it reopens. A full window refuses the k-th refused send until
        the (k mod n)-th oldest send of the window leaves it, plus a minute per full round, so a
        backlog is spread over the coming minutes instead of all deferred by one.
        """
        for bucket in buckets:
            if self.used.get((mailbox_id, bucket.key), 0) >= bucket.cap:
                return Refusal(bucket.reopens, bucket.why, bucket.cause)
        if rate:
            window = sorted(self.window[mailbox_id])
            if len(window) >= rate:
                k = self.refused[mailbox_id]
                self.refused[mailbox_id] += 1
                at = window[k % len(window)] + RATE_WINDOW * (1 + k // len(window))
                return Refusal(at, f"the mailbox's rate of {rate} emails a minute is reached", DeferralCause.RATE_LIMIT)
            self.window[mailbox_id].append(self.now)
        for bucket in buckets:
            self.used[(mailbox_id, bucket.key)] = self.used.get((mailbox_id, bucket.key), 0) + 1
        return None
