"""What observed messages mean: the core's classification, with an in-memory lookup."""
from __future__ import annotations

from core.mailbox import Folder, ObservedMessage
from core.observations import Meaning, Tracked, classify, is_auto_reply
from core.vocabulary import MessageState

OURS = "rita@acme.example"


class ListLookup:
    def __init__(self, *tracked: Tracked):
        self.tracked = list(tracked)

    def by_message_ids(self, ids):
        return [t for i in ids for t in self.tracked if t.message_id == i]

    def by_provider_id(self, pid):
        return next((t for t in self.tracked if t.provider_message_id == pid), None)

    def by_thread(self, thread):
        return [t for t in self.tracked if t.provider_thread_id == thread]


FIRST = Tracked(1, MessageState.SENT, "ada@prospect.example", "<m1@acme>", "p1", "t1")
DRAFT = Tracked(2, MessageState.DRAFTED, "ada@prospect.example", "<m2@acme>", "p2", "t1")
OTHER = Tracked(3, MessageState.SENT, "bob@prospect.example", "<m3@acme>", "p3", "t3")


def inbound(**kw) -> ObservedMessage:
    base = dict(folder=Folder.INBOX, provider_message_id="x", from_address="ada@prospect.example",
                subject="Re: hello", in_reply_to="<m1@acme>", provider_thread_id="t1")
    base.update(kw)
    return ObservedMessage(**base)


def test_a_reply_from_the_contact_in_the_thread():
    result = classify(inbound(), ListLookup(FIRST, OTHER), OURS)
    assert result.meaning is Meaning.REPLY and result.message == FIRST


def test_a_reply_found_by_thread_when_headers_are_missing():
    result = classify(inbound(in_reply_to=None), ListLookup(FIRST), OURS)
    assert result.meaning is Meaning.REPLY and result.message.key == 1


def test_a_stranger_in_the_thread_is_not_the_contacts_reply():
    result = classify(inbound(from_address="eve@elsewhere.example", in_reply_to=None), ListLookup(FIRST), OURS)
    assert result.meaning is Meaning.UNRELATED


def test_out_of_office_is_told_apart_by_headers_and_subject():
    for observed in (inbound(headers={"auto-submitted": "auto-replied"}),
                     inbound(headers={"x-autoreply": "yes"}),
                     inbound(headers={"precedence": "auto_reply"}),
                     inbound(subject="Automatic reply: hello"),
                     inbound(subject="Out of Office: hello"),
                     inbound(subject="Abwesenheitsnotiz: hello")):
        assert classify(observed, ListLookup(FIRST), OURS).meaning is Meaning.AUTO_REPLY, observed
    assert is_auto_reply(inbound(headers={"auto-submitted": "no"})) is None


def test_a_bounce_names_the_failed_message_and_recipient():
    dsn = inbound(from_address="mailer-daemon@mx.example", bounced_message_id="<m3@acme>",
                  bounced_recipient="bob@prospect.example", bounce_reason="550 no such user",
                  headers={"content-type": "multipart/report; report-type=delivery-status"})
    result = classify(dsn, ListLookup(FIRST, OTHER), OURS)
    assert result.meaning is Meaning.BOUNCE and result.message == OTHER and "550" in result.why


def test_a_delay_report_without_a_failed_message_is_not_a_bounce():
    delay = inbound(from_address="mailer-daemon@mx.example", in_reply_to="<m1@acme>",
                    headers={"content-type": "multipart/report; report-type=delivery-status"})
    assert classify(delay, ListLookup(FIRST), OURS).meaning is Meaning.UNRELATED


def test_a_task_draft_sent_by_the_rep_even_with_a_new_message_id():
    observed = ObservedMessage(folder=Folder.SENT, provider_message_id="new-id", message_id="<client@gmail>",
                               provider_thread_id="t1", to_addresses=("ada@prospect.example",))
    result = classify(observed, ListLookup(FIRST, DRAFT), OURS)
    assert result.meaning is Meaning.DRAFT_SENT and result.message == DRAFT


def test_our_own_send_seen_in_sent_is_recognised():
    observed = ObservedMessage(folder=Folder.SENT, provider_message_id="p1", message_id="<m1@acme>")
    assert classify(observed, ListLookup(FIRST), OURS).meaning is Meaning.OUR_SEND
