"""What observed messages mean: the core's classification, with an in-memory lookup, over tables
of real-world replies, automatic replies and delivery reports (tests/data/mail)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.email.observe import observe_message
from core.mailbox import Folder, ObservedMessage
from core.observations import Meaning, Rule, Tracked, classify, is_auto_reply, judge_bounce
from core.vocabulary import MessageState
from tests.support.mail import DEFAULTS, mail

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

    def sent_to(self, address, since):
        found = [t for t in self.tracked if t.contact_email == address and t.sent_at and t.sent_at >= since]
        return sorted(found, key=lambda t: t.sent_at, reverse=True)


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


# ---------------------------------------------------------------- the corpus, as Maildir reads it

SENT_AT = datetime(2026, 11, 30, 9, 30, tzinfo=timezone.utc)
OURS_SENT = Tracked(7, MessageState.SENT, DEFAULTS["CONTACT"], DEFAULTS["MESSAGE_ID"], "k7", DEFAULTS["MESSAGE_ID"],
                    "Quick question", SENT_AT)
OLDER = Tracked(6, MessageState.SENT, DEFAULTS["CONTACT"], "<older.1@cadence.test>", "k6", "<older.1@cadence.test>",
                "An older topic", SENT_AT - timedelta(days=3))
LOOKUP = ListLookup(OURS_SENT, OLDER)


def observed(name: str, **values) -> ObservedMessage:
    return observe_message(mail(name, **values), Folder.INBOX, "x1")


# file -> the rule that ties it to our email
REPLIES = {
    "gmail-reply-threaded.eml": Rule.THREAD_HEADERS,
    "outlook-re-in-reply-to-only.eml": Rule.THREAD_HEADERS,
    "apple-mail-references-only.eml": Rule.THREAD_HEADERS,
    "colleague-forwarded-reply.eml": Rule.THREAD_HEADERS,  # another address, but it carries our id
    "no-thread-headers-re.eml": Rule.SUBJECT,
    "outlook-re-no-thread-headers.eml": Rule.SUBJECT,  # X-Auto-Response-Suppress does not make it automatic
    "german-aw-no-thread-headers.eml": Rule.SUBJECT,
    "chinese-reply-no-thread-headers.eml": Rule.SUBJECT,
}


@pytest.mark.parametrize("name", REPLIES)
def test_each_reply_shape_is_a_reply_and_says_which_rule_matched(name):
    result = classify(observed(f"replies/{name}"), LOOKUP, "rita@acme.example")
    assert (result.meaning, result.message, result.rule) == (Meaning.REPLY, OURS_SENT, REPLIES[name])
    assert DEFAULTS["MESSAGE_ID"] in result.why


@pytest.mark.parametrize("name, why", [
    ("new-topic-from-contact.eml", "another subject, no thread headers"),
    ("stranger-same-subject.eml", "our subject, but not from the person we wrote to"),
])
def test_messages_that_are_not_replies(name, why):
    assert classify(observed(f"replies/{name}"), LOOKUP, "rita@acme.example").meaning is Meaning.UNRELATED, why


def test_a_subject_match_counts_only_within_thirty_days():
    late = observed("replies/no-thread-headers-re.eml", date="Fri, 01 Jan 2027 10:00:00 +0000")
    assert classify(late, LOOKUP, "rita@acme.example").meaning is Meaning.UNRELATED
    assert classify(observed("replies/no-thread-headers-re.eml", subject="An older topic"), LOOKUP,
                    "rita@acme.example").message == OLDER


def test_a_message_in_the_providers_thread_from_the_contact_is_a_reply():
    result = classify(inbound(in_reply_to=None, subject="Something else"), ListLookup(FIRST), OURS)
    assert (result.meaning, result.rule) == (Meaning.REPLY, Rule.PROVIDER_THREAD)


AUTOMATIC = {
    "exchange-ooo-english.eml": "Auto-Submitted: auto-generated",
    "exchange-ooo-german-subject-only.eml": "'Automatische Antwort'",
    "gmail-vacation-responder.eml": "Auto-Submitted: auto-replied",
    "zimbra-vacation.eml": "Auto-Submitted: auto-replied",
    "vacation-precedence-junk.eml": "X-Autorespond",
    "null-return-path-autoresponder.eml": "null Return-Path",
    "x-autoresponder-helpdesk.eml": "X-Autoresponder",
    "japanese-ooo-subject-only.eml": "'自動応答'",
}


@pytest.mark.parametrize("name", AUTOMATIC)
def test_each_automatic_reply_shape_is_automatic_and_the_sequence_goes_on(name):
    result = classify(observed(f"auto/{name}"), LOOKUP, "rita@acme.example")
    assert (result.meaning, result.message) == (Meaning.AUTO_REPLY, OURS_SENT)
    assert AUTOMATIC[name] in result.why


BOUNCES = {  # file -> hard?
    "dsn-no-returned-part.eml": True, "exchange-online-ndr.eml": True, "qmail-failure-notice.eml": True,
    "exim-user-unknown.eml": True, "dsn-mailbox-full-4.2.2.eml": False, "gmail-over-quota-5.2.2.eml": False,
    "exim-mailbox-full.eml": False, "postfix-gave-up-4.4.1.eml": False,
}


@pytest.mark.parametrize("name", BOUNCES)
def test_each_bounce_shape_finds_our_email_and_is_hard_or_soft(name):
    result = classify(observed(f"bounces/{name}"), LOOKUP, "rita@acme.example")
    assert (result.meaning, result.message, result.rule) == (Meaning.BOUNCE, OURS_SENT, Rule.MESSAGE_ID)
    verdict = judge_bounce(result.bounce, SENT_AT, earlier_soft=0)
    assert verdict.hard is BOUNCES[name]
    assert (verdict.retry_at is None) is BOUNCES[name]


@pytest.mark.parametrize("name", ["gmail-delay.eml", "exim-delay-warning.eml", "postfix-delay-only.eml",
                                  "dsn-delivered.eml"])
def test_delay_warnings_are_never_bounces_nor_replies(name):
    assert classify(observed(f"bounces/{name}"), LOOKUP, "rita@acme.example").meaning is Meaning.UNRELATED


def test_a_report_naming_no_email_of_ours_is_matched_by_its_recipient():
    message = mail("bounces/qmail-failure-notice.eml", message_id="<not-ours@elsewhere.example>")
    result = classify(observe_message(message, Folder.INBOX, "x"), LOOKUP, "rita@acme.example")
    assert (result.meaning, result.message, result.rule) == (Meaning.BOUNCE, OURS_SENT, Rule.RECIPIENT)


def test_a_report_for_another_recipient_of_our_email_is_not_our_contacts_bounce():
    message = mail("bounces/dsn-no-returned-part.eml", contact="someone@else.example")
    result = classify(observe_message(message, Folder.INBOX, "x"), LOOKUP, "rita@acme.example")
    assert result.meaning is Meaning.UNRELATED


def test_soft_bounces_retry_a_day_later_and_the_third_within_thirty_days_is_hard():
    soft = classify(observed("bounces/dsn-mailbox-full-4.2.2.eml"), LOOKUP, "rita@acme.example").bounce
    first = judge_bounce(soft, SENT_AT, earlier_soft=0)
    assert (first.hard, first.retry_at) == (False, SENT_AT + timedelta(days=1)) and "4.2.2" in first.cause
    assert not judge_bounce(soft, SENT_AT, earlier_soft=1).hard
    third = judge_bounce(soft, SENT_AT, earlier_soft=2)
    assert third.hard and third.retry_at is None and "counts as hard" in third.cause
