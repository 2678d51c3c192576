"""Properties of the due-time computation over random campaigns, zones and clock changes.

Each example walks one enrollment through every step, sending each step at its due time or
after a random delay, and checks the due times against the rules, recomputed here
independently from the `holidays` package and `zoneinfo`.
"""
from __future__ import annotations

import re

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.campaign import CampaignSpec, SendWindow, StepSpec
from core.clock import FixedClock
from core.schedule import EnrollmentTiming, due_time, next_open_slot
from core.vocabulary import SendOption, StepAction

UTC = timezone.utc
ZONES = [
    "America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham",
    "America/Santiago", "Asia/Kolkata", "UTC",
]
COUNTRIES = ["US", "FR", "DE", "GB", "JP", "KR", "BR", "AU"]
SPAN_START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_END = datetime(2028, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=None)
def clock_changes(zone_name: str) -> tuple[datetime, ...]:
    """Every UTC-offset change of the zone in 2026-2027, to the minute (scanned hourly)."""
    zone = ZoneInfo(zone_name)
    changes, at = [], SPAN_START
    while at < SPAN_END:
        later = at + timedelta(hours=1)
        if at.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            minute = at
            while minute.astimezone(zone).utcoffset() == at.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            changes.append(minute)
        at = later
    return tuple(changes)


@lru_cache(maxsize=None)
def public_holidays(country: str, year: int):
    try:
        return holidays.country_holidays(country, years=year)
    except NotImplementedError:
        return {}


times = st.builds(
    time,
    st.integers(0, 23),
    st.sampled_from([0, 0, 15, 30, 45, 59]),
    st.sampled_from([0, 0, 0, 30]),
)


@st.composite
def windows(draw) -> SendWindow | None:
    if draw(st.booleans()):
        return None
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(times)
    end = draw(times.filter(lambda t: t > start))
    return SendWindow(days=days, start=start, end=end, skip_holidays=draw(st.booleans()))


@st.composite
def campaigns(draw) -> CampaignSpec:
    count = draw(st.integers(1, 6))
    days = sorted(draw(st.lists(st.integers(1, 15), min_size=count, max_size=count)))
    steps = []
    for position, day in enumerate(days, start=1):
        allowed = [SendOption.AT_TIME, SendOption.SAME_AS_PREVIOUS]
        if position == 1:
            allowed.append(SendOption.CHOOSE_AT_LAUNCH)
        option = draw(st.sampled_from(allowed))
        steps.append(
            StepSpec(
                position=position, day=day, action=draw(st.sampled_from(list(StepAction))), send=option,
                body="b", subject="s", time=draw(times) if option is SendOption.AT_TIME else None,
            )
        )
    return CampaignSpec(name="random", steps=tuple(steps), send_window=draw(windows()))


@st.composite
def launches(draw, zone_name: str) -> datetime:
    changes = clock_changes(zone_name)
    if changes and draw(st.booleans()):
        around = draw(st.sampled_from(changes))
        return around + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 3 * 24 * 60)))
    return SPAN_START + timedelta(minutes=draw(st.integers(0, 2 * 365 * 24 * 60 - 1)))


delays = st.one_of(
    st.just(timedelta(0)),
    st.builds(timedelta, minutes=st.integers(1, 3 * 24 * 60)),
    st.builds(timedelta, seconds=st.integers(1, 120)),
)


def was_moved(reasons: tuple[str, ...]) -> bool:
    return any(reason.startswith("moved") for reason in reasons[1:])


