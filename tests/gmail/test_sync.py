"""poll: history since the cursor, resync after an expired historyId, replies, auto-replies, bounces."""
from __future__ import annotations

import pytest

from core.mailbox import Folder, SendCheck
from tests.support.gmail import CONTACT, outgoing


def _reply(account, sent, **extra):
    parent = account.message_by_message_id(sent.message_id)
    options = dict(from_address=CONTACT, subject=f"Re: {parent.subject}", body="Sounds good, call me.",
                   thread_id=parent.thread_id, in_reply_to=parent.message_id,
                   references=parent.references + (parent.message_id,))
    options.update(extra)
    return account.deliver(**options)


def test_an_expired_history_id_falls_back_to_a_resync_of_the_tracked_threads(server, account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    account.expire_history()
    _reply(account, sent)

    result = mailbox.poll(cursor, [sent.provider_thread_id, "no-such-thread"])

    assert result.resynced
    by_folder = {o.folder: o for o in result.observations}
    assert by_folder[Folder.SENT].message_id == sent.message_id  # resync may repeat what was seen
    assert by_folder[Folder.INBOX].from_address == CONTACT
    assert by_folder[Folder.INBOX].in_reply_to == sent.message_id
    after = mailbox.poll(result.cursor)  # the new cursor is valid
    assert not after.resynced and after.observations == ()


def test_an_expired_history_id_without_tracked_threads_resyncs_to_now(account, mailbox):
    cursor = mailbox.poll(None).cursor
    account.expire_history()
    result = mailbox.poll(cursor)
    assert result.resynced and result.observations == () and int(result.cursor) > int(cursor)


def test_history_pages_are_followed_in_order(server, account, mailbox):
    cursor = mailbox.poll(None).cursor
    server.history_page_size = 2
    subjects = [f"Note {n}" for n in range(5)]
    for subject in subjects:
        account.deliver(from_address=CONTACT, subject=subject, body=subject)
    result = mailbox.poll(cursor)
    assert [o.subject for o in result.observations] == subjects
    assert server.call_count("history.list") == 3


def test_a_delivery_status_notification_names_the_bounced_message(account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    account.bounce(sent.message_id, CONTACT)
    [dsn] = mailbox.poll(cursor).observations
    assert dsn.folder == Folder.INBOX and dsn.provider_thread_id == sent.provider_thread_id
    assert dsn.bounced_message_id == sent.message_id and dsn.bounced_recipient == CONTACT
    assert dsn.bounce.status == "5.1.1" and dsn.bounce.severity == "hard" and "does not exist" in dsn.bounce_reason
    assert dsn.headers["content-type"].startswith("multipart/report")
    assert dsn.headers["x-failed-recipients"] == CONTACT
    assert dsn.from_address == "mailer-daemon@googlemail.com"


def test_a_bounce_carrying_the_whole_original_and_no_failed_recipients_header(account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    account.bounce(sent.message_id, CONTACT, original_as="message", failed_recipients_header=False,
                   status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full")
    [dsn] = mailbox.poll(cursor).observations
    assert (dsn.bounced_message_id, dsn.bounced_recipient) == (sent.message_id, CONTACT)
    assert dsn.bounce_reason == "552 5.2.2 Mailbox full"
    assert (dsn.bounce.status, dsn.bounce.severity) == ("5.2.2", "soft")


def test_a_delay_notification_is_not_a_bounce(account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    account.bounce(sent.message_id, CONTACT, action="delayed", status="4.4.1", diagnostic="smtp; timed out")
    [report] = mailbox.poll(cursor).observations
    assert report.bounced_message_id is None and report.bounced_recipient is None
    assert report.headers["content-type"].startswith("multipart/report")


def test_out_of_office_headers_are_kept_lower_case(account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    _reply(account, sent, subject="Automatic reply: Quick question", body="I am out of the office.",
           headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes", "X-Autorespond": "yes",
                    "Precedence": "auto_reply"})
    [reply] = mailbox.poll(cursor).observations
    assert reply.headers == {"auto-submitted": "auto-replied", "x-autoreply": "yes", "x-autorespond": "yes",
                             "precedence": "auto_reply", "content-type": 'text/plain; charset="utf-8"'}
    assert reply.subject == "Automatic reply: Quick question" and "out of the office" in reply.snippet
    assert reply.raw["id"] == reply.provider_message_id and reply.received_at is not None


def test_the_rep_sends_a_draft_from_gmail_with_a_new_message_id(account, mailbox):
    cursor = mailbox.poll(None).cursor
    draft = mailbox.create_draft(outgoing(account.address))
    account.user_sends_draft(draft.draft_id, new_subject="Edited by the rep", new_message_id=True)

    [sent] = mailbox.poll(cursor, [draft.provider_thread_id]).observations
    assert sent.folder == Folder.SENT and sent.provider_thread_id == draft.provider_thread_id
    assert sent.message_id != draft.message_id and sent.subject == "Edited by the rep"
    assert sent.to_addresses == (CONTACT,)
    # check_sent is honest: the draft is gone and nothing in Sent carries our Message-ID.
    assert mailbox.check_sent(draft.message_id, draft).status == SendCheck.UNKNOWN


def test_check_sent_finds_a_draft_the_rep_sent_keeping_its_message_id(account, mailbox):
    draft = mailbox.create_draft(outgoing(account.address))
    account.user_sends_draft(draft.draft_id, new_message_id=False)
    status = mailbox.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT and status.sent.message_id == draft.message_id


def test_check_sent_without_a_draft_and_nothing_sent_is_not_sent(mailbox):
    assert mailbox.check_sent("<never@cadence.test>", None).status == SendCheck.NOT_SENT


def test_a_reply_archived_by_a_filter_is_still_seen_and_spam_is_not(account, mailbox):
    sent = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    cursor = mailbox.poll(None).cursor
    _reply(account, sent, body="archived by a filter", labels=("Label_7",))
    _reply(account, sent, body="buy now", labels=("SPAM",))
    [reply] = mailbox.poll(cursor).observations
    assert reply.folder == Folder.INBOX and "archived" in reply.snippet


def test_a_cursor_that_is_not_a_history_id_is_refused(mailbox):
    with pytest.raises(ValueError, match="cursor"):
        mailbox.poll("yesterday")
