from datetime import date

import pytest

from core.backlog import clearing_day

MONDAY = date(2026, 11, 30)
WEEKDAYS = frozenset(range(5))


def test_twenty_thousand_at_two_thousand_a_day_take_ten_working_days():
    assert clearing_day(20_000, 2_000, MONDAY, WEEKDAYS) == (10, date(2026, 12, 11))


def test_what_today_already_sent_counts():
    assert clearing_day(150, 100, MONDAY, WEEKDAYS, sent_today=100) == (2, date(2026, 12, 2))


def test_weekend_days_are_skipped_unless_allowed():
    friday = date(2026, 12, 4)
    assert clearing_day(300, 100, friday, WEEKDAYS) == (3, date(2026, 12, 8))
    assert clearing_day(300, 100, friday) == (3, date(2026, 12, 6))


def test_nothing_pending_clears_today():
    assert clearing_day(0, 100, MONDAY, WEEKDAYS) == (0, MONDAY)


@pytest.mark.parametrize("per_day, days", [(0, WEEKDAYS), (10, frozenset())])
def test_impossible_allowances_are_refused(per_day, days):
    with pytest.raises(ValueError):
        clearing_day(10, per_day, MONDAY, days)
