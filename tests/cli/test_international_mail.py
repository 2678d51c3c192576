"""Internationalised mail through the real CLI on a Maildir (issue 13b): replies with raw UTF-8
headers, UTF-8 delivery reports, contacts on IDN domains looked up in either form, a rep mailbox
and a public URL on an IDN domain, a body file with a BOM, display names that would break a
header."""
from __future__ import annotations

import json

import pytest

from connectors.maildir import MaildirPeople
from tests.support.mail import mail_bytes
from tests.support.maildir import by_recipient, read_folder

REP = "rita@acme.example"
CAMPAIGN = """\
name: Intl
timezone: UTC
steps:
  - day: 1
    action: auto
    send: at_time
    time: "09:00"
    subject: "Hi {{ first_name }}"
    body: "<p>Hello {{ first_name }}, see https://acme.example/offer</p>"
  - day: 3
    action: auto
    send: at_time
    time: "09:00"
    thread: true
    body: "Bumping this, {{ first_name }}."
"""
DAY1, AFTER, DAY3 = "2026-12-01T09:00:00Z", "2026-12-01T12:00:00Z", "2026-12-03T12:00:00Z"


def _sent(maildir) -> dict[str, list]:
    return by_recipient(read_folder(maildir, ".Sent"))


def _launch(cli, campaign: str = CAMPAIGN, contacts: str = "email,first_name\nquiet@prospect.example,Quinn\n",
            **rep) -> object:
    maildir = cli.maildir_campaign(campaign, contacts=contacts, **rep)
    mailbox = rep.get("rep", REP)
    cli.ok("enroll", "Intl", "--all", "--mailbox", mailbox, now="2026-12-01T08:00:00Z")
    cli.ok("prepare", "Intl", now="2026-12-01T08:00:00Z")
    cli.ok("send", "Intl", now="2026-12-01T08:00:00Z")
    cli.ok("worker", "--once", "--now", DAY1)
    return maildir


# contact (as imported) -> what arrives after step 1 (a file of tests/data/mail), and what it must count as
ARRIVALS = {
    "b@bücher.example": ("replies/smtputf8-raw-utf8-headers.eml", "replied"),
    "e@пример.рф": ("bounces/global-dsn-utf8-recipient.eml", "bounced"),
    "quiet@prospect.example": (None, None),
}


def test_utf8_replies_and_reports_are_read_and_matched_to_their_contacts(cli):
    contacts = "email,first_name\n" + "".join(f"{email},{email[0].upper()}\n" for email in ARRIVALS)
    maildir = _launch(cli, contacts=contacts)
    sent = {to: mails[0] for to, mails in _sent(maildir).items()}
    assert len(sent) == len(ARRIVALS)
    wire = {"b@bücher.example": "b@xn--bcher-kva.example", "e@пример.рф": "e@xn--e1afmkfd.xn--p1ai"}
    people = MaildirPeople(maildir)
    for contact, (name, _) in ARRIVALS.items():
        if name:
            first = sent[wire.get(contact, contact)]
            people.deliver(mail_bytes(name, message_id=first["Message-ID"], subject=first["Subject"],
                                      contact=contact, rep=REP, date="Tue, 01 Dec 2026 10:00:00 +0000"))
    cli.ok("worker", "--once", "--now", AFTER)

    status = json.loads(cli.ok("status", "Intl", "--json", now=AFTER))
    assert (status["delivery"]["replies"], status["delivery"]["bounces"]) == (1, 1)
    mailboxes = cli.ok("mailbox", "list", "--json")
    assert json.loads(mailboxes)[0]["health"] == "connected"
    [replied] = [line for line in cli.ok("logs", "Intl").splitlines() if " replied " in line]
    assert "b@bücher.example" in replied and "Grüße aus Köln" in replied
    [bounced] = [line for line in cli.ok("logs", "Intl").splitlines() if " bounced " in line]
    assert "e@пример.рф" in bounced and "почтовый ящик не существует" in bounced

    cli.ok("worker", "--once", "--now", DAY3)  # the quiet contact's step 2 is still sent
    assert len(_sent(maildir)["quiet@prospect.example"]) == 2
    assert len(_sent(maildir)[wire["b@bücher.example"]]) == 1


@pytest.mark.parametrize("typed", ["f@münchen.example", "f@xn--mnchen-3ya.example", "F@XN--MNCHEN-3YA.EXAMPLE",
                                   " <f@MÜNCHEN.example> ".strip(" <>")])