def wall(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The wall time as the rules define it (first occurrence), in UTC: aware datetimes in a
    repeated hour never compare equal across zones (PEP 495), so compare in UTC."""
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


def is_clock_change(at: datetime, zone: ZoneInfo) -> bool:
    return (at - timedelta(seconds=1)).astimezone(zone).utcoffset() != at.astimezone(zone).utcoffset()


def inside_window(at: datetime, zone: ZoneInfo, window: SendWindow, country: str | None) -> bool:
    local = at.astimezone(zone)
    if local.weekday() not in window.days:
        return False
    if window.skip_holidays and country and local.date() in public_holidays(country, local.year):
        return False
    return window.start <= local.time() < window.end


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_walking_random_campaigns_respects_every_rule(data):
    zone_name = data.draw(st.sampled_from(ZONES), label="zone")
    zone = ZoneInfo(zone_name)
    spec = data.draw(campaigns(), label="campaign")
    launched = data.draw(launches(zone_name), label="launched")
    country = data.draw(st.sampled_from(COUNTRIES + [None]), label="country")
    wants_send_at = spec.steps[0].send is SendOption.CHOOSE_AT_LAUNCH or data.draw(st.booleans())
    send_at = None
    if wants_send_at:
        send_at = launched + timedelta(minutes=data.draw(st.integers(-120, 3 * 24 * 60), label="send_at offset"))
    clock = FixedClock(launched + timedelta(seconds=data.draw(st.integers(0, 3600), label="now after launch")))

    sent: dict[int, datetime] = {}
    previous_due: datetime | None = None
    for step in spec.steps:
        k = step.position
        timing = EnrollmentTiming(launched_at=launched, zone=zone, country=country, send_at=send_at, sent=dict(sent))
        result = due_time(spec, k, timing, clock)
        at, reasons = result.at, result.reasons
        moved = was_moved(reasons)

        assert at.tzinfo == UTC
        assert reasons and reasons[0].startswith(f"step {k} (day {step.day}, {step.send.value})")
        # Never backwards: not before the previous due time, nor the previous actual send.
        if previous_due is not None:
            assert at >= previous_due
            assert at >= sent[k - 1]
        else:
            assert at >= clock.now()
        if spec.send_window is not None:
            assert inside_window(at, zone, spec.send_window, country), (at.astimezone(zone), reasons)

        # The option's own time, when nothing moved it.
        if k == 1:
            anchor = launched.astimezone(zone).date() + timedelta(days=step.day - 1)
        else:
            anchor = sent[k - 1].astimezone(zone).date() + timedelta(days=step.day - spec.step(k - 1).day)
        if not moved:
            if step.send is SendOption.CHOOSE_AT_LAUNCH or (step.send is SendOption.AT_TIME and k == 1 and send_at):
                assert at == send_at
            elif step.send is SendOption.AT_TIME:
                assert at == wall(anchor, step.time, zone), reasons
            else:
                earlier = [s for s in spec.steps[: k - 1] if s.day < step.day]
                if earlier:
                    reference = sent[earlier[-1].position].astimezone(zone).time()
                    assert at == wall(anchor, reference, zone), reasons
                    assert f"like step {earlier[-1].position} (day {earlier[-1].day})" in reasons[0]
                elif k == 1 and step.day == 1:
                    assert at == launched
                elif k == 1:
                    assert at == wall(anchor, launched.astimezone(zone).time(), zone)
                else:
                    assert at == sent[k - 1]
        elif any("send window" in r or "public holiday" in r for r in reasons[1:]):
            # The window moves a due time to where an open stretch begins (the window's start, or
            # a clock change that brings the wall clock into the window), or, off a closed day,
            # to its own time of day on the next open day.
            local = at.astimezone(zone)
            own_times = {m for r in reasons for m in re.findall(r"moved from \w{3} [\d-]{10} ([\d:]{5,8}) to", r)}
            assert (local.time() == spec.send_window.start or is_clock_change(at, zone)
                    or any(time.fromisoformat(t) == local.time() for t in own_times)), reasons

        previous_due = at
        sent[k] = at + data.draw(delays, label=f"delay {k}")


def first_open_by_scanning(start: datetime, stop: datetime, zone: ZoneInfo, window: SendWindow, country) -> datetime | None:
    """Brute force: the first instant on a one-minute grid from `start`, before `stop`, that lies
    inside the window. Skips ahead 30 minutes only where the wall clock cannot reach an open
    time in that span (clock changes move it by at most an hour)."""
    at = start
    while at < stop:
        if inside_window(at, zone, window, country):
            return at
        local = at.astimezone(zone)
        minutes = local.hour * 60 + local.minute
        day_closed = local.weekday() not in window.days or (
            window.skip_holidays and country and local.date() in public_holidays(country, local.year)
        )
        start_minutes = window.start.hour * 60 + window.start.minute
        end_minutes = window.end.hour * 60 + window.end.minute
        far_from_opening = minutes < start_minutes - 120 or end_minutes + 90 <= minutes
        at += timedelta(minutes=30 if minutes < 22 * 60 and (day_closed or far_from_opening) else 1)
    return None


minute_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))


@st.composite
def minute_windows(draw) -> SendWindow:
    start = draw(minute_times)
    return SendWindow(
        days=draw(st.frozensets(st.integers(0, 6), min_size=1)),
        start=start,
        end=draw(minute_times.filter(lambda t: t > start)),
        skip_holidays=draw(st.booleans()),
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_next_open_slot_is_the_earliest_open_instant(data):
    zone_name = data.draw(st.sampled_from(ZONES), label="zone")
    zone = ZoneInfo(zone_name)
    window = data.draw(minute_windows(), label="window")
    country = data.draw(st.sampled_from(COUNTRIES + [None]), label="country")
    at = data.draw(launches(zone_name), label="at").replace(second=0)

    slot, reasons = next_open_slot(at, zone, window, country)

    assert slot.tzinfo == UTC and slot >= at
    assert inside_window(slot, zone, window, country), (slot.astimezone(zone), reasons)
    if inside_window(at, zone, window, country):
        assert slot == at and not was_moved(("option",) + reasons)
    else:
        assert reasons and any(r.startswith(f"moved from {at.astimezone(zone):%a %Y-%m-%d}") for r in reasons)
    local, found = at.astimezone(zone), slot.astimezone(zone)
    if day_is_open(local.date(), window, country):
        # Nothing open was skipped (window bounds sit on whole minutes, so a one-minute grid from
        # `at` meets every open stretch).
        assert first_open_by_scanning(at, slot, zone, window, country) is None
    else:
        # Off a closed day: the next open day, at the same time of day when that is open there,
        # else at the first open instant of that day.
        day = local.date() + timedelta(days=1)
        while not day_is_open(day, window, country):
            day += timedelta(days=1)
        assert found.date() == day, (local, found, reasons)
        if found.time() != local.time().replace(tzinfo=None):
            midnight = datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
            assert first_open_by_scanning(max(midnight, at), slot, zone, window, country) is None


def day_is_open(day, window: SendWindow, country) -> bool:
    return day.weekday() in window.days and not (
        window.skip_holidays and country and day in public_holidays(country, day.year))
