"""Drafts: the MIME we build, threading, updates, links, and refusing bad input."""
from __future__ import annotations

import pytest

from core.mailbox import DraftNotFound, ThreadRef
from tests.support.gmail import CONTACT, outgoing


def test_a_draft_is_multipart_alternative_with_our_headers(account, mailbox):
    email = outgoing(account.address, subject="Grüße – eine Frage")
    draft = mailbox.create_draft(email)
    [stored] = account.folder("drafts")
    parsed = stored.parsed
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert stored.subject == "Grüße – eine Frage"
    assert str(parsed["From"]) == f"Rita Rep <{account.address}>" and str(parsed["To"]) == f"Ada Lovelace <{CONTACT}>"
    assert stored.message_id == email.message_id == draft.message_id
    assert str(parsed["List-Unsubscribe"]) == "<https://cadence.test/u/abc>"
    assert "In-Reply-To" not in parsed and "References" not in parsed
    assert draft.provider_message_id == stored.id and draft.provider_thread_id == stored.thread_id
    assert draft.web_link == (f"https://mail.google.com/mail/?authuser=rep%40example.com"
                              f"#drafts?compose={stored.id}")


def test_a_threaded_draft_carries_thread_id_in_reply_to_references_and_the_subject(account, mailbox):
    first = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    follow_up = outgoing(account.address, subject="Re: Quick question",
                         reply_to=ThreadRef(first.message_id, ("<older@cadence.test>",),
                                            first.provider_message_id, first.provider_thread_id))
    draft = mailbox.create_draft(follow_up)
    [stored] = account.folder("drafts")
    assert stored.in_reply_to == first.message_id
    assert stored.references == ("<older@cadence.test>", first.message_id)
    # The fake threads an API message only when threadId, References and Subject all agree.
    assert draft.provider_thread_id == stored.thread_id == first.provider_thread_id


def test_gmail_starts_a_new_thread_when_the_subject_does_not_match(account, mailbox):
    first = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    draft = mailbox.create_draft(outgoing(account.address, subject="Something else entirely",
                                          reply_to=ThreadRef(first.message_id, (), first.provider_message_id,
                                                             first.provider_thread_id)))
    assert draft.provider_thread_id != first.provider_thread_id


def test_the_thread_is_found_from_the_message_id_alone(server, account, mailbox):
    first = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    draft = mailbox.create_draft(outgoing(account.address, subject="Re: Quick question",
                                          reply_to=ThreadRef(first.message_id)))
    assert draft.provider_thread_id == first.provider_thread_id
    assert server.call_count("messages.list") == 1


def test_update_keeps_thread_message_id_and_headers_and_gives_a_new_link(account, mailbox):
    first = mailbox.send_draft(mailbox.create_draft(outgoing(account.address)))
    draft = mailbox.create_draft(outgoing(account.address, subject="Re: Quick question",
                                          reply_to=ThreadRef(first.message_id, (), first.provider_message_id,
                                                             first.provider_thread_id)))
    updated = mailbox.update_draft(draft, subject="Re: Quick question", html_body="<p>Edited</p>",
                                   text_body="Edited")
    [stored] = account.folder("drafts")
    assert stored.text_body.strip() == "Edited" and stored.parsed.get_body(("html",)).get_content().strip() == (
        "<p>Edited</p>")
    assert stored.message_id == draft.message_id and stored.in_reply_to == first.message_id
    assert stored.headers["List-Unsubscribe"] == "<https://cadence.test/u/abc>"
    assert updated.draft_id == draft.draft_id and updated.provider_thread_id == first.provider_thread_id
    assert updated.provider_message_id == stored.id != draft.provider_message_id  # Gmail replaces the message
    assert stored.id in updated.web_link


def test_a_sent_draft_cannot_be_updated(mailbox, account):
    draft = mailbox.create_draft(outgoing(account.address))
    mailbox.send_draft(draft)
    with pytest.raises(DraftNotFound):
        mailbox.update_draft(draft, subject="x", html_body="x", text_body="x")


@pytest.mark.parametrize("change, field", [
    (dict(headers={"X-Bad": "one\r\nBcc: evil@example.com"}), "X-Bad"),
    (dict(headers={"Message-ID": "<other@x>"}), "Message-ID"),
    (dict(headers={"Bad Name": "x"}), "Bad Name"),
    (dict(subject="Two\nlines"), "Subject"),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_created(server, account, mailbox, change, field):
    email = outgoing(account.address, **{k: v for k, v in change.items()})
    with pytest.raises(ValueError) as caught:
        mailbox.create_draft(email)
    assert str(caught.value).startswith(field)
    assert server.call_count("drafts.create") == 0 and account.folder("drafts") == []


def test_a_bad_message_id_is_refused(account, mailbox):
    from dataclasses import replace

    with pytest.raises(ValueError, match="^Message-ID"):
        mailbox.create_draft(replace(outgoing(account.address), message_id="no-brackets@x"))


def test_constructor_names_the_bad_setting(server, account):
    from connectors.gmail import GmailMailbox

    with pytest.raises(ValueError, match="^api_url"):
        GmailMailbox(account.address, refresh_token="t", client_id="c", client_secret="s", api_url="gmail",
                     token_url=server.token_url)
    with pytest.raises(ValueError, match="^client_secret"):
        GmailMailbox(account.address, refresh_token="t", client_id="c", client_secret="", api_url=server.api_url,
                     token_url=server.token_url)
