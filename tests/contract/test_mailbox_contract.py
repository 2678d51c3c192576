"""One contract suite for every `Mailbox`: memory, maildir, Gmail (fake server), Outlook (fake server).

Each provider brings a harness module `harness_<name>.py` with `make_harness(tmp_path)`, a
context manager yielding a `Harness` (see harness.py).
"""
from __future__ import annotations

import importlib
import uuid

import pytest

from core.mailbox import (
    DraftNotFound,
    Folder,
    Mailbox,
    OutgoingEmail,
    SendCheck,
    SendInDoubt,
    ThreadRef,
)

PROVIDERS = ["memory", "maildir", "gmail", "outlook"]
CONTACT = "ada@prospect.example"


@pytest.fixture(params=PROVIDERS)
def harness(request, tmp_path):
    module = importlib.import_module(f"tests.contract.harness_{request.param}")
    with module.make_harness(tmp_path) as h:
        yield h


def new_email(h, subject="Quick question", reply_to=None, body="Hi Ada, one question.") -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<{uuid.uuid4().hex}@cadence.test>",
        from_address=h.address,
        from_name="Rita Rep",
        to_address=CONTACT,
        to_name="Ada Lovelace",
        subject=subject,
        html_body=f"<p>{body}</p>",
        text_body=body,
        reply_to=reply_to,
        headers={"List-Unsubscribe": "<https://cadence.test/u/abc>"},
    )


def thread_of(ref) -> ThreadRef:
    return ThreadRef(message_id=ref.message_id, provider_message_id=ref.provider_message_id,
                     provider_thread_id=ref.provider_thread_id)


def same_conversation(observation, ref) -> bool:
    return (observation.provider_thread_id is not None
            and observation.provider_thread_id == ref.provider_thread_id)


# One header rule for every provider (core.headers): what breaks a header line is refused before
# anything reaches the provider, naming the header.
UNSAFE = {"CR": "\r", "LF": "\n", "NUL": "\x00", "VT": "\x0b", "FF": "\x0c", "ESC": "\x1b", "DEL": "\x7f",
          "NEL": "\x85", "C1": "\x90", "LS": "\u2028", "PS": "\u2029", "encoded LF": "=?UTF-8?Q?=0A?=",
          "encoded CRLF": "=?utf-8?b?SGkNCkJjYzogeEB5Lno=?="}


def test_every_provider_refuses_the_same_header_characters(harness):
    from dataclasses import replace

    from core.headers import HeaderInjection

    base = new_email(harness)
    for name, bad in UNSAFE.items():
        for change, header in ((dict(subject=f"Hi{bad}Bcc: x@y.z"), "Subject"), (dict(to_name=f"Ada{bad}"), "To"),
                               (dict(headers={"X-Note": f"a{bad}b"}), "X-Note")):
            with pytest.raises(HeaderInjection) as refused:
                harness.mailbox.create_draft(replace(base, **change))
            assert str(refused.value).startswith(header), (name, header)
    ok = harness.mailbox.create_draft(replace(base, subject="Tab\tand café — ok", headers={"X-Note": "fine"}))
    assert [r.message_id for r in harness.records("drafts")] == [ok.message_id]


def test_implements_the_protocol(harness):
    assert isinstance(harness.mailbox, Mailbox)


def test_a_draft_holds_recipient_subject_body_and_our_message_id(harness):
    email = new_email(harness)
    draft = harness.mailbox.create_draft(email)
    assert draft.message_id == email.message_id and draft.draft_id
    [record] = harness.records("drafts")
    assert record.message_id == email.message_id
    assert record.to_addresses == (CONTACT,)
    assert record.subject == "Quick question"
    assert "one question" in record.body_text
    assert harness.records("sent") == []


def test_send_draft_sends_it_once(harness):
    draft = harness.mailbox.create_draft(new_email(harness))
    sent = harness.mailbox.send_draft(draft)
    assert sent.message_id == draft.message_id
    assert harness.records("drafts") == []
    [record] = harness.records("sent")
    assert record.message_id == draft.message_id and record.to_addresses == (CONTACT,)
    with pytest.raises(DraftNotFound):
        harness.mailbox.send_draft(draft)
    assert len(harness.records("sent")) == 1


def test_a_threaded_email_replies_in_the_previous_conversation(harness):
    first = harness.mailbox.send_draft(harness.mailbox.create_draft(new_email(harness)))
    follow_up = new_email(harness, subject="Re: Quick question", reply_to=thread_of(first), body="Bumping this.")
    draft = harness.mailbox.create_draft(follow_up)
    second = harness.mailbox.send_draft(draft)
    records = {r.message_id: r for r in harness.records("sent")}
    reply = records[follow_up.message_id]
    assert reply.in_reply_to == first.message_id
    assert first.message_id in reply.references
    assert reply.subject == "Re: Quick question"
    assert second.provider_thread_id == first.provider_thread_id
    assert reply.thread_id == records[first.message_id].thread_id


def test_update_and_delete_a_draft(harness):
    draft = harness.mailbox.create_draft(new_email(harness))
    harness.mailbox.update_draft(draft, subject="Edited subject", html_body="<p>New body</p>", text_body="New body")
    [record] = harness.records("drafts")
    assert record.subject == "Edited subject" and "New body" in record.body_text
    harness.mailbox.delete_draft(draft)
    assert harness.records("drafts") == []
    harness.mailbox.delete_draft(draft)  # already gone: not an error
    with pytest.raises(DraftNotFound):
        harness.mailbox.update_draft(draft, subject="x", html_body="x", text_body="x")


