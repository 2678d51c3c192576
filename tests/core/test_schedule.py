"""Examples for every send-option rule of seed 004 / issue 2 (point 5), one rule per test."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.campaign import CampaignSpec, SendWindow, StepSpec
from core.clock import FixedClock
from core.schedule import DueTime, EnrollmentTiming, ScheduleError, due_time, is_open, next_open_slot
from core.vocabulary import SendOption, StepAction

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
WEEKDAYS_8_TO_17 = SendWindow(days=frozenset(range(5)), start=time(8, 0), end=time(17, 0))


def campaign(*steps: tuple, window: SendWindow | None = None) -> CampaignSpec:
    """steps: (day, option) or (day, option, "HH:MM")."""
    specs = []
    for position, (day, option, *rest) in enumerate(steps, start=1):
        at = time.fromisoformat(rest[0]) if rest else None
        specs.append(
            StepSpec(position=position, day=day, action=StepAction.AUTO, send=SendOption(option), body="hi", subject="s", time=at)
        )
    return CampaignSpec(name="test", steps=tuple(specs), send_window=window)


def local(text: str, zone: ZoneInfo = NY) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def due(spec: CampaignSpec, position: int, *, launched: datetime, now: datetime | None = None, zone=NY, **timing) -> DueTime:
    enrollment = EnrollmentTiming(launched_at=launched, zone=zone, **timing)
    return due_time(spec, position, enrollment, FixedClock(now or launched))


# --- choose_at_launch -----------------------------------------------------------------------


def test_choose_at_launch_without_send_at_is_refused():
    spec = campaign((1, "choose_at_launch"))
    with pytest.raises(ScheduleError, match="send_at"):
        due(spec, 1, launched=local("2026-11-23 08:00"))


def test_choose_at_launch_uses_the_chosen_time():
    spec = campaign((1, "choose_at_launch"), (3, "at_time", "10:00"))
    result = due(spec, 1, launched=local("2026-11-23 08:00"), send_at=local("2026-11-24 14:15"))
    assert result.at == local("2026-11-24 14:15").astimezone(UTC)
    assert result.at.tzinfo == UTC
    assert result.reasons == ("step 1 (day 1, choose_at_launch): Tue 2026-11-24 14:15 America/New_York chosen at launch",)


def test_choose_at_launch_on_a_later_step_is_refused():
    spec = campaign((1, "at_time", "09:00"), (2, "choose_at_launch"))
    with pytest.raises(ScheduleError, match="first step"):
        due(spec, 2, launched=local("2026-11-23 08:00"), send_at=local("2026-11-24 09:00"),
            sent={1: local("2026-11-23 09:00")})


# --- at_time --------------------------------------------------------------------------------


def test_at_time_on_day_n_is_n_minus_1_days_after_launch_in_the_contacts_zone():
    spec = campaign((3, "at_time", "09:30"))
    # 23:30 in New York on Monday is already Tuesday in UTC: the launch day is the local one.
    result = due(spec, 1, launched=local("2026-11-23 23:30"))
    assert result.at == local("2026-11-25 09:30").astimezone(UTC)
    assert result.reasons == ("step 1 (day 3, at_time): 09:30 America/New_York on Wed 2026-11-25",)


def test_at_time_is_overridden_by_send_at_on_the_first_step():
    spec = campaign((1, "at_time", "09:30"), (2, "at_time", "10:00"))
    send_at = local("2026-11-23 15:45")
    first = due(spec, 1, launched=local("2026-11-23 08:00"), send_at=send_at)
    assert first.at == send_at.astimezone(UTC)
    assert "chosen at launch instead of 09:30" in first.reasons[0]
    # ... but not on later steps.
    second = due(spec, 2, launched=local("2026-11-23 08:00"), send_at=send_at, sent={1: send_at})
    assert second.at == local("2026-11-24 10:00").astimezone(UTC)


def test_first_step_time_already_past_on_launch_day_means_now():
    spec = campaign((1, "at_time", "09:30"))
    launched = local("2026-11-23 11:00")
    now = launched + timedelta(seconds=5)
    result = due(spec, 1, launched=launched, now=now)
    assert result.at == now.astimezone(UTC)
    assert result.reasons[-1] == (
        "moved from Mon 2026-11-23 09:30 to now (Mon 2026-11-23 11:00:05): that time is already past"
    )


def test_ambiguous_fall_back_time_takes_the_first_occurrence():
    spec = campaign((1, "at_time", "01:30"))
    result = due(spec, 1, launched=local("2026-11-01 00:10"))
    assert result.at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not 01:30 EST


def test_at_time_in_the_spring_forward_gap_moves_to_the_end_of_the_gap():
    spec = campaign((1, "at_time", "02:30"))
    result = due(spec, 1, launched=local("2026-03-08 00:10"))
    assert result.at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert result.at.astimezone(NY).time() == time(3, 0)
    assert "02:30 does not exist in America/New_York" in result.reasons[1]


# --- same_as_previous -----------------------------------------------------------------------


def test_same_as_previous_takes_the_time_the_previous_email_actually_went_out():
    spec = campaign((1, "at_time", "09:30"), (3, "same_as_previous"))
    launched = local("2026-11-23 08:00")
    result = due(spec, 2, launched=launched, sent={1: local("2026-11-23 09:30:00")})
    assert result.at == local("2026-11-25 09:30").astimezone(UTC)
    assert result.reasons[0].startswith("step 2 (day 3, same_as_previous): 09:30 like step 1 (day 1)")


def test_same_day_same_as_previous_takes_the_time_of_the_latest_earlier_day():
    spec = campaign((1, "at_time", "16:00"), (3, "at_time", "08:00"), (3, "same_as_previous"))
    launched = local("2026-11-23 08:00")
    sent = {1: local("2026-11-23 16:00"), 2: local("2026-11-25 08:00")}
    result = due(spec, 3, launched=launched, sent=sent)
    assert result.at == local("2026-11-25 16:00").astimezone(UTC)  # day 1's 16:00, not step 2's 08:00
    assert "like step 1 (day 1)" in result.reasons[0]


def test_same_as_previous_on_day_1_is_sent_at_launch():
    spec = campaign((1, "same_as_previous"), (1, "same_as_previous"), (2, "same_as_previous"))
    launched = local("2026-11-23 10:07")
    first = due(spec, 1, launched=launched)
    assert first.at == launched.astimezone(UTC)
    assert first.reasons == ("step 1 (day 1, same_as_previous): no earlier day, sent immediately at launch",)
    # A second same-day step with no earlier day goes right after the first one actually went out.
    went_out = launched + timedelta(minutes=3)
    second = due(spec, 2, launched=launched, sent={1: went_out})
    assert second.at == went_out.astimezone(UTC)
    # Day 2 repeats the time of day of the last day-1 email (step 2, out at 10:11).
    third = due(spec, 3, launched=launched, sent={1: went_out, 2: went_out + timedelta(minutes=1)})
    assert third.at == local("2026-11-24 10:11").astimezone(UTC)
    assert "10:11 like step 2 (day 1)" in third.reasons[0]


def test_delayed_previous_step_shifts_the_next_one_no_catching_up():
    spec = campaign((1, "at_time", "09:30"), (3, "at_time", "10:00"), (5, "same_as_previous"))
    launched = local("2026-11-23 08:00")
    # Step 1 was due Monday 09:30 but only went out Tuesday 11:47 (mailbox was disconnected).
    sent = {1: local("2026-11-24 11:47")}
    second = due(spec, 2, launched=launched, sent=sent)
    assert second.at == local("2026-11-26 10:00").astimezone(UTC)  # 2 days after Tuesday, not Wednesday
    sent[2] = local("2026-11-26 10:00")
    third = due(spec, 3, launched=launched, sent=sent)
    assert third.at == local("2026-11-28 10:00").astimezone(UTC)


def test_a_due_time_is_never_before_the_previous_step_went_out():
    spec = campaign((1, "at_time", "09:30"), (1, "at_time", "10:00"))
    launched = local("2026-11-23 08:00")
    went_out = local("2026-11-23 15:00")
    result = due(spec, 2, launched=launched, sent={1: went_out})
    assert result.at == went_out.astimezone(UTC)
    assert result.reasons[-1] == (
        "moved from Mon 2026-11-23 10:00 to Mon 2026-11-23 15:00: not before step 1 went out"
    )


def test_a_later_step_needs_the_previous_one_sent():
    spec = campaign((1, "at_time", "09:30"), (3, "at_time", "10:00"))
    with pytest.raises(ScheduleError, match="step 1 has not gone out"):
        due(spec, 2, launched=local("2026-11-23 08:00"))


def test_bad_inputs_are_refused_with_the_field_named():
    spec = campaign((1, "at_time", "09:30"), (3, "at_time", "10:00"))
    with pytest.raises(ScheduleError, match="launched_at"):
        due(spec, 1, launched=datetime(2026, 11, 23, 8, 0))
    with pytest.raises(ScheduleError, match="position"):
        due(spec, 3, launched=local("2026-11-23 08:00"))
    with pytest.raises(ScheduleError, match="sent\\[1\\]"):
        due(spec, 2, launched=local("2026-11-23 08:00"), sent={1: datetime(2026, 11, 23, 9, 30)})
    backwards = campaign((3, "at_time", "09:30"), (2, "at_time", "10:00"))
    with pytest.raises(ScheduleError, match="day 2 comes before"):
        due(backwards, 2, launched=local("2026-11-23 08:00"), sent={1: local("2026-11-25 09:30")})


# --- send window ----------------------------------------------------------------------------


def test_window_moves_a_weekend_due_time_to_monday_at_its_own_time():
    spec = campaign((1, "at_time", "09:30"), (6, "same_as_previous"), window=WEEKDAYS_8_TO_17)
    launched = local("2026-11-23 08:00")  # Monday; day 6 is Saturday
    result = due(spec, 2, launched=launched, sent={1: local("2026-11-23 09:30")})
    assert result.at == local("2026-11-30 09:30").astimezone(UTC)
    assert result.reasons[1].startswith(
        "moved from Sat 2026-11-28 09:30 to Mon 2026-11-30 09:30: sat is outside the send window"
    )


def test_window_moves_an_early_time_to_the_same_days_start():
    spec = campaign((1, "at_time", "06:15"), window=WEEKDAYS_8_TO_17)
    result = due(spec, 1, launched=local("2026-11-23 05:00"))
    assert result.at == local("2026-11-23 08:00").astimezone(UTC)
    assert "06:15 is before the send window opens" in result.reasons[1]


def test_window_moves_a_late_time_to_the_next_open_day():
    spec = campaign((1, "at_time", "18:00"), window=WEEKDAYS_8_TO_17)
    result = due(spec, 1, launched=local("2026-11-27 09:00"))  # Friday
    assert result.at == local("2026-11-30 08:00").astimezone(UTC)
    assert "18:00 is after the send window closes" in result.reasons[1]


def test_us_contact_skips_christmas():
    window = SendWindow(days=frozenset(range(5)), start=time(8), end=time(17), skip_holidays=True)
    spec = campaign((1, "at_time", "09:30"), (4, "same_as_previous"), window=window)
    launched = local("2026-12-22 08:00")  # Tuesday; day 4 is Friday 2026-12-25
    result = due(spec, 2, launched=launched, country="US", sent={1: local("2026-12-22 09:30")})
    assert result.at == local("2026-12-28 09:30").astimezone(UTC)  # its own time, not the 08:00 opening
    assert "2026-12-25 is a public holiday in US (Christmas Day)" in result.reasons[1]
    # Without skip_holidays, Christmas is an ordinary Friday.
    plain = campaign((1, "at_time", "09:30"), (4, "same_as_previous"), window=WEEKDAYS_8_TO_17)
    assert due(plain, 2, launched=launched, country="US", sent={1: local("2026-12-22 09:30")}).at == (
        local("2026-12-25 09:30").astimezone(UTC)
    )


def test_fr_contact_skips_bastille_day():
    window = SendWindow(days=frozenset(range(5)), start=time(9), end=time(18), skip_holidays=True)
    spec = campaign((1, "at_time", "10:00"), window=window)
    result = due(spec, 1, launched=local("2026-07-14 07:00", PARIS), zone=PARIS, country="fr")
    assert result.at == local("2026-07-15 10:00", PARIS).astimezone(UTC)
    assert "2026-07-14 is a public holiday in FR" in result.reasons[1]


def test_a_country_without_known_holidays_skips_none_and_says_so():
    window = SendWindow(days=frozenset(range(7)), skip_holidays=True)
    spec = campaign((1, "at_time", "10:00"), window=window)
    result = due(spec, 1, launched=local("2026-12-25 07:00"), country="XX")
    assert result.at == local("2026-12-25 10:00").astimezone(UTC)
    assert result.reasons[1] == "holidays not skipped: no public holidays known for country 'XX'"


def test_dst_spring_forward_with_window_starting_in_the_gap():
    window = SendWindow(days=frozenset(range(7)), start=time(2, 30), end=time(5, 0))
    spec = campaign((1, "at_time", "01:00"), window=window)
    result = due(spec, 1, launched=local("2026-03-08 00:05"))  # clocks jump 02:00 -> 03:00
    assert result.at == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert result.at.astimezone(NY).time() == time(3, 0)
    assert is_open(result.at, NY, window, None)
    assert "to Sun 2026-03-08 03:00" in result.reasons[1]


def test_dst_gap_that_swallows_the_whole_window_moves_to_the_next_day():
    window = SendWindow(days=frozenset(range(7)), start=time(2, 0), end=time(2, 45))
    slot, reasons = next_open_slot(local("2026-03-08 00:30"), NY, window, None)
    assert slot == local("2026-03-09 02:00").astimezone(UTC)
    assert len(reasons) == 1 and "to Mon 2026-03-09 02:00" in reasons[0]


def test_fall_back_second_pass_is_not_moved_backwards():
    window = SendWindow(days=frozenset(range(7)), start=time(1, 30), end=time(4, 0))
    second_0115 = datetime(2026, 11, 1, 6, 15, tzinfo=UTC)  # 01:15 EST, after 01:30 EDT went by
    slot, _ = next_open_slot(second_0115, NY, window, None)
    assert slot == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 EST


def test_invalid_windows_are_refused():
    with pytest.raises(ScheduleError, match="days"):
        next_open_slot(local("2026-03-09 00:30"), NY, SendWindow(days=frozenset()), None)
    with pytest.raises(ScheduleError, match="start"):
        next_open_slot(local("2026-03-09 00:30"), NY, SendWindow(start=time(17), end=time(8)), None)


def test_is_open_uses_local_time_and_half_open_bounds():
    assert is_open(local("2026-11-23 08:00"), NY, WEEKDAYS_8_TO_17, None)
    assert not is_open(local("2026-11-23 17:00"), NY, WEEKDAYS_8_TO_17, None)
    assert not is_open(local("2026-11-28 10:00"), NY, WEEKDAYS_8_TO_17, None)
    assert is_open(local("2026-11-28 10:00"), NY, None, None)


# --- one rule for wall times in a clock change (issue 13) ------------------------------------


@pytest.mark.parametrize("send", ["choose_at_launch", "at_time"])
def test_a_chosen_time_in_the_spring_forward_gap_follows_the_at_time_rule(send):
    """02:30 on 2026-03-08 does not exist in New York: `--send-at` and `at_time` both go at 03:00
    (the first instant after the gap) and both say why."""
    first = (1, send, "02:30") if send == "at_time" else (1, send)
    spec = campaign(first)
    launched = local("2026-03-08 00:00")
    chosen = datetime(2026, 3, 8, 2, 30) if send == "choose_at_launch" else None
    timing = EnrollmentTiming(launched_at=launched, zone=NY, send_at_local=chosen)
    result = due_time(spec, 1, timing, FixedClock(launched))
    assert result.at == datetime(2026, 3, 8, 3, 0, tzinfo=NY).astimezone(UTC)
    assert any("02:30 does not exist in America/New_York" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize("wall, expected", [
    (datetime(2026, 11, 24, 9, 0), datetime(2026, 11, 24, 9, 0)),   # ordinary
    (datetime(2026, 3, 8, 2, 0), datetime(2026, 3, 8, 3, 0)),        # gap start
    (datetime(2026, 3, 8, 2, 59), datetime(2026, 3, 8, 3, 0)),       # gap end
    (datetime(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 1, 30)),    # fall back: first occurrence
])
def test_chosen_wall_times_read_in_the_contacts_zone(wall, expected):
    spec = campaign((1, "choose_at_launch"))
    launched = local("2026-01-01 00:00")
    timing = EnrollmentTiming(launched_at=launched, zone=NY, send_at_local=wall)
    result = due_time(spec, 1, timing, FixedClock(launched))
    assert result.at == expected.replace(tzinfo=NY, fold=0).astimezone(UTC)
    assert f"{wall:%H:%M}" in result.reasons[0] and "chosen at launch" in result.reasons[0]


@pytest.mark.parametrize("country, day, name", [
    ("DE-BY", date(2027, 1, 6), "Epiphany"),                 # Bavaria, not Berlin
    ("ES-CT", date(2026, 9, 11), "National Day of Catalonia"),
    ("US-CA", date(2027, 3, 31), "Cesar Chavez Day"),
])
def test_regional_holidays_are_skipped_at_the_steps_own_time(country, day, name):
    window = SendWindow(days=frozenset(range(7)), start=time(8), end=time(17), skip_holidays=True)
    spec = campaign((1, "at_time", "09:00"), window=window)
    launched = datetime.combine(day, time(6), tzinfo=NY)
    result = due(spec, 1, launched=launched, country=country)
    assert result.at == datetime.combine(day + timedelta(days=1), time(9), tzinfo=NY).astimezone(UTC)
    assert f"is a public holiday in {country}" in result.reasons[1] and name in result.reasons[1]
    national = due(spec, 1, launched=launched, country=country.split("-")[0])
    if country != "ES-CT":  # 11 September is Catalan only; 6 January is national in Spain
        assert national.at == datetime.combine(day, time(9), tzinfo=NY).astimezone(UTC)
