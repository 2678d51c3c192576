"""Per-mailbox limits held across several workers through the database, and provider faults.

Daily caps (the campaign's `daily_limit`, the mailbox's cap), the per-minute rate and concurrent
requests are shared by every worker; a message held back says so and says when it goes.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from cadence.services.limits import set_mailbox_limits
from cadence.worker.passes import dispatch_due
from cadence.services.directory import add_mailbox
from cadence.services.errors import UserError
from cadence.services.reporting import campaign_logs, campaign_status
from core.mailbox import Disconnected, RateLimited, SendInDoubt
from core.vocabulary import MessageState
from tests.support.workers import REP

ADDRESS = "a@acme.example"


def _together(world, count: int, **options) -> list:
    """`count` workers dispatch at the same moment; their reports."""
    apps = [world.app() for _ in range(count)]
    reports = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        reports[index] = dispatch_due(apps[index], keeper=world.keeper(apps[index], f"w{index}", **options))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return reports


def test_rate_and_daily_caps_hold_across_workers_and_say_when_held_back_mail_goes(world):
    app = world.app()
    world.campaign(app, contacts=20)
    set_mailbox_limits(app, ADDRESS, daily=8, per_minute=5, concurrency=2)
    world.provider.latency = 0.01
    _together(world, 3, batch=4)
    assert len(world.provider.sent(ADDRESS)) == 5  # the rate, whatever the number of workers
    assert world.provider.peak[ADDRESS] <= 2
    waiting = [m for m in world.messages(app) if m.state == MessageState.SCHEDULED.value]
    assert len(waiting) == 15 and all(m.due_at >= world.clock.now() + timedelta(minutes=1) for m in waiting)
    assert all("rate of 5 emails a minute" in m.due_reasons[-1] for m in waiting)
    assert campaign_status(app, "Launch")["delivery"]["deferred"] == 15

    world.clock.advance(timedelta(seconds=61))
    _together(world, 3, batch=4)
    assert len(world.provider.sent(ADDRESS)) == 8  # the day's cap
    logs = [line["detail"] for line in campaign_logs(app, "Launch") if line["kind"] == "deferred"]
    assert any("cap of 8 emails a day is reached for 2026-11-30" in d and "2026-12-01T00:00:00" in d for d in logs)

    world.clock.advance(timedelta(days=1))
    _together(world, 3, batch=4)
    assert len(world.provider.sent(ADDRESS)) == 13  # a new day: the rate again
    sent = [m.message_id for m in world.provider.sent(ADDRESS)]
    assert len(sent) == len(set(sent))


def test_the_campaigns_daily_limit_counts_per_mailbox(world):
    app = world.app()
    world.campaign(app, contacts=12, mailboxes=("a@acme.example", "b@acme.example"), daily_limit=4)
    _together(world, 2)
    assert len(world.provider.sent("a@acme.example")) == 4 and len(world.provider.sent("b@acme.example")) == 4
    details = [line["detail"] for line in campaign_logs(app, "Launch") if line["kind"] == "deferred"]
    assert len(details) == 4 and all("daily_limit of 4 for this mailbox" in d for d in details)


def test_concurrent_requests_per_mailbox_stay_within_its_limit(world):
    app = world.app()
    world.campaign(app, contacts=24, mailboxes=("a@acme.example", "b@acme.example"))
    set_mailbox_limits(app, "a@acme.example", concurrency=1)
    set_mailbox_limits(app, "b@acme.example", concurrency=3)
    world.provider.latency = 0.02
    _together(world, 5, batch=3)
    assert len(world.provider.sent("a@acme.example")) == 12 and len(world.provider.sent("b@acme.example")) == 12
    assert world.provider.peak["a@acme.example"] == 1
    # The bound is the property; how close threads come to it depends on the machine's load.
    assert world.provider.peak["b@acme.example"] <= 3


def test_a_rate_limited_mailbox_waits_as_long_as_the_provider_asks(world):
    app = world.app()
    world.campaign(app, contacts=3)
    world.provider.fail("send_draft", ADDRESS, RateLimited("429 rateLimitExceeded", retry_after=40))
    report = dispatch_due(app, keeper=world.keeper(app, "w", threads=1))
    assert report.sent == 0 and report.deferred == 3  # the others of that mailbox were not tried
    assert world.provider.calls[("send_draft", ADDRESS)] == 1
    messages = world.messages(app)
    assert {m.due_at for m in messages} == {world.clock.now() + timedelta(seconds=40)}
    assert all(m.state == MessageState.SCHEDULED.value and m.provider_draft_id for m in messages)
    world.clock.advance(timedelta(seconds=39))
    assert dispatch_due(app, keeper=world.keeper(app, "w2")).sent == 0
    world.clock.advance(timedelta(seconds=2))
    assert dispatch_due(app, keeper=world.keeper(app, "w3")).sent == 3
    assert world.provider.calls[("create_draft", ADDRESS)] == 3  # the same drafts were sent


def test_a_server_error_on_send_is_checked_and_the_same_draft_sent_later(world):
    app = world.app()
    world.campaign(app, contacts=1)
    world.provider.fail("send_draft", ADDRESS, SendInDoubt("HTTP 503; the email may or may not have gone out"))
    report = dispatch_due(app, keeper=world.keeper(app, "w"))
    assert report.sent == 0 and report.reconciled == 1
    world.clock.advance(timedelta(minutes=5))
    assert dispatch_due(app, keeper=world.keeper(app, "w2")).sent == 1
    assert len(world.provider.sent(ADDRESS)) == 1 and world.provider.calls[("create_draft", ADDRESS)] == 1


def test_a_disconnected_mailbox_keeps_its_messages_waiting_until_reconnected(world):
    app = world.app()
    world.campaign(app, contacts=4)
    world.provider.fail("create_draft", ADDRESS, Disconnected("invalid_grant: Token has been revoked"))
    report = dispatch_due(app, keeper=world.keeper(app, "w", threads=1))
    assert report.sent == 0 and report.deferred == 4
    world.clock.advance(timedelta(hours=3))
    assert dispatch_due(app, keeper=world.keeper(app, "w2")).sent == 0  # not even claimed
    assert world.provider.calls[("create_draft", ADDRESS)] == 1
    details = [line["detail"] for line in campaign_logs(app, "Launch") if line["kind"] == "deferred"]
    assert len(details) == 4 and all("waits until a@acme.example is reconnected" in d for d in details)
    add_mailbox(app, provider="memory", address=ADDRESS, owner=REP)  # reconnected
    assert dispatch_due(app, keeper=world.keeper(app, "w3")).sent == 4
    assert {m.state for m in world.messages(app)} == {MessageState.SENT.value}


def test_a_busy_mailboxs_first_emails_leave_before_its_last_drafts_are_made(world):
    app = world.app()
    world.campaign(app, contacts=45)
    assert dispatch_due(app, keeper=world.keeper(app, "w", batch=100)).sent == 45
    methods = [method for method, _ in world.provider.history if method in ("create_draft", "send_draft")]
    assert methods.index("send_draft") == 25  # drafts, recorded, sent, 25 at a time
    assert methods[25:50] == ["send_draft"] * 25 and methods.count("create_draft") == 45


def test_mailbox_limits_are_checked(world):
    app = world.app()
    world.campaign(app, contacts=1)
    with pytest.raises(UserError, match="per_minute: expected a whole number of at least 1, got 0"):
        set_mailbox_limits(app, ADDRESS, per_minute=0)
    with pytest.raises(UserError, match="no mailbox nobody@acme.example"):
        set_mailbox_limits(app, "nobody@acme.example", daily=3)
