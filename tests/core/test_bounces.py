"""The one delivery-report reader (core.email.bounces), over a table of real-world report shapes."""
from __future__ import annotations

import pytest

from core.email.bounces import Severity, looks_like_report, read_bounce, severity
from core.email.read import addresses, header_text, observed_headers
from tests.support.mail import DEFAULTS, mail

OURS, CONTACT = DEFAULTS["MESSAGE_ID"], DEFAULTS["CONTACT"]

# file -> (severity, failed recipient, RFC 3463 status, first Message-ID it names, words in the reason)
BOUNCES = {
    "postfix-user-unknown.eml": ("hard", "ada@prospect.example", "5.1.1", "<step1.7f3a@cadence.test>", "User unknown"),
    "gmail-failed-and-delayed-with-original.eml": ("hard", "grace@prospect.example", "5.1.1",
                                                   "<step3.99@cadence.test>", "does not exist"),
    "dsn-no-returned-part.eml": ("hard", CONTACT, "5.1.1", OURS, "mailbox unavailable"),
    "dsn-mailbox-full-4.2.2.eml": ("soft", CONTACT, "4.2.2", OURS, "Mailbox full"),
    "gmail-over-quota-5.2.2.eml": ("soft", CONTACT, "5.2.2", OURS, "over quota"),
    "exchange-online-ndr.eml": ("hard", CONTACT, "5.1.10", OURS, "RecipientNotFound"),
    "exchange-text-only.eml": ("hard", "ada@prospect.example", "5.1.10", "<4f1c0a7e@cadence.test>", "RecipientNotFound"),
    "dsn-fields-in-plain-text.eml": ("hard", "bob@nowhere.example", "5.1.1", "<abc123@cadence.test>", "rejected"),
    "qmail-failure-notice.eml": ("hard", CONTACT, "5.1.1", OURS, "no mailbox here"),
    "exim-user-unknown.eml": ("hard", CONTACT, "5.1.1", OURS, "User unknown"),
    "exim-mailbox-full.eml": ("soft", CONTACT, None, OURS, "mailbox is full"),
    "postfix-gave-up-4.4.1.eml": ("soft", CONTACT, "4.4.1", OURS, "timed out"),
    # RFC 6533: a UTF-8 report (message/global-delivery-status, 8-bit) for an internationalised address
    "global-dsn-utf8-recipient.eml": ("hard", "e@пример.рф", "5.1.1", OURS, "почтовый ящик не существует"),
}
# the recipient each report is filled in for (CONTACT unless named here)
FILLED_FOR = {"global-dsn-utf8-recipient.eml": "e@пример.рф"}
NOT_BOUNCES = ["postfix-delay-only.eml", "gmail-delay.eml", "exim-delay-warning.eml", "dsn-delivered.eml",
               "forwarded-bounce.eml"]


@pytest.mark.parametrize("name", BOUNCES)
def test_each_report_shape_names_recipient_email_status_and_cause(name):
    kind, recipient, status, first_id, words = BOUNCES[name]
    message = mail(f"bounces/{name}", contact=FILLED_FOR.get(name, CONTACT))
    bounce = read_bounce(message)
    assert bounce is not None
    assert (bounce.severity, bounce.recipient, bounce.status, bounce.message_id) == (kind, recipient, status, first_id)
    assert words.lower() in bounce.reason.lower()
    assert bounce.cause.startswith(f"{kind} bounce") and "\n" not in bounce.cause
    # what a connector sees before fetching the whole message already says "maybe a report"
    sender = next(iter(addresses(message, "From")), None)
    assert looks_like_report(observed_headers(message), sender, header_text(message, "Subject"))


@pytest.mark.parametrize("name", NOT_BOUNCES)
def test_delays_successes_and_forwarded_reports_are_not_bounces(name):
    assert read_bounce(mail(f"bounces/{name}")) is None


def test_our_message_id_is_found_wherever_the_report_puts_it():
    bounce = read_bounce(mail("bounces/dsn-no-returned-part.eml"))
    assert bounce.message_ids == (OURS,)  # X-Original-Message-ID, In-Reply-To and References agree
    only_references = mail("bounces/dsn-no-returned-part.eml")
    del only_references["In-Reply-To"]
    assert read_bounce(only_references).message_ids == (OURS,)


@pytest.mark.parametrize("status, words, expected", [
    ("5.1.1", "user unknown", Severity.HARD), ("5.7.1", "blocked", Severity.HARD), ("5.2.2", "", Severity.SOFT),
    ("5.0.0", "552 Mailbox full", Severity.SOFT), ("5.2.1", "user is over quota", Severity.SOFT),
    ("4.2.2", "", Severity.SOFT), ("4.4.7", "", Severity.SOFT), (None, "550 no such user", Severity.HARD),
    (None, "451 try later", Severity.SOFT), (None, "no code at all", None), ("2.0.0", "", None),
])
def test_hard_and_soft(status, words, expected):
    assert severity(status, words) == expected


def test_a_human_reply_about_undeliverable_goods_is_no_report():
    message = mail("replies/outlook-re-no-thread-headers.eml", subject="Undeliverable goods")
    assert read_bounce(message) is None
