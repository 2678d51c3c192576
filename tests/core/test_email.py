"""core.email: the message every MIME provider builds, how received mail is read, and the one
Message-ID rule."""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, message_from_string, policy
from email.headerregistry import Address

import pytest

from pathlib import Path

from core.email import message_id, read
from core.email.bounces import read_bounce, returned_message
from core.email.compose import build_message, replace_content, wire_address
from core.headers import HeaderInjection
from core.mailbox import OutgoingEmail, ThreadRef

MAIL = Path(__file__).parents[1] / "data" / "mail" / "bounces"
POSTFIX_BOUNCE = (MAIL / "postfix-user-unknown.eml").read_text()
RFC822_BOUNCE_WITH_DELAY = (MAIL / "gmail-failed-and-delayed-with-original.eml").read_text()
DELAY_ONLY = (MAIL / "postfix-delay-only.eml").read_text()
FORWARDED_BOUNCE = (MAIL / "forwarded-bounce.eml").read_text()

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
    built = build_message(email(from_name="Rita O'Rep, Sales", to_name="Ada Lövelace",
                                  subject="Re: Quick question – ça va?"), date=WHEN)
    parsed = parse(built.as_bytes())
    assert parsed["From"].addresses[0].display_name == "Rita O'Rep, Sales"
    assert parsed["From"].addresses[0].addr_spec == "rep@example.com"
    assert parsed["To"].addresses[0].display_name == "Ada Lövelace"
    assert str(parsed["Subject"]) == "Re: Quick question – ça va?"
    assert parsed["Date"].datetime == WHEN
    assert str(parsed["Message-ID"]) == "<step2.1@cadence.test>"
    assert str(parsed["In-Reply-To"]) == "<step1.1@cadence.test>"
    assert message_id.message_ids(str(parsed["References"])) == ("<step0.1@cadence.test>", "<step1.1@cadence.test>")
    assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Hi Ada, bumping this."
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Hi Ada, bumping this.</p>"
    assert read.thread_root(parsed) == "<step0.1@cadence.test>"


def test_an_unthreaded_email_has_no_threading_headers():
    built = build_message(email(reply_to=None, subject="Quick question"), date=WHEN)
    assert "In-Reply-To" not in built and "References" not in built
    assert read.thread_root(built) == "<step2.1@cadence.test>"


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
    with pytest.raises(HeaderInjection) as refused:
        build_message(email(**{field: value}), date=WHEN)
    assert str(refused.value).startswith(header)


@pytest.mark.parametrize("to_address", [
    "ada@prospect.example", "o'neil+tag@sub-domain.example", "a.b.c@x", "{x}|~`^=?/*&%$#!@d-1.example",
    "ada@münchen.example", '"quoted name"@prospect.example', "ada@[192.0.2.1]"])
def test_to_headers_read_as_the_email_package_reads_the_address(to_address):
    built = build_message(email(to_address=to_address, to_name="Ada L."))
    parsed = message_from_bytes(built.as_bytes(), policy=policy.default)
    address = parsed["To"].addresses[0]
    expected = Address(display_name="Ada L.", addr_spec=wire_address(to_address))
    assert (address.display_name, address.username, address.domain) == (
        expected.display_name, expected.username, expected.domain)


def test_references_with_a_line_break_are_refused():
    bad = email(reply_to=ThreadRef("<p@x.y>", references=("<a@x.y>\nBcc: v@x.y",)))
    with pytest.raises(ValueError, match="References"):
        build_message(bad, date=WHEN)


def test_harmless_text_that_looks_encoded_is_kept():
    built = build_message(email(subject="Price =?is?= 5 = cheap", headers={}), date=WHEN)
    assert str(parse(built.as_bytes())["Subject"]) == "Price =?is?= 5 = cheap"


def test_replace_content_keeps_identity_and_changes_subject_and_bodies():
    original = parse(build_message(email(), date=WHEN).as_bytes())
    later = datetime(2024, 6, 5, 8, 0, tzinfo=timezone.utc)
    fresh = parse(replace_content(original, subject="New subject", text_body="New text",
                                       html_body="<b>New</b>", date=later).as_bytes())
    assert str(fresh["Subject"]) == "New subject" and fresh["Date"].datetime == later
    for kept in ("Message-ID", "In-Reply-To", "References", "List-Unsubscribe", "From", "To"):
        assert str(fresh[kept]) == str(original[kept])
    assert fresh.get_body(("plain",)).get_content().strip() == "New text"
    assert fresh.get_body(("html",)).get_content().strip() == "<b>New</b>"
    with pytest.raises(ValueError, match="Subject"):
        replace_content(original, subject="x\ny", text_body="", html_body="", date=later)


