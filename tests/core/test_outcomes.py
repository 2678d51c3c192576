"""How a claimed message ends: backoff, the judgement of provider answers, live exclusions (core.outcomes)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.mailbox import (
    Disconnected,
    PermanentError,
    RateLimited,
    SendCheck,
    SendStatus,
    SentRef,
    TransientError,
)
from core.outcomes import (
    FAILED,
    IN_DOUBT,
    RETRY,
    SENT,
    WAIT,
    PassReport,
    backoff,
    capped_reasons,
    judge_check,
    judge_problem,
    live_exclusion,
)
from core.vocabulary import EnrollmentState

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=3)


@pytest.mark.parametrize("attempts, jitter, expected", [
    (0, 0.5, timedelta(minutes=1)), (1, 0.5, timedelta(minutes=1)), (2, 0.5, timedelta(minutes=2)),
    (3, 0.0, timedelta(minutes=2)), (7, 0.5, timedelta(minutes=64)), (20, 0.5, timedelta(minutes=64)),
    (1, 0.25, timedelta(seconds=45))])
def test_backoff_doubles_from_the_base_at_most_six_times_with_jitter(attempts, jitter, expected):
    assert backoff(timedelta(minutes=1), attempts, NOW, jitter) == NOW + expected


def test_a_disconnection_waits_for_a_person_and_holds_the_mailbox():
    verdict = judge_problem(Disconnected("invalid_grant"), NOW, LATER)
    assert (verdict.outcome.kind, verdict.outcome.detail) == (WAIT, "invalid_grant")
    assert verdict.blocks and verdict.disconnected == "invalid_grant"


def test_a_transient_error_retries_at_the_backoff_or_when_the_provider_asks():
    verdict = judge_problem(TransientError("503"), NOW, LATER)
    assert (verdict.outcome.kind, verdict.outcome.at, verdict.blocks) == (RETRY, LATER, False)
    asked = judge_problem(TransientError("503", retry_after=40), NOW, LATER)
    assert (asked.outcome.at, asked.blocks) == (NOW + timedelta(seconds=40), True)
    limited = judge_problem(RateLimited("429"), NOW, LATER)
    assert (limited.outcome.kind, limited.outcome.at, limited.blocks) == (RETRY, LATER, True)
    assert verdict.disconnected is None and limited.disconnected is None


def test_a_permanent_refusal_fails_without_holding_the_mailbox():
    verdict = judge_problem(PermanentError("550 no such user"), NOW, LATER)
    assert (verdict.outcome.kind, verdict.outcome.detail, verdict.blocks) == (FAILED, "550 no such user", False)


def check(status: SendStatus, reconciling: bool = False):
    return judge_check(status, rfc_message_id="<a@x>", position=2, to_address="ada@example.com",
                       why="timeout", now=NOW, backoff_at=LATER, reconciling=reconciling)


def test_only_the_providers_answer_decides_after_an_interrupted_send():
    sent = check(SendStatus(SendCheck.SENT))
    assert (sent.kind, sent.sent, sent.reconciled) == (SENT, SentRef("<a@x>"), True)
    assert sent.detail == "step 2 to ada@example.com: sent (confirmed after: timeout)"
    ref = SentRef("<a@x>", "g1", "t1", NOW)
    assert check(SendStatus(SendCheck.SENT, sent=ref)).sent == ref
    again = check(SendStatus(SendCheck.NOT_SENT, detail="not in Sent"))
    assert (again.kind, again.at, again.late, again.reconciled) == (RETRY, LATER, False, True)
    assert again.detail == "not sent (timeout; not in Sent); it will be sent again"
    doubt = check(SendStatus(SendCheck.UNKNOWN, detail="search failed"))
    assert (doubt.kind, doubt.detail) == (IN_DOUBT, "timeout; search failed")
    assert check(SendStatus(SendCheck.UNKNOWN)).detail == "timeout"


def test_another_workers_lapsed_send_found_not_sent_is_due_at_once():
    late = check(SendStatus(SendCheck.NOT_SENT), reconciling=True)
    assert (late.kind, late.at, late.late) == (RETRY, NOW, True)


@pytest.mark.parametrize("campaign, enrollment, opted_out, bounced, expected", [
    ("sending", "active", False, False, None),
    ("stopped", "active", True, True, (None, "the campaign was stopped")),
    ("sending", "replied", True, False, (None, "the sequence ended (replied)")),
    ("sending", "active", True, True, (EnrollmentState.UNSUBSCRIBED, "opted_out")),
    ("sending", "active", False, True, (EnrollmentState.BOUNCED, "bounced")),
])
def test_a_prepared_message_is_held_back_when_things_changed_since(campaign, enrollment, opted_out, bounced,
                                                                     expected):
    assert live_exclusion(campaign, enrollment, opted_out, bounced) == expected


def test_due_reasons_keep_the_first_four_and_the_latest_moves():
    reasons = [f"r{i}" for i in range(20)]
    assert capped_reasons(reasons) == ["r0", "r1", "r2", "r3"] + [f"r{i}" for i in range(12, 20)]
    assert capped_reasons(reasons[:12]) == reasons[:12]


def test_pass_reports_add_up_and_describe_what_they_did():
    report = PassReport(sent=2)
    report.add(PassReport(sent=1, deferred=1, finished=["q4"]))
    assert (report.sent, report.deferred, report.finished) == (3, 1, ["q4"])
    assert report.busy() and not PassReport(replies=1).busy()
    assert report.describe() == "sent 3, deferred 1, finished q4"


def test_a_reply_anywhere_holds_back_a_prepared_message_after_opt_out_and_bounce():
    assert live_exclusion("sending", "active", False, False, replied=True) == (EnrollmentState.REPLIED, "replied")
    assert live_exclusion("sending", "active", False, True, replied=True) == (EnrollmentState.BOUNCED, "bounced")
    assert live_exclusion("sending", "finished", False, False, replied=True) == (None, "the sequence ended (finished)")
