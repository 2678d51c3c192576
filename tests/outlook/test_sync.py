"""Sync through delta queries on Sent Items and the Inbox, and telling non-delivery reports apart."""
from __future__ import annotations

import pytest

from connectors.outlook.translate import observe
from core.email.bounces import looks_like_report
from core.mailbox import Folder
from tests.support.outlook import CONTACT, new_email


def test_first_poll_walks_every_delta_page_and_reports_nothing(world):
    mailbox = world.mailbox()
    for i in range(5):  # the fake hands out 2 messages per page
        mailbox.send_draft(mailbox.create_draft(new_email(world.address, subject=f"Old {i}")))
    result = mailbox.poll(None)
    assert result.observations == () and not result.resynced
    delta_pages = [r for r in world.graph.requests if r.path.endswith("/delta")]
    assert sum("$skiptoken" in r.query for r in delta_pages) == 2  # sent items: 5 messages, 3 pages
    assert mailbox.poll(result.cursor).observations == ()


def test_an_expired_delta_link_resyncs_the_tracked_conversations(world):
    mailbox = world.mailbox()
    tracked = mailbox.send_draft(mailbox.create_draft(new_email(world.address, subject="Tracked")))
    mailbox.send_draft(mailbox.create_draft(new_email(world.address, subject="Untracked")))
    cursor = mailbox.poll(None).cursor
    world.graph.deliver(world.address, from_address=CONTACT, subject="RE: Tracked", body_text="Call me",
                        in_reply_to_id=tracked.provider_message_id)
    world.graph.expire_delta_tokens()

    result = mailbox.poll(cursor, [tracked.provider_thread_id])

    assert result.resynced
    assert {(o.folder, o.subject) for o in result.observations} == {
        (Folder.SENT, "Tracked"), (Folder.INBOX, "RE: Tracked")}
    world.graph.deliver(world.address, from_address=CONTACT, subject="Later", body_text="Hello again")
    after = mailbox.poll(result.cursor)
    assert not after.resynced and [o.subject for o in after.observations] == ["Later"]


def test_a_reply_is_reported_once_even_when_it_changes_later(world):
    mailbox = world.mailbox()
    sent = mailbox.send_draft(mailbox.create_draft(new_email(world.address)))
    cursor = mailbox.poll(None).cursor
    reply = world.graph.deliver(world.address, from_address=CONTACT, subject="RE: Quick question",
                                body_text="Sounds good", in_reply_to_id=sent.provider_message_id)
    first = mailbox.poll(cursor, [sent.provider_thread_id])
    [observed] = first.observations
    assert observed.provider_thread_id == sent.provider_thread_id
    assert observed.in_reply_to == sent.message_id and observed.references == (sent.message_id,)
    assert observed.received_at is not None and observed.raw["id"] == reply.id
    world.graph.mark_read(world.address, reply.id)
    assert mailbox.poll(first.cursor).observations == ()


def test_a_bounce_with_reference_headers_is_read_from_the_headers(world):
    mailbox = world.mailbox()
    sent = mailbox.send_draft(mailbox.create_draft(new_email(world.address)))
    cursor = mailbox.poll(None).cursor
    world.graph.bounce(world.address, sent.provider_message_id, recipient=CONTACT,
                       reason="550 5.4.1 Recipient address rejected: Access denied", with_reference_headers=True)
    [dsn] = mailbox.poll(cursor).observations
    assert (dsn.bounced_message_id, dsn.bounced_recipient) == (sent.message_id, CONTACT)
    assert dsn.bounce_reason == "550 5.4.1 Recipient address rejected: Access denied"
    assert dsn.headers["content-type"].startswith("multipart/report")


def test_a_garbled_cursor_is_refused_by_name(world):
    with pytest.raises(ValueError, match="cursor"):
        world.mailbox().poll("not json")


def test_reports_are_told_apart_from_replies():
    def message(sender, subject, headers=()):
        return observe({"id": "x", "from": {"emailAddress": {"address": sender}}, "subject": subject,
                        "internetMessageHeaders": [{"name": n, "value": v} for n, v in headers]}, Folder.INBOX)

    def report(observed):
        return looks_like_report(observed.headers, observed.from_address, observed.subject)

    assert report(message("postmaster@contoso.com", "Undeliverable: Hi"))
    assert report(message("MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com", "Hi"))
    assert report(message("mx@relay.example", "failure", [("Content-Type", "multipart/report; report-type=delivery-status")]))
    assert not report(message(CONTACT, "RE: Undeliverable goods"))
    assert not report(message(CONTACT, "Automatic reply: Hi", [("Auto-Submitted", "auto-replied")]))