def test_postfix_bounce_gives_the_original_message_recipient_and_reason():
    report = message_from_string(POSTFIX_BOUNCE, policy=policy.default)
    bounce = read_bounce(report)
    assert (bounce.message_id, bounce.recipient, bounce.status, bounce.severity) == (
        "<step1.7f3a@cadence.test>", "ada@prospect.example", "5.1.1", "hard")
    assert bounce.reason == ("550 5.1.1 <ada@prospect.example>: Recipient address rejected: "
                             "User unknown in virtual mailbox table")
    assert read.thread_root(returned_message(report)) == "<step1.7f3a@cadence.test>"
    headers = read.observed_headers(report)
    assert headers["auto-submitted"] == "auto-replied"
    assert headers["content-type"].startswith("multipart/report")
    assert headers["return-path"] == "<>"


def test_a_bounce_with_the_whole_original_reports_the_failed_recipient_not_the_delayed_one():
    report = message_from_string(RFC822_BOUNCE_WITH_DELAY, policy=policy.default)
    bounce = read_bounce(report)
    assert bounce.message_ids == ("<step3.99@cadence.test>",)  # not the ids the returned email refers to
    assert bounce.recipient == "grace@prospect.example"
    assert bounce.reason.startswith("550-5.1.1 The email account")
    assert read.thread_root(returned_message(report)) == "<step1.10@cadence.test>"


def test_a_global_delivery_status_part_is_read_from_its_text():
    text = (POSTFIX_BOUNCE.replace("report-type=delivery-status", "report-type=global-delivery-status")
            .replace("Content-Type: message/delivery-status", "Content-Type: message/global-delivery-status"))
    bounce = read_bounce(message_from_string(text, policy=policy.default))
    assert bounce is not None and bounce.recipient == "ada@prospect.example"
    assert bounce.message_id == "<step1.7f3a@cadence.test>"


@pytest.mark.parametrize("text", [DELAY_ONLY, FORWARDED_BOUNCE], ids=["delay", "forwarded"])
def test_delays_and_forwarded_bounces_are_not_bounces(text):
    assert read_bounce(message_from_string(text, policy=policy.default)) is None


def test_an_ordinary_message_is_no_bounce():
    assert read_bounce(build_message(email(), date=WHEN)) is None


def test_snippet_prefers_text_and_falls_back_to_html_without_tags():
    assert read.text_snippet(build_message(email(), date=WHEN)) == "Hi Ada, bumping this."
    html_only = message_from_string(
        "From: a@b.c\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n"
        "<html><style>p{color:red}</style><p>Sounds&nbsp;good,\n <b>call</b> me</p></html>\n",
        policy=policy.default)
    assert read.text_snippet(html_only) == "Sounds good, call me"  # \s also folds the no-break space


def test_an_unknown_charset_still_gives_a_snippet():
    odd = message_from_bytes(b"From: a@b.c\nContent-Type: text/plain; charset=x-klingon\n\ncall me\n",
                             policy=policy.default)
    assert read.text_snippet(odd) == "call me"


def test_observed_headers_are_lower_case_and_unfolded():
    message = message_from_string(
        "From: a@b.c\nAuto-Submitted: auto-replied\nX-Autoreply: yes\nPrecedence: bulk\n"
        "X-Autorespond: on\nSubject: Out of office\n =?utf-8?q?_=C3=A9t=C3=A9?=\n\nbody\n",
        policy=policy.default)
    assert read.observed_headers(message) == {
        "auto-submitted": "auto-replied", "x-autoreply": "yes", "x-autorespond": "on", "precedence": "bulk"}
    assert read.header_text(message, "Subject") == "Out of office été"


def test_global_headers_of_the_original_are_read():
    text = POSTFIX_BOUNCE.replace("Content-Type: text/rfc822-headers", "Content-Type: message/global-headers")
    bounce = read_bounce(message_from_string(text, policy=policy.default))
    assert bounce is not None and bounce.message_id == "<step1.7f3a@cadence.test>"


MESSAGE_IDS = {
    "<a@b>": True, "<step1.7f3a@cadence.test>": True, "<1.2.3$x@[10.0.0.1]>": True,
    "a@b": False, "<ab>": False, "<a@b@c>": False, "<a b@c>": False, "<a@b> <c@d>": False, "<>": False,
    "<a@b>\n": False, "": False,
}