def test_a_contact_on_an_idn_domain_is_found_in_either_form(sqlite_cli, typed):
    cli = sqlite_cli
    _launch(cli, contacts="email,first_name\nf@münchen.example,Eff\n")
    explained = cli.ok("explain", "Intl", "--contact", typed)
    assert explained.startswith("Intl: f@münchen.example (active)")
    assert "f@münchen.example" in cli.ok("logs", "Intl", "--contact", typed)
    out = cli.ok("unenroll", "Intl", "--emails", typed)
    assert "unenrolled 1" in out


def _raw_sent(maildir) -> list[bytes]:
    return [path.read_bytes() for path in sorted((maildir / ".Sent" / "cur").iterdir())]


def test_a_rep_mailbox_on_an_idn_domain_sends_with_ascii_identifiers(sqlite_cli):
    cli = sqlite_cli
    maildir = _launch(cli, rep="rita@büro.example")
    status = json.loads(cli.ok("status", "Intl", "--json", now=AFTER))
    assert status["delivery"]["sent"] == 1
    [raw] = _raw_sent(maildir)
    assert raw.isascii()  # every header of the email as it goes on the wire
    [message] = read_folder(maildir, ".Sent")
    assert message["Message-ID"].endswith("@xn--bro-hoa.example>")
    assert message["From"].addresses[0].addr_spec == "rita@xn--bro-hoa.example"
    assert cli.ok("logs", "Intl").endswith(" 0 error(s)\n")


@pytest.mark.parametrize("public_url, ascii_host", [
    ("https://büro.example", "https://xn--bro-hoa.example/"),
    ("https://BÜRO.example:8443/cadence", "https://xn--bro-hoa.example:8443/cadence/"),
    ("https://пример.рф", "https://xn--e1afmkfd.xn--p1ai/"),
])
def test_an_idn_public_url_gives_links_and_headers_with_its_ascii_host(sqlite_cli, public_url, ascii_host):
    cli = sqlite_cli
    cli.setenv("CADENCE_PUBLIC_URL", public_url)
    maildir = _launch(cli)
    [raw] = _raw_sent(maildir)
    head = raw.split(b"\n\n", 1)[0].decode("ascii")
    [unsubscribe] = [line for line in head.replace("\n ", " ").splitlines() if line.startswith("List-Unsubscribe:")]
    assert "=?" not in unsubscribe and f"<{ascii_host}" in unsubscribe
    [message] = read_folder(maildir, ".Sent")
    html = message.get_body(("html",)).get_content()
    tracked = [link for link in html.split('"') if link.startswith("http") and "acme.example" not in link]
    assert tracked and all(link.startswith(ascii_host) for link in tracked), tracked


BOM_CAMPAIGN = CAMPAIGN.replace('    body: "<p>Hello {{ first_name }}, see https://acme.example/offer</p>"',
                                "    body_file: step1.txt", 1)


def test_a_body_file_saved_with_a_bom_sends_no_bom(sqlite_cli):
    cli = sqlite_cli
    (cli.home / "step1.txt").write_bytes("\ufeffHello {{ first_name }},\nsee https://acme.example/offer\n"
                                         .encode("utf-8"))
    maildir = _launch(cli, campaign=BOM_CAMPAIGN)
    [message] = read_folder(maildir, ".Sent")
    text, html = message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()
    assert text.startswith("Hello Quinn,") and "\ufeff" not in text and "\ufeff" not in html


@pytest.mark.parametrize("name", ["Rita\nBcc: x@evil.example", "Rita\r\nBcc: x@evil.example", "Rita\rRep",
                                  "Rita\x00Rep", "Rita\x1bRep", "=?utf-8?q?Rita=0ABcc=3A_x@evil.example?="])
def test_a_display_name_that_would_break_the_from_header_is_refused(sqlite_cli, name):
    cli = sqlite_cli
    cli.ok("init")
    cli.ok("rep", "add", "--email", "r2@acme.example", "--name", "Rita Rep")
    refused = cli("rep", "add", "--email", "r2@acme.example", "--name", name)
    assert refused.code != 0 and "Traceback" not in refused.err
    assert refused.err.strip().startswith("error: --name:") or "--name:" in refused.err.splitlines()[0]
    [row] = json.loads(cli.ok("rep", "list", "--json"))
    assert row["name"] == "Rita Rep"  # nothing half-written
    refused_new = cli("rep", "add", "--email", "r3@acme.example", "--name", name)
    assert refused_new.code != 0 and len(json.loads(cli.ok("rep", "list", "--json"))) == 1
