"""MaildirMailbox writes files that the stdlib Maildir and email readers (and mail clients) read."""
from __future__ import annotations

import mailbox
import uuid
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from connectors.maildir import MaildirMailbox, MaildirPeople
from core.mailbox import DraftNotFound, DraftRef, OutgoingEmail, SendCheck, ThreadRef
from tests.support.maildir import START


def outgoing(subject="Quick question", reply_to=None, **changes) -> OutgoingEmail:
    fields = dict(message_id=f"<{uuid.uuid4().hex}@cadence.test>", from_address="rep@example.com",
                  from_name="Rita Rep", to_address="ada@prospect.example", to_name="Ada Lovelace",
                  subject=subject, html_body="<p>Hi Ada</p>", text_body="Hi Ada", reply_to=reply_to,
                  headers={"List-Unsubscribe": "<https://cadence.test/u/abc>"})
    fields.update(changes)
    return OutgoingEmail(**fields)


def stdlib_folder(root: Path, name: str | None) -> mailbox.Maildir:
    inbox = mailbox.Maildir(root, create=False)
    return inbox if name is None else inbox.get_folder(name)


def only_message(folder: mailbox.Maildir):
    [key] = folder.keys()
    return key, folder[key], message_from_bytes(folder.get_bytes(key), policy=policy.default)


