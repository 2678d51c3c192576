"""Drafts and sends through the fake Graph: ids, headers, threading, faults, limits."""
from __future__ import annotations

import threading

import pytest

from core.mailbox import (
    DraftNotFound,
    PermanentError,
    RateLimited,
    SendCheck,
    SendInDoubt,
    ThreadRef,
    TransientError,
)
from tests.support.outlook import CONTACT, new_email


def test_every_request_asks_for_immutable_ids_and_the_id_survives_the_move_to_sent_items(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address))
    sent = mailbox.send_draft(draft)
    [in_sent] = world.graph.messages(world.address, "sentitems")
    assert in_sent.id == draft.draft_id == sent.provider_message_id
    assert draft.web_link and "ItemID=" in draft.web_link
    assert world.graph.requests and all(
        'IdType="ImmutableId"' in r.headers.get("Prefer", "") for r in world.graph.requests)


def test_x_headers_are_carried_and_list_unsubscribe_is_left_out(world):
    mailbox = world.mailbox()
    mailbox.create_draft(new_email(world.address, headers={
        "List-Unsubscribe": "<https://cadence.test/u/abc>", "X-Cadence-Step": "s1"}))
    [draft] = world.graph.messages(world.address, "drafts")
    assert draft.headers == [("X-Cadence-Step", "s1")]


def test_more_x_headers_than_graph_takes_is_refused_before_any_call(world):
    mailbox = world.mailbox()
    headers = {f"X-Cadence-{i}": str(i) for i in range(6)}
    before = len(world.graph.requests)
    with pytest.raises(PermanentError, match="headers"):
        mailbox.create_draft(new_email(world.address, headers=headers))
    assert len(world.graph.requests) == before
    assert world.graph.messages(world.address, "drafts") == []


def test_a_threaded_step_is_a_create_reply_draft_in_the_same_conversation(world):
    mailbox = world.mailbox()
    first_email = new_email(world.address)
    first = mailbox.send_draft(mailbox.create_draft(first_email))
    follow_up = new_email(world.address, subject="Re: Quick question", body="Bumping this.",
                          reply_to=ThreadRef(first.message_id, provider_message_id=first.provider_message_id,
                                             provider_thread_id=first.provider_thread_id))
    draft = mailbox.create_draft(follow_up)

    assert draft.provider_thread_id == first.provider_thread_id
    [reply_call] = [r for r in world.graph.requests if r.path.endswith("/createReply")]
    assert reply_call.path.endswith(f"/me/messages/{first.provider_message_id}/createReply")
    assert "comment" not in reply_call.body and reply_call.body["message"]["body"]["content"] == "<p>Bumping this.</p>"
    [stored] = world.graph.messages(world.address, "drafts")
    assert stored.in_reply_to == first_email.message_id
    assert stored.internet_message_id == follow_up.message_id
    assert stored.subject == "Re: Quick question" and [a for _, a in stored.to] == [CONTACT]


def test_a_threaded_step_finds_the_previous_email_by_message_id_when_its_id_is_unknown(world):
    mailbox = world.mailbox()
    first = mailbox.send_draft(mailbox.create_draft(new_email(world.address)))
    draft = mailbox.create_draft(new_email(world.address, subject="Re: Quick question",
                                           reply_to=ThreadRef(first.message_id)))
    assert draft.provider_thread_id == first.provider_thread_id


def test_a_threaded_step_whose_previous_email_is_gone_is_refused(world):
    mailbox = world.mailbox()
    with pytest.raises(PermanentError, match="reply_to"):
        mailbox.create_draft(new_email(world.address, reply_to=ThreadRef("<gone@cadence.test>")))


def test_a_throttled_call_waits_retry_after_and_goes_through(world):
    mailbox = world.mailbox()
    world.graph.throttle_next("POST", r"/me/messages$", retry_after=7)
    mailbox.create_draft(new_email(world.address))
    assert world.sleeps == [7]
    assert len(world.graph.messages(world.address, "drafts")) == 1


def test_a_throttled_send_is_rate_limited_and_not_repeated(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address))
    world.graph.throttle_next("POST", r"/send$", retry_after=11)
    with pytest.raises(RateLimited) as raised:
        mailbox.send_draft(draft)
    assert raised.value.retry_after == 11 and world.sleeps == []
    assert world.graph.sent_by(world.address) == []
    mailbox.send_draft(draft)  # later, the engine tries again
    assert len(world.graph.sent_by(world.address)) == 1


