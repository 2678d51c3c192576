"""Why each step of one person's sequence is where it is (`cadence explain`): built from stored
facts only (the campaign's rules, the person's enrollment, each step's message and its recorded
reasons), no clock and no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.campaign import CampaignSpec, StepSpec
from core.vocabulary import EnrollmentState, MessageState, StepAction

WAITING = {MessageState.PLANNED.value, MessageState.SCHEDULED.value}


@dataclass(frozen=True)
class PersonFacts:
    email: str
    zone: str  # the zone the sequence runs in (contact, else campaign, else CADENCE_TIMEZONE)
    country: str | None
    enrollment_state: str
    mailbox: str
    launched_at: datetime | None = None
    excluded_cause: str | None = None
    excluded_detail: str | None = None  # the exclusion's own sentence from the log
    end_reason: str | None = None
    mailbox_health: str = "connected"
    mailbox_reason: str | None = None


@dataclass(frozen=True)
class StepFacts:
    position: int
    state: str  # a MessageState value
    due_at: datetime | None = None
    sent_at: datetime | None = None
    reasons: tuple[str, ...] = ()  # recorded when its due time was computed or moved (window, holiday, cap …)
    task_state: str | None = None


@dataclass(frozen=True)
class StepExplanation:
    position: int
    state: str
    due_at: datetime | None
    why: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"position": self.position, "state": self.state,
                "due_at": self.due_at.isoformat() if self.due_at else None, "why": list(self.why)}


def rule_of(step: StepSpec, spec: CampaignSpec) -> str:
    """The step's own rule in words: day, action and send option."""
    action = "task (the rep sends it)" if step.action is StepAction.TASK else "automatic email"
    when = {"at_time": f"at {step.time:%H:%M}" if step.time else "at a fixed time",
            "same_as_previous": "at the time the previous step went out",
            "choose_at_launch": "at the time chosen at launch (--send-at)"}.get(step.send.value, step.send.value)
    thread = ", in the previous email's thread" if step.thread else ""
    return f"rule: day {step.day}, {action}, {when} in the person's zone{thread}"


def explain(spec: CampaignSpec, person: PersonFacts, steps: list[StepFacts]) -> list[StepExplanation]:
    """One explanation per step of `spec`, in order. A step without a message says why it has none."""
    by_position = {s.position: s for s in steps}
    general = [f"zone: {person.zone}" + (f", country {person.country}" if person.country else "")]
    if spec.send_window is not None:
        general.append(f"send window for automatic emails: {spec.send_window.describe()}")
    if spec.daily_limit:
        general.append(f"daily_limit: {spec.daily_limit} automatic emails a day from {person.mailbox}")
    if person.mailbox_health != "connected":
        general.append(f"mailbox {person.mailbox} is {person.mailbox_health}"
                       + (f": {person.mailbox_reason}" if person.mailbox_reason else "") + "; nothing goes out from it")
    explained = []
    for step in spec.steps:
        facts = by_position.get(step.position)
        why = [rule_of(step, spec)]
        if step.action is StepAction.AUTO:
            why += general
        else:
            why += general[:1]
        if person.enrollment_state == EnrollmentState.EXCLUDED.value:
            why.append(f"excluded at preparation ({person.excluded_cause or 'a rule'})"
                       + (f": {person.excluded_detail}" if person.excluded_detail else ""))
            explained.append(StepExplanation(step.position, "excluded", None, tuple(why)))
            continue
        if facts is None:
            if person.enrollment_state != EnrollmentState.ACTIVE.value:
                why.append(f"not planned: the sequence ended ({person.enrollment_state})"
                           + (f": {person.end_reason}" if person.end_reason else ""))
                state = "ended"
            else:
                why.append("not prepared yet: run `cadence prepare`")
                state = "not prepared"
            explained.append(StepExplanation(step.position, state, None, tuple(why)))
            continue
        why += list(facts.reasons)
        if facts.state in WAITING and person.launched_at is None:
            why.append("waits for sending to start (`cadence send`)")
        elif facts.state == MessageState.PLANNED.value:
            why.append("waits for the previous step to go out")
        elif facts.state == MessageState.SENT.value and facts.sent_at:
            why.append(f"went out at {facts.sent_at.isoformat()}")
        elif facts.state == MessageState.DRAFTED.value:
            why.append(f"the draft waits in the rep's mailbox (task {facts.task_state or 'open'})")
        elif facts.state == MessageState.CANCELLED.value:
            why.append("cancelled: the sequence ended" + (f" ({person.enrollment_state}: {person.end_reason})"
                                                          if person.end_reason else f" ({person.enrollment_state})"))
        elif facts.state == MessageState.SKIPPED.value:
            why.append("the rep skipped this task")
        elif facts.state == MessageState.IN_DOUBT.value:
            why.append("in doubt: the provider could not tell whether it went out; check the Sent folder")
        elif facts.state == MessageState.FAILED.value:
            why.append("failed: the provider refused it for good")
        explained.append(StepExplanation(step.position, facts.state, facts.due_at, tuple(why)))
    return explained