def test_find_drafts_finds_a_draft_by_message_id_and_only_while_it_is_a_draft(harness):
    box = harness.mailbox
    email = new_email(harness)
    assert box.find_drafts(email.message_id) == []
    made = box.create_draft(email)
    other = box.create_draft(new_email(harness, subject="Another one"))
    [found] = box.find_drafts(email.message_id)
    assert found.message_id == email.message_id and found.draft_id == made.draft_id
    assert [f.draft_id for f in box.find_drafts(email.message_id.strip("<>"))] == [made.draft_id]
    # Found drafts are real handles: a crashed worker's copy can be sent or deleted through them.
    twin = box.create_draft(email)  # a second copy, as a worker killed after creating one leaves
    both = box.find_drafts(email.message_id)
    assert sorted(d.draft_id for d in both) == sorted({made.draft_id, twin.draft_id})
    box.delete_draft(both[1])
    [kept] = box.find_drafts(email.message_id)
    assert kept.draft_id == both[0].draft_id
    box.send_draft(kept)
    assert box.find_drafts(email.message_id) == []
    assert [r.message_id for r in harness.records("sent")] == [email.message_id]
    assert [r.message_id for r in harness.records("drafts")] == [other.message_id]


def test_check_sent_tells_sent_from_not_sent(harness):
    draft = harness.mailbox.create_draft(new_email(harness))
    assert harness.mailbox.check_sent(draft.message_id, draft).status == SendCheck.NOT_SENT
    harness.mailbox.send_draft(draft)
    status = harness.mailbox.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT
    assert status.sent is not None and status.sent.message_id == draft.message_id


def test_a_lost_send_response_is_in_doubt_and_resolves_as_sent(harness):
    draft = harness.mailbox.create_draft(new_email(harness))
    harness.lose_next_send_response()
    with pytest.raises(SendInDoubt):
        harness.mailbox.send_draft(draft)
    assert harness.mailbox.check_sent(draft.message_id, draft).status == SendCheck.SENT
    assert len(harness.records("sent")) == 1


def test_poll_starts_at_now_then_reports_what_is_new(harness):
    harness.mailbox.send_draft(harness.mailbox.create_draft(new_email(harness, subject="Before")))
    first = harness.mailbox.poll(None)
    assert first.observations == () and first.cursor
    again = harness.mailbox.poll(first.cursor)
    assert [o for o in again.observations if o.subject == "Before"] == []


def test_poll_sees_the_rep_send_a_draft_even_edited(harness):
    cursor = harness.mailbox.poll(None).cursor
    draft = harness.mailbox.create_draft(new_email(harness))
    harness.user_sends_draft(draft, new_subject="Edited by the rep")
    result = harness.mailbox.poll(cursor, [draft.provider_thread_id] if draft.provider_thread_id else [])
    sent = [o for o in result.observations if o.folder == Folder.SENT]
    assert len(sent) == 1
    observed = sent[0]
    assert (observed.message_id == draft.message_id
            or observed.provider_message_id == draft.provider_message_id
            or same_conversation(observed, draft))
    assert observed.subject == "Edited by the rep"
    assert observed.raw is not None
    later = harness.mailbox.poll(result.cursor)
    assert [o for o in later.observations if o.folder == Folder.SENT] == []


def test_poll_reports_a_reply_in_the_thread(harness):
    sent = harness.mailbox.send_draft(harness.mailbox.create_draft(new_email(harness)))
    cursor = harness.mailbox.poll(None).cursor
    harness.contact_replies(sent, from_address=CONTACT, body="Sounds good, call me.")
    result = harness.mailbox.poll(cursor, [sent.provider_thread_id] if sent.provider_thread_id else [])
    [reply] = [o for o in result.observations if o.folder == Folder.INBOX]
    assert reply.from_address == CONTACT
    assert reply.in_reply_to == sent.message_id or same_conversation(reply, sent)
    assert "call me" in reply.snippet
    assert reply.raw is not None


def test_poll_keeps_auto_reply_headers(harness):
    sent = harness.mailbox.send_draft(harness.mailbox.create_draft(new_email(harness)))
    cursor = harness.mailbox.poll(None).cursor
    harness.contact_replies(sent, from_address=CONTACT, body="I am out of the office.",
                            subject="Automatic reply: Quick question",
                            headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"})
    [reply] = [o for o in harness.mailbox.poll(cursor).observations if o.folder == Folder.INBOX]
    assert reply.headers.get("auto-submitted") == "auto-replied"
    assert reply.subject.startswith("Automatic reply")


def test_poll_reports_a_bounce_for_our_message(harness):
    sent = harness.mailbox.send_draft(harness.mailbox.create_draft(new_email(harness)))
    cursor = harness.mailbox.poll(None).cursor
    harness.bounce(sent, recipient=CONTACT)
    [dsn] = [o for o in harness.mailbox.poll(cursor).observations if o.folder == Folder.INBOX]
    assert dsn.bounced_message_id == sent.message_id
    assert dsn.bounced_recipient == CONTACT
