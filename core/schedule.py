"""When each step of a campaign is due for one person: the send options of seed 004, exactly.

Pure: no I/O, and "now" comes only from the injected `Clock`. Every due time carries the
reasons that produced it (the send option first, then every move), for `cadence logs`.

Rules, in the contact's zone (`EnrollmentTiming.zone`):
- day N is N-1 days after the launch day; a later step's day counts from the local date on
  which the previous step actually went out (no catching up after a delay);
- `choose_at_launch`: the `send_at` chosen at launch (first step only, required);
- `at_time`: the step's time of day on its date; a `send_at` given at launch overrides it on
  the first step;
- `same_as_previous`: the time of day at which the email on the latest earlier day actually went
  out, on this step's own date; with no earlier day, immediately (at launch for a first step on
  day 1, at the launch time of day on a later first day, when the previous step went out for a
  later step);
- a first step whose time is already past is due now; no step is due before the previous
  step actually went out;
- the send window (if any) moves a due time forward to its next open slot, skipping closed
  weekdays and, with `skip_holidays`, public holidays of the contact's country or region
  (`DE-BY`); a due time on a closed day keeps its time of day on the next open day when that
  time is inside the window, else goes at the window's opening.
Clock changes: a wall time that does not exist (spring forward) becomes the first instant after
the gap; an ambiguous wall time (fall back) means its first occurrence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Mapping
from zoneinfo import ZoneInfo

import holidays

from core.campaign import WEEKDAYS, CampaignSpec, SendWindow, StepSpec
from core.clock import Clock
from core.vocabulary import SendOption

UTC = timezone.utc
_MAX_SEARCH_DAYS = 800  # an open day always exists well within this when the window is valid


class ScheduleError(ValueError):
    """A due time cannot be computed from what is known (bad input or a step not sent yet)."""


@dataclass(frozen=True)
class EnrollmentTiming:
    """What the schedule needs to know about one person's enrollment."""

    launched_at: datetime  # aware: the moment the person was added
    zone: ZoneInfo  # contact's zone, else campaign's, else CADENCE_TIMEZONE (the caller decides)
    country: str | None = None  # ISO 3166 alpha-2, for holidays
    send_at: datetime | None = None  # aware: chosen at launch (`enroll --send-at`)
    # naive local wall time chosen at launch, read in `zone` by the same rule as `at_time`
    # (a time in a spring-forward gap becomes the first instant after it, with a note)
    send_at_local: datetime | None = None
    sent: Mapping[int, datetime] = field(default_factory=dict)  # step position -> when it actually went out


@dataclass(frozen=True)
class DueTime:
    at: datetime  # aware, UTC
    reasons: tuple[str, ...]  # the option, then every move, in order


# ---------------------------------------------------------------------------------------------
# due_time


def due_time(campaign: CampaignSpec, position: int, timing: EnrollmentTiming, clock: Clock) -> DueTime:
    """The moment step `position` (from 1) is due for this enrollment, in UTC, with its reasons.

    Step k > 1 needs `timing.sent[k-1]`. For the first step the result depends on
    `clock.now()` (a past time means now): compute it once, at launch, and keep it.
    Raises `ScheduleError` on input that cannot give a due time.
    """
    step = _checked_step(campaign, position)
    zone = timing.zone
    launched_at = _aware("launched_at", timing.launched_at)
    send_at, send_at_note = _chosen_time(timing)
    previous_sent = _sent_at(timing, position - 1) if position > 1 else None
    label = f"step {position} (day {step.day}, {step.send.value})"

    if previous_sent is None:
        anchor = launched_at.astimezone(zone).date() + timedelta(days=step.day - 1)
    else:
        previous = campaign.step(position - 1)
        anchor = previous_sent.astimezone(zone).date() + timedelta(days=step.day - previous.day)

    reasons: list[str] = []
    if step.send is SendOption.CHOOSE_AT_LAUNCH:
        if position != 1:
            raise ScheduleError(f"{label}: choose_at_launch is only allowed on the first step")
        if send_at is None:
            raise ScheduleError(
                f"{label}: this campaign asks for a send time when people are added; give send_at (--send-at)"
            )
        at = send_at
        reasons.append(f"{label}: {_chosen_wall(timing, at)} {zone.key} chosen at launch")
        if send_at_note:
            reasons.append(send_at_note)
    elif step.send is SendOption.AT_TIME:
        if step.time is None:
            raise ScheduleError(f"{label}: at_time needs the step's time")
        if position == 1 and send_at is not None:
            at = send_at
            reasons.append(
                f"{label}: {_chosen_wall(timing, at)} {zone.key} chosen at launch instead of {_hm(step.time)}")
            if send_at_note:
                reasons.append(send_at_note)
        else:
            at, gap_note = _wall_instant(anchor, step.time, zone)
            reasons.append(f"{label}: {_hm(step.time)} {zone.key} on {anchor:%a %Y-%m-%d}")
            if gap_note:
                reasons.append(gap_note)
    elif step.send is SendOption.SAME_AS_PREVIOUS:
        at = _same_as_previous(campaign, position, step, anchor, timing, launched_at, previous_sent, label, reasons)
    else:  # pragma: no cover - the vocabulary is closed
        raise ScheduleError(f"{label}: unknown send option {step.send!r}")

    if position == 1:
        now = clock.now().astimezone(UTC)
        if at < now:
            reasons.append(f"moved from {_show(at, zone)} to now ({_show(now, zone)}): that time is already past")
            at = now
    if previous_sent is not None and at < previous_sent:
        reasons.append(
            f"moved from {_show(at, zone)} to {_show(previous_sent, zone)}: "
            f"not before step {position - 1} went out"
        )
        at = previous_sent

    if campaign.send_window is not None:
        at, moves = next_open_slot(at, zone, campaign.send_window, timing.country)
        reasons.extend(moves)
    return DueTime(at=at.astimezone(UTC), reasons=tuple(reasons))