def test_the_tree_is_maildir_plus_plus(root, box):
    for folder in (root, root / ".Drafts", root / ".Sent"):
        assert all((folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert (root / ".Drafts" / "maildirfolder").exists() and (root / ".Sent" / "maildirfolder").exists()
    assert sorted(mailbox.Maildir(root, create=False).list_folders()) == ["Drafts", "Sent"]


def test_a_root_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        MaildirMailbox("rep@example.com", tmp_path / "file")


def test_a_draft_is_a_real_message_with_flag_D_and_a_file_link(root, box):
    email = outgoing()
    draft = box.create_draft(email)
    key, stored, parsed = only_message(stdlib_folder(root, "Drafts"))
    assert key == draft.draft_id == draft.provider_message_id
    assert stored.get_flags() == "D" and stored.get_subdir() == "cur"
    assert parsed["From"].addresses[0].display_name == "Rita Rep"
    assert parsed["To"].addresses[0].addr_spec == "ada@prospect.example"
    assert str(parsed["Subject"]) == "Quick question"
    assert parsed["Date"].datetime == START
    assert str(parsed["Message-ID"]) == email.message_id
    assert str(parsed["List-Unsubscribe"]) == "<https://cadence.test/u/abc>"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    link = urlparse(draft.web_link)
    assert link.scheme == "file" and Path(unquote(link.path)).read_bytes() == stdlib_folder(root, "Drafts").get_bytes(key)
    assert draft.provider_thread_id == email.message_id


def test_send_moves_the_draft_to_sent_with_flag_S_and_the_send_time(root, box, clock):
    draft = box.create_draft(outgoing())
    clock.advance(timedelta(hours=2))
    sent = box.send_draft(draft)
    assert stdlib_folder(root, "Drafts").keys() == []
    key, stored, parsed = only_message(stdlib_folder(root, "Sent"))
    assert key == draft.draft_id == sent.provider_message_id
    assert stored.get_flags() == "S"
    assert parsed["Date"].datetime == START + timedelta(hours=2) == sent.sent_at
    assert str(parsed["Message-ID"]) == draft.message_id == sent.message_id
    assert list((root / ".Sent" / "tmp").iterdir()) == []


def test_send_can_deliver_a_copy_to_the_recipients_maildir(tmp_path, clock):
    box = MaildirMailbox("rep@example.com", tmp_path / "rep", clock_now=clock.now, deliver_to=tmp_path / "out")
    sent = box.send_draft(box.create_draft(outgoing()))
    _, stored, parsed = only_message(mailbox.Maildir(tmp_path / "out", create=False))
    assert stored.get_subdir() == "new"
    assert str(parsed["Message-ID"]) == sent.message_id


def test_a_thread_keeps_its_root_even_when_the_caller_omits_the_chain(root, box):
    first = box.send_draft(box.create_draft(outgoing()))
    second_email = outgoing("Re: Quick question", ThreadRef(first.message_id, provider_thread_id=first.provider_thread_id))
    second = box.send_draft(box.create_draft(second_email))
    # The caller passes only the previous email, not its References chain:
    third_email = outgoing("Re: Quick question", ThreadRef(second.message_id, provider_thread_id=second.provider_thread_id))
    third_draft = box.create_draft(third_email)
    assert first.provider_thread_id == second.provider_thread_id == third_draft.provider_thread_id == first.message_id
    box.send_draft(third_draft)
    sent = stdlib_folder(root, "Sent")
    by_id = {str(m["Message-ID"]): m for m in
             (message_from_bytes(sent.get_bytes(k), policy=policy.default) for k in sent.keys())}
    third = by_id[third_email.message_id]
    assert str(third["In-Reply-To"]) == second.message_id
    assert str(third["References"]).split() == [first.message_id, second.message_id]
    assert str(by_id[second_email.message_id]["References"]) == first.message_id


def test_update_keeps_key_identity_and_threading(root, box, clock):
    first = box.send_draft(box.create_draft(outgoing()))
    draft = box.create_draft(outgoing("Re: Quick question", ThreadRef(first.message_id)))
    clock.advance(timedelta(minutes=5))
    updated = box.update_draft(draft, subject="Re: Quick question (v2)", html_body="<p>v2</p>", text_body="v2")
    key, stored, parsed = only_message(stdlib_folder(root, "Drafts"))
    assert key == updated.draft_id == draft.draft_id and stored.get_flags() == "D"
    assert str(parsed["Subject"]) == "Re: Quick question (v2)"
    assert parsed["Date"].datetime == START + timedelta(minutes=5)
    assert str(parsed["Message-ID"]) == draft.message_id
    assert str(parsed["In-Reply-To"]) == first.message_id
    assert str(parsed["List-Unsubscribe"]) == "<https://cadence.test/u/abc>"
    assert parsed.get_body(("plain",)).get_content().strip() == "v2"
    assert list((root / ".Drafts" / "tmp").iterdir()) == []


def test_header_injection_writes_nothing(root, box):
    with pytest.raises(ValueError, match="Subject"):
        box.create_draft(outgoing("Hi\r\nBcc: victim@example.org"))
    assert stdlib_folder(root, "Drafts").keys() == []
    draft = box.create_draft(outgoing())
    before = stdlib_folder(root, "Drafts").get_bytes(draft.draft_id)
    with pytest.raises(ValueError, match="Subject"):
        box.update_draft(draft, subject="=?UTF-8?Q?=0A?=Bcc: v@x.y", html_body="", text_body="")
    assert stdlib_folder(root, "Drafts").get_bytes(draft.draft_id) == before


def test_check_sent_answers_from_the_files(root, box, clock):
    email = outgoing()
    assert box.check_sent(email.message_id, None).status == SendCheck.NOT_SENT
    draft = box.create_draft(email)
    assert box.check_sent(email.message_id, draft).status == SendCheck.NOT_SENT
    assert box.check_sent(email.message_id, None).status == SendCheck.NOT_SENT
    box.delete_draft(draft)
    assert box.check_sent(email.message_id, draft).status == SendCheck.UNKNOWN


def test_the_rep_sending_from_a_client_under_a_new_key_is_found_by_message_id(root, box, clock):
    draft = box.create_draft(outgoing())
    clock.advance(timedelta(hours=1))
    new_key = MaildirPeople(root, clock_now=clock.now).rep_sends_draft(draft.draft_id)
    with pytest.raises(DraftNotFound):
        box.send_draft(draft)
    status = box.check_sent(draft.message_id, draft)
    assert status.status == SendCheck.SENT
    assert status.sent.provider_message_id == new_key != draft.draft_id
    assert status.sent.sent_at == START + timedelta(hours=1)
    assert status.sent.provider_thread_id == draft.message_id


def test_a_draft_resaved_by_a_client_under_a_new_key_is_still_the_draft(root, box):
    draft = box.create_draft(outgoing())
    drafts = stdlib_folder(root, "Drafts")
    resaved = drafts.add(drafts.get_message(draft.draft_id))  # a client writes a new file...
    drafts.remove(draft.draft_id)  # ...and removes the old one
    assert box.check_sent(draft.message_id, draft).status == SendCheck.NOT_SENT
    updated = box.update_draft(draft, subject="Edited", html_body="<p>e</p>", text_body="e")
    assert updated.draft_id == resaved
    sent = box.send_draft(draft)
    assert sent.provider_message_id == resaved
    assert box.check_sent(draft.message_id, draft).status == SendCheck.SENT


def test_update_and_send_of_a_missing_draft_raise_draft_not_found(box):
    ghost = DraftRef(draft_id="1.M1P1Q1.nowhere", message_id="<ghost@cadence.test>")
    with pytest.raises(DraftNotFound):
        box.update_draft(ghost, subject="x", html_body="x", text_body="x")
    with pytest.raises(DraftNotFound):
        box.send_draft(ghost)
    box.delete_draft(ghost)


def test_a_bad_address_is_refused():
    with pytest.raises(ValueError, match="address"):
        MaildirMailbox("not an address", Path("/nonexistent"))