@pytest.mark.parametrize("value, valid", MESSAGE_IDS.items(), ids=[repr(v) for v in MESSAGE_IDS])
def test_one_message_id_rule(value, valid):
    assert message_id.is_message_id(value) is valid
    if valid:
        assert message_id.check_message_id("Message-ID", value) == value
    else:
        with pytest.raises(HeaderInjection, match="^Message-ID"):
            message_id.check_message_id("Message-ID", value)


def test_message_ids_are_read_from_any_text_in_order_without_repeats():
    assert message_id.message_ids("<a@x> junk <noat> <b@y>\n\t<a@x>") == ("<a@x>", "<b@y>")
    assert message_id.first_message_id("In reply to <c@z>") == "<c@z>"
    assert message_id.first_message_id(None) is None


def test_headers_from_a_provider_list_are_read_like_a_message():
    message = read.message_from_headers([("From", "Ada <ada@prospect.example>"), ("Subject", "Re: hi\r\n there"),
                                         ("Auto-Submitted", "auto-replied"), ("bad name", "x")])
    assert read.addresses(message, "From") == ("ada@prospect.example",)
    assert read.header_text(message, "Subject") == "Re: hi there"
    assert read.observed_headers(message) == {"auto-submitted": "auto-replied"}


def test_without_a_date_the_message_has_no_date_header():
    assert "Date" not in build_message(email(), date=None)


def test_an_exchange_report_in_plain_text_gives_message_id_recipient_and_reason():
    bounce = read_bounce(read.parse_message((MAIL / "exchange-text-only.eml").read_bytes()))
    assert (bounce.message_ids, bounce.recipient, bounce.status, bounce.severity) == (
        ("<4f1c0a7e@cadence.test>",), "ada@prospect.example", "5.1.10", "hard")
    assert bounce.reason == "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"


def test_report_fields_written_as_plain_text_are_read():
    bounce = read_bounce(read.parse_message((MAIL / "dsn-fields-in-plain-text.eml").read_bytes()))
    assert (bounce.message_ids, bounce.recipient, bounce.status) == (
        ("<abc123@cadence.test>",), "bob@nowhere.example", "5.1.1")
    assert bounce.reason == "550 5.1.1 <bob@nowhere.example>: Recipient address rejected"


def test_an_ordinary_message_with_an_address_in_it_is_no_bounce():
    message = read.parse_message(b"From: ada@prospect.example\nSubject: Re: hi\n\nWrite to bob@nowhere.example, thanks!\n")
    assert read_bounce(message) is None


# raw header bytes as SMTPUTF8 servers deliver them -> (header, value read, bare address of From)
EIGHT_BIT_HEADERS = [
    (b"From: Bee <b@b\xc3\xbccher.example>", "From", "Bee <b@bücher.example>", "b@bücher.example"),
    (b"From: =?utf-8?q?B=C3=A9e?= <b@xn--bcher-kva.example>", "From", "Bée <b@xn--bcher-kva.example>",
     "b@xn--bcher-kva.example"),
    (b"Subject: Gr\xc3\xbc\xc3\x9fe \xe2\x80\x93 ok", "Subject", "Grüße – ok", None),
    (b"Subject: caf\xe9 (latin-1, no UTF-8)", "Subject", "caf\ufffd (latin-1, no UTF-8)", None),
    (b"From: \xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd <i@\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84>",
     "From", "Иван <i@пример.рф>", "i@пример.рф"),
]


@pytest.mark.parametrize(("line", "name", "value", "address"), EIGHT_BIT_HEADERS)
def test_raw_8bit_headers_are_read_as_utf8_without_surrogates(line, name, value, address):
    data = b"Message-ID: <r1@x.example>\r\n" + line + b"\r\nTo: rita@acme.example\r\n\r\nbody\r\n"
    message = read.parse_message(data)
    assert read.header_text(message, name) == value
    if address:
        assert read.addresses(message, "From") == (address,)
    pairs = read.all_headers(message)
    assert all(text.encode("utf-8") for _, text in pairs)  # no lone surrogates left anywhere
    assert [n for n, _ in pairs] == ["Message-ID", name, "To"]  # order kept


@pytest.mark.parametrize(("domain", "id_right"), [
    ("acme.example", "acme.example"), ("büro.example", "xn--bro-hoa.example"),
    ("BÜRO.Example", "xn--bro-hoa.example"), ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
])
def test_a_new_message_id_names_its_domain_in_ascii(domain, id_right):
    made = message_id.new_message_id("abc123", domain)
    assert made == f"<abc123@{id_right}>" and made.isascii()


def test_a_message_id_domain_that_is_no_domain_is_refused_naming_message_id():
    with pytest.raises(HeaderInjection, match="Message-ID"):
        message_id.new_message_id("abc123", "bü\u200bro..example")