def _same_as_previous(
    campaign: CampaignSpec,
    position: int,
    step: StepSpec,
    anchor: date,
    timing: EnrollmentTiming,
    launched_at: datetime,
    previous_sent: datetime | None,
    label: str,
    reasons: list[str],
) -> datetime:
    zone = timing.zone
    earlier = [s for s in campaign.steps[: position - 1] if s.day < step.day]
    if earlier:
        reference = earlier[-1]
        reference_sent = _sent_at(timing, reference.position)
        time_of_day = reference_sent.astimezone(zone).time()
        at, gap_note = _wall_instant(anchor, time_of_day, zone)
        reasons.append(
            f"{label}: {_hm(time_of_day)} like step {reference.position} (day {reference.day})"
            f" on {anchor:%a %Y-%m-%d} {zone.key}"
        )
        if gap_note:
            reasons.append(gap_note)
        return at
    if previous_sent is None:
        # First step: "sent immediately when the campaign starts", on its own day.
        if step.day == 1:
            reasons.append(f"{label}: no earlier day, sent immediately at launch")
            return launched_at
        at, gap_note = _wall_instant(anchor, launched_at.astimezone(zone).time(), zone)
        reasons.append(f"{label}: no earlier day, sent at the launch time of day on {anchor:%a %Y-%m-%d}")
        if gap_note:
            reasons.append(gap_note)
        return at
    reasons.append(f"{label}: no earlier day, sent right after step {position - 1}")
    return previous_sent


def _chosen_time(timing: EnrollmentTiming) -> tuple[datetime | None, str | None]:
    """The launch-time choice as an instant, and a note when the wall clock skipped it."""
    if timing.send_at_local is not None:
        wall = timing.send_at_local.replace(tzinfo=None)
        return _wall_instant(wall.date(), wall.time(), timing.zone)
    if timing.send_at is not None:
        return _aware("send_at", timing.send_at), None
    return None, None


def _chosen_wall(timing: EnrollmentTiming, at: datetime) -> str:
    """How the chosen time reads: as the operator typed it when given as a wall time."""
    if timing.send_at_local is not None:
        wall = timing.send_at_local.replace(tzinfo=None)
        return f"{wall:%a %Y-%m-%d} {_hm(wall.time())}"
    return _show(at, timing.zone)


def _checked_step(campaign: CampaignSpec, position: int) -> StepSpec:
    if not 1 <= position <= len(campaign.steps):
        raise ScheduleError(f"position: {position} is not a step of {campaign.name!r} (1..{len(campaign.steps)})")
    step = campaign.step(position)
    if step.day < 1:
        raise ScheduleError(f"step {position}: day must be 1 or more, got {step.day}")
    if position > 1 and step.day < campaign.step(position - 1).day:
        raise ScheduleError(
            f"step {position}: day {step.day} comes before the previous step's day {campaign.step(position - 1).day}"
        )
    return step


