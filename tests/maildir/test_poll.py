"""Polling a Maildir: each new file reported exactly once, whatever other programs do to it."""
from __future__ import annotations

import json
import mailbox
import os
import uuid
from datetime import timedelta

import pytest

from connectors.maildir import MaildirMailbox, MaildirPeople
from core.mailbox import Folder, OutgoingEmail
from tests.support.maildir import POSTFIX_BOUNCE, START


@pytest.fixture
def people(root, clock):
    return MaildirPeople(root, clock_now=clock.now)


def send(box, subject="Quick question"):
    return box.send_draft(box.create_draft(OutgoingEmail(
        message_id=f"<{uuid.uuid4().hex}@cadence.test>", from_address="rep@example.com",
        to_address="ada@prospect.example", subject=subject, html_body="<p>Hi</p>", text_body="Hi")))


def drop(root, text: str) -> str:
    """Another program (a delivery agent) writes a message into INBOX new/."""
    return mailbox.Maildir(root, create=False).add(text.encode())


def plain(message_id: str, body="Hello", date="Tue, 04 Jun 2024 10:00:00 +0000") -> str:
    date_line = f"Date: {date}\n" if date else ""
    return (f"From: Ada <ada@prospect.example>\nTo: rep@example.com\nSubject: Hi\n{date_line}"
            f"Message-ID: {message_id}\n\n{body}\n")


def test_the_first_poll_reports_nothing_and_later_ones_only_what_is_new(root, box):
    send(box, "Before")
    drop(root, plain("<old@prospect.example>"))
    first = box.poll(None)
    assert first.observations == ()
    assert box.poll(first.cursor).observations == ()
    key = drop(root, plain("<new@prospect.example>"))
    second = box.poll(first.cursor)
    assert [(o.folder, o.provider_message_id, o.message_id) for o in second.observations] == [
        (Folder.INBOX, key, "<new@prospect.example>")]
    assert box.poll(second.cursor).observations == ()
    assert box.poll(box.poll(second.cursor).cursor).observations == ()


def test_a_file_with_an_old_mtime_dropped_after_a_poll_is_still_reported(root, box):
    cursor = box.poll(None).cursor
    key = drop(root, plain("<late@prospect.example>"))
    [path] = (root / "new").iterdir()
    past = (START - timedelta(days=30)).timestamp()
    os.utime(path, (past, past))  # e.g. moved in from another folder, mtime kept
    result = box.poll(cursor)
    assert [o.provider_message_id for o in result.observations] == [key]


def test_a_reported_message_moved_to_cur_and_flagged_is_not_reported_again(root, box):
    cursor = box.poll(None).cursor
    drop(root, plain("<m@prospect.example>"))
    first = box.poll(cursor)
    assert len(first.observations) == 1
    [path] = (root / "new").iterdir()  # poll leaves it in new/ for the rep's client
    os.rename(path, root / "cur" / f"{path.name}:2,RS")  # the client reads and answers it
    assert box.poll(first.cursor).observations == ()


def test_a_message_missing_for_one_poll_is_not_reported_when_it_comes_back(root, box):
    cursor = box.poll(None).cursor
    drop(root, plain("<m@prospect.example>"))
    cursor = box.poll(cursor).cursor
    [path] = (root / "new").iterdir()
    aside = root / "tmp" / "aside"
    os.rename(path, aside)  # gone while we list (a client renaming it, say)
    cursor = box.poll(cursor).cursor
    os.rename(aside, path)
    assert box.poll(cursor).observations == ()


def test_two_pollers_from_one_cursor_see_the_same_new_messages(root, box):
    cursor = box.poll(None).cursor
    drop(root, plain("<a@prospect.example>"))
    a = box.poll(cursor)
    b = MaildirMailbox("rep@example.com", root).poll(cursor)
    assert [o.provider_message_id for o in a.observations] == [o.provider_message_id for o in b.observations]
    assert json.loads(a.cursor) == json.loads(b.cursor)


def test_an_observed_reply_carries_threading_headers_and_raw(root, box, people, clock):
    sent = send(box)
    cursor = box.poll(None).cursor
    clock.advance(timedelta(hours=3))
    key = people.contact_replies(sent.message_id, from_address="ada@prospect.example", from_name="Ada",
                                 body="Sounds good,\ncall me.", headers={"X-Autoreply": "no"})
    [reply] = box.poll(cursor).observations
    assert reply.folder == Folder.INBOX and reply.provider_message_id == key
    assert reply.in_reply_to == sent.message_id and reply.references == (sent.message_id,)
    assert reply.provider_thread_id == sent.provider_thread_id == sent.message_id
    assert reply.from_address == "ada@prospect.example" and reply.to_addresses == ("rep@example.com",)
    assert reply.subject == "Re: Quick question" and reply.snippet == "Sounds good, call me."
    assert reply.received_at == START + timedelta(hours=3)
    assert reply.headers["x-autoreply"] == "no"
    assert reply.raw["key"] == key and reply.raw["folder"] == "inbox"
    assert os.path.exists(reply.raw["path"]) and ["X-Autoreply", "no"] in reply.raw["headers"]


def test_a_message_without_date_is_received_at_its_file_time(root, box):
    cursor = box.poll(None).cursor
    drop(root, plain("<nodate@prospect.example>", date=None))
    [path] = (root / "new").iterdir()
    os.utime(path, (START.timestamp(), START.timestamp()))
    [observed] = box.poll(cursor).observations
    assert observed.received_at == START


def test_a_real_dsn_dropped_into_new_is_reported_as_a_bounce_of_our_message(root, box):
    cursor = box.poll(None).cursor
    drop(root, POSTFIX_BOUNCE)
    [dsn] = box.poll(cursor).observations
    assert dsn.bounced_message_id == "<step1.7f3a@cadence.test>"
    assert dsn.bounced_recipient == "ada@prospect.example"
    assert dsn.bounce_reason.startswith("550 5.1.1 <ada@prospect.example>: Recipient address rejected")
    assert dsn.provider_thread_id == "<step1.7f3a@cadence.test>"
    assert dsn.headers["content-type"].startswith("multipart/report")


def test_sent_observations_include_drafts_the_rep_sent_themselves(root, box, people):
    cursor = box.poll(None).cursor
    ours = send(box, "Automatic")
    draft = box.create_draft(OutgoingEmail(
        message_id="<task@cadence.test>", from_address="rep@example.com", to_address="ada@prospect.example",
        subject="Task", html_body="<p>t</p>", text_body="t"))
    theirs = people.rep_sends_draft(draft.draft_id, new_subject="Task, edited")
    result = box.poll(cursor)
    assert {(o.folder, o.provider_message_id, o.subject) for o in result.observations} == {
        (Folder.SENT, ours.provider_message_id, "Automatic"), (Folder.SENT, theirs, "Task, edited")}


def test_a_foreign_cursor_is_refused_naming_the_cursor(box):
    for bad in ("42", "{}", '{"v":1,"maildir":{"sent":{"seen":[1],"gone":[]}}}', "not json"):
        with pytest.raises(ValueError, match="cursor"):
            box.poll(bad)
