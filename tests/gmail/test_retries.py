"""Rate limits, server errors and interrupted sends: backoff for reads, never a blind resend."""
from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from core.mailbox import (
    DraftNotFound,
    DraftRef,
    PermanentError,
    RateLimited,
    SendCheck,
    SendInDoubt,
    TransientError,
)
from tests.support.gmail import outgoing


def test_429_with_retry_after_is_honoured_then_the_call_succeeds(server, account, mailbox, clock):
    server.fail_next("drafts.create", 429, retry_after=7)
    draft = mailbox.create_draft(outgoing(account.address))
    assert clock.sleeps == [7.0]
    assert server.call_count("drafts.create") == 2
    assert [d.message_id for d in account.folder("drafts")] == [draft.message_id]


def test_403_user_rate_limit_backs_off_with_jitter(server, mailbox, clock):
    cursor = mailbox.poll(None).cursor
    server.fail_next("history.list", 403, times=2, reason="userRateLimitExceeded")
    mailbox.poll(cursor)
    assert len(clock.sleeps) == 2
    first, second = clock.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0  # half fixed, half random, doubling
    assert server.call_count("history.list") == 3


def test_a_retry_time_named_in_the_error_message_is_honoured(server, account, mailbox, clock):
    later = (datetime.now(timezone.utc) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    server.fail_next("messages.list", 429, reason="userRateLimitExceeded",
                     message=f"User-rate limit exceeded.  Retry after {later}")
    mailbox.check_sent("<nothing@cadence.test>", None)
    [waited] = clock.sleeps
    assert 3.5 <= waited <= 6.5  # measured against the server's Date header (1 s resolution)


def test_5xx_on_a_read_is_retried(server, mailbox, clock):
    cursor = mailbox.poll(None).cursor
    server.fail_next("history.list", 503, times=2)
    result = mailbox.poll(cursor)
    assert result.cursor and server.call_count("history.list") == 3 and len(clock.sleeps) == 2


def test_persistent_5xx_gives_up_after_max_attempts(server, mailbox, clock):
    server.fail_next("getProfile", 500, times=10)
    with pytest.raises(TransientError) as caught:
        mailbox.poll(None)
    assert "HTTP 500" in caught.value.reason
    assert server.call_count("getProfile") == mailbox.max_attempts == 4
    assert len(clock.sleeps) == 3


def test_a_retry_after_longer_than_max_wait_is_returned_to_the_caller(server, mailbox, clock):
    server.fail_next("getProfile", 429, retry_after=3600)
    with pytest.raises(RateLimited) as caught:
        mailbox.poll(None)
    assert caught.value.retry_after == 3600.0 and clock.sleeps == []


def test_a_rate_limited_send_is_not_retried_and_sends_later(server, account, mailbox, clock):
    draft = mailbox.create_draft(outgoing(account.address))
    server.fail_next("drafts.send", 429, retry_after=30)
    with pytest.raises(RateLimited) as caught:
        mailbox.send_draft(draft)
    assert caught.value.retry_after == 30.0 and clock.sleeps == []
    assert server.call_count("drafts.send") == 1 and server.outbox == []
    mailbox.send_draft(draft)
    assert [r.message_id for r in server.outbox] == [draft.message_id]


def test_a_bad_recipient_fails_with_gmails_reason(server, account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address, to="ada@localhost"))  # Gmail keeps any draft
    with pytest.raises(PermanentError) as caught:
        mailbox.send_draft(draft)
    assert "Invalid To header" in caught.value.reason and "invalidArgument" in caught.value.reason
    assert server.call_count("drafts.send") == 1 and server.outbox == []


def test_a_5xx_on_send_is_in_doubt_and_check_sent_says_not_sent(server, account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address))
    server.fail_next("drafts.send", 503)
    with pytest.raises(SendInDoubt):
        mailbox.send_draft(draft)
    assert server.call_count("drafts.send") == 1
    assert mailbox.check_sent(draft.message_id, draft).status == SendCheck.NOT_SENT
    mailbox.send_draft(draft)  # known not sent: safe to send now
    assert len(server.outbox) == 1


def test_a_5xx_after_gmail_sent_it_resolves_as_sent(server, account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address))
    server.fail_next("drafts.send", 500, perform=True)
    with pytest.raises(SendInDoubt):
        mailbox.send_draft(draft)
    status = mailbox.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT and status.sent.message_id == draft.message_id
    assert len(server.outbox) == 1


def test_a_lost_send_response_is_sent_exactly_once(server, account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address))
    server.lose_next_response("drafts.send")
    with pytest.raises(SendInDoubt):
        mailbox.send_draft(draft)
    assert server.call_count("drafts.send") == 1  # the transport did not try again by itself
    status = mailbox.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT
    assert status.sent.provider_message_id == account.folder("sent")[0].id
    assert status.sent.provider_thread_id == draft.provider_thread_id and status.sent.sent_at is not None
    with pytest.raises(DraftNotFound):
        mailbox.send_draft(draft)
    assert [r.message_id for r in server.outbox] == [draft.message_id]


def test_a_lost_draft_create_response_does_not_make_a_second_draft(server, account, mailbox, clock):
    email = outgoing(account.address)
    server.lose_next_response("drafts.create")
    draft = mailbox.create_draft(email)
    [stored] = account.folder("drafts")
    assert stored.message_id == email.message_id and draft.provider_message_id == stored.id
    assert draft.draft_id in account.drafts
    assert server.call_count("drafts.create") == 1 and server.call_count("drafts.list") == 1


def test_a_send_that_cannot_connect_is_transient_not_in_doubt(server, account, make_mailbox):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    mailbox = make_mailbox(api_url=f"http://127.0.0.1:{closed_port}/")
    with pytest.raises(TransientError) as caught:
        mailbox.send_draft(DraftRef("r-1", "<x@cadence.test>"))
    assert not isinstance(caught.value, SendInDoubt)


def test_a_retry_after_given_as_an_http_date_is_honoured(server, mailbox, clock):
    from email.utils import format_datetime

    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=10), usegmt=True)
    server.fail_next("getProfile", 503, retry_after=later)
    mailbox.poll(None)
    [waited] = clock.sleeps
    assert 8.5 <= waited <= 11.5
