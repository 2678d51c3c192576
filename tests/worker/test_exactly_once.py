"""Exactly once across a worker's death at every point of a send, on SQLite and PostgreSQL.

A worker "dies" (WorkerKilled, which nothing of ours catches, so uncommitted work is lost as with
SIGKILL) at a chosen provider call; another worker comes along after the lease and must end with
each message sent exactly once, as the provider's own Sent folder shows.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from cadence.worker.passes import dispatch_due
from cadence.services.reporting import campaign_logs, campaign_status
from core.mailbox import SendInDoubt, TransientError
from core.vocabulary import MessageState
from tests.support.workers import After, Before, WorkerKilled

ADDRESS = "a@acme.example"


def _die_then_recover(world, method: str, action: str, contacts: int = 3):
    app = world.app()
    world.campaign(app, contacts=contacts)
    world.provider.fail(method, ADDRESS, action)
    doomed = world.app()
    with pytest.raises(WorkerKilled):
        dispatch_due(doomed, keeper=world.keeper(doomed, "doomed", threads=1))
    world.clock.advance(timedelta(seconds=31))
    survivor = world.app()
    report = dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    return app, report


@pytest.mark.parametrize("method, action", [
    ("create_draft", "kill-before"),  # intent recorded, no draft
    ("create_draft", "kill-after"),  # a draft exists at the provider, its id nowhere in the store
    ("send_draft", "kill-before"),  # draft id recorded, not sent
    ("send_draft", "kill-after"),  # sent, not recorded
])
def test_a_worker_dying_anywhere_in_a_send_never_makes_it_go_twice_or_not_at_all(world, method, action):
    app, report = _die_then_recover(world, method, action)
    sent = world.provider.sent(ADDRESS)
    assert sorted(m.message_id for m in sent) == sorted(m.message_id for m in world.messages(app))
    assert all(m.state == MessageState.SENT.value for m in world.messages(app))
    assert report.reconciled >= 1 and report.in_doubt == 0
    assert world.provider.calls[("check_sent", ADDRESS)] >= 1  # asked before anything was sent again
    logs = " ".join(line["detail"] for line in campaign_logs(app, "Launch"))
    assert "the worker sending it stopped" in logs


def test_the_draft_of_a_dead_worker_is_the_one_sent_again(world):
    app, _ = _die_then_recover(world, "send_draft", "kill-before", contacts=1)
    assert world.provider.calls[("create_draft", ADDRESS)] == 1  # no second draft
    assert world.provider.drafts(ADDRESS) == []


def test_an_answer_lost_after_the_send_is_confirmed_by_asking_not_by_sending_again(world):
    app = world.app()
    world.campaign(app, contacts=2)
    world.provider.fail("send_draft", ADDRESS, After(SendInDoubt("the connection dropped before the answer")))
    report = dispatch_due(app, keeper=world.keeper(app, "w"))
    assert report.sent == 2 and report.reconciled == 1
    assert len(world.provider.sent(ADDRESS)) == 2 and world.provider.calls[("send_draft", ADDRESS)] == 2


def test_a_send_the_provider_cannot_account_for_is_in_doubt_and_never_resent(world):
    app = world.app()
    world.campaign(app, contacts=1)
    # The answer is lost, and by the time we ask, the draft is gone without a trace in Sent
    # (the rep deleted it): nobody can tell whether it went out.
    world.provider.fail("send_draft", ADDRESS, SendInDoubt("timed out"))
    world.provider.fail("check_sent", ADDRESS, Before(lambda: world.provider.delete_drafts(ADDRESS)))
    report = dispatch_due(app, keeper=world.keeper(app, "w"))
    assert report.in_doubt == 1 and report.sent == 0
    world.clock.advance(timedelta(days=2))
    assert dispatch_due(app, keeper=world.keeper(app, "later")).sent == 0
    assert world.provider.sent(ADDRESS) == [] and world.provider.calls[("send_draft", ADDRESS)] == 1
    [message] = world.messages(app)
    assert message.state == MessageState.IN_DOUBT.value
    assert campaign_status(app, "Launch")["delivery"]["in_doubt"] == 1
    [line] = [line for line in campaign_logs(app, "Launch", errors_only=True) if line["kind"] == "in_doubt"]
    assert "a person must decide" in line["detail"]


def test_a_check_that_fails_is_asked_again_later_never_guessed(world):
    app = world.app()
    world.campaign(app, contacts=1)
    world.provider.fail("send_draft", ADDRESS, "kill-after")
    doomed = world.app()
    with pytest.raises(WorkerKilled):
        dispatch_due(doomed, keeper=world.keeper(doomed, "doomed"))
    world.clock.advance(timedelta(seconds=31))
    world.provider.fail("check_sent", ADDRESS, TransientError("Gmail is unwell"))
    survivor = world.app()
    report = dispatch_due(survivor, keeper=world.keeper(survivor, "survivor"))
    assert report.sent == 0 and report.in_doubt == 0
    [message] = world.messages(app)
    assert message.state == MessageState.SENDING.value and message.claim_token is None
    world.clock.advance(timedelta(minutes=5))
    report = dispatch_due(survivor, keeper=world.keeper(survivor, "again"))
    assert report.sent == 1 and len(world.provider.sent(ADDRESS)) == 1
