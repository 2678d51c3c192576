"""A campaign as the core sees it: validated, immutable, independent of YAML and of the store."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from core.vocabulary import SendOption, StepAction

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SendWindow:
    """When automatic emails may go out, in the contact's own time zone: [start, end) on `days`."""

    days: frozenset[int] = frozenset(range(7))  # 0 = Monday … 6 = Sunday
    start: time = time(0, 0)
    end: time = time(23, 59, 59)
    skip_holidays: bool = False

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M}" + (" skipping holidays" if self.skip_holidays else "")


@dataclass(frozen=True)
class StepSpec:
    """One email step. `position` counts from 1; `day` 1 is the launch day."""

    position: int
    day: int
    action: StepAction
    send: SendOption
    body: str
    subject: str | None = None  # None only on a threaded step: "Re: <previous subject>"
    time: time | None = None  # for SendOption.AT_TIME
    thread: bool = False


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    steps: tuple[StepSpec, ...]
    timezone: str | None = None
    send_window: SendWindow | None = None
    daily_limit: int | None = None
    track_opens: bool = True
    track_clicks: bool = True
    exclusions: dict = field(default_factory=dict)  # rule switches, e.g. {"active_elsewhere": True}

    def step(self, position: int) -> StepSpec:
        return self.steps[position - 1]

    @property
    def asks_for_send_time(self) -> bool:
        """True when enrolling people needs a chosen send time (first step is choose_at_launch)."""
        return bool(self.steps) and self.steps[0].send is SendOption.CHOOSE_AT_LAUNCH


def spec_to_dict(spec: CampaignSpec) -> dict:
    """A JSON-safe form of the campaign, stored with it; `spec_from_dict` reads it back."""
    window = spec.send_window
    return {
        "name": spec.name,
        "timezone": spec.timezone,
        "send_window": None if window is None else {
            "days": sorted(window.days), "start": window.start.strftime("%H:%M:%S"),
            "end": window.end.strftime("%H:%M:%S"), "skip_holidays": window.skip_holidays},
        "daily_limit": spec.daily_limit,
        "track_opens": spec.track_opens,
        "track_clicks": spec.track_clicks,
        "exclusions": spec.exclusions,
        "steps": [{
            "position": s.position, "day": s.day, "action": s.action.value, "send": s.send.value,
            "body": s.body, "subject": s.subject, "thread": s.thread,
            "time": s.time.strftime("%H:%M") if s.time else None} for s in spec.steps],
    }


def spec_from_dict(data: dict) -> CampaignSpec:
    window = data.get("send_window")
    return CampaignSpec(
        name=data["name"],
        timezone=data.get("timezone"),
        send_window=None if window is None else SendWindow(
            frozenset(window["days"]), time.fromisoformat(window["start"]),
            time.fromisoformat(window["end"]), window["skip_holidays"]),
        daily_limit=data.get("daily_limit"),
        track_opens=data.get("track_opens", True),
        track_clicks=data.get("track_clicks", True),
        exclusions=data.get("exclusions") or {},
        steps=tuple(StepSpec(
            position=s["position"], day=s["day"], action=StepAction(s["action"]), send=SendOption(s["send"]),
            body=s["body"], subject=s["subject"], thread=s["thread"],
            time=time.fromisoformat(s["time"]) if s["time"] else None) for s in data["steps"]),
    )
