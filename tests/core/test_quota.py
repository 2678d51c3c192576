"""Per-mailbox limits and the allotment of daily caps and the per-minute window (core.quota)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from core.mailbox import ProviderLimits
from core.quota import RATE_WINDOW, Allotment, Bucket, Limits, combine_limits, daily_buckets, lower

NOW = datetime(2026, 11, 30, 22, 30, tzinfo=timezone.utc)
PARIS = ZoneInfo("Europe/Paris")


def test_the_lower_of_each_limit_applies_and_none_or_zero_mean_no_limit():
    assert lower(None, 5) == 5 and lower(30, 4) == 4 and lower(None, None) is None and lower(0, None) is None
    limits = combine_limits(ProviderLimits(daily=2000, per_minute=None, concurrency=4),
                            daily=300, per_minute=10, concurrency=None)
    assert limits == Limits(daily=300, per_minute=10, concurrency=4)
    assert combine_limits(ProviderLimits(), daily=None, per_minute=None, concurrency=None) == Limits()


def test_daily_buckets_are_counted_in_the_local_day_and_reopen_at_local_midnight():
    # 22:30 UTC is 23:30 in Paris: still the 30th there; the caps reopen at Paris midnight.
    buckets = daily_buckets(7, 45, 300, NOW, PARIS)
    midnight = datetime(2026, 12, 1, tzinfo=PARIS)
    assert buckets == [
        Bucket("day:2026-11-30:c7", 45, midnight,
               "the campaign's daily_limit of 45 for this mailbox is reached for 2026-11-30"),
        Bucket("day:2026-11-30", 300, midnight, "the mailbox's cap of 300 emails a day is reached for 2026-11-30"),
    ]
    assert [b.key for b in daily_buckets(7, None, 10, NOW, ZoneInfo("Asia/Tokyo"))] == ["day:2026-12-01"]
    assert daily_buckets(7, None, None, NOW, PARIS) == []


def test_a_full_bucket_refuses_until_it_reopens_and_counts_only_what_was_taken():
    bucket = Bucket("day:2026-11-30", 2, NOW + timedelta(hours=1), "cap reached")
    allotment = Allotment(NOW, used={(1, "day:2026-11-30"): 1})
    assert allotment.take(1, [bucket], None) is None
    refused = allotment.take(1, [bucket], None)
    assert (refused.at, refused.why) == (NOW + timedelta(hours=1), "cap reached")
    assert allotment.used == {(1, "day:2026-11-30"): 2}
    assert allotment.take(2, [bucket], None) is None  # another mailbox has its own count
    assert allotment.used[(2, "day:2026-11-30")] == 1


def test_a_send_held_by_one_bucket_takes_nothing_from_the_others():
    full = Bucket("day:d:c1", 1, NOW + timedelta(hours=2), "campaign cap")
    roomy = Bucket("day:d", 10, NOW + timedelta(hours=2), "mailbox cap")
    allotment = Allotment(NOW, used={(1, "day:d:c1"): 1, (1, "day:d"): 3})
    assert allotment.take(1, [full, roomy], None).why == "campaign cap"
    assert allotment.used == {(1, "day:d:c1"): 1, (1, "day:d"): 3}


def test_the_rate_window_spreads_a_backlog_over_the_coming_minutes():
    started = [NOW - timedelta(seconds=50), NOW - timedelta(seconds=20)]
    allotment = Allotment(NOW, window={1: started})
    refusals = [allotment.take(1, [], 2) for _ in range(5)]
    why = "the mailbox's rate of 2 emails a minute is reached"
    assert [(r.at, r.why) for r in refusals] == [
        (started[0] + RATE_WINDOW, why), (started[1] + RATE_WINDOW, why),
        (started[0] + 2 * RATE_WINDOW, why), (started[1] + 2 * RATE_WINDOW, why),
        (started[0] + 3 * RATE_WINDOW, why)]


def test_a_send_taken_under_a_rate_counts_in_the_window_at_once():
    allotment = Allotment(NOW)
    assert allotment.take(1, [], 2) is None and allotment.take(1, [], 2) is None
    assert allotment.take(1, [], 2).at == NOW + RATE_WINDOW
    assert allotment.window[1] == [NOW, NOW]
    assert allotment.take(2, [], None) is None and allotment.window[2] == []  # no rate: no window