def test_throttling_that_does_not_stop_is_rate_limited(world):
    mailbox = world.mailbox()
    world.graph.throttle_next("GET", ".*", retry_after=3, times=10)
    with pytest.raises(RateLimited) as raised:
        mailbox.check_sent("<x@cadence.test>", None)
    assert raised.value.retry_after == 3 and world.sleeps == [3, 3, 3]


def test_a_504_on_a_send_that_delivered_is_in_doubt_then_sent_and_never_sent_twice(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address))
    world.graph.fail_next_send_after_delivery(504)

    with pytest.raises(SendInDoubt):
        mailbox.send_draft(draft)
    status = mailbox.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT and status.sent.provider_message_id == draft.draft_id
    with pytest.raises(DraftNotFound):
        mailbox.send_draft(draft)
    assert [o.internet_message_id for o in world.graph.sent_by(world.address)] == [draft.message_id]
    assert sum(r.path.endswith("/send") for r in world.graph.requests) == 1


def test_check_sent_finds_a_sent_message_by_message_id_when_the_id_is_gone(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address))
    mailbox.send_draft(draft)
    unknown_id = draft.__class__(draft_id="AAkALgAAAAAAgone", message_id=draft.message_id)
    assert mailbox.check_sent(draft.message_id, unknown_id).status == SendCheck.SENT
    assert mailbox.check_sent(draft.message_id, None).status == SendCheck.SENT
    gone = draft.__class__(draft_id="AAkALgAAAAAAgone", message_id="<never@cadence.test>")
    assert mailbox.check_sent(gone.message_id, gone).status == SendCheck.UNKNOWN
    assert mailbox.check_sent("<never@cadence.test>", None).status == SendCheck.NOT_SENT


def test_a_bad_recipient_is_a_permanent_error_with_graphs_reason(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address, to="ada@localhost"))
    with pytest.raises(PermanentError, match="ErrorInvalidRecipients"):
        mailbox.send_draft(draft)
    assert world.graph.sent_by(world.address) == []


def test_server_errors_on_reads_are_retried_with_backoff(world):
    mailbox = world.mailbox()
    world.graph.fail_next("GET", r"/messages$", status=503, times=2)
    assert mailbox.check_sent("<x@cadence.test>", None).status == SendCheck.NOT_SENT
    assert world.sleeps == [1.0, 2.0]


def test_server_errors_that_last_become_transient_errors(world):
    mailbox = world.mailbox()
    world.graph.fail_next("GET", ".*", status=500, code="UnknownError", times=10)
    with pytest.raises(TransientError, match="500"):
        mailbox.poll(None)


def test_a_create_that_failed_after_creating_the_draft_is_not_duplicated(world):
    mailbox = world.mailbox()
    world.graph.fail_next("POST", r"/me/messages$", status=500, code="UnknownError", after_handling=True)
    email = new_email(world.address)
    draft = mailbox.create_draft(email)
    [stored] = world.graph.messages(world.address, "drafts")
    assert stored.id == draft.draft_id and stored.internet_message_id == email.message_id


def test_a_create_refused_by_a_server_error_is_tried_again(world):
    mailbox = world.mailbox()
    world.graph.fail_next("POST", r"/me/messages$", status=503)
    mailbox.create_draft(new_email(world.address))
    assert len(world.graph.messages(world.address, "drafts")) == 1 and world.sleeps == [1.0]


def test_deleting_a_draft_the_rep_already_sent_keeps_the_sent_message(world):
    mailbox = world.mailbox()
    draft = mailbox.create_draft(new_email(world.address))
    world.graph.user_sends_draft(world.address, draft.draft_id)
    mailbox.delete_draft(draft)
    assert len(world.graph.messages(world.address, "sentitems")) == 1
    with pytest.raises(DraftNotFound):
        mailbox.update_draft(draft, subject="x", html_body="x", text_body="x")


def test_at_most_four_requests_per_mailbox_are_in_flight(world):
    world.graph.response_delay = 0.05
    mailboxes = [world.mailbox() for _ in range(2)]  # two objects, one mailbox: one shared cap
    errors: list[BaseException] = []

    def check(mailbox):
        try:
            mailbox.check_sent("<x@cadence.test>", None)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=check, args=(mailboxes[i % 2],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert 2 <= world.graph.max_in_flight <= 4


def test_limits_are_exchange_online_limits(world):
    limits = world.mailbox().limits
    assert (limits.daily, limits.per_minute, limits.concurrency) == (10000, 30, 4)