def _sent_at(timing: EnrollmentTiming, position: int) -> datetime:
    try:
        sent = timing.sent[position]
    except KeyError:
        raise ScheduleError(f"sent: step {position} has not gone out yet, so the next step has no due time") from None
    return _aware(f"sent[{position}]", sent)


def _aware(name: str, at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ScheduleError(f"{name}: must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# send window


def is_open(at: datetime, zone: ZoneInfo, window: SendWindow | None, country: str | None) -> bool:
    """True when `at` lies in the window in local time: open weekday, not a skipped holiday,
    and local time in [start, end). No window means always open."""
    if window is None:
        return True
    local = at.astimezone(zone)
    return (
        _day_open(local.date(), window, country)
        and window.start <= local.time().replace(fold=0) < window.end
    )


def next_open_slot(
    at: datetime, zone: ZoneInfo, window: SendWindow | None, country: str | None
) -> tuple[datetime, tuple[str, ...]]:
    """The earliest instant at or after `at` inside the window (UTC), and the reasons for any move.

    Raises `ScheduleError` for a window with no open day or with start not before end.
    """
    at = _aware("at", at)
    if window is None:
        return at, ()
    _check_window(window)
    notes = _holiday_notes(window, country, at.astimezone(zone).year)
    if is_open(at, zone, window, country):
        return at, notes

    local = at.astimezone(zone)
    day = local.date()
    closed_day = not _day_open(day, window, country)
    for _ in range(_MAX_SEARCH_DAYS):
        if _day_open(day, window, country):
            found = _own_time_on(day, local, zone, window, country) if closed_day else None
            found = found or _earliest_open_on(day, at, zone, window, country)
            if found is not None:
                return found, notes + _move_reasons(local, found, zone, window, country)
        day += timedelta(days=1)
    raise ScheduleError(f"send_window: no open time within {_MAX_SEARCH_DAYS} days of {_show(at, zone)}")


def _check_window(window: SendWindow) -> None:
    if not window.days:
        raise ScheduleError("send_window.days: at least one day must be open")
    if not any(0 <= d <= 6 for d in window.days):
        raise ScheduleError(f"send_window.days: days are 0 (Monday) to 6 (Sunday), got {sorted(window.days)}")
    if not window.start < window.end:
        raise ScheduleError(f"send_window: start {window.start} must be before end {window.end}")


def _own_time_on(day: date, local: datetime, zone: ZoneInfo, window: SendWindow, country: str | None):
    """A due time whose whole day is closed (weekend, holiday) keeps its time of day on the next
    open day when that time is inside the window: a 09:00 step goes at 09:00, not at opening."""
    if local.date() == day:
        return None
    candidate, _ = _wall_instant(day, local.time().replace(tzinfo=None), zone)
    return candidate if is_open(candidate, zone, window, country) else None


def _earliest_open_on(day: date, not_before: datetime, zone: ZoneInfo, window: SendWindow, country: str | None):
    """Earliest open instant >= not_before whose local date is `day`, or None.

    An open stretch of local time begins where the wall clock reaches `start` (either
    occurrence on a fall-back day, or the end of a spring-forward gap) or at a clock change.
    """
    naive = datetime.combine(day, window.start)
    candidates = [_wall_instant(day, window.start, zone)[0]]
    second = naive.replace(tzinfo=zone, fold=1)
    if _exists(second):
        candidates.append(second.astimezone(UTC))
    candidates.extend(_transitions_near(day, zone))
    fitting = [
        c for c in candidates
        if c >= not_before and c.astimezone(zone).date() == day and is_open(c, zone, window, country)
    ]
    return min(fitting) if fitting else None


def _move_reasons(
    local_from: datetime, found: datetime, zone: ZoneInfo, window: SendWindow, country: str | None
) -> tuple[str, ...]:
    first_day = local_from.date()
    found_day = found.astimezone(zone).date()
    if local_from.weekday() not in window.days:
        why = f"{WEEKDAYS[local_from.weekday()]} is outside the send window ({window.describe()})"
    elif (name := _holiday_name(first_day, window, country)) is not None:
        why = f"{first_day.isoformat()} is a public holiday in {country.upper()} ({name})"
    elif local_from.time() < window.start:
        why = f"{_hm(local_from.time())} is before the send window opens ({window.describe()})"
    elif local_from.time() >= window.end:
        why = f"{_hm(local_from.time())} is after the send window closes ({window.describe()})"
    else:
        why = f"the send window has no open time left on {first_day.isoformat()} (clock change)"
    reasons = [f"moved from {_show(local_from, zone)} to {_show(found, zone)}: {why}"]
    day = first_day + timedelta(days=1)
    while day < found_day:
        if day.weekday() in window.days:
            name = _holiday_name(day, window, country)
            if name is not None:
                reasons.append(f"moved: {day.isoformat()} is a public holiday in {country.upper()} ({name})")
            else:
                reasons.append(f"moved: the send window has no open time on {day.isoformat()} (clock change)")
        day += timedelta(days=1)
    return tuple(reasons)


def _day_open(day: date, window: SendWindow, country: str | None) -> bool:
    return day.weekday() in window.days and _holiday_name(day, window, country) is None


# ---------------------------------------------------------------------------------------------
# holidays


def _holiday_name(day: date, window: SendWindow, country: str | None) -> str | None:
    if not window.skip_holidays or not country:
        return None
    calendar = _holiday_calendar(country.upper(), day.year)
    return None if calendar is None else calendar.get(day)


@lru_cache(maxsize=512)
def _holiday_calendar(country: str, year: int):
    """Public holidays of `country` in `year` (names in English when available); None if unknown.

    `country` is ISO 3166-1 (`DE`) or ISO 3166-2 (`DE-BY`): a subdivision the `holidays` package
    knows adds its regional holidays; one it does not know falls back to the national calendar.
    """
    code, _, subdivision = country.partition("-")
    if subdivision and subdivision not in holidays.list_supported_countries().get(code, []):
        subdivision = ""
    options = {"years": year, "subdiv": subdivision or None}
    try:
        calendar = holidays.country_holidays(code, **options)
    except NotImplementedError:
        return None
    if "en_US" in getattr(calendar, "supported_languages", ()) and calendar.default_language != "en_US":
        calendar = holidays.country_holidays(code, language="en_US", **options)
    return calendar


def _holiday_notes(window: SendWindow, country: str | None, year: int) -> tuple[str, ...]:
    if not window.skip_holidays:
        return ()
    if not country:
        return ("holidays not skipped: the contact has no country",)
    if _holiday_calendar(country.upper(), year) is None:
        return (f"holidays not skipped: no public holidays known for country {country!r}",)
    return ()


# ---------------------------------------------------------------------------------------------
# wall clock <-> instants


def _wall_instant(day: date, wall: time, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """The instant (UTC) showing `wall` on `day` in `zone`: its first occurrence; when the clock
    skips over it, the first instant after the gap, with a note saying so."""
    naive = datetime.combine(day, wall.replace(tzinfo=None, fold=0))
    first = naive.replace(tzinfo=zone, fold=0)
    if _exists(first):
        return first.astimezone(UTC), None
    after_gap = _first_instant_with_offset_of(
        naive.replace(tzinfo=zone, fold=1).astimezone(UTC), first.astimezone(UTC), zone
    )
    note = (
        f"moved from {_hm(wall)} to {_hm(after_gap.astimezone(zone).time())} on {day:%a %Y-%m-%d}: "
        f"{_hm(wall)} does not exist in {zone.key} that day (clocks go forward)"
    )
    return after_gap, note


def _exists(local: datetime) -> bool:
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == local.replace(tzinfo=None)


def _first_instant_with_offset_of(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """Binary search, to the second, for the first instant in (low, high] whose UTC offset is
    the one at `high` (i.e. the clock change between them)."""
    target = high.astimezone(zone).utcoffset()
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


@lru_cache(maxsize=4096)
def _transitions_near(day: date, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Clock changes of `zone` around local `day` (zones change at most once in such a span)."""
    low = datetime.combine(day, time.min, tzinfo=UTC) - timedelta(hours=16)
    high = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC) + timedelta(hours=16)
    if low.astimezone(zone).utcoffset() == high.astimezone(zone).utcoffset():
        return ()
    return (_first_instant_with_offset_of(low, high, zone),)


def _hm(t: time) -> str:
    return f"{t:%H:%M:%S}" if t.second or t.microsecond else f"{t:%H:%M}"


def _show(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{local:%a %Y-%m-%d} {_hm(local.time())}"
