"""connectors.mime: the message every connector builds, and how observed mail is read."""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, message_from_string, policy

import pytest

from connectors import mime
from core.mailbox import OutgoingEmail, ThreadRef

from .fixtures import DELAY_ONLY, FORWARDED_BOUNCE, POSTFIX_BOUNCE, RFC822_BOUNCE_WITH_DELAY

WHEN = datetime(2024, 6, 4, 9, 30, tzinfo=timezone.utc)


def email(**changes) -> OutgoingEmail:
    fields = dict(
        message_id="<step2.1@cadence.test>", from_address="rep@example.com", from_name="Rita Rep",
        to_address="ada@prospect.example", to_name="Ada Lovelace", subject="Re: Quick question",
        html_body="<p>Hi Ada, bumping this.</p>", text_body="Hi Ada, bumping this.",
        reply_to=ThreadRef("<step1.1@cadence.test>", references=("<step0.1@cadence.test>",)),
        headers={"List-Unsubscribe": "<https://cadence.test/u/abc>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    fields.update(changes)
    return OutgoingEmail(**fields)


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def test_build_mime_survives_a_round_trip_through_the_stdlib_parser():
    built = mime.build_mime(email(from_name="Rita O'Rep, Sales", to_name="Ada Lövelace",
                                  subject="Re: Quick question – ça va?"), date=WHEN)
    parsed = parse(built.as_bytes())
    assert parsed["From"].addresses[0].display_name == "Rita O'Rep, Sales"
    assert parsed["From"].addresses[0].addr_spec == "rep@example.com"
    assert parsed["To"].addresses[0].display_name == "Ada Lövelace"
    assert str(parsed["Subject"]) == "Re: Quick question – ça va?"
    assert parsed["Date"].datetime == WHEN
    assert str(parsed["Message-ID"]) == "<step2.1@cadence.test>"
    assert str(parsed["In-Reply-To"]) == "<step1.1@cadence.test>"
    assert mime.message_ids(str(parsed["References"])) == ("<step0.1@cadence.test>", "<step1.1@cadence.test>")
    assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Hi Ada, bumping this."
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hi Ada, bumping this.</p>"
    assert mime.thread_root(parsed) == "<step0.1@cadence.test>"


def test_an_unthreaded_email_has_no_threading_headers():
    built = mime.build_mime(email(reply_to=None, subject="Quick question"), date=WHEN)
    assert "In-Reply-To" not in built and "References" not in built
    assert mime.thread_root(built) == "<step2.1@cadence.test>"


@pytest.mark.parametrize("field, value, header", [
    ("subject", "Hello\nBcc: victim@example.org", "Subject"),
    ("subject", "Hello\r", "Subject"),
    ("subject", "Hello\u2028Bcc: x@y.z", "Subject"),
    ("subject", "Hello\u0085there", "Subject"),
    ("subject", "=?UTF-8?Q?=0A?=Bcc: victim@example.org", "Subject"),
    ("subject", "=?UTF-8?B?SGkNCkJjYzogeEB5Lno=?=", "Subject"),  # base64 of "Hi\r\nBcc: x@y.z"
    ("from_name", "Rita\r\nBcc: victim@example.org", "From"),
    ("to_name", "Ada\u2028", "To"),
    ("to_address", "ada@prospect.example\nBcc: victim@example.org", "To"),
    ("to_address", "ada@prospect.example>, victim@example.org", "To"),
    ("from_address", "not-an-address", "From"),
    ("message_id", "<a@b>\nBcc: x@y.z", "Message-ID"),
    ("message_id", "no-angle-brackets@cadence.test", "Message-ID"),
    ("headers", {"List-Unsubscribe": "<https://x>\r\nBcc: victim@example.org"}, "List-Unsubscribe"),
    ("headers", {"X-Note": "=?utf-8?q?a=0D=0Ab?="}, "X-Note"),
    ("headers", {"X-Bad:Name": "1"}, "X-Bad:Name"),
    ("headers", {"X Bad": "1"}, "X Bad"),
    ("headers", {"Message-ID": "<other@x.y>"}, "Message-ID"),
    ("headers", {"bcc\n": "x@y.z"}, "bcc"),
])
def test_header_injection_is_refused_naming_the_header(field, value, header):
    with pytest.raises(ValueError) as refused:
        mime.build_mime(email(**{field: value}), date=WHEN)
    assert header in str(refused.value)


def test_references_with_a_line_break_are_refused():
    bad = email(reply_to=ThreadRef("<p@x.y>", references=("<a@x.y>\nBcc: v@x.y",)))
    with pytest.raises(ValueError, match="References"):
        mime.build_mime(bad, date=WHEN)


def test_harmless_text_that_looks_encoded_is_kept():
    built = mime.build_mime(email(subject="Price =?is?= 5 = cheap", headers={}), date=WHEN)
    assert str(parse(built.as_bytes())["Subject"]) == "Price =?is?= 5 = cheap"


def test_replace_content_keeps_identity_and_changes_subject_and_bodies():
    original = parse(mime.build_mime(email(), date=WHEN).as_bytes())
    later = datetime(2024, 6, 5, 8, 0, tzinfo=timezone.utc)
    fresh = parse(mime.replace_content(original, subject="New subject", text_body="New text",
                                       html_body="<b>New</b>", date=later).as_bytes())
    assert str(fresh["Subject"]) == "New subject" and fresh["Date"].datetime == later
    for kept in ("Message-ID", "In-Reply-To", "References", "List-Unsubscribe", "From", "To"):
        assert str(fresh[kept]) == str(original[kept])
    assert fresh.get_body(("plain",)).get_content().strip() == "New text"
    assert fresh.get_body(("html",)).get_content().strip() == "<b>New</b>"
    with pytest.raises(ValueError, match="Subject"):
        mime.replace_content(original, subject="x\ny", text_body="", html_body="", date=later)


def test_postfix_bounce_gives_the_original_message_recipient_and_reason():
    report = message_from_string(POSTFIX_BOUNCE, policy=policy.default)
    status = mime.parse_delivery_status(report)
    assert status == ("<step1.7f3a@cadence.test>", "ada@prospect.example",
                      "550 5.1.1 <ada@prospect.example>: Recipient address rejected: "
                      "User unknown in virtual mailbox table")
    assert mime.thread_root(mime.original_headers(report)) == "<step1.7f3a@cadence.test>"
    headers = mime.observed_headers(report)
    assert headers["auto-submitted"] == "auto-replied"
    assert headers["content-type"].startswith("multipart/report")
    assert headers["return-path"] == "<>"


def test_a_bounce_with_the_whole_original_reports_the_failed_recipient_not_the_delayed_one():
    report = message_from_string(RFC822_BOUNCE_WITH_DELAY, policy=policy.default)
    original_id, recipient, reason = mime.parse_delivery_status(report)
    assert original_id == "<step3.99@cadence.test>"
    assert recipient == "grace@prospect.example"
    assert reason.startswith("550-5.1.1 The email account")
    assert mime.thread_root(mime.original_headers(report)) == "<step1.10@cadence.test>"


def test_a_global_delivery_status_part_is_read_from_its_text():
    text = (POSTFIX_BOUNCE.replace("report-type=delivery-status", "report-type=global-delivery-status")
            .replace("Content-Type: message/delivery-status", "Content-Type: message/global-delivery-status"))
    status = mime.parse_delivery_status(message_from_string(text, policy=policy.default))
    assert status is not None and status.recipient == "ada@prospect.example"
    assert status.original_message_id == "<step1.7f3a@cadence.test>"


@pytest.mark.parametrize("text", [DELAY_ONLY, FORWARDED_BOUNCE], ids=["delay", "forwarded"])
def test_delays_and_forwarded_bounces_are_not_bounces(text):
    assert mime.parse_delivery_status(message_from_string(text, policy=policy.default)) is None


def test_an_ordinary_message_is_no_bounce():
    assert mime.parse_delivery_status(mime.build_mime(email(), date=WHEN)) is None


def test_snippet_prefers_text_and_falls_back_to_html_without_tags():
    assert mime.text_snippet(mime.build_mime(email(), date=WHEN)) == "Hi Ada, bumping this."
    html_only = message_from_string(
        "From: a@b.c\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n"
        "<html><style>p{color:red}</style><p>Sounds&nbsp;good,\n <b>call</b> me</p></html>\n",
        policy=policy.default)
    assert mime.text_snippet(html_only) == "Sounds good, call me"  # \s also folds the no-break space


def test_an_unknown_charset_still_gives_a_snippet():
    odd = message_from_bytes(b"From: a@b.c\nContent-Type: text/plain; charset=x-klingon\n\ncall me\n",
                             policy=policy.default)
    assert mime.text_snippet(odd) == "call me"


def test_observed_headers_are_lower_case_and_unfolded():
    message = message_from_string(
        "From: a@b.c\nAuto-Submitted: auto-replied\nX-Autoreply: yes\nPrecedence: bulk\n"
        "X-Autorespond: on\nSubject: Out of office\n =?utf-8?q?_=C3=A9t=C3=A9?=\n\nbody\n",
        policy=policy.default)
    assert mime.observed_headers(message) == {
        "auto-submitted": "auto-replied", "x-autoreply": "yes", "x-autorespond": "on", "precedence": "bulk"}
    assert mime.header_text(message, "Subject") == "Out of office été"


def test_global_headers_of_the_original_are_read():
    text = POSTFIX_BOUNCE.replace("Content-Type: text/rfc822-headers", "Content-Type: message/global-headers")
    status = mime.parse_delivery_status(message_from_string(text, policy=policy.default))
    assert status is not None and status.original_message_id == "<step1.7f3a@cadence.test>"
