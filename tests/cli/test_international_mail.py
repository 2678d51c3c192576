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
    maildir = cli.maildir_campaign(campaign, contacts, **rep)
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
