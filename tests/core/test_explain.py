from datetime import datetime, time, timezone

from core.campaign import CampaignSpec, SendOption, SendWindow, StepSpec
from core.explain import PersonFacts, StepFacts, explain
from core.vocabulary import StepAction

SPEC = CampaignSpec(name="C", steps=(
    StepSpec(1, 1, StepAction.AUTO, SendOption.AT_TIME, "b", "s", time(9, 30)),
    StepSpec(2, 3, StepAction.TASK, SendOption.SAME_AS_PREVIOUS, "b", "s2"),
), send_window=SendWindow(frozenset(range(5)), time(8), time(18), True), daily_limit=50)
PERSON = PersonFacts(email="a@b.example", zone="Europe/Paris", country="FR", enrollment_state="active",
                     mailbox="rep@acme.example", launched_at=datetime(2026, 11, 30, tzinfo=timezone.utc))


def test_every_rule_that_applies_is_named_with_the_recorded_moves():
    due = datetime(2026, 12, 1, 8, 30, tzinfo=timezone.utc)
    [first, second] = explain(SPEC, PERSON, [StepFacts(1, "scheduled", due, reasons=("moved: a holiday in FR",))])
    assert first.state == "scheduled" and first.due_at == due
    assert first.why == ("rule: day 1, automatic email, at 09:30 in the person's zone", "zone: Europe/Paris, country FR",
                         "send window for automatic emails: mon,tue,wed,thu,fri 08:00-18:00 skipping holidays",
                         "daily_limit: 50 automatic emails a day from rep@acme.example", "moved: a holiday in FR")
    assert second.state == "not prepared" and second.why[-1] == "not prepared yet: run `cadence prepare`"
    assert second.why[0] == "rule: day 3, task (the rep sends it), at the time the previous step went out in the person's zone"


def test_an_excluded_person_says_the_rule_on_every_step():
    person = PersonFacts(**{**PERSON.__dict__, "enrollment_state": "excluded", "excluded_cause": "opted_out",
                            "excluded_detail": "a@b.example unsubscribed"})
    steps = explain(SPEC, person, [])
    assert [s.state for s in steps] == ["excluded", "excluded"]
    assert all(s.why[-1] == "excluded at preparation (opted_out): a@b.example unsubscribed" for s in steps)


def test_an_ended_sequence_and_a_disconnected_mailbox_are_said():
    person = PersonFacts(**{**PERSON.__dict__, "enrollment_state": "replied", "end_reason": "they replied",
                            "mailbox_health": "disconnected", "mailbox_reason": "token revoked"})
    sent = datetime(2026, 11, 30, 8, 30, tzinfo=timezone.utc)
    first, second = explain(SPEC, person, [StepFacts(1, "sent", sent, sent)])
    assert first.why[-1] == f"went out at {sent.isoformat()}"
    assert "mailbox rep@acme.example is disconnected: token revoked; nothing goes out from it" in first.why
    assert second.state == "ended" and second.why[-1] == "not planned: the sequence ended (replied): they replied"
